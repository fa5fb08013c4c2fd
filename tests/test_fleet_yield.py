"""Over real DDS: a parked idle robot yields its spot to a robot whose task ends there, and
a robot whose reservations are revoked (a lost robot's spot is blocked) stops before the
cut and replans — both checked by the independent monitor. The finer yielding rules
(waiting for a holder, repeated ACTIVE status, forgetting a task whose end was missed)
are tested on the execution core alone: tests/test_execution.py."""
import contextlib
import time

from fleet_coord_msgs.msg import RobotState, TaskStatus
from fleet_coord_msgs.srv import Reserve

from fleet_checks import Monitor
from fleet_coord import qos
from fleet_coord.fleet_config import DEFAULT_MAP
from fleet_coord.convert import segment_msg as _segment
from fleet_harness import Fleet
from rosutil import ros_context, spin_until

INF = float("inf")


@contextlib.contextmanager
def monitored_fleet(tmp_path, robots, extra_robots=()):
    """A fleet of `robots` on the default map, up, watched by the independent monitor;
    when the test's body is through, the monitor saw no conflicting holds and no robot
    outside what it held. `extra_robots`: robots the test speaks for (Fleet)."""
    with ros_context() as (ctx, ex):
        fleet = Fleet(ctx, ex, DEFAULT_MAP, robots, str(tmp_path / "ledger.db"),
                      extra_robots=extra_robots)
        monitor = Monitor(fleet.traffic, robots)
        assert spin_until(ex, fleet.ready, 15.0), "fleet did not come up"
        yield fleet, monitor, ex
        assert monitor.conflicts == [], monitor.conflicts[:5]
        assert monitor.excursions == [], monitor.excursions[:5]


def test_parked_robot_yields_its_spot_to_a_task_that_ends_there(tmp_path):
    robots = {"a": (2, 1), "b": (5, 1)}
    with monitored_fleet(tmp_path, robots) as (fleet, monitor, ex):
        # b is nearer the pick-up, so b wins and must drop at a's parking spot (2, 1)
        assert fleet.submit("drop-at-a", ["5,2", "2,1"], kind="pick_and_drop").accepted
        assert spin_until(ex, lambda: fleet.final("drop-at-a") is not None, 40.0)
        assert fleet.first("drop-at-a", TaskStatus.AWARDED).robot == "b"
        assert fleet.final("drop-at-a").state == TaskStatus.DONE, fleet.final("drop-at-a")
        bx, by, _ = fleet.agents["b"].core.pose
        assert abs(bx - 2) < 0.1 and abs(by - 1) < 0.1
        assert fleet.agents["a"].core.here != fleet.agents["b"].core.here


def test_revoked_reservations_make_the_robot_stop_before_the_cut_and_replan(tmp_path):
    """A ghost robot holds (5, 1) for 2 s and falls silent: traffic declares it lost and
    blocks (5, 1) for good, revoking b's later pass there. b replans around it."""
    robots = {"b": (2, 1)}
    with monitored_fleet(tmp_path, robots, extra_robots=("ghost",)) as (fleet, monitor, ex):
        node = fleet.dispatcher
        ghost_pub = node.create_publisher(RobotState, "/fleet/robot_states", qos.state_qos())
        reserve = node.create_client(Reserve, "/traffic/reserve")
        for _ in range(5):
            ghost_pub.publish(fleet.sign(RobotState(robot="ghost"), "fleet/robot_states",
                                         "ghost"))
            spin_until(ex, lambda: False, 0.05)
        ghost_v = monitor.roadmap.vertex("5,1")
        now = node.now()
        req = Reserve.Request(robot="ghost", roadmap_id=fleet.agents["b"].roadmap_id)
        req.segments = [_segment("ghost", ghost_v, now, now + 2.0)]
        fut = reserve.call_async(fleet.sign(req, "traffic/reserve", "ghost"))
        assert spin_until(ex, fut.done, 5.0) and fut.result().ok, fut.result()
        assert fleet.submit("east", ["9,1"]).accepted
        t0 = time.monotonic()
        assert spin_until(ex, lambda: fleet.final("east") is not None, 40.0)
        assert fleet.final("east").state == TaskStatus.DONE, fleet.final("east")
        lost = [r for r in fleet.traffic.authority.table.reservations("ghost")
                if r.t_end == INF]
        assert [r.resource for r in lost] == [ghost_v], "the ghost's spot stays blocked"
        bx, by, _ = fleet.agents["b"].core.pose
        assert abs(bx - 9) < 0.1 and abs(by - 1) < 0.1
        assert time.monotonic() - t0 < 40



def test_an_idle_robot_gives_up_holds_it_should_not_have(tmp_path):
    """A robot declared lost while it drove (a stalled process) gets everything it held
    around then blocked for good; once it is idle again nothing would ever replace that.
    The idle agent notices it holds more than its spot for good and parks again, so a
    task to the blocked vertex completes instead of waiting for an idle holder."""
    robots = {"a": (2, 1), "b": (9, 1)}
    with monitored_fleet(tmp_path, robots) as (fleet, monitor, ex):
        a = fleet.agents["a"]
        table = fleet.traffic.authority.table
        extra = monitor.roadmap.vertex("5,1")
        # what the authority does when it declares a lost: its holds become blocks for
        # good (here one more vertex than the spot it stands on)
        now = fleet.traffic.now()
        assert table.commit("a", [(extra, now, INF)]).ok
        fleet.traffic.publish_updates()

        def forever(robot):
            return sorted(r.resource for r in table.reservations(robot) if r.t_end == INF)
        assert forever("a") == sorted([a.core.here, extra])
        assert spin_until(ex, lambda: forever("a") == [a.core.here], 10.0), forever("a")
        assert fleet.submit("to-5-1", ["5,1"]).accepted
        assert spin_until(ex, lambda: fleet.final("to-5-1") is not None, 40.0)
        assert fleet.final("to-5-1").state == TaskStatus.DONE, fleet.final("to-5-1")



def test_a_task_to_a_station_a_lost_robot_holds_waits_for_it(tmp_path):
    """Known gap 4: a silent robot is declared lost and its spot stays blocked. A task to
    that spot is not announced (nobody could get there: the winner would wait for a robot
    that cannot yield and fail the task); it stays QUEUED, saying why. Once the robot
    speaks again the task is announced and done."""
    robots = {"a": (2, 1), "b": (9, 1)}
    with monitored_fleet(tmp_path, robots) as (fleet, monitor, ex):
        a = fleet.agents["a"]
        a._publish_state = lambda: None      # a falls silent (a stalled or cut-off agent)
        assert spin_until(ex, lambda: "a" in fleet.dispatcher.core.lost, 10.0), "a not lost"
        assert fleet.submit("to-a", ["2,1"]).accepted
        assert spin_until(ex, lambda: "to-a" in fleet.dispatcher.core.deferred(), 5.0)
        spin_until(ex, lambda: False, 2.0)
        said = [s for s in fleet.statuses if s.task_id == "to-a"]
        assert not [s for s in said if s.state == TaskStatus.ANNOUNCED], said
        assert any(s.state == TaskStatus.QUEUED and "lost robot a" in s.reason
                   for s in said), said
        del a._publish_state                 # a speaks again
        assert spin_until(ex, lambda: fleet.final("to-a") is not None, 40.0)
        assert fleet.final("to-a").state == TaskStatus.DONE, fleet.final("to-a")
        assert not [s for s in fleet.statuses
                    if s.task_id == "to-a" and s.state == TaskStatus.FAILED]

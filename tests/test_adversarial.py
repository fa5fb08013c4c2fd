"""Issue 16's attacks on an authenticated fleet, by real rogue rclpy nodes (their own DDS
participants): one without credentials, one holding robot r0's key acting for other
robots, and replays of captured valid messages. Each attack is refused (dropped and
logged by the nodes: their verifiers count the drops), the independent monitor sees 0
conflicting holds and 0 excursions, no task is lost and the fleet keeps working.

One small fleet (traffic, dispatcher, ideal driver, three agents; fleet_harness) serves
every attack, in order."""
import math

import pytest

rclpy = pytest.importorskip("rclpy", reason="rclpy is installed by `make setup`")
from fleet_coord_msgs.msg import (Award, CallForProposal, ReservationSegment,  # noqa: E402
                                  RobotNotice, RobotState, TaskStatus)
from fleet_coord_msgs.msg import Task as TaskMsg  # noqa: E402
from fleet_coord_msgs.srv import Release, RemoveRobot, Reserve  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402

from fleet_checks import Monitor  # noqa: E402
from fleet_coord import qos  # noqa: E402
from fleet_coord.auth import Signer  # noqa: E402
from fleet_coord.core.trust import Refusal  # noqa: E402
from fleet_coord.keys import KeyDir  # noqa: E402
from fleet_harness import Fleet, provision_keys  # noqa: E402
from rosutil import ros_context, spin_until  # noqa: E402

MAP = """type octile
height 7
width 12
map
@@@@@@@@@@@@
@..........@
@..........@
@..........@
@..........@
@..........@
@@@@@@@@@@@@
"""
ROBOTS = {"r0": (1, 1), "r1": (5, 1), "r2": (10, 1)}


class Rogue:
    """A node of its own DDS participant: publishes and calls what it likes."""

    def __init__(self, name):
        self.ctx = rclpy.Context()
        rclpy.init(context=self.ctx)
        self.node = rclpy.create_node(name, context=self.ctx)
        self.ex = SingleThreadedExecutor(context=self.ctx)
        self.ex.add_node(self.node)
        self.pubs = {}
        self.clients = {}

    def publish(self, msg_type, topic, msg, profile=qos.PROTOCOL):
        key = (msg_type, topic)
        if key not in self.pubs:
            self.pubs[key] = self.node.create_publisher(msg_type, topic, profile)
        self.pubs[key].publish(msg)

    def call(self, fleet, srv_type, service, req, timeout=10.0):
        """Call a fleet service, spinning the fleet meanwhile; the answer (or None)."""
        client = self.clients.get(service)
        if client is None:
            client = self.clients[service] = self.node.create_client(srv_type, service)
        assert client.wait_for_service(timeout_sec=timeout)
        fut = client.call_async(req)
        ok = spin_until(fleet.ex, lambda: self._spin() or fut.done(), timeout)
        return fut.result() if ok else None

    def _spin(self):
        self.ex.spin_once(timeout_sec=0.0)
        return False

    def close(self):
        self.ex.shutdown()
        self.node.destroy_node()
        rclpy.shutdown(context=self.ctx)


def drops(fleet, reason=None):
    nodes = [fleet.traffic, fleet.dispatcher, fleet.driver, *fleet.agents.values()]
    total = {}
    for n in nodes:
        v = n.auth.verifier
        for r, c in v.dropped.items():
            total[r] = total.get(r, 0) + c
    return total if reason is None else total.get(reason, 0)


class Env:
    """The shared fleet, its independent monitor, what the test captured, the rogues."""


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("adversarial")
    (tmp / "room.map").write_text(MAP)
    e = Env()
    e.keys = KeyDir(provision_keys(ROBOTS, str(tmp)))
    with ros_context() as (ctx, ex):
        e.ex = ex
        e.fleet = Fleet(ctx, ex, str(tmp / "room.map"), ROBOTS, str(tmp / "ledger.db"),
                        auth_keys=e.keys.path)
        e.node = rclpy.create_node("independent_monitor", context=ctx)
        ex.add_node(e.node)
        e.monitor = Monitor(e.node, list(ROBOTS), map_path=str(tmp / "room.map"))
        e.captured = {"state": [], "status": []}
        e.node.create_subscription(RobotState, "/fleet/robot_states",
                                   e.captured["state"].append, qos.state_qos())
        e.node.create_subscription(TaskStatus, "/fleet/task_status",
                                   e.captured["status"].append, qos.PROTOCOL)
        e.lost = []
        e.node.create_subscription(RobotNotice, "/fleet/robot_lost",
                                   lambda m: e.lost.append(m.robot), qos.PROTOCOL)
        assert spin_until(ex, e.fleet.ready, 30.0), "fleet did not come up"
        e.anon, e.r0key = Rogue("rogue_anon"), Rogue("rogue_r0")
        try:
            yield e
        finally:
            e.anon.close()
            e.r0key.close()


def test_attacks_are_refused_and_the_fleet_keeps_working(env):
    fleet, ex, kd, monitor, captured = env.fleet, env.ex, env.keys, env.monitor, env.captured
    anon, r0key = env.anon, env.r0key
    table = fleet.traffic.authority.table
    as_r0 = Signer("r0", kd.private_key("r0"))
    spot_r1 = [r.resource for r in table.reservations("r1")]
    assert spot_r1, "r1 holds its parked spot"

    # 1. Release(r1) then Reserve(r0) on r1's spot: from nobody, and with r0's key
    for req in (Release.Request(robot="r1"),
                as_r0.sign(Release.Request(robot="r1"), "traffic/release")):
        anon.call(fleet, Release, "/traffic/release", req)
    now = fleet.traffic.now()
    assert all(table.holder_at(v, now) == "r1" for v in set(spot_r1))
    seg = ReservationSegment(robot="r1", resource=spot_r1[0], t_start=fleet.traffic.now(),
                             t_end=math.inf)
    grab = as_r0.sign(Reserve.Request(robot="r1", segments=[seg]), "traffic/reserve")
    resp = r0key.call(fleet, Reserve, "/traffic/reserve", grab)
    assert resp is not None and not resp.ok and "not signed by robot 'r1'" in resp.message

    # 2. a made-up robot reserving everything until infinity
    segs = [ReservationSegment(robot="ghost", resource=v, t_start=0.0, t_end=math.inf)
            for v in range(table.num_resources)]
    resp = anon.call(fleet, Reserve, "/traffic/reserve",
                     Reserve.Request(robot="ghost", segments=segs))
    assert resp is not None and not resp.ok
    assert not table.reservations("ghost")

    # 3. RemoveRobot(force) from nobody and from a robot's key
    for req in (RemoveRobot.Request(robot="r1", force=True),
                as_r0.sign(RemoveRobot.Request(robot="r1", force=True),
                           "fleet/remove_robot")):
        resp = anon.call(fleet, RemoveRobot, "/fleet/remove_robot", req)
        assert resp is not None and not resp.ok and "operator" in resp.error
    assert spin_until(ex, lambda: "r1" in fleet.dispatcher.alive_robots(
        fleet.dispatcher.now()), 5.0), (drops(fleet), fleet.dispatcher.auth.verifier.dropped)

    # 4. forged cfp + award: work the ledger never saw
    phantom = TaskMsg(id="phantom", kind="goto", stations=["9,4"])
    anon.publish(CallForProposal, "/fleet/cfp",
                 CallForProposal(task=phantom, round=1, initiator="dispatcher"))
    anon.publish(Award, "/fleet/awards", Award(task_id="phantom", round=1, robot="r2",
                                               initiator="dispatcher"))
    spin_until(ex, lambda: False, 1.0)
    assert all(a.core.job is None or a.core.job.task_id != "phantom"
               for a in fleet.agents.values())

    # 5. a real task for r2, then a forged DONE (anonymous, and r0's key in r2's
    # name), a forged robot_lost for r2, a forged robot_removed for r1
    resp = fleet.submit("far", ["10,5"])
    assert resp.accepted, resp.error
    assert spin_until(ex, lambda: fleet.first("far", TaskStatus.AWARDED), 10.0)
    winner = fleet.first("far", TaskStatus.AWARDED).robot
    for forged in (TaskStatus(task_id="far", robot=winner, reporter=winner,
                              state=TaskStatus.DONE, progress=1.0),
                   as_r0.sign(TaskStatus(task_id="far", robot=winner, reporter=winner,
                                         state=TaskStatus.DONE, progress=1.0),
                              "fleet/task_status")):
        anon.publish(TaskStatus, "/fleet/task_status", forged)
    anon.publish(RobotNotice, "/fleet/robot_lost", RobotNotice(robot=winner))
    anon.publish(RobotNotice, "/fleet/robot_removed", RobotNotice(robot="r1"))
    r0key.publish(RobotNotice, "/fleet/robot_removed",
                  as_r0.sign(RobotNotice(robot="r1"), "fleet/robot_removed"))
    spin_until(ex, lambda: False, 1.0)
    # the dispatcher's ledger (the test's own subscription hears forgeries too)
    assert fleet.dispatcher.ledger.get("far").state.value != "DONE", \
        "a forged DONE counted"
    assert not fleet.agents["r1"].core.removed
    awarded = [s for s in fleet.statuses
               if s.task_id == "far" and s.state == TaskStatus.AWARDED]
    assert len({s.round for s in awarded}) == 1, "re-auctioned on a forged loss"
    assert spin_until(ex, lambda: fleet.dispatcher.ledger.get("far").state.value
                      == "DONE", 60.0)
    x, y, _ = fleet.agents[winner].core.pose
    assert math.hypot(x - 10, y - 5) < 1.0, "DONE without driving there"

    # 6. replay of captured valid messages: robots' states, the winner's reports
    old_states = [s for s in captured["state"] if s.auth.signer][:20]
    dones = [s for s in captured["status"] if s.auth.signer == winner]
    assert old_states and dones
    before = drops(fleet, Refusal.REPLAY) + drops(fleet, Refusal.STALE)
    for m in old_states + dones:
        anon.publish(type(m), "/fleet/robot_states" if isinstance(m, RobotState)
                     else "/fleet/task_status", m,
                     qos.state_qos() if isinstance(m, RobotState) else qos.PROTOCOL)
    assert spin_until(ex, lambda: drops(fleet, Refusal.REPLAY)
                      + drops(fleet, Refusal.STALE) > before, 10.0)

    # 7. r1 falls silent; states in its name (unsigned, r0's key, replayed) do not
    # keep it alive: declared lost in bound, its spot stays blocked
    ex.remove_node(fleet.agents["r1"])
    stop = fleet.traffic.now() + 6.0
    lost = env.lost

    def forge_states():
        anon.publish(RobotState, "/fleet/robot_states", RobotState(robot="r1"),
                     qos.state_qos())
        r0key.publish(RobotState, "/fleet/robot_states",
                      as_r0.sign(RobotState(robot="r1"), "fleet/robot_states"),
                      qos.state_qos())
        return "r1" in lost or fleet.traffic.now() > stop
    assert spin_until(ex, forge_states, 15.0) and "r1" in lost
    assert table.reservations("r1"), "a lost robot's spot stays blocked"

    # the fleet keeps working; nothing conflicted, nobody drove off its holds
    resp = fleet.submit("after", ["2,4"])
    assert resp.accepted, resp.error
    assert spin_until(ex, lambda: fleet.dispatcher.ledger.get("after").state.value
                      == "DONE", 60.0)
    assert monitor.conflicts == [] and monitor.excursions == []
    counted = drops(fleet)
    for reason in (Refusal.UNSIGNED, Refusal.WRONG_SUBJECT):
        assert counted.get(reason, 0) > 0, counted


def test_a_revoked_robot_is_refused_its_task_reauctioned_its_spot_blocked(env):
    """A stolen robot: its key revoked while it drives a task. Whatever it signs more than
    a second after the keyring is published is taken by no node (its agent keeps running
    and signing), it is declared lost, its task goes back to auction and to another
    robot, its spot stays blocked until an operator removes it."""
    import time

    from fleet_coord_msgs.msg import Keyring as KeyringMsg

    from fleet_coord.auth import stamp_seconds
    from fleet_coord.convert import keyring_to_msg
    fleet, ex, kd, captured = env.fleet, env.ex, env.keys, env.captured
    table, ledger = fleet.traffic.authority.table, fleet.dispatcher.ledger
    resp = fleet.submit("stolen", ["1,5"])
    assert resp.accepted, resp.error
    assert spin_until(ex, lambda: fleet.first("stolen", TaskStatus.ACTIVE), 15.0)
    thief = fleet.first("stolen", TaskStatus.ACTIVE).robot
    first_round = fleet.first("stolen", TaskStatus.AWARDED).round
    operator = Signer("operator", kd.private_key("operator"))
    keyring, revoked = kd.revoke(thief)
    msg = operator.sign(keyring_to_msg(keyring, f"revoked {thief}: stolen"), "fleet/keyring")
    pub = env.node.create_publisher(KeyringMsg, "/fleet/keyring", qos.KEYRING)
    assert spin_until(ex, lambda: pub.get_subscription_count() > 0, 10.0)
    nodes = [fleet.traffic, fleet.dispatcher, fleet.driver, *fleet.agents.values()]
    seen = len(captured["state"])
    sent = time.time()   # wall clock, as the signatures' stamps
    pub.publish(msg)

    def signed_a_second_later():
        # the thief's agent still signs: one of its states stamped > 1 s after the keyring
        return any(s.auth.signer == thief and stamp_seconds(s.auth) > sent + 1.0
                   for s in captured["state"][seen:])
    assert spin_until(ex, signed_a_second_later, 15.0)
    for n in (fleet.traffic, fleet.dispatcher):
        assert n.auth.verifier.dropped.get(Refusal.REVOKED, 0) > 0, n.get_name()
    taken = {n.get_fully_qualified_name(): n.auth.verifier.guard.newest(thief) for n in nodes}
    late = {n: t - sent for n, t in taken.items() if t is not None and t > sent + 1.0}
    assert not late, f"{thief}'s messages taken after the revocation (s after it): {late}"
    print(f"{thief}: the last message any node took was signed "
          f"{max((t - sent for t in taken.values() if t), default=float('nan')):+.3f} s "
          "from the keyring's publication")
    assert spin_until(ex, lambda: thief in env.lost, 10.0), "a revoked robot is lost"
    now = fleet.traffic.now()
    spot = sorted({r.resource for r in table.reservations(thief)
                   if table.holder_at(r.resource, now) == thief})
    assert spot, "the spot a lost robot occupies stays blocked"
    # its task is taken from it and back in the dispatcher's queue (announced once its
    # station is free); the thief's own reports (a late DONE) would count, but are refused
    assert spin_until(ex, lambda: ledger.get("stolen").robot != thief
                      and ledger.get("stolen").state.value in ("QUEUED", "ANNOUNCED",
                                                               "AWARDED", "ACTIVE"), 10.0)
    assert thief in fleet.dispatcher.core.former_holders().get("stolen", set())
    spin_until(ex, lambda: False, 1.0)
    assert all(table.holder_at(v, fleet.traffic.now()) == thief for v in spot)
    # only an operator's RemoveRobot frees the spot; then another robot does the task
    req = operator.sign(RemoveRobot.Request(robot=thief, force=True, reason="stolen"),
                        "fleet/remove_robot")
    resp = env.anon.call(fleet, RemoveRobot, "/fleet/remove_robot", req)
    assert resp is not None and resp.ok, resp
    assert not table.reservations(thief)
    assert spin_until(ex, lambda: ledger.get("stolen").state.value == "DONE", 60.0), \
        "its task was not done by another robot"
    assert ledger.get("stolen").robot != thief
    award = [s for s in fleet.statuses
             if s.task_id == "stolen" and s.state == TaskStatus.AWARDED][-1]
    assert award.robot != thief and award.round > first_round, "not re-auctioned"
    assert env.monitor.conflicts == []

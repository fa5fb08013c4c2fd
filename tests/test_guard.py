"""Input guards (fleet_coord.guard, issue #15): what a callback cannot take is dropped
with a rate-limited line naming the topic and the sender; the cores refuse non-finite
poses and malformed table updates without changing anything, and a replica that got one
resynchronises at the next snapshot. Pure: no ROS (the fleet-level check is in
test_fuzz_inputs.py)."""
import inspect
import math

import pytest

from fleet_coord.core.execution import Odometry
from fleet_coord.core.replica import Replica, TableUpdate
from fleet_coord.core.reservations import Reservation, ReservationTable
from fleet_coord.core.traffic import TrafficAuthority
from fleet_coord.guard import STATE_IDS_MAX, BadInput, Guard, check_robot_state, finite
from test_execution import up

INF = math.inf


class Log:
    def __init__(self):
        self.lines = []

    def warning(self, text):
        self.lines.append(("warning", text))

    def error(self, text):
        self.lines.append(("error", text))


class Msg:
    robot = "r7"


def test_a_bad_message_is_dropped_with_one_line_per_period_naming_topic_and_sender():
    log, t = Log(), [0.0]
    guard = Guard(log, period=10.0, clock=lambda: t[0])

    def callback(msg):
        finite(cost=math.nan)
    cb = guard.wrap("/fleet/proposals", callback)
    for _ in range(5):
        assert cb(Msg()) is None
    assert guard.dropped == 5 and len(log.lines) == 1
    level, text = log.lines[0]
    assert level == "warning" and "/fleet/proposals" in text and "r7" in text and "cost" in text
    t[0] = 11.0
    cb(Msg())
    assert len(log.lines) == 2 and "4 more like it" in log.lines[1][1]


def test_an_unexpected_error_is_logged_with_its_traceback_and_the_callback_goes_on():
    log = Log()
    guard = Guard(log)
    cb = guard.wrap("/fleet/cfp", lambda msg: {}["missing"])
    cb(Msg())
    assert guard.failures == 1 and log.lines[0][0] == "error" and "KeyError" in log.lines[0][1]


def test_a_guarded_callback_keeps_its_signature():
    # rclpy hands the MessageInfo only to a callback that takes two arguments
    def with_info(msg, info):
        return info
    wrapped = Guard(Log()).wrap("/t", with_info)
    inspect.signature(wrapped).bind(1, 2)
    with pytest.raises(TypeError):
        inspect.signature(wrapped).bind(1)
    assert wrapped(1, 2) == 2


def test_a_non_finite_odometry_is_refused_and_the_robot_stays_where_it_was_known():
    w = up(a=(1, 0))
    core = w.cores["a"]
    before = (core.pose, core.here, core.odom_t)
    for field in ("x", "y", "theta", "v", "w", "stamp"):
        odom = {"x": 1.0, "y": 0.0, "theta": 0.0, "v": 0.0, "w": 0.0, "stamp": w.t}
        odom[field] = math.nan
        with pytest.raises(ValueError, match=f"{field} = nan"):
            core.on_odometry(w.t, Odometry(**odom))
    assert (core.pose, core.here, core.odom_t) == before


def test_a_malformed_update_changes_no_replica_and_the_next_snapshot_resynchronises():
    rep = Replica(lambda r: (r,), 10)
    ok = Reservation("a", 1, 0.0, INF)
    assert rep.apply(TableUpdate(3, is_snapshot=True, epoch=5, added=(ok,)))
    for bad in (Reservation("a", 10**6, 0.0, 1.0), Reservation("a", 2, math.nan, 1.0),
                Reservation("a", 2, 5.0, 1.0)):
        with pytest.raises(ValueError, match="epoch 5 update 4"):
            rep.apply(TableUpdate(4, "a", epoch=5, added=(bad,)))
        assert rep.stale and rep.version == 3 and len(rep.table.reservations()) == 1
        with pytest.raises(ValueError, match="snapshot 9"):
            rep.apply(TableUpdate(9, is_snapshot=True, epoch=5, added=(ok, bad)))
        assert rep.apply(TableUpdate(3, is_snapshot=True, epoch=5, added=(ok,)))
        assert not rep.stale
    # a delta removing what the replica does not hold: refused the same way
    with pytest.raises(ValueError, match="does not hold"):
        rep.apply(TableUpdate(4, "a", epoch=5, removed=(Reservation("a", 7, 0.0, INF),)))
    assert rep.stale and rep.version == 3


def test_a_lost_robots_non_finite_odometry_never_releases_its_holds():
    ta = TrafficAuthority(ReservationTable(lambda r: (r,), 10), lost_after=1.0)
    assert ta.request("a", [(1, 0.0, INF), (2, 0.0, 5.0)]).ok
    ta.on_robot_state(0.0, "a")
    ta.tick(2.0)
    assert "a" in ta.lost
    held = ta.table.reservations("a")
    for _ in range(50):
        with pytest.raises(ValueError, match="finite"):
            ta.on_lost_odometry(3.0, "a", math.nan, math.inf, False)
    ta.tick(10.0)
    assert ta.table.reservations("a") == held


def test_bad_input_is_a_value_error():
    assert issubclass(BadInput, ValueError)


def test_a_forged_spot_never_keeps_a_restarted_authority_recovering():
    ta = TrafficAuthority(ReservationTable(lambda r: (r,), 10), epoch=3)
    ta.start_recovery(0.0, window=2.0, listen=1.0)
    ta.on_robot_state(0.1, "ghost", table_epoch=2**64 - 1, resource=2**32 - 2)
    ta.on_robot_state(0.1, "a", table_epoch=1, resource=4)
    ta.tick(2.5)
    assert not ta.recovering
    assert [r.resource for r in ta.table.reservations("a")] == [4]
    assert not ta.table.reservations("ghost")


def test_a_robot_state_with_too_many_or_too_long_ids_is_refused():
    from types import SimpleNamespace as State
    ok = State(robot="a", task_id="t1", queued_task_ids=["t2"] * STATE_IDS_MAX,
               done_task_ids=["t0"])
    check_robot_state(ok)
    with pytest.raises(BadInput, match="queued_task_ids lists 257"):
        check_robot_state(State(**{**vars(ok), "queued_task_ids": ["q"] * 257}))
    with pytest.raises(BadInput, match="task id of 1000 bytes"):
        check_robot_state(State(**{**vars(ok), "done_task_ids": ["d" * 1000]}))


def test_a_node_replica_learns_the_end_of_a_recovery_from_a_snapshot_it_already_has():
    # the dispatcher's and the monitors' replicas skip converting a snapshot they have;
    # the end of a recovery changes no reservation and comes only in such a snapshot
    from fleet_coord_msgs.msg import ReservationSet

    from fleet_coord.table_replica import TableReplica
    rep = TableReplica(lambda r: (r,), 10, "")
    assert rep.apply(ReservationSet(version=3, epoch=5, is_snapshot=True, recovering=True))
    assert rep.core.recovering
    assert not rep.apply(ReservationSet(version=3, epoch=5, is_snapshot=True, recovering=False))
    assert not rep.core.recovering and rep.version == 3

"""fleet_coord.convert: core types <-> messages, each conversion and its edge cases (no DDS:
messages are only built and read)."""
import math

import pytest

pytest.importorskip("rclpy", reason="the message packages are installed by `make setup`")
from builtin_interfaces.msg import Time  # noqa: E402
from fleet_coord_msgs.msg import ReservationSet, TaskStatus  # noqa: E402

from fleet_coord import convert  # noqa: E402
from fleet_coord.core import execution as ex  # noqa: E402
from fleet_coord.core.contract_net import Proposal, Refusal, RefuseReason  # noqa: E402
from fleet_coord.core.replica import Replica  # noqa: E402
from fleet_coord.core.reservations import Reservation  # noqa: E402
from fleet_coord.core.tasks import Task, TaskState  # noqa: E402
from fleet_coord.table_replica import TableReplica  # noqa: E402


@pytest.mark.parametrize("yaw", [0.0, 0.3, -1.2, math.pi / 2, 3.0, -3.0])
def test_yaw_survives_a_quaternion_and_an_odometry_message(yaw):
    assert convert.quaternion_to_yaw(*convert.yaw_to_quaternion(yaw)) == pytest.approx(yaw)
    msg = convert.odometry_msg("r1", 1.5, -2.0, yaw, 0.4, -0.1, convert.to_time(12.25))
    assert (msg.header.frame_id, msg.child_frame_id) == ("r1/odom", "r1/base_link")
    x, y, th, v, w, stamp = convert.pose_from_odometry(msg)
    assert (x, y, v, w, stamp) == (1.5, -2.0, 0.4, -0.1, 12.25)
    assert th == pytest.approx(yaw)


def test_times_none_and_negative_are_zero_and_nanoseconds_stay_in_range():
    assert convert.to_time(math.inf) == Time() and convert.to_time(-1.0) == Time()
    assert convert.to_time(math.nan) == Time()
    t = convert.to_time(5.9999999999)   # rounds up to a whole second's worth of ns
    assert 0 <= t.nanosec < 1_000_000_000
    assert convert.from_time(convert.to_time(1234.5)) == 1234.5
    assert convert.time_from_ns(3_000_000_007) == Time(sec=3, nanosec=7)


def test_a_task_round_trips_and_a_zero_deadline_means_none():
    task = Task(id="t1", kind="pick_and_drop", stations=["2,1", "5,3"], priority=2,
                deadline=None, payload_kg=1.5, submitted_at=10.5)
    msg = convert.task_to_msg(task)
    assert msg.deadline == Time()
    assert convert.task_from_msg(msg) == task
    late = Task(id="t2", kind="goto", stations=["1,1"], deadline=99.25)
    assert convert.task_from_msg(convert.task_to_msg(late)).deadline == 99.25


def test_every_task_state_and_refuse_reason_has_its_own_code():
    assert len(set(convert.STATE_CODE.values())) == len(TaskState)
    for state, code in convert.STATE_CODE.items():
        assert convert.state_from_code(code) is state
    assert convert.state_from_code(TaskStatus.UNKNOWN) is None
    assert set(convert.REFUSE_CODE) == set(RefuseReason)
    assert len(set(convert.REFUSE_CODE.values())) == len(RefuseReason)


def test_an_unlimited_lease_is_zero_on_the_wire_and_an_endless_hold_stays_inf():
    r = Reservation("r1", 7, 10.0, math.inf)
    seg = convert.reservation_to_segment(r)
    assert seg.lease_expiry == 0.0 and seg.t_end == math.inf
    assert convert.segment_to_reservation(seg) == r
    leased = Reservation("r1", 7, 10.0, 12.0, lease_expiry=40.0)
    assert convert.segment_to_reservation(convert.reservation_to_segment(leased)) == leased


def test_a_table_message_becomes_an_update_the_replica_applies():
    seg = convert.reservation_to_segment
    snap = ReservationSet(version=3, is_snapshot=True, roadmap_id="m",
                          added=[seg(Reservation("a", 1, 0.0, math.inf))])
    delta = ReservationSet(version=4, robot="b", roadmap_id="m",
                           added=[seg(Reservation("b", 5, 1.0, 2.0))])
    core = Replica(lambda x: [x], 10, "m")
    assert core.apply(convert.table_update_from_msg(snap))
    assert core.apply(convert.table_update_from_msg(delta))
    assert not core.stale and core.version == 4
    assert {(r.robot, r.resource) for r in core.table.reservations()} == {("a", 1), ("b", 5)}
    # a header-only copy of a snapshot the replica has (this epoch and version) changes nothing
    same = ReservationSet(version=4, is_snapshot=True, roadmap_id="m")
    assert not core.apply(convert.table_update_from_msg(same, segments=False))
    # epoch and recovering travel both ways
    u = convert.table_update_from_msg(ReservationSet(version=1, epoch=2**63 - 1, recovering=True))
    assert (u.epoch, u.recovering) == (2**63 - 1, True)
    back = convert.table_update_msg(u, convert.to_time(0.0))
    assert (back.epoch, back.recovering) == (2**63 - 1, True)
    # the message-facing replica gives the same table, and ignores another roadmap's
    msg_replica = TableReplica(lambda x: [x], 10, "m")
    assert msg_replica.apply(snap) and msg_replica.apply(delta)
    assert msg_replica.table.snapshot() == core.table.snapshot()
    other = ReservationSet(version=5, robot="c", roadmap_id="other")
    assert not msg_replica.apply(other) and msg_replica.version == 4


def test_the_agents_messages_carry_what_the_core_said():
    report = ex.StatusReport("t1", "r1", TaskState.FAILED, 3, 0.25, "held", 12.5, 7)
    assert convert.status_from_msg(convert.status_msg(report)) == report
    assert convert.status_from_msg(TaskStatus(task_id="t1", state=TaskStatus.UNKNOWN)) is None
    refusal = RefuseReason.UNKNOWN_STATION
    msg = convert.refusal_msg(Refusal("r1", "t1", 2, refusal, "station 'x' unknown", "x"))
    assert (msg.reason_code, msg.station) == (convert.REFUSE_CODE[refusal], "x")
    back = convert.refusal_from_msg(msg)
    assert (back.reason, back.station, back.round) == (refusal, "x", 2)
    p = convert.proposal_from_msg(convert.proposal_msg(Proposal("r1", "t1", 2, 4.5, 20.25)))
    assert (p.robot, p.task_id, p.round, p.cost, p.eta) == ("r1", "t1", 2, 4.5, 20.25)
    state = ex.StateReport("r1", (1.0, 2.0, 0.5), (0.3, 0.1), ex.Activity.MOVING, "t1",
                           ("t2",), 17, 9, 42, ("t0",))
    m = convert.robot_state_msg(state, convert.to_time(3.0))
    assert (m.robot, m.task_id, list(m.queued_task_ids), m.vertex, m.resource, m.lamport) == \
        ("r1", "t1", ["t2"], 17, 17, 9)
    assert (m.table_epoch, list(m.done_task_ids)) == (42, ["t0"])
    assert m.mode == m.MOVING and convert.yaw_of(m.pose.orientation) == pytest.approx(0.5)
    odom = convert.odometry_from_msg(convert.odometry_msg("r1", 1, 2, 0.5, 0.3, 0.1,
                                                          convert.to_time(3.0)))
    assert odom == ex.Odometry(1.0, 2.0, pytest.approx(0.5), 0.3, 0.1, 3.0)


def test_a_drivers_status_says_available_and_the_limits_it_reports():
    from diagnostic_msgs.msg import DiagnosticStatus, KeyValue
    msg = DiagnosticStatus(level=DiagnosticStatus.OK, values=[
        KeyValue(key="max_speed", value="0.8"), KeyValue(key="max_angular_speed", value=""),
        KeyValue(key="max_acceleration", value="nan"), KeyValue(key="connection", value="ON")])
    available, limits = convert.driver_status_from_msg(msg)
    assert available and limits is not None
    assert (limits.max_v, limits.max_w, limits.max_acc) == (0.8, math.inf, math.inf)
    msg.level, msg.values = DiagnosticStatus.ERROR, [KeyValue(key="max_speed", value="-1")]
    assert convert.driver_status_from_msg(msg) == (False, None)

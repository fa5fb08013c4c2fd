"""Conversions between the core's types and ROS messages: the only module that does them.

Nodes and the serial bridge translate messages to core calls and back through these
functions, so a field's meaning (a zero deadline is "none", an infinite hold is
`t_end = inf` while an unlimited lease is `lease_expiry = 0`, a time before 0 is sent as
0) is decided here once. Plain functions of the message; no node, no clock.

| core | message |
|---|---|
| seconds (float) | builtin_interfaces/Time (`to_time`, `from_time`) |
| yaw (rad) | geometry_msgs/Quaternion (`yaw_to_quaternion`, `quaternion_to_yaw`) |
| (x, y, theta, v, w) | nav_msgs/Odometry (`odometry_msg`, `pose_from_odometry`) |
| core.tasks.Task | fleet_coord_msgs/Task (`task_to_msg`, `task_from_msg`) |
| core.tasks.TaskState | TaskStatus.state codes (`STATE_CODE`, `state_from_code`) |
| contract_net.RefuseReason | Refusal.reason_code (`REFUSE_CODE`, `refuse_reason_from_code`) |
| contract_net.Proposal / Refusal | Proposal / Refusal (`proposal_from_msg`, `refusal_from_msg`) |
| core.reservations.Reservation | ReservationSegment (`reservation_to_segment`, ...) |
| core.replica.TableUpdate | ReservationSet (`table_update_from_msg`, `table_update_msg`) |
| core.trust.Keyring | Keyring of KeyEntry (`keyring_to_msg`, `keyring_from_msg`) |
| timed path [(vertex, t)] | nav_msgs/Path (`timed_path_msg`, `timed_path_from_msg`) |
| core.execution.Odometry | nav_msgs/Odometry (`odometry_from_msg`) |
| core.execution.StatusReport | TaskStatus (`status_msg`, `status_from_msg`) |
| core.execution.StateReport | RobotState (`robot_state_msg`) |
| contract_net.Proposal / Refusal | Proposal / Refusal (`proposal_msg`, `refusal_msg`) |
| (available, kinematics.Limits) | DiagnosticStatus of a driver (`driver_status_from_msg`) |
"""
from __future__ import annotations

import math
from typing import Any

from builtin_interfaces.msg import Time
from diagnostic_msgs.msg import DiagnosticStatus
from fleet_coord_msgs.msg import (KeyEntry, Keyring as KeyringMsg, Proposal, Refusal,
                                  ReservationSegment, ReservationSet, RobotState,
                                  TaskStatus)
from fleet_coord_msgs.msg import Task as TaskMsg
from geometry_msgs.msg import PoseStamped
from nav_msgs.msg import Odometry, Path

from fleet_coord.core import contract_net as cn
from fleet_coord.core.execution import Activity, StateReport, StatusReport
from fleet_coord.core.execution import Odometry as ExecOdometry
from fleet_coord.core.kinematics import Limits
from fleet_coord.core.replica import TableUpdate
from fleet_coord.core.reservations import Reservation
from fleet_coord.core.tasks import Task, TaskState
from fleet_coord.core.trust import Keyring, KeyRecord, Role, robots_of

# -- time -------------------------------------------------------------------------------


def to_time(t: float) -> Time:
    """Seconds -> Time. A non-finite or negative time (none, unbounded) is Time() = 0."""
    if not math.isfinite(t) or t < 0:
        return Time()
    sec = int(t)
    return Time(sec=sec, nanosec=int(round((t - sec) * 1e9)) % 1_000_000_000)


def time_from_ns(ns: int) -> Time:
    """Integer nanoseconds -> Time, exactly (a clock counting in ns)."""
    return Time(sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000)


def from_time(t: Any) -> float:
    """Time (or a header stamp) -> seconds."""
    return t.sec + t.nanosec * 1e-9


# -- poses ------------------------------------------------------------------------------


def yaw_to_quaternion(yaw: float) -> tuple[float, float, float, float]:
    """(x, y, z, w) of a rotation by `yaw` about z."""
    return (0.0, 0.0, math.sin(yaw / 2.0), math.cos(yaw / 2.0))


def quaternion_to_yaw(x: float, y: float, z: float, w: float) -> float:
    """The rotation about z of a quaternion (roll and pitch ignored)."""
    return math.atan2(2.0 * (w * z + x * y), 1.0 - 2.0 * (y * y + z * z))


def set_yaw(orientation: Any, yaw: float) -> None:
    """Write `yaw` into a geometry_msgs/Quaternion in place."""
    orientation.x, orientation.y, orientation.z, orientation.w = yaw_to_quaternion(yaw)


def yaw_of(orientation: Any) -> float:
    """The yaw of a geometry_msgs/Quaternion."""
    o = orientation
    return quaternion_to_yaw(o.x, o.y, o.z, o.w)


def odometry_msg(robot: str, x: float, y: float, theta: float, v: float, w: float,
                 stamp: Time) -> Odometry:
    """The driver interface's odometry: pose in `<robot>/odom`, body-frame twist."""
    msg = Odometry()
    msg.header.stamp = stamp
    msg.header.frame_id = f"{robot}/odom"
    msg.child_frame_id = f"{robot}/base_link"
    msg.pose.pose.position.x = float(x)
    msg.pose.pose.position.y = float(y)
    set_yaw(msg.pose.pose.orientation, theta)
    msg.twist.twist.linear.x = float(v)
    msg.twist.twist.angular.z = float(w)
    return msg


def pose_from_odometry(msg: Odometry) -> tuple[float, float, float, float, float, float]:
    """(x, y, theta, v, w, stamp s) of an odometry message."""
    p = msg.pose.pose
    return (p.position.x, p.position.y, yaw_of(p.orientation),
            msg.twist.twist.linear.x, msg.twist.twist.angular.z, from_time(msg.header.stamp))


# -- tasks ------------------------------------------------------------------------------


def task_to_msg(task: Task) -> TaskMsg:
    """core Task -> fleet_coord_msgs/Task (no deadline = 0)."""
    return TaskMsg(id=task.id, kind=task.kind, stations=list(task.stations),
                   priority=int(task.priority),
                   deadline=to_time(task.deadline or 0.0), payload_kg=float(task.payload_kg),
                   submitted_at=to_time(task.submitted_at))


def task_from_msg(m: TaskMsg) -> Task:
    """fleet_coord_msgs/Task -> core Task (deadline 0 = none). Not validated here."""
    deadline = from_time(m.deadline)
    return Task(id=m.id, kind=m.kind, stations=list(m.stations), priority=int(m.priority),
                deadline=deadline if deadline > 0 else None, payload_kg=float(m.payload_kg),
                submitted_at=from_time(m.submitted_at))


STATE_CODE: dict[TaskState, int] = {
    TaskState.QUEUED: TaskStatus.QUEUED, TaskState.ANNOUNCED: TaskStatus.ANNOUNCED,
    TaskState.AWARDED: TaskStatus.AWARDED, TaskState.ACTIVE: TaskStatus.ACTIVE,
    TaskState.DONE: TaskStatus.DONE, TaskState.FAILED: TaskStatus.FAILED,
    TaskState.CANCELLED: TaskStatus.CANCELLED}
_CODE_STATE = {code: state for state, code in STATE_CODE.items()}


def state_from_code(code: int) -> TaskState | None:
    """The TaskState of a TaskStatus.state code; None for UNKNOWN or a code we do not
    know."""
    return _CODE_STATE.get(int(code))


REFUSE_CODE: dict[cn.RefuseReason, int] = {
    cn.RefuseReason.OTHER: Refusal.REASON_OTHER,
    cn.RefuseReason.UNREACHABLE: Refusal.REASON_UNREACHABLE,
    cn.RefuseReason.BATTERY: Refusal.REASON_BATTERY,
    cn.RefuseReason.PAYLOAD: Refusal.REASON_PAYLOAD,
    cn.RefuseReason.BUSY: Refusal.REASON_BUSY,
    cn.RefuseReason.DEADLINE: Refusal.REASON_DEADLINE,
    cn.RefuseReason.UNKNOWN_STATION: Refusal.REASON_UNKNOWN_STATION,
    cn.RefuseReason.NOT_READY: Refusal.REASON_NOT_READY,
    cn.RefuseReason.UNSUPPORTED_KIND: Refusal.REASON_UNSUPPORTED_KIND,
}
_CODE_REFUSE = {code: reason for reason, code in REFUSE_CODE.items()}


def refuse_reason_from_code(code: int) -> cn.RefuseReason:
    """The RefuseReason of a Refusal.reason_code; OTHER for a code we do not know (the
    detail text then says why)."""
    return _CODE_REFUSE.get(int(code), cn.RefuseReason.OTHER)


def proposal_from_msg(m: Proposal) -> cn.Proposal:
    return cn.Proposal(m.robot, m.task_id, int(m.round), float(m.cost), from_time(m.eta))


def refusal_from_msg(m: Refusal) -> cn.Refusal:
    return cn.Refusal(m.robot, m.task_id, int(m.round), refuse_reason_from_code(m.reason_code),
                      m.reason, m.station or None)


def proposal_msg(p: cn.Proposal) -> Proposal:
    return Proposal(task_id=p.task_id, round=int(p.round), robot=p.robot, cost=float(p.cost),
                    eta=to_time(p.eta))


def refusal_msg(r: cn.Refusal) -> Refusal:
    """The reason code, a text "REASON: detail" and the station concerned."""
    return Refusal(task_id=r.task_id, round=int(r.round), robot=r.robot,
                   reason_code=REFUSE_CODE.get(r.reason, Refusal.REASON_OTHER),
                   reason=f"{r.reason}: {r.detail}" if r.detail else str(r.reason),
                   station=r.station or "")


# -- reservations -----------------------------------------------------------------------


def segment_msg(robot: str, resource: int, t0: float, t1: float) -> ReservationSegment:
    """A requested segment: `robot` holds `resource` over [t0, t1) (t1 may be inf)."""
    return ReservationSegment(robot=robot, resource=int(resource), t_start=float(t0),
                              t_end=float(t1))


def segment_to_reservation(s: ReservationSegment) -> Reservation:
    """lease_expiry 0 on the wire = no lease."""
    return Reservation(robot=s.robot, resource=int(s.resource), t_start=float(s.t_start),
                       t_end=float(s.t_end),
                       lease_expiry=float(s.lease_expiry) if s.lease_expiry > 0 else math.inf)


def reservation_to_segment(r: Reservation) -> ReservationSegment:
    return ReservationSegment(
        robot=r.robot, resource=int(r.resource), t_start=float(r.t_start),
        t_end=float(r.t_end),
        lease_expiry=0.0 if math.isinf(r.lease_expiry) else float(r.lease_expiry))


def table_update_from_msg(m: ReservationSet, segments: bool = True) -> TableUpdate:
    """A /traffic/updates message as a core TableUpdate. `segments=False` leaves the
    reservations out (a snapshot the replica does not want costs nothing to pass on)."""
    conv = segment_to_reservation
    return TableUpdate(version=int(m.version), robot=m.robot, is_snapshot=bool(m.is_snapshot),
                       roadmap_id=m.roadmap_id,
                       added=tuple(conv(s) for s in m.added) if segments else (),
                       removed=tuple(conv(s) for s in m.removed) if segments else (),
                       epoch=int(m.epoch), recovering=bool(m.recovering))


# -- keys -------------------------------------------------------------------------------


def keyring_to_msg(kr: Keyring, reason: str = "") -> KeyringMsg:
    """The keyring as /fleet/keyring carries it (unsigned: the operator signs it)."""
    return KeyringMsg(
        serial=kr.serial, reason=reason, revoked=sorted(kr.revoked),
        keys=[KeyEntry(identity=r.identity, role=r.role.value, key_id=r.key_id,
                       algorithm=KeyEntry.ALGORITHM_ED25519, public_key=list(r.public_key))
              for r in sorted(kr.keys.values(), key=lambda r: r.identity)])


def keyring_from_msg(m: KeyringMsg, robots: dict[str, tuple[str, ...]] | None = None) -> Keyring:
    """A received keyring. Raises ValueError for an entry that is not a well-formed Ed25519
    key or whose key id does not match its key. `robots`: which robots each identity speaks
    for is not on the wire - an agent speaks for its own name, a driver `bridge_<robot>`
    for its robot, others as in `robots` (the local keyring's) or for none."""
    keys = {}
    for e in m.keys:
        if e.algorithm != KeyEntry.ALGORITHM_ED25519 or len(e.public_key) != 32:
            raise ValueError(f"keyring entry {e.identity!r}: not an Ed25519 public key")
        role = Role(e.role)
        speaks = robots_of(e.identity, role) or (robots or {}).get(e.identity, ())
        rec = KeyRecord(e.identity, role, bytes(e.public_key), speaks)
        if rec.key_id != e.key_id:
            raise ValueError(f"keyring entry {e.identity!r}: key id {e.key_id!r} does not "
                             f"match its key ({rec.key_id})")
        keys[e.identity] = rec
    return Keyring(m.serial, keys, frozenset(m.revoked))


# -- timed paths --------------------------------------------------------------------------


def timed_path_msg(roadmap: Any, path: Any, stamp: Time) -> Path:
    """A timed path [(vertex, t)] as nav_msgs/Path (frame ``map``): a pose per step at the
    vertex, stamped with the time the robot is there, heading along the next lane."""
    msg = Path()
    msg.header.stamp = stamp
    msg.header.frame_id = "map"
    n = len(path)
    for k, (v, t) in enumerate(path):
        ps = PoseStamped()
        ps.header.stamp = to_time(float(t))
        ps.header.frame_id = "map"
        x, y = (float(c) for c in roadmap.pos[int(v)])
        ps.pose.position.x, ps.pose.position.y = x, y
        ahead = next((int(w) for w, _ in path[k + 1:n] if int(w) != int(v)), None)
        if ahead is not None:
            ax, ay = (float(c) for c in roadmap.pos[ahead])
            set_yaw(ps.pose.orientation, math.atan2(ay - y, ax - x))
        else:
            set_yaw(ps.pose.orientation, 0.0)
        msg.poses.append(ps)
    return msg


def timed_path_from_msg(roadmap: Any, msg: Path) -> list[tuple[int, float]]:
    """nav_msgs/Path (a pose per step at a roadmap vertex, stamped with the time the robot
    is there) -> timed path. Raises ValueError naming the first pose off the roadmap."""
    out = []
    for k, ps in enumerate(msg.poses):
        p = ps.pose.position
        v = roadmap.vertex_at(p.x, p.y)
        if v is None:
            raise ValueError(f"plan pose {k} at ({p.x:g}, {p.y:g}) is not a roadmap vertex")
        out.append((int(v), from_time(ps.header.stamp)))
    return out


def table_update_msg(u: TableUpdate, stamp: Time) -> ReservationSet:
    """A core TableUpdate (the authority's delta or snapshot) as a /traffic/updates message."""
    conv = reservation_to_segment
    return ReservationSet(version=int(u.version), robot=u.robot, roadmap_id=u.roadmap_id,
                          is_snapshot=bool(u.is_snapshot), stamp=stamp,
                          added=[conv(r) for r in u.added], removed=[conv(r) for r in u.removed],
                          epoch=int(u.epoch), recovering=bool(u.recovering))


# -- the robot agent's messages ---------------------------------------------------------


def odometry_from_msg(msg: Odometry) -> ExecOdometry:
    """nav_msgs/Odometry -> the execution core's Odometry (stamp in s)."""
    x, y, theta, v, w, stamp = pose_from_odometry(msg)
    return ExecOdometry(x, y, theta, v, w, stamp)


#: the values of a driver's status (a VDA 5050 master's /<robot>/vehicle) that say what
#: the robot can do, and the Limits field each one is
DRIVER_LIMIT_KEYS = {"max_speed": "max_v", "max_angular_speed": "max_w",
                     "max_acceleration": "max_acc"}


def driver_status_from_msg(msg: DiagnosticStatus) -> tuple[bool, Limits | None]:
    """A driver's status: available (level OK), and the limits it reports (values
    `DRIVER_LIMIT_KEYS`; one absent, empty or not a number > 0 limits nothing), None when
    it reports none."""
    said = {}
    for kv in msg.values:
        field_name = DRIVER_LIMIT_KEYS.get(kv.key)
        if field_name is None:
            continue
        try:
            value = float(kv.value)
        except ValueError:
            continue
        if value > 0 and math.isfinite(value):
            said[field_name] = value
    limits = Limits(**{f: said.get(f, math.inf) for f in ("max_v", "max_w", "max_acc",
                                                          "max_alpha")}) if said else None
    return msg.level == DiagnosticStatus.OK, limits


def status_from_msg(m: TaskStatus) -> StatusReport | None:
    """A TaskStatus as the execution core reads it; None for a state code it does not
    know (UNKNOWN)."""
    state = state_from_code(m.state)
    if state is None:
        return None
    return StatusReport(task_id=m.task_id, robot=m.robot, state=state, round=int(m.round),
                        progress=float(m.progress), reason=m.reason,
                        stamp=from_time(m.stamp), lamport=int(m.lamport))


def status_msg(r: StatusReport) -> TaskStatus:
    return TaskStatus(task_id=r.task_id, robot=r.robot, state=STATE_CODE[r.state],
                      round=int(r.round), progress=float(r.progress), reason=r.reason,
                      stamp=to_time(r.stamp), lamport=int(r.lamport))


_MODE = {Activity.IDLE: RobotState.IDLE, Activity.MOVING: RobotState.MOVING,
         Activity.WAITING: RobotState.WAITING}


def robot_state_msg(s: StateReport, stamp: Time) -> RobotState:
    msg = RobotState(robot=s.robot, battery=1.0, lamport=int(s.lamport), mode=_MODE[s.activity],
                     task_id=s.task_id, queued_task_ids=list(s.queued),
                     table_epoch=int(s.table_epoch), done_task_ids=list(s.done))
    msg.header.stamp = stamp
    msg.header.frame_id = "map"
    if s.pose is not None:
        x, y, th = s.pose
        msg.pose.position.x, msg.pose.position.y = float(x), float(y)
        set_yaw(msg.pose.orientation, th)
        msg.twist.linear.x, msg.twist.angular.z = float(s.twist[0]), float(s.twist[1])
    if s.vertex is not None:   # a vertex is its own resource (Roadmap: vertices first)
        msg.vertex = msg.resource = int(s.vertex)
    return msg

"""The fleet_coord_msgs interfaces (the fleet's wire protocol) are built, construct with
their documented defaults, and cross real Fast DDS between nodes: topics, a service and
an action."""
import math
import os
import re
import time

import pytest

rclpy = pytest.importorskip("rclpy", reason="rclpy is installed by `make setup`; run via `make test`")
from builtin_interfaces.msg import Time  # noqa: E402
from geometry_msgs.msg import Pose  # noqa: E402
from rclpy.action import ActionClient, ActionServer  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy  # noqa: E402

try:
    import fleet_coord_msgs.action as fc_action
    import fleet_coord_msgs.msg as fc_msg
    import fleet_coord_msgs.srv as fc_srv
except ImportError as e:  # a setup bug, not a reason to skip: say how to fix it
    raise ImportError(f"fleet_coord_msgs is not built into this venv ({e}); "
                      "run `make setup` (scripts/build_msgs.sh)") from e

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PKG = os.path.join(REPO, "fleet_coord_msgs")

MSGS = ["Task", "TaskStatus", "CallForProposal", "Proposal", "Refusal", "Award",
        "Rejection", "ReservationSegment", "ReservationSet", "RobotState", "FleetState",
        "Auth", "RobotNotice", "KeyEntry", "Keyring", "SignedTwist", "SignedOdometry", "SignedPath",
        "SignedDiagnosticStatus"]
SRVS = ["SubmitTask", "CancelTask", "ListTasks", "Reserve", "Release", "RemoveRobot", "SpawnRobot",
        "SetEstop"]
ACTIONS = ["ExecuteTask"]

RELIABLE_LATCHED = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE,
                              durability=DurabilityPolicy.TRANSIENT_LOCAL)


def _interface_files(kind):
    folder = os.path.join(PKG, kind)
    return sorted(os.path.splitext(f)[0] for f in os.listdir(folder))


def test_every_interface_file_is_listed_in_cmakelists_and_tested():
    cmake = open(os.path.join(PKG, "CMakeLists.txt")).read()
    listed = {kind: sorted(re.findall(rf'"{kind}/(\w+)\.{kind}"', cmake))
              for kind in ("msg", "srv", "action")}
    for kind, tested in (("msg", MSGS), ("srv", SRVS), ("action", ACTIONS)):
        on_disk = _interface_files(kind)
        assert listed[kind] == on_disk, f"CMakeLists.txt {kind}_files vs {kind}/"
        assert sorted(tested) == on_disk, f"update the {kind} list in this test"


@pytest.mark.parametrize("name", MSGS)
def test_message_constructs_with_defaults(name):
    cls = getattr(fc_msg, name)
    msg = cls()
    assert cls.__name__ == name and str(msg)  # repr walks every field


@pytest.mark.parametrize("name", SRVS)
def test_service_request_and_response_construct(name):
    srv = getattr(fc_srv, name)
    assert str(srv.Request()) and str(srv.Response())


def test_action_goal_result_feedback_construct():
    act = fc_action.ExecuteTask
    assert act.Goal().task.id == ""
    assert act.Result().ok is False and act.Result().state == fc_msg.TaskStatus.UNKNOWN
    assert act.Feedback().status.task_id == ""


def test_documented_defaults():
    task = fc_msg.Task()
    assert task.frame_id == "map"
    assert task.deadline == Time()  # zero = no deadline
    assert task.stations == [] and task.poses == []
    state = fc_msg.RobotState()
    assert state.vertex == state.resource == fc_msg.RobotState.NO_RESOURCE == 2**32 - 1
    assert state.mode == fc_msg.RobotState.IDLE
    assert fc_msg.TaskStatus().state == fc_msg.TaskStatus.UNKNOWN
    assert fc_msg.Refusal().reason_code == fc_msg.Refusal.REASON_OTHER
    assert fc_msg.ReservationSegment().lease_expiry == 0.0  # no lease
    reserve = fc_srv.Reserve.Request()
    assert reserve.replace is False  # default adds, never drops held segments
    assert fc_srv.Reserve.Response().error == fc_srv.Reserve.Response.ERROR_NONE
    assert fc_srv.Release.Request().only_after is False  # default releases everything
    assert fc_srv.RemoveRobot.Request().force is False  # default never stops a working robot


def _constants(cls, prefix=""):
    """The constants a .msg/.srv file declares (rosidl keeps them on the metaclass)."""
    meta = type(cls)
    declared = getattr(meta, f"_{meta.__name__}__constants")
    return {k: v for k, v in declared.items() if k.startswith(prefix)}


@pytest.mark.parametrize("cls,prefix,expected", [
    (fc_msg.TaskStatus, "", ["UNKNOWN", "QUEUED", "ANNOUNCED", "AWARDED", "ACTIVE", "DONE",
                             "FAILED", "CANCELLED"]),
    (fc_msg.RobotState, "", ["IDLE", "MOVING", "WAITING", "CHARGING", "ESTOP", "LOST",
                             "ERROR", "NO_RESOURCE"]),
    (fc_msg.Refusal, "REASON_", ["REASON_OTHER", "REASON_UNREACHABLE", "REASON_BATTERY",
                                 "REASON_PAYLOAD", "REASON_DEADLINE", "REASON_BUSY",
                                 "REASON_UNSUPPORTED_KIND", "REASON_UNKNOWN_STATION",
                                 "REASON_NOT_READY"]),
    (fc_srv.Reserve.Response, "ERROR_", ["ERROR_NONE", "ERROR_CONFLICT", "ERROR_INVALID",
                                         "ERROR_ROADMAP_MISMATCH", "ERROR_RECOVERING"]),
])
def test_constant_sets_are_complete_and_distinct(cls, prefix, expected):
    consts = _constants(cls, prefix)
    assert sorted(consts) == sorted(expected)
    assert len(set(consts.values())) == len(consts)


def test_task_kind_constants():
    assert (fc_msg.Task.KIND_GOTO, fc_msg.Task.KIND_PICK_AND_DROP, fc_msg.Task.KIND_CHARGE) \
        == ("goto", "pick_and_drop", "charge")


# --- over DDS ------------------------------------------------------------------------

@pytest.fixture
def ros():
    """An rclpy context with two nodes on one executor; yields (a, b, spin_until)."""
    ctx = rclpy.Context()
    rclpy.init(context=ctx)
    a = rclpy.create_node("msgs_test_a", context=ctx)
    b = rclpy.create_node("msgs_test_b", context=ctx)
    ex = SingleThreadedExecutor(context=ctx)
    ex.add_node(a)
    ex.add_node(b)

    def spin_until(done, timeout=10.0, each=None):
        deadline = time.monotonic() + timeout
        while not done():
            if time.monotonic() > deadline:
                raise TimeoutError(f"condition not met within {timeout} s")
            if each is not None:
                each()
            ex.spin_once(timeout_sec=0.05)

    try:
        yield a, b, spin_until
    finally:
        ex.shutdown()
        a.destroy_node()
        b.destroy_node()
        rclpy.shutdown(context=ctx)


def _segment(robot, resource, t_start, t_end, lease=0.0):
    return fc_msg.ReservationSegment(robot=robot, resource=resource, t_start=t_start,
                                     t_end=t_end, lease_expiry=lease)


def test_task_round_trips_through_pub_sub(ros):
    a, b, spin_until = ros
    pose = Pose()
    pose.position.x, pose.position.y = 3.5, -1.25
    pose.orientation.z, pose.orientation.w = math.sin(0.3), math.cos(0.3)
    sent = fc_msg.Task(
        id="t-17", kind=fc_msg.Task.KIND_PICK_AND_DROP, stations=["shelf_12", "dock_3"],
        poses=[pose], priority=-2, deadline=Time(sec=1_800_000_000, nanosec=5),
        payload_kg=12.5, submitted_at=Time(sec=1_799_999_000), requester="wms")
    got = []
    b.create_subscription(fc_msg.Task, "fleet_test/tasks", got.append, RELIABLE_LATCHED)
    pub = a.create_publisher(fc_msg.Task, "fleet_test/tasks", RELIABLE_LATCHED)
    pub.publish(sent)
    spin_until(lambda: got)
    assert got[0] == sent
    assert got[0].poses[0].position.y == -1.25


def test_reservation_set_round_trips_with_infinite_end(ros):
    a, b, spin_until = ros
    sent = fc_msg.ReservationSet(
        version=42, robot="robot_1", roadmap_id="sha256:abc", is_snapshot=False,
        removed=[_segment("robot_1", 7, 10.0, math.inf)],
        added=[_segment("robot_1", 7, 10.0, 12.5, lease=30.0),
               _segment("robot_1", 1031, 12.5, 14.0, lease=30.0),
               _segment("robot_1", 8, 14.0, math.inf, lease=30.0)],
        stamp=Time(sec=12, nanosec=500_000_000))
    got = []
    b.create_subscription(fc_msg.ReservationSet, "fleet_test/reservations", got.append,
                          RELIABLE_LATCHED)
    pub = a.create_publisher(fc_msg.ReservationSet, "fleet_test/reservations",
                             RELIABLE_LATCHED)
    pub.publish(sent)
    spin_until(lambda: got)
    assert got[0] == sent
    assert math.isinf(got[0].added[-1].t_end) and math.isinf(got[0].removed[0].t_end)


def test_reserve_service_call_between_two_nodes(ros):
    a, b, spin_until = ros
    held = _segment("robot_2", 5, 0.0, math.inf)

    def reserve(req, resp):  # a trivial authority: refuses resource 5, echoes otherwise
        clash = [i for i, s in enumerate(req.segments) if s.resource == held.resource]
        resp.version = 7
        if clash:
            resp.ok, resp.error = False, resp.ERROR_CONFLICT
            resp.segment_index, resp.conflicting_segment = clash[0], held
            resp.message = f"segment {clash[0]} conflicts with robot_2 on resource 5"
        else:
            resp.ok, resp.version = True, 8
            resp.message = f"{req.robot}: {len(req.segments)} segments"
        return resp

    a.create_service(fc_srv.Reserve, "fleet_test/reserve", reserve)
    client = b.create_client(fc_srv.Reserve, "fleet_test/reserve")
    spin_until(lambda: client.service_is_ready())

    def call(segments):
        fut = client.call_async(fc_srv.Reserve.Request(
            robot="robot_1", segments=segments, replace=True, replace_from=10.0))
        spin_until(fut.done)
        return fut.result()

    ok = call([_segment("robot_1", 4, 10.0, 11.0), _segment("robot_1", 6, 11.0, math.inf)])
    assert (ok.ok, ok.error, ok.version, ok.message) == (True, 0, 8, "robot_1: 2 segments")
    refused = call([_segment("robot_1", 4, 10.0, 11.0), _segment("robot_1", 5, 11.0, 12.0)])
    assert not refused.ok and refused.error == fc_srv.Reserve.Response.ERROR_CONFLICT
    assert refused.segment_index == 1 and refused.conflicting_segment == held


def test_execute_task_action_between_two_nodes(ros):
    a, b, spin_until = ros
    TS = fc_msg.TaskStatus

    def execute(goal_handle):
        task_id = goal_handle.request.task.id or "assigned-1"
        for state, progress in ((TS.AWARDED, 0.0), (TS.ACTIVE, 0.5)):
            goal_handle.publish_feedback(fc_action.ExecuteTask.Feedback(
                status=TS(task_id=task_id, robot="robot_1", state=state, progress=progress)))
        goal_handle.succeed()
        return fc_action.ExecuteTask.Result(ok=True, task_id=task_id, state=TS.DONE)

    server = ActionServer(a, fc_action.ExecuteTask, "fleet_test/execute_task", execute)
    client = ActionClient(b, fc_action.ExecuteTask, "fleet_test/execute_task")
    spin_until(lambda: client.server_is_ready())
    feedback = []
    send = client.send_goal_async(
        fc_action.ExecuteTask.Goal(task=fc_msg.Task(kind=fc_msg.Task.KIND_GOTO,
                                                    stations=["dock_1"])),
        feedback_callback=lambda fb: feedback.append(fb.feedback.status))
    spin_until(send.done)
    assert send.result().accepted
    result = send.result().get_result_async()
    spin_until(result.done)
    r = result.result().result
    assert (r.ok, r.task_id, r.state) == (True, "assigned-1", TS.DONE)
    spin_until(lambda: len(feedback) == 2, timeout=2.0)
    assert [s.state for s in feedback] == [TS.AWARDED, TS.ACTIVE]
    server.destroy()
    client.destroy()

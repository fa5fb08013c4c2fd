"""MCAP recordings: schemas rosbag2 and Foxglove can decode from the file alone, the
recorder node against real DDS, and `fleet-coord report` on bad input. The demo's own
recording and the report rebuilt from it: tests/test_demo_fleet.py."""
import io
import os

import pytest

rclpy = pytest.importorskip("rclpy", reason="rclpy is installed by `make setup`")
pytest.importorskip("mcap", reason="mcap is in requirements.txt (make setup)")
from mcap.reader import make_reader  # noqa: E402
from mcap_ros2.decoder import DecoderFactory  # noqa: E402
from nav_msgs.msg import Odometry  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from rclpy.serialization import serialize_message  # noqa: E402
from std_msgs.msg import UInt32  # noqa: E402

from fleet_coord import qos  # noqa: E402
from fleet_coord.cli import main  # noqa: E402
from fleet_coord.convert import odometry_msg, to_time  # noqa: E402
from fleet_coord.recorder import Recorder  # noqa: E402
from fleet_coord.recording import Writer, message_definition, read_messages, read_metadata  # noqa: E402
from rosutil import ros_context, spin_until  # noqa: E402


def test_schema_holds_every_nested_type_and_decodes_like_foxglove():
    text = message_definition("fleet_coord_msgs/msg/FleetState")
    for dep in ("MSG: std_msgs/Header", "MSG: fleet_coord_msgs/RobotState",
                "MSG: geometry_msgs/Pose", "MSG: builtin_interfaces/Time"):
        assert dep in text
    assert text.count("MSG: geometry_msgs/Pose\n") == 1     # each type once
    buf = io.BytesIO()
    w = Writer(buf)
    w.add_channel("/r1/odom", "nav_msgs/msg/Odometry")
    msg = odometry_msg("r1", 1.5, -2.0, 0.3, 0.2, 0.1, to_time(12.5))
    msg.pose.covariance[0] = 1e-6
    w.write("/r1/odom", serialize_message(msg), 1000)
    w.metadata("fleet_coord", {"robots": ["r1"], "map": "warehouse.map"})
    w.finish()
    buf.seek(0)
    reader = make_reader(buf, decoder_factories=[DecoderFactory()])
    [(_s, channel, _m, ros)] = list(reader.iter_decoded_messages())
    assert channel.message_encoding == "cdr"
    assert (ros.header.frame_id, ros.pose.pose.position.x, ros.pose.covariance[0]) == (
        "r1/odom", 1.5, 1e-6)
    assert ros.header.stamp.sec == 12 and ros.twist.twist.angular.z == pytest.approx(0.1)
    with pytest.raises(ValueError, match="pkg/msg/Type"):
        message_definition("Odometry")
    with pytest.raises(LookupError, match="nope_msgs/msg/X"):
        message_definition("nope_msgs/msg/X")


def test_action_feedback_topic_is_recorded_and_read_back(tmp_path):
    """An action's feedback topic (ExecuteTask's, on every fleet) has the derived type
    pkg/action/Name_FeedbackMessage, which has no .msg file; the recorder must still
    describe it (it crashed the recorder, and with it the demo, before). (mcap_ros2's own
    Python decoder refuses such type names; rosbag2 and our reader take them.)"""
    from fleet_coord_msgs.action import ExecuteTask
    kind = "fleet_coord_msgs/action/ExecuteTask_FeedbackMessage"
    text = message_definition(kind)
    assert text.startswith("unique_identifier_msgs/UUID goal_id\nExecuteTask_Feedback feedback")
    assert "MSG: fleet_coord_msgs/ExecuteTask_Feedback" in text
    assert "MSG: unique_identifier_msgs/UUID" in text
    msg = ExecuteTask.Impl.FeedbackMessage()
    msg.goal_id.uuid = list(range(16))
    path = tmp_path / "action.mcap"
    with open(path, "wb") as f:
        w = Writer(f)
        w.add_channel("/fleet/execute_task/_action/feedback", kind)
        w.write("/fleet/execute_task/_action/feedback", serialize_message(msg), 1000)
        w.finish()
    [(topic, ros, t)] = list(read_messages(str(path)))
    assert (topic, t) == ("/fleet/execute_task/_action/feedback", 1000)
    assert list(ros.goal_id.uuid) == list(range(16))
    with pytest.raises(LookupError, match="NoSuch.action"):
        message_definition("fleet_coord_msgs/action/NoSuch_FeedbackMessage")


def test_recorder_records_discovered_topics_with_their_qos_and_metadata(tmp_path):
    path = str(tmp_path / "rec.mcap")
    with ros_context() as (ctx, ex):
        src = rclpy.create_node("source", context=ctx)
        latched = src.create_publisher(UInt32, "/sim/contacts/robot_robot", qos.LATCHED)
        latched.publish(UInt32(data=7))      # before the recorder exists: latched
        odom = src.create_publisher(Odometry, "/r1/odom", qos.ODOM)
        rec = Recorder(context=ctx, parameter_overrides=[
            Parameter("output", value=path), Parameter("discovery_period", value=0.1),
            Parameter("metadata", value='{"robots": ["r1"]}')])
        ex.add_node(src)
        ex.add_node(rec)
        n = [0]

        def pump():
            n[0] += 1
            odom.publish(odometry_msg("r1", 0.1 * n[0], 0.0, 0.0, 0.0, 0.0, to_time(n[0])))
            return rec.writer.count.get("/r1/odom", 0) >= 10 and rec.writer.count.get(
                "/sim/contacts/robot_robot", 0) == 1
        assert spin_until(ex, pump, 20)
        ex.remove_node(rec)
        rec.destroy_node()   # finishes the file
    with open(path, "rb") as f:
        summary = make_reader(f).get_summary()
    channels = {c.topic: c for c in summary.channels.values()}
    assert "reliability: best_effort" in channels["/r1/odom"].metadata["offered_qos_profiles"]
    assert "durability: transient_local" in channels["/sim/contacts/robot_robot"].metadata[
        "offered_qos_profiles"]
    got = [(t, m) for t, m, _ in read_messages(path)]
    assert [m.data for t, m in got if t == "/sim/contacts/robot_robot"] == [7]
    xs = [m.pose.pose.position.x for t, m in got if t == "/r1/odom"]
    assert xs == sorted(xs) and len(xs) >= 10
    meta = read_metadata(path)["fleet_coord"]
    assert meta["robots"] == ["r1"] and meta["started_wall_ns"] > 0


def test_report_refuses_what_is_not_a_recording(tmp_path, capsys):
    assert main(["report", str(tmp_path / "missing.mcap")]) == 2
    assert "not found" in capsys.readouterr().err
    junk = tmp_path / "junk.mcap"
    junk.write_bytes(b"this is no MCAP file")
    assert main(["report", str(junk)]) == 2
    assert "junk.mcap" in capsys.readouterr().err
    empty = tmp_path / "empty.mcap"
    with open(empty, "wb") as f:
        Writer(f).finish()
    assert main(["report", str(empty)]) == 2
    assert "no robots" in capsys.readouterr().err
    assert not os.path.exists(tmp_path / "report-empty")

"""The VDA 5050 master control over real DDS and a real Mosquitto, driving the real
emulator program: a committed path becomes orders released in space and time, the
vehicle (checked from its own MQTT reports) never leaves its holds, and bad vehicle
messages are logged and dropped."""
from __future__ import annotations

import json
import math
import signal
import time

import pytest

rclpy = pytest.importorskip("rclpy", reason="rclpy is installed by `make setup`")
pytest.importorskip("fleet_coord_msgs.msg", reason="fleet_coord_msgs is built by `make setup`")
from fleet_coord_msgs.msg import ReservationSet  # noqa: E402
from fleet_coord_msgs.srv import Reserve  # noqa: E402
from nav_msgs.msg import Odometry, Path  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from std_srvs.srv import SetBool, Trigger  # noqa: E402

from fleet_coord import qos  # noqa: E402
from fleet_coord.convert import segment_msg, timed_path_msg, to_time  # noqa: E402
from fleet_coord.core.planner import path_to_segments, sipp  # noqa: E402
from fleet_coord.core.tracking import containment_error  # noqa: E402
from fleet_coord.fleet_config import load_roadmap_and_exclusion  # noqa: E402
from fleet_coord.table_replica import TableReplica  # noqa: E402
from fleet_coord.traffic import TrafficNode  # noqa: E402
from fleet_coord.vda5050.master import PLAN_QOS, Vda5050Master  # noqa: E402
from fleet_coord.vda5050.protocol import Outbox  # noqa: E402
from rosutil import ros_context, spin_until  # noqa: E402
from vda5050_util import Listener, broker_or_skip, is_connection, start_emulator, stop  # noqa: E402

PLAN_SPEED = 0.33


def test_master_releases_the_committed_path_and_the_vehicle_stays_in_its_holds():
    roadmap, exclusion, rid = load_roadmap_and_exclusion("", 0.15)
    start, goal = roadmap.vertex_at(1, 1), roadmap.vertex_at(3, 1)
    broker = broker_or_skip()
    listener = Listener(broker)
    emu = start_emulator(broker, "m1", f"{roadmap.pos[start][0]},{roadmap.pos[start][1]},0")
    try:
        listener.wait_for(is_connection("m1", "ONLINE"), what="ONLINE")
        with ros_context() as (ctx, ex):
            traffic = TrafficNode(context=ctx, parameter_overrides=[
                Parameter("recovery_window", value=0.0)])   # a fresh start: nothing to recover
            master = Vda5050Master(context=ctx, namespace="r1", parameter_overrides=[
                Parameter("manufacturer", value="acme"), Parameter("serial_number", value="m1"),
                Parameter("broker", value=broker.address)])
            probe = rclpy.create_node("probe", context=ctx)
            replica = TableReplica(exclusion.of, roadmap.num_resources, rid)
            probe.create_subscription(ReservationSet, "/traffic/updates", replica.apply, qos.TABLE)
            odom = []
            probe.create_subscription(Odometry, "/r1/odom", odom.append, qos.ODOM)
            plan_pub = probe.create_publisher(Path, "/r1/plan", PLAN_QOS)
            reserve = probe.create_client(Reserve, "/traffic/reserve")
            for n in (traffic, master, probe):
                ex.add_node(n)
            assert spin_until(ex, lambda: odom and reserve.service_is_ready(), 30), \
                "no odometry from the vehicle through the master"

            def commit():
                """Plan start -> goal from now, reserve it, hand it to the master."""
                now = time.time()
                path = [(start, now)] + sipp(roadmap, exclusion, replica.table, "r1", start,
                                             goal, now + 1.0, PLAN_SPEED)
                segs = path_to_segments(roadmap, exclusion, path, PLAN_SPEED)
                req = Reserve.Request(robot="r1", roadmap_id=rid, replace=True,
                                      replace_from=now)
                req.segments = [segment_msg("r1", r, a, b) for r, a, b in segs]
                fut = reserve.call_async(req)
                assert spin_until(ex, fut.done, 20) and fut.result().ok, fut.result()
                plan_pub.publish(timed_path_msg(roadmap, path, to_time(now)))
                return path

            # the master releases the start piece only while the vehicle can still leave it
            # in time: a commit that reached it too late (a loaded machine) is made again
            # from now, as the agent re-commits when its timing slips
            for _ in range(3):
                path = commit()
                if spin_until(ex, lambda: master.book.base_pieces > 0,
                              max(path[1][1] - time.time(), 0.0) + 2.0):
                    break
            assert master.book.base_pieces > 0, "the master released nothing of 3 commits"
            # bad messages "from the vehicle": dropped, the master goes on
            good, now = Outbox("acme", "m1"), time.time()
            for bad in (b"{not json", json.dumps({"headerId": 1}).encode(),
                        json.dumps(good.message("connection", now, {"connectionState": "ONLINE"})
                                   | {"version": "2.0.0"}).encode(),
                        json.dumps(good.message("connection", now, {"connectionState": "ONLINE"})
                                   | {"serialNumber": "other"}).encode()):
                listener.inject("vda5050/v3/acme/m1/connection", bad)
            gx, gy = map(float, roadmap.pos[goal])

            def arrived():
                return any(abs(m.pose.pose.position.x - gx) < 1e-6 and
                           abs(m.pose.pose.position.y - gy) < 1e-6 for m in odom[-3:])

            assert spin_until(ex, arrived, path[-1][1] - time.time() + 30), \
                f"the vehicle did not reach the goal; master: {master.book.base_pieces} pieces released"
            # a stale state (an old headerId) is dropped too
            _, last_state = listener.wait_for(lambda t, m: t.endswith("/m1/state"))
            before = master.dropped
            listener.inject("vda5050/v3/acme/m1/state", json.dumps(last_state).encode())
            assert spin_until(ex, lambda: master.dropped > before, 10)
            assert master.dropped >= 5 and master.available(master.now())
            # the fleet's e-stop (as on serial robots): startPause / stopPause
            estop = probe.create_client(SetBool, "/r1/estop")
            for engage in (True, False):
                fut = estop.call_async(SetBool.Request(data=engage))
                assert spin_until(ex, fut.done, 10) and fut.result().success
                listener.wait_for(lambda t, m, e=engage: t.endswith("/m1/state")
                                  and m.get("paused") is e, what=f"paused {engage}")
            # cancel_order: the vehicle is done, so its cancelOrder fails as the spec says
            cancel = probe.create_client(Trigger, "/r1/cancel_order")
            fut = cancel.call_async(Trigger.Request())
            assert spin_until(ex, fut.done, 10) and fut.result().success
            _, st = listener.wait_for(lambda t, m: t.endswith("/m1/state") and any(
                a["actionType"] == "cancelOrder" for a in m["instantActionStates"]))
            assert st["instantActionStates"][-1]["actionStatus"] == "FAILED"
            assert any(e["errorType"] == "NO_ORDER_TO_CANCEL" for e in st["errors"])
            holds = [(r.resource, r.t_start, r.t_end) for r in replica.table.reservations("r1")]
    finally:
        stop(emu, signal.SIGKILL)
        listener.close()
        broker.stop()
    # the independent check, from what the vehicle itself reported over MQTT
    checked = [(t, x, y) for _, t, x, y in listener.reports(["m1"]) if t >= path[0][1]]
    assert len(checked) > 20
    worst = max(containment_error(exclusion, holds, x, y, t, slack_t=0.05)
                for t, x, y in checked)
    assert worst <= 0.1, worst
    assert listener.problems == []
    sent = [m for t, m in listener.messages if t.endswith("/m1/order")]
    assert len(sent) >= 3 and all(not math.isinf(m["headerId"]) for m in sent)

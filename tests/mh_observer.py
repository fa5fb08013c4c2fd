"""An observer process for the multi-host tests, run inside one host of the topology.

Writes JSONL to --out (one object per line, `"w"` = this host's wall clock when received;
every host shares the machine's clock):
  {"k": "odom", "robot", "t" (stamp), "x", "y"}   for --robots (20 Hz of the driver's 100)
  with --fleet also
  {"k": "upd", "version", "robot", "snap", "added": [[robot, res, t0, t1]], "removed": [...]}
  {"k": "status", "task", "robot", "state", "reason"}
  {"k": "lost", "robot"}
  {"k": "state", "robot", "mode", "task", "epoch"}   (1 Hz per robot; epoch 0: holds nothing granted)
and, from stdin, commands: `submit ID KIND ST1 [ST2]` -> {"k": "submitted", "task", "ok", "error"}.
It knows nothing of the agents: what it logs is what crossed the network.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import threading
import time

import rclpy
from fleet_coord_msgs.msg import ReservationSet, RobotNotice, RobotState, TaskStatus
from fleet_coord_msgs.msg import Task as TaskMsg
from fleet_coord_msgs.srv import SubmitTask
from nav_msgs.msg import Odometry

from fleet_coord import qos


def _seg(s):
    return [s.robot, int(s.resource), float(s.t_start),
            float(s.t_end) if math.isfinite(s.t_end) else "inf"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--robots", default="")
    ap.add_argument("--fleet", action="store_true")
    a = ap.parse_args()
    rclpy.init(args=[])
    node = rclpy.create_node("mh_observer")
    out = open(a.out, "a", buffering=1)
    lock = threading.Lock()

    def log(**kw):
        kw["w"] = time.time()
        with lock:
            out.write(json.dumps(kw) + "\n")

    counts: dict[str, int] = {}

    def on_odom(robot, m):
        counts[robot] = counts.get(robot, 0) + 1
        if counts[robot] % 5 != 1:
            return
        p = m.pose.pose.position
        log(k="odom", robot=robot, t=m.header.stamp.sec + m.header.stamp.nanosec * 1e-9,
            x=p.x, y=p.y, v=m.twist.twist.linear.x)

    for r in [r for r in a.robots.split(",") if r]:
        node.create_subscription(Odometry, f"/{r}/odom", lambda m, r=r: on_odom(r, m), qos.ODOM)
    pending: list = []
    if a.fleet:
        node.create_subscription(
            ReservationSet, "/traffic/updates",
            lambda m: log(k="upd", version=m.version, robot=m.robot, snap=m.is_snapshot,
                          added=[_seg(s) for s in m.added],
                          removed=[_seg(s) for s in m.removed]), qos.TABLE)
        node.create_subscription(
            TaskStatus, "/fleet/task_status",
            lambda m: log(k="status", task=m.task_id, robot=m.robot, state=m.state,
                          reason=m.reason), qos.PROTOCOL)
        node.create_subscription(RobotNotice, "/fleet/robot_lost",
                                 lambda m: log(k="lost", robot=m.robot), qos.PROTOCOL)
        last_state: dict[str, float] = {}

        def on_state(m):
            now = time.monotonic()
            if now - last_state.get(m.robot, 0.0) >= 1.0:
                last_state[m.robot] = now
                log(k="state", robot=m.robot, mode=m.mode, task=m.task_id,
                    epoch=int(m.table_epoch))

        node.create_subscription(RobotState, "/fleet/robot_states", on_state, qos.state_qos())
        client = node.create_client(SubmitTask, "/fleet/submit_task")

        def read_stdin():
            for line in sys.stdin:
                parts = line.split()
                if len(parts) >= 4 and parts[0] == "submit":
                    with lock:
                        pending.append(parts[1:])

        threading.Thread(target=read_stdin, daemon=True).start()
        inflight: dict = {}

        def pump():
            with lock:
                todo, pending[:] = list(pending), []
            for tid, kind, *stations in todo:
                req = SubmitTask.Request()
                req.task = TaskMsg(id=tid, kind=kind, stations=stations)
                inflight[tid] = (req, client.call_async(req), time.monotonic())
            for tid, (req, fut, t0) in list(inflight.items()):
                if fut.done():
                    r = fut.result()
                    log(k="submitted", task=tid, ok=bool(r.accepted), error=r.error)
                    del inflight[tid]
                elif time.monotonic() - t0 > 2.0:   # a lost response: submit is idempotent
                    client.remove_pending_request(fut)
                    inflight[tid] = (req, client.call_async(req), time.monotonic())

        node.create_timer(0.05, pump)
    log(k="ready")
    try:
        rclpy.spin(node)
    except (KeyboardInterrupt, rclpy.executors.ExternalShutdownException):
        pass
    finally:
        out.close()
        node.destroy_node()
        rclpy.try_shutdown()


if __name__ == "__main__":
    main()

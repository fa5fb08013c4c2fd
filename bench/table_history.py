"""What does the history depth of /traffic/updates cost in memory?

The traffic authority publishes table deltas and, every 5 s, a whole snapshot on one
reliable, transient-local, keep-last topic (fleet_coord.qos.TABLE). In bench/load.py its
RSS grew ~0.5 MB/min with a depth of 1000 while its table stayed the same size. This
publishes the same mix as fast as one process can - deltas of 8 segments, every
`--snapshot-every`-th message a snapshot of `--snapshot-size` segments - to one
subscriber in the same process, and prints the process's RSS every 1000 messages, for
each depth in its own fresh process.

Run:  bash scripts/isolated.sh .venv/bin/python bench/table_history.py
      (the table in docs/benchmarks.md, "Load"; ~30 s per depth)
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys


def rss_mb() -> float:
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def one(depth: int, messages: int, snapshot_every: int, snapshot_size: int) -> None:
    """Publish in this process; print 'k rss received' every 1000 messages."""
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import QoSProfile

    from fleet_coord import qos
    from fleet_coord_msgs.msg import ReservationSegment, ReservationSet

    profile = QoSProfile(history=qos.TABLE.history, depth=depth,
                         reliability=qos.TABLE.reliability, durability=qos.TABLE.durability)
    rclpy.init()
    pub_node, sub_node = rclpy.create_node("history_pub"), rclpy.create_node("history_sub")
    pub = pub_node.create_publisher(ReservationSet, "/bench/table_history", profile)
    received = [0]
    sub_node.create_subscription(ReservationSet, "/bench/table_history",
                                 lambda _m: received.__setitem__(0, received[0] + 1), profile)
    ex = SingleThreadedExecutor()
    ex.add_node(pub_node)
    ex.add_node(sub_node)

    def seg(i: int) -> ReservationSegment:
        return ReservationSegment(robot=f"robot_{i % 50}", resource=i % 2000,
                                  t_start=float(i), t_end=float(i + 1))
    snapshot = [seg(i) for i in range(snapshot_size)]
    delta = [seg(i) for i in range(8)]
    for k in range(messages + 1):
        if k % snapshot_every == 0:
            msg = ReservationSet(version=k, is_snapshot=True, added=snapshot)
        else:
            msg = ReservationSet(version=k, robot="robot_1", added=delta, removed=delta[:4])
        pub.publish(msg)
        ex.spin_once(timeout_sec=0)
        ex.spin_once(timeout_sec=0)
        if k % 1000 == 0:
            print(f"{k} {rss_mb():.1f} {received[0]}", flush=True)
    rclpy.shutdown()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--depths", default="50,100,300,1000",
                    help="comma-separated history depths (default 50,100,300,1000)")
    ap.add_argument("--messages", type=int, default=12000)
    ap.add_argument("--snapshot-every", type=int, default=20,
                    help="one snapshot per this many messages (default 20: 5-s snapshots "
                         "among ~4 deltas/s)")
    ap.add_argument("--snapshot-size", type=int, default=600,
                    help="segments per snapshot (default 600, the load run's table)")
    ap.add_argument("--child", type=int, default=0, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.child:
        one(a.child, a.messages, a.snapshot_every, a.snapshot_size)
        return 0
    if os.environ.get("ROS_AUTOMATIC_DISCOVERY_RANGE") != "LOCALHOST":
        print("bench/table_history.py: run it through scripts/isolated.sh "
              "(ROS_AUTOMATIC_DISCOVERY_RANGE must be LOCALHOST)", file=sys.stderr)
        return 2
    try:
        depths = [int(d) for d in a.depths.split(",")]
    except ValueError:
        ap.error(f"--depths: expected comma-separated integers, got {a.depths!r}")
    if any(d < 1 for d in depths) or a.messages < 1000 or a.snapshot_every < 1:
        ap.error("--depths must be >= 1, --messages >= 1000, --snapshot-every >= 1")
    print(f"{a.messages} messages, one snapshot of {a.snapshot_size} segments per "
          f"{a.snapshot_every}; RSS (MB) of the process after k messages:", flush=True)
    for depth in depths:
        out = subprocess.run(
            [sys.executable, __file__, "--child", str(depth), "--messages", str(a.messages),
             "--snapshot-every", str(a.snapshot_every), "--snapshot-size",
             str(a.snapshot_size)], capture_output=True, text=True, check=False)
        if out.returncode != 0:
            print(out.stdout + out.stderr, file=sys.stderr)
            return 1
        rows = [line.split() for line in out.stdout.splitlines() if line.strip()]
        series = "  ".join(f"{int(k) // 1000}k:{float(r):.1f}" for k, r, _ in rows)
        lost = a.messages + 1 - int(rows[-1][2])
        print(f"depth {depth:5d}  {series}  (+{float(rows[-1][1]) - float(rows[1][1]):.1f} MB "
              f"after the first 1000; {lost} not received)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

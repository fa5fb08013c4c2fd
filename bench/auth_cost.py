"""CPU cost of the fleet's message authentication, per message (docs/security.md).

For each kind of message the fleet signs, the process CPU time (time.process_time, so
other jobs on a shared machine do not count) of: building the canonical form, signing
(Ed25519, or HMAC-SHA256 on the robot <-> driver link) and verifying (the whole
fleet_coord.auth.Verifier path: keyring, policy, freshness, signature, replay window).
As a yardstick, rclpy's own serialisation of the same message - what publishing it costs
anyway. Then, from the rates a 50-robot fleet runs at, the CPU each process spends on it.

Run (no ROS traffic: messages are built and checked in-process):
  .venv/bin/python bench/auth_cost.py [--repeat 3] [--n 2000] [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)


def per_op(fn, n: int, repeat: int) -> float:
    """Median over `repeat` runs of the process CPU seconds per call of fn()."""
    runs = []
    for _ in range(repeat):
        t0 = time.process_time()
        for _ in range(n):
            fn()
        runs.append((time.process_time() - t0) / n)
    return statistics.median(runs)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=2000, help="calls per measurement")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--snapshot-segments", type=int, default=2000)
    ap.add_argument("--json", help="also write the results here")
    args = ap.parse_args(argv)

    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from fleet_coord_msgs.msg import (CallForProposal, Proposal, ReservationSegment,
                                      ReservationSet, RobotState, SignedOdometry, SignedTwist,
                                      TaskStatus)
    from fleet_coord_msgs.srv import Reserve
    from rclpy.serialization import serialize_message

    from fleet_coord.auth import LinkSigner, Signer, Verifier, canonical
    from fleet_coord.convert import odometry_msg
    from fleet_coord.core.trust import Keyring, KeyRecord, Role

    keys = {n: Ed25519PrivateKey.generate() for n in ("robot_1", "traffic", "dispatcher")}
    roles = {"robot_1": Role.AGENT, "traffic": Role.TRAFFIC, "dispatcher": Role.DISPATCHER}
    ring = Keyring(1, {n: KeyRecord(n, roles[n], k.public_key().public_bytes_raw(),
                                    ("robot_1",) if n == "robot_1" else ())
                       for n, k in keys.items()})
    signers = {n: Signer(n, k) for n, k in keys.items()}
    link_key = os.urandom(32)
    link = LinkSigner("robot_1", link_key)
    seg = [ReservationSegment(robot=f"robot_{i % 50}", resource=i, t_start=10.0 + i,
                              t_end=math.inf if i % 7 == 0 else 11.0 + i, lease_expiry=0.0)
           for i in range(args.snapshot_segments)]
    odom = odometry_msg("robot_1", 3.0, 4.0, 0.5, 0.4, 0.1, RobotState().header.stamp)
    # (name, message factory, channel, signer or "link", verify kwargs)
    cases = [
        ("RobotState", lambda: RobotState(robot="robot_1", task_id="t-12",
                                          queued_task_ids=["t-13", "t-14"], vertex=41),
         "fleet/robot_states", "robot_1", dict(subjects=["robot_1"], op="IDLE")),
        ("Proposal", lambda: Proposal(task_id="t-12", round=1, robot="robot_1", cost=12.5),
         "fleet/proposals", "robot_1", dict(subjects=["robot_1"])),
        ("TaskStatus (robot)", lambda: TaskStatus(task_id="t-12", robot="robot_1",
                                                  reporter="robot_1", state=TaskStatus.ACTIVE,
                                                  progress=0.5),
         "fleet/task_status", "robot_1", dict(subjects=["robot_1", "robot_1"], op="ACTIVE")),
        ("CallForProposal", lambda: CallForProposal(round=1, initiator="dispatcher"),
         "fleet/cfp", "dispatcher", {}),
        ("Reserve request (12 segments)", lambda: Reserve.Request(robot="robot_1",
                                                                  segments=seg[:12]),
         "traffic/reserve", "robot_1", dict(subjects=["robot_1"])),
        ("ReservationSet delta (8 + 4)", lambda: ReservationSet(version=7, added=seg[:8],
                                                                removed=seg[8:12]),
         "traffic/updates", "traffic", {}),
        (f"ReservationSet snapshot ({args.snapshot_segments})",
         lambda: ReservationSet(version=7, is_snapshot=True, added=seg),
         "traffic/updates", "traffic", {}),
        ("SignedTwist (HMAC link)", lambda: SignedTwist(), "robot_1/cmd_vel_signed", "link", {}),
        ("SignedOdometry (HMAC link)", lambda: SignedOdometry(odom=odom),
         "robot_1/odom_signed", "link", {}),
    ]
    def measure(name, make, channel, who, vkw) -> dict:
        n = max(20, args.n // 100) if "snapshot" in name else args.n
        msg = make()
        signer = link if who == "link" else signers[who]
        ser = per_op(lambda: serialize_message(msg), n, args.repeat)
        canon = per_op(lambda: canonical(msg, channel, msg.auth), n, args.repeat)
        sign = per_op(lambda: signer.sign(msg, channel), n, args.repeat)
        runs = []
        for _ in range(args.repeat):
            verifier = Verifier(ring, started=time.time() - 1, link_key=lambda r: link_key)
            signed = [signer.sign(make(), channel) for _ in range(n)]
            t0 = time.process_time()
            for m in signed:
                dropped = (verifier.verify_link(m, "robot_1", channel) if who == "link"
                           else verifier.verify(m, channel, **vkw))
                assert dropped is None, dropped
            runs.append((time.process_time() - t0) / n)
        return dict(message=name, serialize_us=ser * 1e6, canonical_us=canon * 1e6,
                    sign_us=sign * 1e6, verify_us=statistics.median(runs) * 1e6)

    rows = [measure(*case) for case in cases]

    print(f"CPU per message, us (median of {args.repeat} runs; process time)")
    print(f"{'message':36s} {'rclpy serialize':>16s} {'canonical':>10s} {'sign':>8s} {'verify':>8s}")
    for r in rows:
        print(f"{r['message']:36s} {r['serialize_us']:16.1f} {r['canonical_us']:10.1f} "
              f"{r['sign_us']:8.1f} {r['verify_us']:8.1f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(dict(rows=rows, n=args.n, repeat=args.repeat), f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())

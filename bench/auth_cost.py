"""CPU cost of the fleet's message authentication, per message (docs/security.md).

For each kind of message the fleet signs, the process CPU time (time.process_time, so
other jobs on a shared machine do not count) of: building the canonical form, signing
(Ed25519, or HMAC-SHA256 on the robot <-> driver link) and verifying (the whole
fleet_coord.auth.Verifier path: keyring, policy, freshness, signature, replay window).
As a yardstick, rclpy's own serialisation of the same message - what publishing it costs
anyway. Then, from the rates a 50-robot fleet runs at, the CPU each process spends on it.

The robot <-> driver link is measured also as the nodes run it: raw bytes both ways
(`LinkSigner.sign_raw`, `Verifier.verify_link_raw`) against serialising and taking the
plain Odometry / Twist.

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


#: one agents process of bench/dds_latency.py's 50-robot auction (10 idle agents, 5
#: processes), per second: odometry at 20 Hz and states at 10 Hz per robot, ~10 rounds
MIX_AGENTS, MIX_ODOM, MIX_STATES, MIX_CFPS = 10, 200, 100, 10
MIX_PROPOSALS = MIX_CFPS * MIX_AGENTS
WHOLE = 2   # signed, the link's envelopes taken whole (how the nodes did it before raw takes)
#: parked robots paced (core/pacing.py): odometry at 2 Hz, a new state 2 times a second
#: and the last one sent again at the other 8 state ticks
PACED_ODOM_EVERY, PACED_STATE_EVERY = 10, 5


def agents_mix(repeat: int, seconds: int = 5) -> dict[str, tuple[float, ...]]:
    """ms of process CPU per second of one agents process's message work: unsigned, signed
    (as fleet_coord.robot_agent does it: odometry taken raw and MAC-checked, states and
    proposals Ed25519-signed, cfps checked), signed with the odometry envelopes taken
    whole (as before), and unsigned and signed with the parked robots paced
    (core/pacing.py); medians of `repeat` runs of `seconds`."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from fleet_coord_msgs.msg import CallForProposal, Proposal, RobotState, SignedOdometry, Task
    from nav_msgs.msg import Odometry
    from rclpy.serialization import deserialize_message, serialize_message

    from fleet_coord.auth import LinkSigner, Signer, Verifier
    from fleet_coord.convert import odometry_from_msg, odometry_msg, to_time
    from fleet_coord.core.trust import Keyring, KeyRecord, Role

    robots = [f"r{i:02d}" for i in range(MIX_AGENTS)]
    keys = {n: Ed25519PrivateKey.generate() for n in robots + ["dispatcher"]}
    ring = Keyring(1, {n: KeyRecord(n, Role.AGENT if n in robots else Role.DISPATCHER,
                                    k.public_key().public_bytes_raw(),
                                    (n,) if n in robots else ()) for n, k in keys.items()})
    signers = {n: Signer(n, keys[n]) for n in robots}
    dispatcher = Signer("dispatcher", keys["dispatcher"])
    link_keys = {r: os.urandom(32) for r in robots}
    links = {r: LinkSigner(r, link_keys[r]) for r in robots}
    stamp = RobotState().header.stamp
    per_odom = MIX_ODOM // MIX_AGENTS

    def inputs(signed: bool) -> tuple[list, list]:
        odoms = []
        for k in range(seconds * per_odom):
            for r in robots:
                o = odometry_msg(r, 3.0 + k * 0.01, 4.0, 0.5, 0.0, 0.0, stamp)
                odoms.append((r, links[r].sign_raw(o, SignedOdometry, f"{r}/odom_signed")
                              if signed else serialize_message(o)))
        cfps = []
        for i in range(seconds * MIX_CFPS):
            m = CallForProposal(task=Task(id=f"t{i}", kind="goto", stations=["v12"]),
                                round=1, initiator="dispatcher")
            cfps.append(serialize_message(dispatcher.sign(m, "fleet/cfp") if signed else m))
        return odoms, cfps

    def second(signed: bool, verifier, odoms, cfps, s: int, took: dict,
               paced: bool = False) -> None:
        t0 = time.process_time()
        for i, (r, data) in enumerate(odoms[s * MIX_ODOM:(s + 1) * MIX_ODOM]):
            if paced and (i // MIX_AGENTS) % PACED_ODOM_EVERY:
                continue
            if signed == WHOLE:   # the envelope taken as rclpy gives it (before raw takes)
                msg = deserialize_message(data, SignedOdometry)
                assert verifier.verify_link(msg, r, f"{r}/odom_signed") is None
                body = msg.odom
            elif signed:
                body, dropped = verifier.verify_link_raw(data, SignedOdometry, r,
                                                         f"{r}/odom_signed")
                assert dropped is None, dropped
            else:
                body = deserialize_message(data, Odometry)
            odometry_from_msg(body)
        t1 = time.process_time()
        last: dict[str, object] = {}
        for k in range(MIX_STATES // MIX_AGENTS):
            for r in robots:
                if paced and k % PACED_STATE_EVERY:
                    serialize_message(last[r])   # the last one again
                    continue
                st = RobotState(robot=r, battery=1.0, lamport=k, table_epoch=3)
                st.header.stamp, st.header.frame_id = stamp, "map"
                last[r] = signers[r].sign(st, "fleet/robot_states") if signed else st
                serialize_message(last[r])
        t2 = time.process_time()
        for data in cfps[s * MIX_CFPS:(s + 1) * MIX_CFPS]:
            m = deserialize_message(data, CallForProposal)
            assert not signed or verifier.verify(m, "fleet/cfp") is None
            for r in robots:
                p = Proposal(task_id=m.task.id, round=1, robot=r, cost=12.5, eta=to_time(3.0))
                serialize_message(signers[r].sign(p, "fleet/proposals") if signed else p)
        t3 = time.process_time()
        for part, dt in (("odometry", t1 - t0), ("states", t2 - t1),
                         ("cfps + proposals", t3 - t2)):
            took[part] = took.get(part, 0.0) + dt * 1e3 / seconds

    out: dict[str, list[list[float]]] = {}
    for _ in range(repeat):
        for col, (signed, paced) in enumerate(((False, False), (True, False), (WHOLE, False),
                                               (False, True), (True, True))):
            odoms, cfps = inputs(bool(signed))
            verifier = Verifier(ring, started=time.time() - 1, window=3600,
                                link_key=link_keys.get)
            took: dict[str, float] = {}
            for s in range(seconds):
                second(signed, verifier, odoms, cfps, s, took, paced)
            took["total"] = sum(took.values())
            for part, ms in took.items():
                out.setdefault(part, [[], [], [], [], []])[col].append(ms)
    return {part: tuple(statistics.median(x) for x in runs) for part, runs in out.items()}


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
    # a parked robot's repeated state at a receiver (node_auth.NodeAuth.check_state): an
    # exact copy of the last one checked is compared, not checked again
    from rclpy.serialization import deserialize_message
    wire = serialize_message(signers["robot_1"].sign(cases[0][1](), "fleet/robot_states"))
    first, again = deserialize_message(wire, RobotState), deserialize_message(wire, RobotState)
    copy_us = per_op(lambda: first == again, args.n, args.repeat) * 1e6

    # the link as the nodes run it: raw bytes both ways (LinkSigner.sign_raw,
    # Verifier.verify_link_raw), against the plain message's publish and take
    from geometry_msgs.msg import Twist
    twist = Twist()
    twist.linear.x, twist.angular.z = 0.4, 0.1
    link_rows = []
    for name, body, envelope, channel in (
            ("Odometry", odom, SignedOdometry, "robot_1/odom_signed"),
            ("Twist", twist, SignedTwist, "robot_1/cmd_vel_signed")):
        pub = per_op(lambda b=body: serialize_message(b), args.n, args.repeat)
        pub_signed = per_op(lambda b=body, e=envelope, c=channel: link.sign_raw(b, e, c),
                            args.n, args.repeat)
        takes, checks = [], []
        for _ in range(args.repeat):   # distinct bytes each (as received), plain and signed
            plain = [serialize_message(body) for _ in range(args.n)]
            signed = [link.sign_raw(body, envelope, channel) for _ in range(args.n)]
            verifier = Verifier(ring, started=time.time() - 1, link_key=lambda r: link_key)
            t0 = time.process_time()
            for data in plain:
                deserialize_message(data, type(body))
            t1 = time.process_time()
            for data in signed:
                dropped = verifier.verify_link_raw(data, envelope, "robot_1", channel)[1]
                assert dropped is None, dropped
            t2 = time.process_time()
            takes.append((t1 - t0) / args.n)
            checks.append((t2 - t1) / args.n)
        link_rows.append(dict(message=name, publish_us=pub * 1e6, publish_signed_us=pub_signed * 1e6,
                              take_us=statistics.median(takes) * 1e6,
                              take_signed_us=statistics.median(checks) * 1e6))

    print(f"CPU per message, us (median of {args.repeat} runs; process time)")
    print(f"{'message':36s} {'rclpy serialize':>16s} {'canonical':>10s} {'sign':>8s} {'verify':>8s}")
    for r in rows:
        print(f"{r['message']:36s} {r['serialize_us']:16.1f} {r['canonical_us']:10.1f} "
              f"{r['sign_us']:8.1f} {r['verify_us']:8.1f}")
    print(f"{'RobotState copy (== the last checked)':36s} {'':16s} {'':10s} {'':8s} "
          f"{copy_us:8.1f}")
    mix = agents_mix(args.repeat)
    print("\nrobot <-> driver link as the nodes run it (raw bytes), us per message:")
    print(f"{'body':12s} {'serialise':>10s} {'+ MAC (sign_raw)':>17s} {'deserialise':>12s} "
          f"{'+ check (verify_link_raw)':>26s}")
    for r in link_rows:
        print(f"{r['message']:12s} {r['publish_us']:10.1f} {r['publish_signed_us']:17.1f} "
              f"{r['take_us']:12.1f} {r['take_signed_us']:26.1f}")
    print(f"\none agents process of {MIX_AGENTS} idle agents, a second of its message work "
          f"(in-process model: {MIX_ODOM} odometry taken, {MIX_STATES} states and "
          f"{MIX_PROPOSALS} proposals built and serialised, {MIX_CFPS} cfps taken), ms of CPU:")
    for part in ("odometry", "states", "cfps + proposals", "total"):
        u, sg, whole, pu, ps = mix[part]
        print(f"  {part:18s} unsigned {u:6.2f}  signed {sg:6.2f} (+{sg - u:.2f}); "
              f"link envelopes taken whole {whole:6.2f} (+{whole - u:.2f}); parked robots "
              f"paced: unsigned {pu:6.2f}  signed {ps:6.2f} (+{ps - pu:.2f})")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(dict(rows=rows, link_rows=link_rows, agents_mix=mix, copy_us=copy_us, n=args.n,
                           repeat=args.repeat), f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())

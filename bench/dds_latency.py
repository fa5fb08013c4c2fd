"""Latency of the fleet's DDS traffic: Contract Net auction rounds and fleet state.

(a) **Auction round latency.** Real `RobotAgent` nodes (fleet_coord.robot_agent's own
    `main()`, so the same executor a deployment uses) run in child
    processes, grouped `agents:processes` (e.g. 50:5 = five processes of ten agents;
    10:10 = one process per agent). One `ideal_driver` process gives them odometry at
    `--odom-rate` Hz (they refuse to bid without a pose). The robots stand idle: their
    states and odometry go out at the parked robots' rates (core/pacing.py; the nodes'
    defaults, or `--idle-state-rate` / `--idle-odom-rate`, 0 = the full rates as before
    them). The benchmark process hosts a
    measuring initiator (EventsExecutor) that publishes a CallForProposal for a `goto`
    task to a random station of the warehouse map and times the round: from just before
    `publish()` until the callback of the last agent's Proposal/Refusal (the round closes
    as soon as every agent answered). Rounds run one after another, 50-100 ms apart.

    Where the time goes: the agent processes run a thin wrapper (`--role agents`) that
    wraps `RobotAgent._on_cfp` to record, per cfp, the DDS reception time, the callback
    start and end (the bid computation) and its CPU time, then calls the unmodified
    `robot_agent.main()`. With the DDS source timestamp of each reply and its reception
    time at the initiator, the last answer of every round splits into
      cfp transit (publish -> DDS reception at the agent), agent queueing (-> callback
      start: executor and GIL), bid (the callback), reply transit (-> DDS reception at
      the initiator), initiator dispatch (-> our callback).
    All on one host clock (CLOCK_REALTIME), so the differences are meaningful.

(b) **Fleet state end-to-end latency.** `robots` RobotState publishers (one node and a
    10 Hz timer per robot, qos.state_qos(), like the agents' state publisher) grouped in
    `processes` child processes (`--role state-pubs`), stamping header.stamp just before
    publish; one subscriber (EventsExecutor) in the benchmark process measures
    callback time - stamp. `lamport` carries a per-robot sequence number: gaps are
    dropped samples (best-effort QoS).

Every child is started in its own session with PDEATHSIG, stopped with SIGINT -> SIGTERM
-> SIGKILL, and the Fast DDS /dev/shm files our processes mapped are removed once nobody
maps them (as fleet_coord.launcher.clean_shm does).

Run (ROS 2 traffic must stay on this host: always through scripts/isolated.sh):
  bash scripts/isolated.sh .venv/bin/python bench/dds_latency.py            # everything, 2 repeats
  bash scripts/isolated.sh .venv/bin/python bench/dds_latency.py --part auction \
      --auction-configs 50:5 --rounds 300 --repeat 1
  bash scripts/isolated.sh .venv/bin/python bench/dds_latency.py --part state --state-configs 50:5
"""
from __future__ import annotations

import argparse
import ctypes
import json
import os
import platform
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

MAP = os.path.join(REPO, "config", "maps", "warehouse.map")
NS = 1_000_000_000
MS = 1e-6  # ns -> ms


# ------------------------------------------------------------------------------ stats

def pct(xs: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty list."""
    s = sorted(xs)
    k = max(0, min(len(s) - 1, int(round(q / 100.0 * len(s) + 0.5)) - 1))
    return s[k]


def summary(xs: list[float]) -> dict:
    if not xs:
        return {"n": 0}
    return {"n": len(xs), "p50": pct(xs, 50), "p95": pct(xs, 95), "p99": pct(xs, 99),
            "max": max(xs), "mean": statistics.fmean(xs)}


def fmt(s: dict, keys=("p50", "p95", "p99", "max")) -> str:
    if not s.get("n"):
        return "n/a"
    return " / ".join(f"{s[k]:.1f}" for k in keys)


# ------------------------------------------------------------------- child processes

def _die_with_parent() -> None:  # in the child, between fork and exec
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def _shm_mapped_by(pids) -> set[str]:
    names: set[str] = set()
    for pid in pids:
        try:
            with open(f"/proc/{pid}/maps") as f:
                for line in f:
                    if "/dev/shm/" in line:
                        names.add(line.rsplit("/dev/shm/", 1)[1].split()[0])
        except OSError:
            pass
    return names


class Children:
    """Child processes of one run: started in their own session, logged to files, and
    all stopped (SIGINT, SIGTERM, SIGKILL) by `stop()`."""

    def __init__(self, rundir: str, env: dict[str, str]) -> None:
        self.rundir, self.env = rundir, env
        self.procs: list[tuple[str, subprocess.Popen]] = []
        self.shm_seen: set[str] = set()

    def start(self, name: str, argv: list[str]) -> subprocess.Popen:
        log = open(os.path.join(self.rundir, f"{name}.log"), "wb")
        p = subprocess.Popen(argv, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                             stdin=subprocess.DEVNULL, start_new_session=True,
                             preexec_fn=_die_with_parent, cwd=REPO)
        log.close()
        self.procs.append((name, p))
        return p

    def check_alive(self) -> None:
        for name, p in self.procs:
            if p.poll() is not None:
                raise RuntimeError(f"child {name} exited with {p.returncode}; see "
                                   f"{os.path.join(self.rundir, name + '.log')}")

    def cpu_seconds(self) -> dict[str, float]:
        """user+system CPU seconds of each live child so far."""
        tick = os.sysconf("SC_CLK_TCK")
        out = {}
        for name, p in self.procs:
            try:
                with open(f"/proc/{p.pid}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                out[name] = (int(fields[11]) + int(fields[12])) / tick
            except (OSError, IndexError, ValueError):
                pass
        return out

    def thread_cpu_seconds(self) -> dict[str, dict[str, float]]:
        """user+system CPU seconds of each live child's threads so far, by thread name
        (digits dropped: Fast DDS names its threads e.g. "dds.udp.7412")."""
        tick = os.sysconf("SC_CLK_TCK")
        out: dict[str, dict[str, float]] = {}
        for name, p in self.procs:
            per: dict[str, float] = {}
            try:
                tids = os.listdir(f"/proc/{p.pid}/task")
            except OSError:
                continue
            for tid in tids:
                try:
                    with open(f"/proc/{p.pid}/task/{tid}/stat") as f:
                        text = f.read()
                except OSError:
                    continue
                comm = text[text.index("(") + 1:text.rindex(")")]
                fields = text.rsplit(")", 1)[1].split()
                key = "main" if tid == str(p.pid) else comm.rstrip("0123456789.")
                per[key] = per.get(key, 0.0) + (int(fields[11]) + int(fields[12])) / tick
            out[name] = per
        return out

    def stop(self, grace_s: float = 6.0) -> list[int]:
        self.shm_seen |= _shm_mapped_by(p.pid for _, p in self.procs if p.poll() is None)
        live = [p for _, p in self.procs if p.poll() is None]
        for sig, wait in ((signal.SIGINT, grace_s), (signal.SIGTERM, 3.0), (signal.SIGKILL, 3.0)):
            for p in live:
                try:
                    os.killpg(p.pid, sig)
                except ProcessLookupError:
                    pass
            deadline = time.monotonic() + wait
            while time.monotonic() < deadline and any(p.poll() is None for p in live):
                time.sleep(0.05)
            live = [p for p in live if p.poll() is None]
            if not live:
                break
        for p in live:  # not even SIGKILL: reap what we can
            p.wait(timeout=5)
        return [p.returncode for _, p in self.procs]


def clean_shm(names: set[str]) -> list[str]:
    """Remove those of `names` (Fast DDS /dev/shm files our processes mapped) that no live
    process maps or holds open any more."""
    from fleet_coord.launcher import mapped_shm
    stale = sorted(n for n in names if os.path.exists(os.path.join("/dev/shm", n)))
    if not stale:
        return []
    used = mapped_shm()
    removed = []
    for n in stale:
        if n in used or not ("fastdds" in n or "fastrtps" in n):
            continue
        try:
            os.unlink(os.path.join("/dev/shm", n))
            removed.append(n)
        except OSError:
            pass
    return removed


# --profile: a child under cProfile, timed by its main thread's CPU time (a wall-clock
# profile on a loaded machine mostly measures waiting); the profile is written at exit
_PROFILED = """
import cProfile, runpy, sys, time
out, kind, target = sys.argv[1:4]
sys.argv = [target] + sys.argv[4:]
prof = cProfile.Profile(time.thread_time)
prof.enable()
try:
    if kind == "-m":
        runpy.run_module(target, run_name="__main__", alter_sys=True)
    else:
        runpy.run_path(target, run_name="__main__")
finally:
    prof.disable()
    prof.dump_stats(out)
"""


# ---------------------------------------------------------------- role: agents (child)

def role_agents(argv: list[str]) -> None:
    """Run fleet_coord.robot_agent.main(argv) with `_on_cfp` timed; write the timings to
    the file after `--timings` when the process is stopped."""
    i = argv.index("--timings")
    path = argv[i + 1]
    del argv[i:i + 2]
    executor = "multi"
    if "--executor" in argv:   # an experiment: robot_agent.main() always uses "multi"
        i = argv.index("--executor")
        executor = argv[i + 1]
        del argv[i:i + 2]
    import rclpy.executors

    from fleet_coord import robot_agent
    records: list[tuple] = []
    orig = robot_agent.RobotAgent._on_cfp

    def _on_cfp(self, msg, info=None) -> None:
        info = info or self.io.cfp_info   # FleetIO keeps the MessageInfo of the cfp
        t0 = time.time_ns()
        c0 = time.thread_time_ns()
        orig(self, msg)
        c1 = time.thread_time_ns()
        records.append((msg.task.id, self.robot, info["received_timestamp"] if info else t0,
                        t0, time.time_ns(), c1 - c0))

    robot_agent.RobotAgent._on_cfp = _on_cfp
    import gc
    gc_events: list[tuple[int, float, float]] = []   # (generation, wall start, CPU s)
    gc_start = [0.0, 0.0]

    def on_gc(phase: str, info: dict) -> None:
        if phase == "start":
            gc_start[:] = [time.time(), time.thread_time()]
        else:
            gc_events.append((info["generation"], gc_start[0], time.thread_time() - gc_start[1]))
    gc.callbacks.append(on_gc)
    if executor == "multi":  # what robot_agent.main() used before fleet_coord.spin
        from fleet_coord import spin
        spin.SingleThreadedExecutor = lambda: rclpy.executors.MultiThreadedExecutor(num_threads=4)
    elif executor != "single":
        raise SystemExit(f"--executor: expected multi or single, got {executor!r}")
    try:
        robot_agent.main([sys.argv[0]] + argv)
    finally:
        with open(path, "w") as f:
            json.dump(records, f)
        with open(path + ".gc", "w") as f:
            json.dump(gc_events, f)


# ------------------------------------------------------------ role: state-pubs (child)

def role_state_pubs(argv: list[str]) -> None:
    """One node per robot publishing RobotState at `--rate` Hz, stamped at send time,
    `lamport` = per-robot sequence number; one SingleThreadedExecutor as robot_agent.main."""
    import rclpy
    from fleet_coord_msgs.msg import RobotState
    from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
    from rclpy.node import Node

    from fleet_coord import qos

    ap = argparse.ArgumentParser()
    ap.add_argument("--robots", required=True)
    ap.add_argument("--rate", type=float, default=10.0)
    a, ros_args = ap.parse_known_args(argv)
    rclpy.init(args=[sys.argv[0]] + ros_args)

    class StatePub(Node):
        def __init__(self, robot: str) -> None:
            super().__init__("state_pub", namespace=robot)
            self.robot, self.seq = robot, 0
            self.pub = self.create_publisher(RobotState, "/fleet/robot_states", qos.state_qos())
            self.create_timer(1.0 / a.rate, self._tick)

        def _tick(self) -> None:
            self.seq += 1
            msg = RobotState(robot=self.robot, battery=1.0, lamport=self.seq)
            msg.header.frame_id = "map"
            msg.pose.position.x = float(self.seq % 30)
            msg.pose.orientation.w = 1.0
            msg.header.stamp = self.get_clock().now().to_msg()
            self.pub.publish(msg)

    nodes = [StatePub(r) for r in a.robots.split(",") if r]
    ex = SingleThreadedExecutor()
    for n in nodes:
        ex.add_node(n)
    try:
        ex.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        for n in nodes:
            n.destroy_node()
        rclpy.try_shutdown()


# --------------------------------------------------------------------------- helpers

def parse_config(s: str) -> tuple[int, int]:
    n, _, p = s.partition(":")
    n, p = int(n), int(p or 1)
    if not (1 <= p <= n):
        raise argparse.ArgumentTypeError(f"config {s!r}: want AGENTS:PROCESSES with "
                                         "1 <= PROCESSES <= AGENTS")
    return n, p


def groups(names: list[str], processes: int) -> list[list[str]]:
    return [names[i::processes] for i in range(processes)]


def write_params(path: str, params: dict) -> str:
    import yaml
    with open(path, "w") as f:
        yaml.safe_dump({"/**": {"ros__parameters": params}}, f)
    return path


def progress(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def make_context():
    import rclpy
    ctx = rclpy.Context()
    rclpy.init(context=ctx, args=[])
    return ctx


def spin_for(ex, seconds: float, future=None) -> None:
    """Spin `ex` in this thread for `seconds` or until `future` is done. (All spinning and
    publishing happens on the main thread: the EventsExecutor must not be spun from one
    thread while another destroys nodes or publishes.)"""
    from rclpy.task import Future
    ex.spin_until_future_complete(future if future is not None else Future(),
                                  timeout_sec=seconds)


def with_info(cb, executor: str):
    """`cb(msg, info)` as a subscription callback. The EventsExecutor of rclpy 9 (Kilted)
    cannot call callbacks that take a MessageInfo (spin raises "SystemError: null argument
    to internal routine"), so there `info` is None and the DDS timestamps are not known."""
    if executor == "events":
        return lambda msg: cb(msg, None)
    return cb


def close(ex, node, ctx) -> None:
    ex.remove_node(node)
    node.destroy_node()
    ctx.try_shutdown()


def make_executor(kind: str, ctx):
    from rclpy.executors import MultiThreadedExecutor, SingleThreadedExecutor
    if kind == "events":
        from rclpy.experimental import EventsExecutor
        return EventsExecutor(context=ctx)
    if kind == "single":
        return SingleThreadedExecutor(context=ctx)
    return MultiThreadedExecutor(context=ctx)


# --------------------------------------------------------------------- (a) auctions

@dataclass
class Round:
    task_id: str
    expected: int
    t_pub: int = 0
    answers: dict = field(default_factory=dict)  # robot -> (kind, src_ts, recv_ts, cb_ts)
    proposals: dict = field(default_factory=dict)  # robot -> Proposal (--auth: checked at close)
    t_done: int = 0
    done: object = None  # rclpy Future, set when every agent answered


def run_auction(n_agents: int, n_procs: int, args, rep: int, shm_seen: set[str]) -> dict:
    from fleet_coord_msgs.msg import CallForProposal, Proposal, Refusal
    from fleet_coord_msgs.msg import Task as TaskMsg
    from rclpy.node import Node
    from rclpy.task import Future

    from fleet_coord import qos
    from fleet_coord.fleet_config import load_roadmap
    from fleet_coord.convert import to_time

    label = f"auction {n_agents} agents / {n_procs} proc, run {rep}" + \
        ("" if args.agent_executor == "single" else f" (agents on {args.agent_executor})") + \
        (" (authenticated)" if args.auth else "")
    rng = random.Random(args.seed + rep)
    roadmap = load_roadmap(MAP)
    names = [f"r{i:02d}" for i in range(n_agents)]
    starts = rng.sample(range(roadmap.num_vertices), n_agents)
    poses = [float(c) for v in starts for c in (*roadmap.pos[v], 0.0)]

    rundir = tempfile.mkdtemp(prefix=f"dds_latency_a{n_agents}_{n_procs}_", dir=args.workdir)
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "ROS_LOG_DIR": os.path.join(rundir, "roslog")}
    kids = Children(rundir, env)
    auth: dict = {}
    signer = verifier = None
    if args.auth:
        # the fleet authenticates (docs/security.md): agents and driver sign and check,
        # the initiator signs its cfps as the dispatcher and checks the answers as it does
        from fleet_coord.auth import Signer, Verifier
        from fleet_coord.core.trust import Role
        from fleet_coord.keys import IdentitySpec, KeyDir, robot_identities
        kd = KeyDir(os.path.join(rundir, "fleet.keys"))
        kd.init([IdentitySpec("dispatcher", Role.DISPATCHER),
                 IdentitySpec("ideal_driver", Role.SIM, ("*",)),
                 *(s for n in names for s in robot_identities(n, "ideal"))])
        auth = {"auth_mode": "enforce", "auth_keys": kd.path}
        signer = Signer("dispatcher", kd.private_key("dispatcher"))
        verifier = Verifier(kd.keyring())
    # the parked robots' rates (core/pacing.py): the nodes' defaults unless given
    idle_state = {} if args.idle_state_rate is None else \
        {"idle_state_rate": float(args.idle_state_rate)}
    idle_odom = {} if args.idle_odom_rate is None else \
        {"idle_rate_hz": float(args.idle_odom_rate)}
    agent_params = write_params(os.path.join(rundir, "agents.yaml"),
                                {"map": MAP, "footprint_radius": 0.15, **idle_state, **auth})
    driver_params = write_params(os.path.join(rundir, "driver.yaml"),
                                 {"robots": names, "start_poses": poses,
                                  "rate_hz": float(args.odom_rate), **idle_odom, **auth})
    ctx = make_context()
    node = Node("dds_latency_initiator", context=ctx)
    current: list[Round | None] = [None]
    lock = threading.Lock()  # callbacks run on this thread; the lock is cheap insurance

    def on_answer(kind):
        def cb(msg, info) -> None:
            t = time.time_ns()
            with lock:
                r = current[0]
                if r is None or msg.task_id != r.task_id or msg.robot in r.answers:
                    return
                if verifier is not None:
                    # as the dispatcher: a refusal checked in full, a proposal only cheaply
                    # (its signature is checked if it wins, when the round closes)
                    check = verifier.precheck if kind == "P" else verifier.verify
                    if check(msg, "fleet/proposals" if kind == "P" else "fleet/refusals",
                             subjects=[msg.robot]) is not None:
                        return
                    if kind == "P":
                        r.proposals[msg.robot] = msg
                r.answers[msg.robot] = (kind, info["source_timestamp"] if info else 0,
                                        info["received_timestamp"] if info else 0, t)
                if len(r.answers) == r.expected:
                    if verifier is not None:
                        # the winner's signature, as Dispatch's award does (the round
                        # closes only after it)
                        for p in sorted(r.proposals.values(),
                                        key=lambda p: (p.cost, p.eta.sec, p.eta.nanosec, p.robot)):
                            if verifier.verify(p, "fleet/proposals",
                                               subjects=[p.robot]) is None:
                                break
                        t = time.time_ns()
                    r.t_done = t
                    r.done.set_result(True)
        return cb

    cfp_pub = node.create_publisher(CallForProposal, "/fleet/cfp", qos.PROTOCOL)
    node.create_subscription(Proposal, "/fleet/proposals", with_info(on_answer("P"), args.executor),
                             qos.PROTOCOL)
    node.create_subscription(Refusal, "/fleet/refusals", with_info(on_answer("R"), args.executor),
                             qos.PROTOCOL)
    ex = make_executor(args.executor, ctx)
    ex.add_node(node)

    rounds: list[Round] = []
    result: dict = {"kind": "auction", "agents": n_agents, "processes": n_procs, "run": rep,
                    "odom_rate": args.odom_rate, "executor": args.executor,
                    "idle_state_rate": args.idle_state_rate,
                    "idle_odom_rate": args.idle_odom_rate,
                    "agent_executor": args.agent_executor, "auth": bool(args.auth),
                    "loadavg_before": os.getloadavg()}
    t_start = time.monotonic()
    def python(name: str, kind: str, target: str) -> list[str]:
        """The command running `target` (a module: kind "-m", or a script: "path")."""
        if not args.profile:
            return [sys.executable] + (["-m", target] if kind == "-m" else [target])
        return [sys.executable, "-c", _PROFILED, os.path.join(args.profile, f"{name}.prof"),
                kind, target]

    try:
        kids.start("ideal_driver", python("ideal_driver", "-m", "fleet_coord.ideal_driver") + [
            "--ros-args", "--params-file", driver_params])
        for gi, g in enumerate(groups(names, n_procs)):
            kids.start(f"agents_{gi}", python(f"agents_{gi}", "path", os.path.abspath(__file__)) + [
                                        "--role", "agents", "--timings",
                                        os.path.join(rundir, f"timings_{gi}.json"),
                                        "--executor", args.agent_executor,
                                        "--robots", ",".join(g),
                                        "--ros-args", "--params-file", agent_params])
        progress(f"{label}: started {len(kids.procs)} processes; waiting for the agents")

        def one_round(i: int, station: str) -> Round:
            r = Round(task_id=f"b{rep}-{i}", expected=n_agents, done=Future())
            msg = CallForProposal(task=TaskMsg(id=r.task_id, kind="goto", stations=[station]),
                                  round=1, initiator=node.get_name())
            with lock:
                current[0] = r
            r.t_pub = time.time_ns()
            msg.bid_deadline = to_time((r.t_pub + args.timeout * NS) / NS)
            cfp_pub.publish(signer.sign(msg, "fleet/cfp") if signer is not None else msg)
            spin_for(ex, args.timeout, r.done)
            with lock:
                current[0] = None
            return r

        # ready: every agent discovered and answering with a Proposal (it has odometry)
        deadline = time.monotonic() + args.ready_timeout
        probe = 0
        while True:
            kids.check_alive()
            if time.monotonic() > deadline:
                raise RuntimeError(f"{label}: agents not ready after {args.ready_timeout} s "
                                   f"(cfp subscribers: {cfp_pub.get_subscription_count()})")
            # one cfp subscription per agent process (fleet_io.FleetIO is shared)
            if cfp_pub.get_subscription_count() >= n_procs:
                r = one_round(-1 - probe, roadmap.names[0])
                probe += 1
                props = sum(1 for a in r.answers.values() if a[0] == "P")
                if props == n_agents:
                    break
            spin_for(ex, 0.5)
        t_ready = time.monotonic() - t_start
        progress(f"{label}: all {n_agents} agents bid after {t_ready:.1f} s; "
                 f"{args.warmup} warm-up + {args.rounds} rounds")
        cpu0, wall0 = kids.cpu_seconds(), time.monotonic()
        threads0, epoch0 = kids.thread_cpu_seconds(), time.time()
        for i in range(args.warmup + args.rounds):
            r = one_round(i, rng.choice(roadmap.names))
            if i >= args.warmup:
                rounds.append(r)
                k = i - args.warmup + 1
                if k % args.progress_every == 0:
                    lat = [(x.t_done - x.t_pub) * MS for x in rounds if x.t_done]
                    progress(f"{label}: round {k}/{args.rounds}  so far ms p50/p95/p99/max "
                             f"{fmt(summary(lat))}  incomplete {len(rounds) - len(lat)}  "
                             f"load {os.getloadavg()[0]:.1f}")
            spin_for(ex, args.gap + rng.random() * args.gap)
        cpu1, wall1 = kids.cpu_seconds(), time.monotonic()
        threads1, epoch1 = kids.thread_cpu_seconds(), time.time()
        result["child_cpu_per_wall_s"] = {k: round((cpu1[k] - cpu0.get(k, 0.0)) / (wall1 - wall0), 3)
                                          for k in cpu1}
        result["child_thread_cpu_per_wall_s"] = {
            k: {t: round((c - threads0.get(k, {}).get(t, 0.0)) / (wall1 - wall0), 4)
                for t, c in sorted(v.items())} for k, v in threads1.items()}
        result["ready_s"] = round(t_ready, 1)
        result["epoch0"], result["epoch1"] = epoch0, epoch1
    finally:
        close(ex, node, ctx)
        codes = kids.stop()
        shm_seen |= kids.shm_seen
        result["exit_codes"] = codes

    # ---- analysis
    lat = [(r.t_done - r.t_pub) * MS for r in rounds if r.t_done]
    result["rounds"] = len(rounds)
    result["incomplete"] = sum(1 for r in rounds if not r.t_done)
    result["latency_ms"] = summary(lat)
    result["loadavg_after"] = os.getloadavg()
    agent_side: dict[tuple[str, str], tuple] = {}
    for gi in range(n_procs):
        p = os.path.join(rundir, f"timings_{gi}.json")
        if os.path.exists(p):
            with open(p) as f:
                for tid, robot, recv, cb0, cb1, cpu in json.load(f):
                    agent_side[(tid, robot)] = (recv, cb0, cb1, cpu)
    gc_cpu: dict[str, list[float]] = {}   # generation -> [collections, CPU s] in the rounds
    for gi in range(n_procs):
        p = os.path.join(rundir, f"timings_{gi}.json.gc")
        if os.path.exists(p) and "epoch0" in result:
            with open(p) as f:
                for gen, at, cpu in json.load(f):
                    if result["epoch0"] <= at <= result["epoch1"]:
                        c = gc_cpu.setdefault(str(gen), [0, 0.0])
                        c[0] += 1
                        c[1] += cpu
    if gc_cpu:
        span = result["epoch1"] - result["epoch0"]
        result["agents_gc_per_wall_s"] = {g: dict(collections=round(n / span, 2),
                                                  cpu=round(c / span, 4))
                                          for g, (n, c) in sorted(gc_cpu.items())}
    comp = {k: [] for k in ("cfp_transit", "agent_queue", "bid", "reply_transit",
                            "initiator_dispatch", "reply_total")}
    bid_cpu_all: list[float] = []
    first_answer, answer_spread = [], []
    last_proc: dict[int, int] = {}
    proc_of = {rb: gi for gi, g in enumerate(groups(names, n_procs)) for rb in g}
    for r in rounds:
        for rb in r.answers:
            a = agent_side.get((r.task_id, rb))
            if a:
                bid_cpu_all.append(a[3] * MS)
        if not r.t_done:
            continue
        cbs = sorted(a[3] for a in r.answers.values())
        first_answer.append((cbs[0] - r.t_pub) * MS)
        answer_spread.append((cbs[-1] - cbs[0]) * MS)
        last = max(r.answers, key=lambda rb: r.answers[rb][3])
        last_proc[proc_of[last]] = last_proc.get(proc_of[last], 0) + 1
        kind, src, recv, cb = r.answers[last]
        a = agent_side.get((r.task_id, last))
        if a is None:
            continue
        a_recv, a_cb0, a_cb1, _ = a
        comp["cfp_transit"].append((a_recv - r.t_pub) * MS)
        comp["agent_queue"].append((a_cb0 - a_recv) * MS)
        comp["bid"].append((a_cb1 - a_cb0) * MS)
        if recv:   # DDS timestamps known (not the EventsExecutor)
            comp["reply_transit"].append((recv - src) * MS)
            comp["initiator_dispatch"].append((cb - recv) * MS)
        else:
            comp["reply_total"].append((cb - a_cb1) * MS)
    result["first_answer_ms"] = summary(first_answer)
    result["answer_spread_ms"] = summary(answer_spread)
    result["last_answer_breakdown_ms"] = {k: summary(v) for k, v in comp.items()}
    result["bid_cpu_ms_all_answers"] = summary(bid_cpu_all)
    result["last_answer_process_counts"] = {str(k): v for k, v in sorted(last_proc.items())}
    result["rundir"] = rundir
    s = result["latency_ms"]
    progress(f"{label}: done  ms p50/p95/p99/max {fmt(s)}  incomplete {result['incomplete']}  "
             f"child CPU/s {sum(result.get('child_cpu_per_wall_s', {}).values()):.2f}")
    return result


# ------------------------------------------------------------------- (b) fleet state

def run_state(n_robots: int, n_procs: int, args, rep: int, shm_seen: set[str]) -> dict:
    from fleet_coord_msgs.msg import RobotState
    from rclpy.node import Node

    from fleet_coord import qos

    label = f"state {n_robots} robots x {args.state_rate:g} Hz / {n_procs} proc, run {rep}"
    names = [f"r{i:02d}" for i in range(n_robots)]
    rundir = tempfile.mkdtemp(prefix=f"dds_latency_s{n_robots}_{n_procs}_", dir=args.workdir)
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "ROS_LOG_DIR": os.path.join(rundir, "roslog")}
    kids = Children(rundir, env)
    ctx = make_context()
    node = Node("dds_latency_state_sub", context=ctx)
    samples: list[tuple] = []    # (robot, seq, stamp_ns, src_ts, recv_ts, cb_ns)
    recording = [False]
    seen: set[str] = set()

    def cb(msg, info) -> None:
        t = time.time_ns()
        seen.add(msg.robot)
        if recording[0]:
            st = msg.header.stamp
            samples.append((msg.robot, msg.lamport, st.sec * NS + st.nanosec,
                            info["source_timestamp"] if info else 0,
                            info["received_timestamp"] if info else 0, t))

    sub_qos = qos.state_qos()
    if args.state_depth:
        sub_qos.depth = args.state_depth
    node.create_subscription(RobotState, "/fleet/robot_states", with_info(cb, args.executor),
                             sub_qos)
    ex = make_executor(args.executor, ctx)
    ex.add_node(node)
    result: dict = {"kind": "state", "robots": n_robots, "processes": n_procs, "run": rep,
                    "rate_hz": args.state_rate, "executor": args.executor,
                    "subscriber_depth": sub_qos.depth,
                    "loadavg_before": os.getloadavg()}
    try:
        for gi, g in enumerate(groups(names, n_procs)):
            kids.start(f"state_pubs_{gi}", [sys.executable, os.path.abspath(__file__),
                                            "--role", "state-pubs", "--robots", ",".join(g),
                                            "--rate", str(args.state_rate)])
        progress(f"{label}: started {n_procs} publisher processes")
        deadline = time.monotonic() + args.ready_timeout
        while len(seen) < n_robots:
            kids.check_alive()
            if time.monotonic() > deadline:
                raise RuntimeError(f"{label}: heard only {len(seen)} robots")
            spin_for(ex, 0.2)
        spin_for(ex, args.warmup_s)
        progress(f"{label}: all {n_robots} publishing; measuring {args.state_seconds:g} s")
        cpu0, wall0 = kids.cpu_seconds(), time.monotonic()
        recording[0] = True
        t_end = time.monotonic() + args.state_seconds
        next_report = time.monotonic() + 10
        while time.monotonic() < t_end:
            spin_for(ex, 0.2)
            if time.monotonic() >= next_report:
                next_report += 10
                snap = samples[-5000:]
                lat = [(s[5] - s[2]) * MS for s in snap]
                progress(f"{label}: {len(samples)} samples, last {len(snap)}: ms p50/p99/max "
                         f"{fmt(summary(lat), ('p50', 'p99', 'max'))}  load {os.getloadavg()[0]:.1f}")
        recording[0] = False
        cpu1, wall1 = kids.cpu_seconds(), time.monotonic()
        result["child_cpu_per_wall_s"] = {k: round((cpu1[k] - cpu0.get(k, 0.0)) / (wall1 - wall0), 3)
                                          for k in cpu1}
    finally:
        close(ex, node, ctx)
        result["exit_codes"] = kids.stop()
        shm_seen |= kids.shm_seen

    lat = [(s[5] - s[2]) * MS for s in samples]
    per_robot: dict[str, list[int]] = {}
    for s in samples:
        per_robot.setdefault(s[0], []).append(s[1])
    expected = received = 0
    for seqs in per_robot.values():
        expected += max(seqs) - min(seqs) + 1
        received += len(set(seqs))
    periods = []
    last_stamp: dict[str, int] = {}
    for s in sorted(samples, key=lambda s: (s[0], s[1])):
        if s[0] in last_stamp:
            periods.append((s[2] - last_stamp[s[0]]) * MS)
        last_stamp[s[0]] = s[2]
    result.update({
        "samples": len(samples), "expected": expected, "received": received,
        "dropped": expected - received,
        "drop_rate": (expected - received) / expected if expected else None,
        "robots_heard": len(per_robot),
        "latency_ms": summary(lat),
        "stamp_to_dds_write_ms": summary([(s[3] - s[2]) * MS for s in samples if s[3]]),
        "dds_transit_ms": summary([(s[4] - s[3]) * MS for s in samples if s[3]]),
        "subscriber_dispatch_ms": summary([(s[5] - s[4]) * MS for s in samples if s[4]]),
        "publish_period_ms": summary(periods),
        "loadavg_after": os.getloadavg(),
        "rundir": rundir,
    })
    progress(f"{label}: done  ms p50/p99/max {fmt(result['latency_ms'], ('p50', 'p99', 'max'))}"
             f"  dropped {result['dropped']}/{expected}")
    return result


# ---------------------------------------------------------------------------- report

def table(results: list[dict]) -> str:
    lines = []
    auc = [r for r in results if r["kind"] == "auction" and "latency_ms" in r]
    if auc:
        lines += ["Auction round latency (cfp publish -> last Proposal/Refusal), ms",
                  "| agents | processes | run | rounds | incomplete | p50 | p95 | p99 | max | "
                  "first answer p50 | last answer: cfp transit / agent queue / bid / reply "
                  "(transit / initiator dispatch, or both), p50 (p99) | agents CPU (cores) | load |",
                  "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|"]
        for r in auc:
            s, b = r["latency_ms"], r["last_answer_breakdown_ms"]
            reply = ("reply_transit", "initiator_dispatch") if b["reply_transit"].get("n") \
                else ("reply_total",)
            parts = " / ".join(f"{b[k]['p50']:.1f} ({b[k]['p99']:.1f})" if b[k].get("n") else "n/a"
                               for k in ("cfp_transit", "agent_queue", "bid", *reply))
            cpu = sum(v for k, v in r.get("child_cpu_per_wall_s", {}).items() if k.startswith("agents"))
            auth = " signed" if r.get("auth") else ""
            lines.append(f"| {r['agents']} | {r['processes']}{auth} | {r['run']} | {r['rounds']} | "
                         f"{r['incomplete']} | {s['p50']:.1f} | {s['p95']:.1f} | {s['p99']:.1f} | "
                         f"{s['max']:.1f} | {r['first_answer_ms'].get('p50', float('nan')):.1f} | "
                         f"{parts} | {cpu:.2f} | {r['loadavg_before'][0]:.1f} |")
    st = [r for r in results if r["kind"] == "state" and "latency_ms" in r]
    if st:
        lines += ["", "Fleet state end-to-end latency (receive - header.stamp), ms",
                  "| robots x Hz | processes | run | samples | dropped | p50 | p99 | max | "
                  "DDS transit p50 (p99) | subscriber dispatch p50 (p99) | publishers CPU (cores) | load |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for r in st:
            s, d, q = r["latency_ms"], r["dds_transit_ms"], r["subscriber_dispatch_ms"]
            d = d if d.get("n") else {"p50": float("nan"), "p99": float("nan")}
            q = q if q.get("n") else {"p50": float("nan"), "p99": float("nan")}
            cpu = sum(r.get("child_cpu_per_wall_s", {}).values())
            lines.append(f"| {r['robots']} x {r['rate_hz']:g} | {r['processes']} | {r['run']} | "
                         f"{r['samples']} | {r['dropped']} ({100 * (r['drop_rate'] or 0):.2f} %) | "
                         f"{s['p50']:.2f} | {s['p99']:.2f} | {s['max']:.1f} | "
                         f"{d['p50']:.2f} ({d['p99']:.2f}) | {q['p50']:.2f} ({q['p99']:.2f}) | "
                         f"{cpu:.2f} | {r['loadavg_before'][0]:.1f} |")
    return "\n".join(lines)


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "--role":
        role, rest = sys.argv[2], sys.argv[3:]
        {"agents": role_agents, "state-pubs": role_state_pubs}[role](rest)
        return
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--part", choices=("auction", "state", "all"), default="all")
    ap.add_argument("--auction-configs", nargs="+", type=parse_config,
                    default=[(10, 10), (10, 2), (50, 5), (50, 2)],
                    help="AGENTS:PROCESSES (default 10:10 10:2 50:5 50:2)")
    ap.add_argument("--state-configs", nargs="+", type=parse_config, default=[(50, 5)],
                    help="ROBOTS:PROCESSES (default 50:5)")
    ap.add_argument("--repeat", type=int, default=2, help="runs of each config")
    ap.add_argument("--rounds", type=int, default=300)
    ap.add_argument("--warmup", type=int, default=20, help="auction rounds not counted")
    ap.add_argument("--gap", type=float, default=0.05,
                    help="pause between rounds: gap + uniform(0, gap) s")
    ap.add_argument("--timeout", type=float, default=2.0, help="a round not complete by "
                    "then counts as incomplete (s)")
    ap.add_argument("--odom-rate", type=float, default=20.0, help="ideal driver odometry Hz")
    ap.add_argument("--idle-state-rate", type=float, default=None,
                    help="agents' idle_state_rate, Hz (default: theirs; 0: every state tick, "
                         "as before core/pacing.py)")
    ap.add_argument("--idle-odom-rate", type=float, default=None,
                    help="ideal driver's idle_rate_hz (default: its own; 0: every step)")
    ap.add_argument("--executor", choices=("events", "single", "multi"), default="events",
                    help="executor of the measuring node")
    ap.add_argument("--agent-executor", choices=("multi", "single"), default="single",
                    help="executor of the agent processes: single is what robot_agent.main() "
                    "uses (fleet_coord.spin); multi, the MultiThreadedExecutor it used "
                    "before, is patched in by the wrapper for comparison")
    ap.add_argument("--auth", action="store_true",
                    help="auction: the fleet authenticates (signed cfps, proposals, states, "
                    "commands, odometry; docs/security.md)")
    ap.add_argument("--profile", default=None, metavar="DIR",
                    help="auction: run the driver and agent processes under cProfile (timed by "
                    "CPU time), their profiles written to DIR/<process>.prof when stopped "
                    "(the CPU numbers then include the profiler's overhead: not for tables)")
    ap.add_argument("--state-rate", type=float, default=10.0)
    ap.add_argument("--state-seconds", type=float, default=30.0)
    ap.add_argument("--state-depth", type=int, default=0, help="subscriber history depth "
                    "(default: that of qos.state_qos())")
    ap.add_argument("--warmup-s", type=float, default=3.0, help="state: seconds not counted")
    ap.add_argument("--ready-timeout", type=float, default=180.0)
    ap.add_argument("--progress-every", type=int, default=50)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--workdir", default=None, help="where run directories (logs, timings) go")
    ap.add_argument("--json", default=None, help="results file (default "
                    "/tmp/dds_latency-<time>.json)")
    args = ap.parse_args()
    if os.environ.get("ROS_AUTOMATIC_DISCOVERY_RANGE") != "LOCALHOST":
        sys.exit("run me through scripts/isolated.sh (ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST "
                 "and a private network namespace)")
    if args.workdir:
        os.makedirs(args.workdir, exist_ok=True)
    if args.profile:
        args.profile = os.path.abspath(args.profile)
        os.makedirs(args.profile, exist_ok=True)
    out = args.json or f"/tmp/dds_latency-{time.strftime('%Y%m%d-%H%M%S')}.json"
    progress(f"dds_latency: {os.cpu_count()} CPUs, load {os.getloadavg()}, "
             f"netns={os.environ.get('FLEET_COORD_IN_NETNS', '0')}, results -> {out}")
    results: list[dict] = []
    shm_seen: set[str] = set()

    def save() -> None:
        with open(out, "w") as f:
            json.dump({"argv": sys.argv, "host": platform.node(), "cpus": os.cpu_count(),
                       "python": platform.python_version(), "results": results}, f, indent=1)

    try:
        jobs = []
        if args.part in ("auction", "all"):
            jobs += [("auction", n, p) for n, p in args.auction_configs]
        if args.part in ("state", "all"):
            jobs += [("state", n, p) for n, p in args.state_configs]
        for rep in range(1, args.repeat + 1):   # interleave repeats: noise spreads over configs
            for kind, n, p in jobs:
                fn = run_auction if kind == "auction" else run_state
                try:
                    results.append(fn(n, p, args, rep, shm_seen))
                except RuntimeError as e:
                    progress(f"FAILED: {e}")
                    results.append({"kind": kind, "n": n, "processes": p, "run": rep,
                                    "error": str(e)})
                save()
                removed = clean_shm(shm_seen)
                if removed:
                    progress(f"removed {len(removed)} stale /dev/shm files")
    finally:
        shm_seen |= _shm_mapped_by([os.getpid()])
        save()
    print()
    print(table(results))
    print(f"\nresults: {out}")
    # our own participant's segments go when this process exits; anything left by the
    # children (killed ones) is gone now
    clean_shm(shm_seen)


if __name__ == "__main__":
    main()

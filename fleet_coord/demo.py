"""The main job: a simulated warehouse fleet doing real work over ROS 2.

``run_demo`` starts the node set of a generated fleet config (PyBullet ``sim`` backend,
``use_sim_time``) as processes through ``FleetLauncher`` — the sim (the clock), traffic,
dispatcher, fleet_monitor and the robot agents —, waits until every robot is parked
(holds its start vertex in the reservation table) and known to the dispatcher, submits
the pick-and-drop tasks through ``/fleet/submit_task`` from an rclpy node in this
process, follows them to the end on ``/fleet/task_status``, and shuts the fleet down.

While it runs, this process records what the report needs and checks the fleet from the
outside: odometry (trajectories, the GIF), ``/fleet/robot_states`` (the timeline), task
statuses (times), the sim's contact counters, and an independent monitor
(``fleet_coord.run_monitor``) that counts reservation conflicts in the table and robots
outside the resources they hold.

Real-time factor: agents follow sim time in their own processes, so their 20 Hz control
loops must run ``rtf`` times faster in wall time (8 agents at 5x: 800 control ticks and
~1600 odometry/state messages per wall second, on top of the sim itself). When they
cannot, commands arrive late, robots drift out of their reserved cells and contacts
follow — "as fast as possible" (rtf 0) is therefore not offered here. The defaults are
measured on the 2-core development VM (docs/benchmarks.md, "Demo (full fleet)"): the
largest factor at which the default fleet still finishes with no excursion, with
headroom, kinematic and physics separately. When the CPU cannot even hold that pace the
sim slows down (it never bursts to catch up), which only makes the agents' job easier.
"""
from __future__ import annotations

import faulthandler
import math
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

#: Default real-time factor per sim mode (see the module docstring for why not "max").
DEFAULT_RTF = {"kinematic": 4.0, "physics": 2.0}
#: Sim seconds between two task submissions: each auction (bid window 0.3 s) closes
#: before the next opens, so bids reflect the tasks already awarded (sequential
#: single-item auctions) instead of every robot bidding its idle cost on all 40 at once.
SUBMIT_INTERVAL_S = 0.6
ODOM_RATE_HZ = 20.0        # the agents' control rate: faster odometry buys nothing
#: The demo robot: a small, agile warehouse AMR. Agents plan at the speed that lets a robot
#: stop and make a quarter turn inside a vertex star (core.tracking.plan_speed_for), so
#: turn rate and accelerations, not top speed, set the pace: with these limits about
#: 0.33 m/s; with the package defaults (1 m/s, 2 rad/s, 2 m/s^2, 6 rad/s^2) 0.14 m/s.
ROBOT_LIMITS = dict(max_v=1.0, max_w=4.0, max_acc=4.0, max_alpha=20.0)
#: the agents' control loop (robot_agent's default control_rate): what time_model auto
#: is resolved for
CONTROL_RATE_HZ = 20.0
TURN_MARGIN_S = 0.2
#: Lock-step: the sim never leads the slowest agent by more than this (sim s; the agents
#: stamp their state at 10 Hz, so three state periods).
MAX_LEAD_S = 0.2
#: ... and never runs more than this past the last command of a robot that drives (two
#: control periods): a starved agent's robot neither drives on a stale command nor falls
#: behind its timed path while the sim runs on (docs/benchmarks.md, "Demo").
MAX_CMD_LEAD_S = 2.0 / ODOM_RATE_HZ
TRACE_PERIOD_S = 0.1       # recorded trajectory resolution (sim s)
#: The run is stuck when no task has ended for this long (sim s) while tasks are open:
#: a task takes at most a few minutes of sim time, waits included (yield_wait_busy 180 s).
STALL_SIM_S = 900.0
#: ... or when the sim clock has not advanced for this long (wall s).
FROZEN_WALL_S = 120.0
#: After Ctrl-C / SIGTERM, the most time (wall s) the demo may take to stop the fleet and
#: exit before a watchdog does it (the executor should never hang, but Ctrl-C must work).
INTERRUPT_GRACE_S = 20.0


class DemoError(RuntimeError):
    """The fleet did not come up, or a process died."""


class DemoInterrupted(DemoError):
    """Ctrl-C or SIGTERM: the demo stops the fleet and exits with 130."""


@dataclass
class DemoSpec:
    robots: int = 8
    tasks: int = 40
    map: str = ""
    seed: int = 7
    mode: str = "kinematic"
    rtf: float = 0.0               # 0: DEFAULT_RTF[mode]
    out: str = "reports/demo"
    agents_per_process: int = 0    # 0: all agents in one process
    timeout_s: float = 0.0         # wall; 0: none (the stall guard ends a stuck run)
    submit_interval_s: float = SUBMIT_INTERVAL_S
    record: bool = True            # write the fleet's topics to <out>/fleet.mcap
    auth: str = "enforce"          # the fleet authenticates (docs/security.md); "off" to compare
    time_model: str = "auto"   # the agents' time_model (core/tracking.py resolve_time_model)

    @property
    def real_time_factor(self) -> float:
        return self.rtf or DEFAULT_RTF[self.mode]


@dataclass
class Recording:
    """Everything the run recorded, in sim time (s) unless the name says wall."""
    robots: list[str]
    statuses: list[dict] = field(default_factory=list)
    traces: dict[str, list[tuple[float, float, float, float]]] = field(default_factory=dict)
    states: dict[str, list[tuple[float, int, str]]] = field(default_factory=dict)
    contacts_robot_robot: int = 0
    contacts_robot_obstacle: int = 0
    conflicts: list[tuple] = field(default_factory=list)
    excursions: list[tuple] = field(default_factory=list)
    monitor_samples: int = 0
    monitor_gaps: int = 0          # table updates the monitor missed (replica resynced)
    t_submit: float = 0.0          # sim time of the first submission
    t_end: float = 0.0             # sim time when the last task ended
    wall_run_s: float = 0.0        # first submission -> last task ended
    wall_total_s: float = 0.0      # launch -> shutdown
    wall_startup_s: float = 0.0
    #: how the run ended: "completed" (every task ended), "timeout" (--timeout), "stalled"
    #: (no task ended for STALL_SIM_S, or the sim clock froze); `stop_reason` says more
    ended: str = "completed"
    stop_reason: str = ""
    sim_rtf: float = 0.0           # sim seconds per wall second over the run
    final: dict[str, dict] = field(default_factory=dict)   # task id -> final status
    event_log: str = ""
    fleet_log: str = ""


def fleet_config(spec: DemoSpec, map_path: str, starts: dict[str, tuple[float, float]],
                 workdir: str, event_log: str):
    """The FleetConfig of the demo fleet: every robot on the sim backend, sim time."""
    from fleet_coord.fleet_config import AuthConfig, FleetConfig, RobotConfig

    per = spec.agents_per_process or len(starts)
    cfg = FleetConfig(path="<fleet-coord demo>", map=map_path, footprint_radius=0.15,
                      discovery_range="LOCALHOST", discovery_range_explicit=True,
                      domain_id=int(os.environ.get("ROS_DOMAIN_ID", "0") or 0),
                      use_sim_time=True, agents_per_process=per, restart="never",
                      ledger=os.path.join(workdir, "tasks.sqlite"), event_log=event_log,
                      auth=AuthConfig(mode=spec.auth, keys=os.path.join(workdir, "keys")))
    cfg.robots = [RobotConfig(name=name, backend="sim", start=(float(x), float(y), 0.0),
                              max_speed=ROBOT_LIMITS["max_v"],
                              max_angular_speed=ROBOT_LIMITS["max_w"])
                  for name, (x, y) in starts.items()]
    acc = {"max_acc": ROBOT_LIMITS["max_acc"], "max_alpha": ROBOT_LIMITS["max_alpha"]}
    cfg.nodes = {
        "sim": {"mode": spec.mode, "real_time_factor": float(spec.real_time_factor),
                "odom_rate": ODOM_RATE_HZ, "max_lead": MAX_LEAD_S,
                "max_cmd_lead": MAX_CMD_LEAD_S, **acc},
        # bids: completion times (bid_objective "completion"), matched by the
        # dispatcher's pool (docs/benchmarks.md, "Demo (full fleet)", Allocation)
        "robot_agent": {"turn_margin": TURN_MARGIN_S, "time_model": spec.time_model, **acc},
        "traffic": {"lost_after": 3.0},
        "dispatcher": {"bid_window": 0.5, "robot_timeout": 3.0},
        "fleet_monitor": {"lost_after": 3.0},
    }
    return cfg


class _DemoNode:
    """The demo's own rclpy node: submits tasks and records the run. Built lazily so
    importing this module does not import rclpy."""

    def __init__(self, ctx, robots: list[str], map_path: str) -> None:
        from fleet_coord_msgs.msg import RobotState, TaskStatus
        from fleet_coord_msgs.srv import SubmitTask
        from rclpy.node import Node
        from rclpy.parameter import Parameter
        from std_msgs.msg import UInt32

        from fleet_coord import qos
        from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

        from fleet_coord.run_monitor import RunMonitor
        # the sim's latched contact counters (fleet_coord_sim.sim_node.CONTACTS_QOS, not imported:
        # that would load PyBullet into this process)
        CONTACTS_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1,
                                  reliability=ReliabilityPolicy.RELIABLE,
                                  durability=DurabilityPolicy.TRANSIENT_LOCAL)

        self.node = Node("fleet_coord_demo", context=ctx, parameter_overrides=[
            Parameter("use_sim_time", Parameter.Type.BOOL, True)])
        self.rec = Recording(robots=list(robots))
        self.rec.traces = {r: [] for r in robots}
        self.rec.states = {r: [] for r in robots}
        self.seen_state: set[str] = set()
        self.last_sim = 0.0
        self.monitor = RunMonitor(self.node, robots, map_path)
        self.monitor.on_odom = self._on_odom
        sub = self.node.create_subscription
        sub(TaskStatus, "/fleet/task_status", self._on_status, qos.PROTOCOL)
        sub(RobotState, "/fleet/robot_states", self._on_state, qos.state_qos())
        sub(UInt32, "/sim/contacts/robot_robot",
            lambda m: setattr(self.rec, "contacts_robot_robot", m.data), CONTACTS_QOS)
        sub(UInt32, "/sim/contacts/robot_obstacle",
            lambda m: setattr(self.rec, "contacts_robot_obstacle", m.data), CONTACTS_QOS)
        self.submit_client = self.node.create_client(SubmitTask, "/fleet/submit_task")
        self.TaskStatus = TaskStatus

    def sim_now(self) -> float:
        return self.node.get_clock().now().nanoseconds * 1e-9

    def _on_odom(self, robot, t, x, y, qz, qw, v) -> None:
        self.last_sim = max(self.last_sim, t)
        trace = self.rec.traces[robot]
        if not trace or t - trace[-1][0] >= TRACE_PERIOD_S - 1e-6:
            trace.append((t, x, y, 2.0 * math.atan2(qz, qw)))

    def _on_state(self, m) -> None:
        if m.robot not in self.rec.states:
            return
        self.seen_state.add(m.robot)
        t = m.header.stamp.sec + m.header.stamp.nanosec * 1e-9
        self.rec.states[m.robot].append((t, int(m.mode), m.task_id))

    def _on_status(self, m) -> None:
        t = m.stamp.sec + m.stamp.nanosec * 1e-9
        row = {"task_id": m.task_id, "state": int(m.state), "robot": m.robot, "t": t,
               "round": int(m.round), "reason": m.reason}
        self.rec.statuses.append(row)
        S = self.TaskStatus
        # final: DONE / CANCELLED, or FAILED from the dispatcher (a robot's FAILED sends
        # the task back to auction)
        if m.state in (S.DONE, S.CANCELLED) or (m.state == S.FAILED and not m.robot):
            self.rec.final.setdefault(m.task_id, row)

    def ready(self) -> bool:
        """Every robot parked (holds a resource) and publishing its state."""
        return len(self.seen_state) == len(self.rec.robots) and all(
            self.monitor.holds(r) for r in self.rec.robots)


def run_fleet(spec: DemoSpec, map_path: str, starts: dict[str, tuple[float, float]],
              tasks, progress: Callable[[int, float, float], None] | None = None,
              log: Callable[[str], None] = print) -> Recording:
    """Launch the fleet, submit `tasks` (core Tasks), follow them to the end, shut down.

    `progress(done_or_failed, sim_time, rtf)` is called as the run advances."""
    import rclpy
    from fleet_coord_msgs.msg import Task as TaskMsg
    from fleet_coord_msgs.srv import SubmitTask

    from fleet_coord.launcher import FleetLauncher
    from fleet_coord.node_set import fleet_nodes

    os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"  # network rule: never off-host
    os.makedirs(spec.out, exist_ok=True)
    workdir = tempfile.mkdtemp(prefix="fleet-coord-demo-")
    event_log = os.path.join(spec.out, "events.jsonl")
    fleet_log_path = os.path.join(spec.out, "fleet.log")
    for stale in (event_log, fleet_log_path):
        if os.path.exists(stale):
            os.unlink(stale)
    cfg = fleet_config(spec, map_path, starts, workdir, event_log)
    operator = None
    if cfg.auth.enabled:   # the demo's own keys, in its temporary folder: no manual step
        from fleet_coord.auth import Signer
        from fleet_coord.keys import KeyDir, fleet_identities
        kd = KeyDir(cfg.auth.keys)
        kd.init(fleet_identities(cfg))
        operator = Signer("operator", kd.private_key("operator"))
    recording = os.path.join(spec.out, "fleet.mcap")
    if os.path.exists(recording):
        os.unlink(recording)
    # the recording describes the run, so `fleet-coord report` can rebuild this report
    workload = {"tasks": [{"id": t.id, "kind": t.kind, "stations": list(t.stations)}
                          for t in tasks],
                "mode": spec.mode, "seed": spec.seed, "map": spec.map,
                "rtf": spec.real_time_factor, "agents_per_process": spec.agents_per_process}
    specs = fleet_nodes(cfg, record=recording if spec.record else None,
                        record_metadata={"demo": workload})
    fleet_log = open(fleet_log_path, "w", encoding="utf-8")
    launcher = FleetLauncher(cfg, specs, out=fleet_log, grace_s=5.0,
                             extra_env={"ROS_LOG_DIR": os.path.join(workdir, "ros_log")})
    robots = list(starts)
    n_tasks = len(tasks)
    timeout = spec.timeout_s or math.inf
    ctx = rclpy.Context()
    # a context of our own: rclpy installs no signal handler for it. Ctrl-C / SIGTERM only
    # set a flag that the main loop checks every 20 ms; a KeyboardInterrupt raised inside
    # the executor (in a callback it runs from C++) left it broken and the demo hung
    rclpy.init(context=ctx, args=[])
    interrupted = threading.Event()
    stopped = threading.Event()     # run_fleet has cleaned up

    def watchdog() -> None:
        if stopped.wait(INTERRUPT_GRACE_S):
            return
        print(f"fleet-coord demo: interrupted, but still running after "
              f"{INTERRUPT_GRACE_S:g} s: stopping the fleet and exiting", file=sys.stderr,
              flush=True)
        try:
            launcher.shutdown()
        finally:
            os._exit(130)

    def on_signal(signum, frame) -> None:
        if interrupted.is_set():
            return   # already stopping; the watchdog makes sure it ends
        interrupted.set()
        threading.Thread(target=watchdog, name="demo-interrupt-watchdog", daemon=True).start()
        # last resort, needs no GIL: dump every thread's stack and exit (the fleet's
        # processes die with the demo: the launcher sets PR_SET_PDEATHSIG)
        faulthandler.dump_traceback_later(INTERRUPT_GRACE_S + 15.0, exit=True)

    handlers = {}
    if threading.current_thread() is threading.main_thread():
        handlers = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        # the events executor serves ~1000 odometry messages a wall second with less CPU
        from rclpy.experimental import EventsExecutor
        ex = EventsExecutor(context=ctx)
    except (ImportError, OSError, ValueError):
        # older rclpy; or stderr without a file descriptor (pytest's capture), which the
        # events executor's faulthandler.enable() needs
        ex = rclpy.executors.SingleThreadedExecutor(context=ctx)
    demo = None
    wall0 = time.monotonic()
    try:
        demo = _DemoNode(ctx, robots, map_path)
        ex.add_node(demo.node)
        launcher.start()

        def spin(seconds: float) -> None:
            end = time.monotonic() + seconds
            while True:
                if interrupted.is_set() or not ctx.ok():   # Ctrl-C / SIGTERM
                    raise DemoInterrupted("interrupted: the fleet is shut down")
                ex.spin_once(timeout_sec=0.02)
                if time.monotonic() >= end:
                    return

        def check_children() -> None:
            launcher.poll()
            dead = [c.spec.process_name for c in launcher.children if c.proc is None]
            if dead:
                fleet_log.flush()
                raise DemoError(f"fleet process(es) {', '.join(dead)} exited; see {fleet_log_path}")

        # 1. the fleet comes up: every robot parked and heard (processes start in ~1 s)
        deadline = time.monotonic() + 60.0 + 2.0 * len(robots)
        while not demo.ready():
            check_children()
            if time.monotonic() > deadline:
                missing = [r for r in robots if not demo.monitor.holds(r)
                           or r not in demo.seen_state]
                raise DemoError(f"the fleet did not come up within "
                                f"{deadline - wall0:.0f} s: not ready: {', '.join(missing)}; "
                                f"see {fleet_log_path}")
            spin(0.1)
        if spec.record:
            # the report rebuilt from the recording must see the first auction round too
            recorded = ("/fleet/cfp", "/fleet/proposals", "/fleet/awards", "/fleet/task_status")
            while not all(any(i.node_name == "recorder" for i in
                              demo.node.get_subscriptions_info_by_topic(t)) for t in recorded):
                check_children()
                if time.monotonic() > deadline:
                    raise DemoError(f"the recorder did not subscribe to {', '.join(recorded)}; "
                                    f"see {fleet_log_path}")
                spin(0.1)
        if not demo.submit_client.wait_for_service(timeout_sec=30.0):
            raise DemoError(f"/fleet/submit_task does not answer; see {fleet_log_path}")
        spin(0.5)  # the dispatcher hears every robot's state at 10 Hz of sim time
        rec = demo.rec
        rec.wall_startup_s = time.monotonic() - wall0

        # 2. submit one task every submit_interval_s of sim time
        wall_run0 = time.monotonic()
        rec.t_submit = demo.sim_now()
        pending: dict[str, tuple] = {}   # task id -> (future, request, sent at wall)
        accepted: set[str] = set()
        refused: dict[str, str] = {}
        next_at = rec.t_submit
        queue = list(tasks)
        run_deadline = time.monotonic() + timeout
        last_end = (0, rec.t_submit)          # (tasks ended, sim time it changed)
        last_tick = (rec.t_submit, time.monotonic())   # (sim time, wall when it moved)
        while True:
            now_sim = demo.sim_now()
            wall = time.monotonic()
            if now_sim > last_tick[0]:
                last_tick = (now_sim, wall)
            if queue and now_sim >= next_at:
                task = queue.pop(0)
                req = SubmitTask.Request(task=TaskMsg(
                    id=task.id, kind=task.kind, stations=list(task.stations),
                    requester="fleet-coord demo"))
                if operator is not None:
                    operator.sign(req, "fleet/submit_task")
                pending[task.id] = (demo.submit_client.call_async(req), req, time.monotonic())
                next_at += spec.submit_interval_s
            for tid, (fut, req, sent) in list(pending.items()):
                if fut.done():
                    del pending[tid]
                    resp = fut.result()
                    if resp.accepted:
                        accepted.add(tid)
                    else:
                        refused[tid] = resp.error
                        rec.final[tid] = {"task_id": tid, "state": 6, "robot": "",
                                          "t": demo.sim_now(), "round": 0,
                                          "reason": f"refused: {resp.error}"}
                elif time.monotonic() - sent > 3.0:
                    # a response can be lost before the client's reader is matched;
                    # SubmitTask is idempotent for the same task
                    demo.submit_client.remove_pending_request(fut)
                    if operator is not None:   # a repeated signature would be a replay
                        operator.sign(req, "fleet/submit_task")
                    pending[tid] = (demo.submit_client.call_async(req), req, time.monotonic())
            finished = len(rec.final)
            if progress is not None:
                elapsed = time.monotonic() - wall_run0
                sim = demo.sim_now() - rec.t_submit
                progress(finished, sim, sim / elapsed if elapsed > 0 else 0.0)
            if not queue and not pending and finished >= n_tasks:
                break
            check_children()
            if finished != last_end[0]:
                last_end = (finished, now_sim)
            stop = None
            if wall > run_deadline:
                stop = ("timeout", f"timed out after {timeout:.0f} s (--timeout)")
            elif now_sim - last_end[1] > STALL_SIM_S:
                stop = ("stalled", f"no task ended for {now_sim - last_end[1]:.0f} s of sim "
                                   f"time")
            elif wall - last_tick[1] > FROZEN_WALL_S:
                stop = ("stalled", f"the sim clock stood still for {wall - last_tick[1]:.0f} "
                                   f"s (wall)")
            if stop is not None:
                rec.ended, rec.stop_reason = stop[0], (
                    f"{stop[1]} with {finished}/{n_tasks} tasks ended; see {fleet_log_path}")
                log(f"fleet-coord demo: {rec.stop_reason}; writing a partial report")
                break
            spin(0.05)
        rec.wall_run_s = time.monotonic() - wall_run0
        rec.t_end = max((r["t"] for r in rec.final.values()), default=rec.t_submit)
        sim_span = demo.sim_now() - rec.t_submit
        rec.sim_rtf = sim_span / rec.wall_run_s if rec.wall_run_s > 0 else 0.0
        spin(0.3)  # the last contact counts and odometry
        m = demo.monitor
        rec.conflicts, rec.excursions, rec.monitor_samples = (list(m.conflicts),
                                                              list(m.excursions), m.samples)
        rec.monitor_gaps = m.gaps
        rec.event_log, rec.fleet_log = event_log, fleet_log_path
        return rec
    finally:
        try:
            launcher.shutdown()
        finally:
            if demo is not None:
                ex.remove_node(demo.node)
                demo.node.destroy_node()
            ex.shutdown()
            rclpy.try_shutdown(context=ctx)
            for sig, previous in handlers.items():
                signal.signal(sig, previous if previous is not None else signal.SIG_DFL)
            stopped.set()
            if interrupted.is_set():
                faulthandler.cancel_dump_traceback_later()
            fleet_log.close()
            shutil.rmtree(workdir, ignore_errors=True)
            shutil.rmtree(launcher.rundir, ignore_errors=True)
            if demo is not None:
                demo.rec.wall_total_s = time.monotonic() - wall0


def run_demo(args, roadmap, exclusion, robots: dict[str, int], tasks) -> int:
    """``fleet-coord demo`` (not --dry-run): run, summarise, write the report. Exit 0 when
    every task is done with no collision and no reservation violation, else 1."""
    from tqdm import tqdm

    from fleet_coord import report
    from fleet_coord.cli import CliError
    from fleet_coord.core.event_log import read_log

    spec = DemoSpec(robots=len(robots), tasks=len(tasks), map=args.map, seed=args.seed,
                    mode=args.mode, rtf=args.rtf or 0.0, out=args.out,
                    agents_per_process=args.agents_per_process or 0,
                    timeout_s=args.timeout or 0.0, record=not args.no_record,
                    auth=args.auth, time_model=args.time_model)
    starts = {r: (float(roadmap.pos[v, 0]), float(roadmap.pos[v, 1]))
              for r, v in robots.items()}
    per = spec.agents_per_process or len(robots)
    print(f"demo: {len(robots)} robots, {len(tasks)} pick-and-drop tasks on "
          f"{os.path.relpath(roadmap.grid.path)} (seed {spec.seed}); PyBullet {spec.mode}, "
          f"real-time factor up to {spec.real_time_factor:g} (lock-step with the agents), "
          f"{per} agent(s) per process; fleet output in {os.path.join(spec.out, 'fleet.log')}")
    print("authentication: " + ("on (messages signed and checked; keys provisioned for this "
                                "run, docs/security.md)" if spec.auth != "off" else "off"))
    bar = tqdm(total=len(tasks), unit="task", desc="tasks ended", leave=True,
               bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}{postfix}]")

    def progress(n: int, sim: float, rtf: float) -> None:
        if n != bar.n:
            bar.update(n - bar.n)
        bar.set_postfix_str(f"sim {sim:.0f} s, {rtf:.1f}x", refresh=False)

    try:
        try:
            rec = run_fleet(spec, roadmap.grid.path, starts, tasks, progress,
                            log=lambda line: tqdm.write(line, file=sys.stderr))
        except KeyboardInterrupt:   # Ctrl-C: the fleet was shut down on the way out
            raise DemoInterrupted("interrupted: the fleet is shut down") from None
    except DemoError as e:
        bar.close()
        print(f"fleet-coord demo: {e}", file=sys.stderr)
        return 130 if isinstance(e, DemoInterrupted) else 1
    finally:
        bar.refresh()
    bar.close()
    try:
        events = read_log([rec.event_log]) if os.path.exists(rec.event_log) else []
    except ValueError as e:
        raise CliError(str(e)) from None
    m = report.metrics(rec, tasks, spec, events)
    out = spec.out
    ok, files = write_report(rec, roadmap, tasks, m, out, spec.mode, gif=not args.no_gif)
    files += ["events.jsonl", "fleet.log"] + (["fleet.mcap"] if spec.record else [])
    print(summary(m))
    print(f"report: {out}/ " + ", ".join(files)
          + ("" if rec.ended == "completed" else f" (partial: the run {rec.ended})"))
    return 0 if ok else 1


def write_report(rec: Recording, roadmap, tasks, m: dict, out: str, mode: str, *,
                 gif: bool) -> tuple[bool, list[str]]:
    """metrics.json and the pictures of a run into `out`: (whether it passed, the files)."""
    from fleet_coord import report
    report.write_metrics(m, os.path.join(out, "metrics.json"))
    ok = (rec.ended == "completed" and m["done"] == len(tasks)
          and m["robot_robot_collisions"] == 0 and m["reservation_violations"] == 0)
    title = (f"{m['done']}/{len(tasks)} tasks, makespan {m['makespan_s']:.0f} s, "
             f"{m['robot_robot_collisions']} collisions, {m['reservation_violations']} "
             f"violations ({mode})")
    report.plot_trajectories(rec, roadmap, tasks, os.path.join(out, "trajectories.png"), title)
    report.plot_timeline(rec, os.path.join(out, "timeline.png"), title)
    files = ["metrics.json", "trajectories.png", "timeline.png"]
    if gif:
        frames = report.render_gif(rec, roadmap, tasks, os.path.join(out, "run.gif"))
        files.append(f"run.gif ({frames} frames)")
    return ok, files


def summary(m: dict) -> str:
    reasons = ", ".join(f"{k or '?'} {v}" for k, v in m["refusal_reasons"].items())
    lines = [] if m.get("ended", "completed") == "completed" else [
        f"run STOPPED ({m['ended']}): {m['stop_reason']}"]
    lines += [
        f"tasks: {m['done']}/{m['tasks']} done, {m['failed']} failed"
        + (f" ({m['unfinished']} of them did not end)" if m.get("unfinished") else "")
        + (f" ({', '.join(sorted(m['failed_tasks'])[:5])})" if m["failed"] else ""),
        f"makespan {m['makespan_s']:.1f} s (sim); task time (submit -> done) mean "
        f"{m['mean_task_time_s']:.1f} s, p95 {m['p95_task_time_s']:.1f} s",
        f"auctions: {m['auction_rounds']} rounds, {m['bids']} bids, {m['refusals']} refusals"
        + (f" ({reasons})" if reasons else "") + f", {m['awards']} awards, "
        f"{m['tasks_given_back']} tasks given back",
        f"planning: {m['path_commits']} paths committed, {m['replans']} replans, "
        f"{m['parking_commits']} parking holds",
        f"safety: {m['robot_robot_collisions']} robot-robot collisions (sim contacts), "
        f"{m['robot_obstacle_contacts']} robot-obstacle contacts; reservation violations "
        f"{m['reservation_violations']} ({m['reservation_conflicts']} conflicting holds, "
        f"{m['excursions']} excursions in {m['monitor_samples']} checked poses)",
        f"real-time factor {m['real_time_factor']:.2f} "
        + (f"(cap {m['real_time_factor_cap']:g}); " if m["real_time_factor_cap"]
           else "(virtual clock); ")
        + f"{m['wall_run_s']:.0f} s wall for the run, {m['wall_startup_s']:.0f} s start-up",
    ]
    return "\n".join(lines)

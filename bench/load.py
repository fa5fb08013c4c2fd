"""Load: a fleet of simulated robots under a continuous task stream for minutes. Do memory
and latency stay flat as time goes on?

The fleet is the real one, started as processes by the project's own launcher
(`fleet_coord.launcher.FleetLauncher` on `fleet_coord.node_set.fleet_nodes`, what
`fleet-coord launch` runs): traffic, dispatcher, fleet_monitor (with its causal JSONL event
log), one `ideal_driver` for the whole world, and the robot agents grouped
`--agents-per-process` to a process (`robot_agent --robots ...`: one AgentGroup node per
process). Robots are the demo robot (`fleet_coord.demo.ROBOT_LIMITS`) on the bundled
warehouse map, starting on `--robots` distinct vertices spread over the map (farthest-point
sampling over the cells that are no task station). Discovery is LOCALHOST; run it only
through scripts/isolated.sh, which adds a private network namespace.

The benchmark's own rclpy node (EventsExecutor, in this process) submits one task every
60/`--rate` s through the real `/fleet/submit_task` for `--minutes`: a seeded mix of
`pick_and_drop` (a shelf-facing cell -> a drop cell of the outbound row) and `goto` (to a
shelf-facing cell), then lets the fleet drain for up to `--drain-s`. It listens to
`/fleet/task_status`, `/fleet/robot_states`, `/fleet/robot_lost` and `/traffic/updates`
(sizes of the authority's periodic table snapshots).

Every `--sample-s` it records, per fleet process, RSS (VmRSS of /proc/<pid>/status) and CPU
(utime + stime deltas), the machine's load average and CPU use, tasks submitted / done /
failed, the backlog (accepted, not ended) and the unassigned part of it, and the
latencies of the window. Latencies, all on the host's CLOCK_REALTIME (every fleet process
runs on wall time here):

- **auction**: the submit request sent -> the dispatcher's first AWARDED status for the
  task (its header stamp): queueing in the dispatcher, the cfp, the bid window, the award;
- **cfp -> award**: one Contract Net round as the fleet_monitor's event log saw it (its
  reception times of the round's cfp and award), every round including re-auctions;
- **task time**: submit sent -> the robot's DONE (its stamp);
- **state age**: RobotState header.stamp -> its callback in this process.

At the end it writes `--out`/load.json (every sample, window, task and auction round, the
verdict), `--png` (memory, CPU, backlog and throughput, latencies over time) and prints the
verdict: least-squares slopes over the second half of the stream of each process's RSS
(MB/min) and of the per-window p99 latencies (ms/min), each compared with a stated
threshold relative to its mean. The fleet is then stopped by the launcher (SIGINT, SIGTERM,
SIGKILL), which removes its Fast DDS /dev/shm files; the benchmark checks that no process
of the fleet and none of those files is left.

Run (from the repository root):
  bash scripts/isolated.sh .venv/bin/python bench/load.py                      # 50 robots, 6 min
  bash scripts/isolated.sh .venv/bin/python bench/load.py --robots 10 --minutes 2 --rate 4
"""
from __future__ import annotations

import argparse
import array
import bisect
import json
import math
import os
import platform
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

MB = 1024.0 * 1024.0
#: Verdict thresholds: a slope above these fractions of the quantity's mean per minute is
#: growth. RSS: 0.2 %/min is 12 %/h. Latency p99s and the backlog are noisy on a shared
#: machine, hence wider bands.
RSS_TOL_PER_MIN = 0.002
LATENCY_TOL_PER_MIN = 0.02
BACKLOG_TOL_OF_RATE = 0.05     # backlog slope (tasks/min) allowed, as a share of --rate


# ------------------------------------------------------------------------------- stats

def pct(xs: list[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100); None for no data."""
    if not xs:
        return None
    s = sorted(xs)
    k = max(0, min(len(s) - 1, int(math.ceil(q / 100.0 * len(s))) - 1))
    return s[k]


def dist(xs: list[float]) -> dict:
    if not xs:
        return {"n": 0, "p50": None, "p99": None, "max": None}
    return {"n": len(xs), "p50": pct(xs, 50), "p99": pct(xs, 99), "max": max(xs)}


def regress(ts: list[float], ys: list[float]) -> dict | None:
    """Least-squares line y = a + b t: slope b, its standard error, mean of y."""
    pts = [(t, y) for t, y in zip(ts, ys) if y is not None and math.isfinite(y)]
    if len(pts) < 3:
        return None
    n = len(pts)
    mt = sum(t for t, _ in pts) / n
    my = sum(y for _, y in pts) / n
    sxx = sum((t - mt) ** 2 for t, _ in pts)
    if sxx <= 0:
        return None
    b = sum((t - mt) * (y - my) for t, y in pts) / sxx
    a = my - b * mt
    resid = sum((y - a - b * t) ** 2 for t, y in pts)
    se = math.sqrt(resid / (n - 2) / sxx) if n > 2 else float("nan")
    return {"slope": b, "se": se, "mean": my, "n": n}


def verdict(fit: dict | None, tol_abs: float) -> str:
    """'flat' or 'GROWS' for a slope against an absolute threshold (same units)."""
    if fit is None:
        return "n/a (too few points)"
    b, se = fit["slope"], fit["se"]
    if b > tol_abs:
        return "GROWS" + (" (within noise: slope < 2 SE)" if b < 2 * se else "")
    return "flat" + (f" (noisy: 2 SE = {2 * se:.3g} > threshold)" if 2 * se > tol_abs else "")


# ------------------------------------------------------------------------ the workload

def stations(roadmap) -> tuple[list[str], list[str]]:
    """(picks, drops) as station names. Picks: free cells beside an inner shelf cell (the
    outer wall does not count). Drops: every other cell of the second-lowest open row."""
    free = roadmap.grid.free
    h, w = free.shape
    picks = []
    for y in range(1, h - 1):
        for x in range(1, w - 1):
            if not free[y, x]:
                continue
            for dx, dy in ((1, 0), (-1, 0), (0, 1), (0, -1)):
                nx, ny = x + dx, y + dy
                if 0 < nx < w - 1 and 0 < ny < h - 1 and not free[ny, nx]:
                    picks.append((x, y))
                    break
    open_rows = [y for y in range(h - 2, 0, -1) if free[y, 1:w - 1].all()]
    drop_row = open_rows[1]
    drops = [(x, drop_row) for x in range(2, w - 1, 2) if free[drop_row, x]]
    name = lambda xy: roadmap.names[roadmap.vertex_at(*xy)]  # noqa: E731
    return [name(p) for p in picks], [name(d) for d in drops]


def spread_starts(roadmap, n: int, avoid: set[str]) -> list[tuple[int, int]]:
    """`n` distinct free cells spread over the map: farthest-point sampling (Euclidean)
    over the vertices that are not in `avoid`, from the one nearest the map's centre."""
    cells = [(int(x), int(y)) for (x, y), nm in zip(roadmap.pos.tolist(), roadmap.names)
             if nm not in avoid]
    if len(cells) < n:
        raise SystemExit(f"the map has only {len(cells)} free non-station cells, need {n}")
    h, w = roadmap.grid.free.shape
    cx, cy = w / 2.0, h / 2.0
    chosen = [min(cells, key=lambda c: ((c[0] - cx) ** 2 + (c[1] - cy) ** 2, c))]
    d = {c: (c[0] - chosen[0][0]) ** 2 + (c[1] - chosen[0][1]) ** 2 for c in cells}
    while len(chosen) < n:
        nxt = max(cells, key=lambda c: (d[c], -c[1], -c[0]))
        chosen.append(nxt)
        for c in cells:
            d[c] = min(d[c], (c[0] - nxt[0]) ** 2 + (c[1] - nxt[1]) ** 2)
    return chosen


def make_task(rng: random.Random, i: int, picks: list[str], drops: list[str],
              goto_share: float) -> tuple[str, str, list[str]]:
    tid = f"L{i:05d}"
    if rng.random() < goto_share:
        return tid, "goto", [rng.choice(picks)]
    return tid, "pick_and_drop", [rng.choice(picks), rng.choice(drops)]


def write_config(path: str, workdir: str, out: str, starts, args) -> str:
    """The fleet config (docs/fleet-config.md) of the load run, loaded back by
    load_fleet_config so it is validated like any other."""
    from fleet_coord.demo import ROBOT_LIMITS, TURN_MARGIN_S
    from fleet_coord.fleet_config import DEFAULT_MAP

    lim = ROBOT_LIMITS
    robots = "\n".join(
        f"  - {{name: robot_{i + 1}, start: [{x}, {y}, 0.0], max_speed: {lim['max_v']}, "
        f"max_angular_speed: {lim['max_w']}}}" for i, (x, y) in enumerate(starts))
    acc = f"max_acc: {lim['max_acc']}, max_alpha: {lim['max_alpha']}"
    agent = f"{acc}, turn_margin: {TURN_MARGIN_S}"
    if args.bid_objective:
        agent += f", bid_objective: {args.bid_objective}"
    text = f"""\
# Written by bench/load.py for one run.
fleet:
  map: {DEFAULT_MAP}
  footprint_radius: 0.15
  discovery_range: LOCALHOST
  use_sim_time: false
  backend: ideal
  agents_per_process: {args.agents_per_process}
  restart: never
  ledger: {os.path.join(workdir, 'ledger.sqlite')}
  event_log: {os.path.join(os.path.abspath(out), 'events.jsonl')}
robots:
{robots}
nodes:
  robot_agent: {{{agent}}}
  ideal_driver: {{{acc}, rate_hz: {args.odom_rate}}}
  traffic: {{lost_after: 1.5}}
  dispatcher: {{bid_window: 0.3}}
  fleet_monitor: {{}}
"""
    with open(path, "w") as f:
        f.write(text)
    return text


# --------------------------------------------------------------------- /proc sampling

_TICK = os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024 / MB
    except OSError:
        return None
    return None


def cpu_s(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / _TICK
    except (OSError, IndexError, ValueError):
        return None


def machine_cpu() -> tuple[float, float]:
    """(busy, total) jiffies of the whole machine."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    idle = v[3] + (v[4] if len(v) > 4 else 0)
    return float(sum(v) - idle), float(sum(v))


def loadavg() -> list[float]:
    with open("/proc/loadavg") as f:
        return [float(x) for x in f.read().split()[:3]]


# ------------------------------------------------------------------- the bench's node

@dataclass
class TaskRec:
    id: str
    kind: str
    stations: list[str]
    sent: float                    # wall time the first submit request was sent
    accepted: float | None = None
    refused: str = ""
    awarded: float | None = None   # stamp of the dispatcher's first AWARDED
    robot: str = ""
    active: float | None = None
    done: float | None = None      # stamp of the robot's DONE
    failed: float | None = None    # stamp of the dispatcher's final FAILED
    reason: str = ""
    handbacks: int = 0             # a robot's FAILED (the task goes back to auction)
    awards: int = 0
    last_state: int = 0

    @property
    def ended(self) -> bool:
        return self.done is not None or self.failed is not None


class BenchNode:
    """Submits the task stream and records what the fleet says. Built lazily (rclpy)."""

    def __init__(self, ctx, robots: list[str]) -> None:
        from fleet_coord_msgs.msg import ReservationSet, RobotNotice, RobotState, TaskStatus
        from fleet_coord_msgs.srv import SubmitTask
        from rclpy.node import Node

        from fleet_coord import qos

        self.S = TaskStatus
        self.node = Node("load_bench", context=ctx)
        self.robots = set(robots)
        self.tasks: dict[str, TaskRec] = {}
        # (received, age s) of every RobotState, in two flat arrays: 500 a second
        self.state_recv = array.array("d")
        self.state_age = array.array("d")
        self.seen_state: set[str] = set()
        self.last_state: dict[str, float] = {}
        self.state_gaps: list[tuple[float, str, float]] = []  # (received, robot, gap s) > 1 s
        self.lost: list[tuple[float, str]] = []
        self.snapshots: list[tuple[float, int, int, int]] = []  # (t, version, n, n past)
        self.holders: set[str] = set()
        self.unknown_status: int = 0
        sub = self.node.create_subscription
        sub(TaskStatus, "/fleet/task_status", self._on_status, qos.PROTOCOL)
        sub(RobotState, "/fleet/robot_states", self._on_state, qos.state_qos())
        sub(RobotNotice, "/fleet/robot_lost", lambda m: self.lost.append((time.time(), m.robot)),
            qos.PROTOCOL)
        sub(ReservationSet, "/traffic/updates", self._on_table, qos.TABLE)
        self.submit_client = self.node.create_client(SubmitTask, "/fleet/submit_task")
        self.SubmitTask = SubmitTask

    def _on_state(self, m) -> None:
        now = time.time()
        stamp = m.header.stamp.sec + m.header.stamp.nanosec * 1e-9
        self.state_recv.append(now)
        self.state_age.append(now - stamp)
        self.seen_state.add(m.robot)
        prev = self.last_state.get(m.robot)
        if prev is not None and now - prev > 1.0:
            self.state_gaps.append((now, m.robot, now - prev))
        self.last_state[m.robot] = now

    def ages_between(self, a: float, b: float) -> list[float]:
        i = bisect.bisect_right(self.state_recv, a)
        j = bisect.bisect_right(self.state_recv, b)
        return self.state_age[i:j].tolist()

    def _on_table(self, m) -> None:
        if not m.is_snapshot:
            return
        now = time.time()
        past = sum(1 for s in m.added if s.t_end <= now)
        self.snapshots.append((now, int(m.version), len(m.added), past))
        self.holders = {s.robot for s in m.added}

    def _on_status(self, m) -> None:
        rec = self.tasks.get(m.task_id)
        if rec is None:
            self.unknown_status += 1
            return
        S = self.S
        stamp = m.stamp.sec + m.stamp.nanosec * 1e-9
        if m.state == S.AWARDED:
            rec.awards += 1
            if rec.awarded is None:
                rec.awarded = stamp
            rec.robot = m.robot
        elif m.state == S.ACTIVE and rec.active is None:
            rec.active = stamp
        elif m.state == S.DONE and rec.done is None:
            rec.done, rec.robot = stamp, m.robot
        elif m.state == S.FAILED:
            if m.robot:
                rec.handbacks += 1
            elif rec.failed is None:
                rec.failed, rec.reason = stamp, m.reason
        if not rec.ended:
            rec.last_state = int(m.state)

    def ready(self) -> bool:
        """Every robot heard and parked (in the authority's table snapshot), the dispatcher up."""
        return (self.seen_state >= self.robots and self.holders >= self.robots
                and self.submit_client.service_is_ready())

    def submit(self, tid: str, kind: str, st: list[str]):
        from fleet_coord_msgs.msg import Task as TaskMsg
        req = self.SubmitTask.Request(task=TaskMsg(id=tid, kind=kind, stations=st,
                                                   requester="bench/load.py"))
        return req, self.submit_client.call_async(req)


# ------------------------------------------------------------------- the event log

def auction_rounds(path: str) -> list[dict]:
    """Per (task, round) from the fleet_monitor's event log: cfp and award reception times
    and how many answers (proposals + refusals) the monitor heard before / after the award."""
    from fleet_coord.core.event_log import read_log
    if not os.path.exists(path):
        return []
    rounds: dict[tuple[str, int], dict] = {}
    for ev in read_log([path]):
        kind = ev["event"]
        if kind not in ("cfp", "award", "proposal", "refusal"):
            continue
        key = (ev.get("task_id", ""), int(ev.get("round", 0)))
        r = rounds.setdefault(key, {"task_id": key[0], "round": key[1], "cfp": None,
                                    "award": None, "answers": []})
        if kind == "cfp":
            r["cfp"] = ev["t"] if r["cfp"] is None else min(r["cfp"], ev["t"])
        elif kind == "award":
            r["award"], r["robot"] = ev["t"], ev.get("robot", "")
        else:
            r["answers"].append(ev["t"])
    out = []
    for r in rounds.values():
        answers = r.pop("answers")
        if r["cfp"] is not None and r["award"] is not None:
            r["latency_s"] = r["award"] - r["cfp"]
            r["answers_before_award"] = sum(1 for t in answers if t <= r["award"])
        r["answers"] = len(answers)
        out.append(r)
    return sorted(out, key=lambda r: (r["cfp"] or 0.0))


# -------------------------------------------------------------------- fleet log scan

_LEVEL = re.compile(r"\[(WARN|ERROR|FATAL)\]")
_NUM = re.compile(r"\d+(\.\d+)?")


def scan_log(path: str, top: int = 25) -> dict:
    """WARN/ERROR lines of the fleet's output, by level and by message pattern (digits
    folded), plus tracebacks and exits the launcher reported."""
    levels: Counter = Counter()
    patterns: Counter = Counter()
    first: dict[str, str] = {}
    tracebacks = 0
    launch = []
    try:
        f = open(path, encoding="utf-8", errors="replace")
    except OSError:
        return {}
    with f:
        for line in f:
            if "Traceback (most recent call last)" in line:
                tracebacks += 1
            if line.startswith("[launch"):
                launch.append(line.rstrip())
            m = _LEVEL.search(line)
            if not m:
                continue
            levels[m.group(1)] += 1
            proc = line[1:line.find("]")].strip() if line.startswith("[") else ""
            msg = line.split("]: ", 1)[1] if "]: " in line else line
            key = f"{proc} {m.group(1)}: " + _NUM.sub("#", msg.strip())[:160]
            patterns[key] += 1
            first.setdefault(key, line.rstrip()[:400])
    return {"levels": dict(levels), "tracebacks": tracebacks, "launch": launch[-20:],
            "patterns": [{"count": c, "pattern": k, "example": first[k]}
                         for k, c in patterns.most_common(top)]}


# ----------------------------------------------------------------------------- plot

def plot(result: dict, path: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    samples, windows = result["samples"], result["windows"]
    stream_min = result["stream_s"] / 60.0
    t = [s["t"] / 60.0 for s in samples]
    fig, ax = plt.subplots(2, 3, figsize=(13, 7.4), dpi=72)
    colors = dict(zip(result["processes"], plt.get_cmap("tab10").colors))
    styles = {n: ("--" if i % 2 else "-") for i, n in enumerate(result["processes"])}
    a = ax[0][0]
    for name in result["processes"]:
        a.plot(t, [s["rss_mb"].get(name) for s in samples], styles[name], label=name, lw=1.3,
               color=colors[name])
    a.set_title("RSS per process (MB)")
    a.legend(fontsize=7, ncol=2)
    a = ax[0][1]
    for name in result["processes"]:
        a.plot(t, [s["cpu"].get(name) for s in samples], styles[name], label=name, lw=1.0,
               color=colors[name])
    a.plot(t, [s["machine_busy_cores"] for s in samples], "k:", lw=1.2,
           label="whole machine (busy)")
    a.set_ylim(0, os.cpu_count() or 2)
    a.set_title("CPU (cores) per process; load average (right)")
    a.legend(fontsize=6, ncol=2, loc="upper left")
    b = a.twinx()
    b.plot(t, [s["load1"] for s in samples], color="gray", lw=0.8, ls="-.")
    b.set_ylim(0, max(1.0, max((s["load1"] for s in samples), default=1.0)) * 1.1)
    b.tick_params(labelsize=7, colors="gray")
    a = ax[0][2]
    a.plot(t, [s["backlog"] for s in samples], label="backlog (accepted, not ended)")
    a.plot(t, [s["unassigned"] for s in samples], label="not yet awarded")
    wt = [(w["t0"] + w["t1"]) / 120.0 for w in windows]
    a.plot(wt, [w["done_per_min"] for w in windows], "o-", ms=3, label="done / min")
    a.axhline(result["args"]["rate"], color="gray", lw=0.8, ls=":", label="submitted / min")
    lost = [x["t"] / 60.0 for x in result["totals"]["lost"]]
    if lost:
        a.plot(lost, [0.5] * len(lost), "rx", ms=5, label=f"robot declared lost ({len(lost)})")
    a.set_title("backlog (tasks) and throughput")
    a.legend(fontsize=7)

    def lat(a, key, title, scale, unit, log=True):
        for q, style in (("p50", "o-"), ("p99", "s--")):
            a.plot(wt, [(w[key][q] * scale if w[key][q] is not None else None)
                        for w in windows], style, ms=3, label=q)
        a.set_title(f"{title} ({unit}), {result['args']['window_s']:g} s windows", fontsize=10)
        if log:
            a.set_yscale("log")
        a.legend(fontsize=7)
    lat(ax[1][0], "auction", "auction: submit -> AWARDED", 1e3, "ms")
    ax[1][0].plot(wt, [(w["cfp_award"]["p99"] * 1e3 if w["cfp_award"]["p99"] is not None
                        else None) for w in windows], "^:", ms=3, label="cfp -> award p99")
    ax[1][0].legend(fontsize=7)
    lat(ax[1][1], "state_age", "fleet-state age", 1e3, "ms")
    lat(ax[1][2], "task_time", "task time: submit -> DONE", 1.0, "s", log=False)
    for row in ax:
        for a in row:
            a.axvline(stream_min / 2, color="gray", lw=0.6, ls=":")
            a.axvline(stream_min, color="gray", lw=0.6)
            a.set_xlabel("minutes since the first task (dotted: second half starts; "
                         "solid: stream ends)", fontsize=6)
            a.tick_params(labelsize=7)
    v = result["verdict"]
    fig.suptitle(f"bench/load.py: {result['args']['robots']} robots, "
                 f"{result['args']['rate']:g} tasks/min for {result['args']['minutes']:g} min, "
                 f"load average {result['load_mean']:.1f} on {os.cpu_count()} CPUs\n"
                 f"memory: {v['memory']} | latency: {v['latency']} | backlog: {v['backlog']}",
                 fontsize=9)
    fig.tight_layout()
    tmp = path + ".tmp.png"
    fig.savefig(tmp)
    plt.close(fig)
    try:   # a palette PNG: a fraction of the size, same picture for line plots
        from PIL import Image
        Image.open(tmp).convert("RGB").quantize(colors=128, method=Image.Quantize.MEDIANCUT) \
            .save(path, optimize=True)
        os.unlink(tmp)
    except Exception:  # noqa: BLE001 - PIL missing or failing: keep matplotlib's PNG
        os.replace(tmp, path)


# ----------------------------------------------------------------------------- main

def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--robots", type=int, default=50)
    ap.add_argument("--minutes", type=float, default=6.0, help="length of the task stream")
    ap.add_argument("--rate", type=float, default=6.0, help="tasks per minute (default 6)")
    ap.add_argument("--sample-s", type=float, default=10.0)
    ap.add_argument("--window-s", type=float, default=30.0,
                    help="latency windows (p50/p99 per window; default 30 s)")
    ap.add_argument("--drain-s", type=float, default=300.0,
                    help="after the stream, wait up to this long for open tasks to end "
                         "(default 300 s: a pick-and-drop across the map takes 2-4 min)")
    ap.add_argument("--agents-per-process", type=int, default=25)
    ap.add_argument("--goto-share", type=float, default=0.2)
    ap.add_argument("--bid-objective", choices=("travel", "completion"), default=None,
                    help="robot_agent bid_objective (default: the node's, travel)")
    ap.add_argument("--odom-rate", type=float, default=20.0,
                    help="ideal_driver rate_hz: odometry per robot per second (default 20, "
                         "the agents' control rate)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--tracemalloc", type=float, default=0.0, metavar="S",
                    help="trace Python allocations in every fleet process and write the "
                         "sites that grew most to <out>/tracemalloc/ every S s "
                         "(fleet_coord.memtrace; costs CPU, so not for latency numbers)")
    ap.add_argument("--tracemalloc-only", default="", metavar="NODES",
                    help="with --tracemalloc: only the processes whose (first) node has one "
                         "of these comma-separated names, e.g. traffic")
    ap.add_argument("--out", default=os.path.join(REPO, "reports", "load"))
    ap.add_argument("--png", default=None, help="default: <out>/load.png")
    a = ap.parse_args(argv)
    if a.robots < 1 or a.rate <= 0 or a.minutes <= 0 or a.sample_s <= 0:
        ap.error("--robots, --rate, --minutes and --sample-s must be > 0")
    if a.tracemalloc < 0:
        ap.error("--tracemalloc must be >= 0 s (0: off)")
    return a


def main(argv=None) -> int:
    args = parse_args(argv)
    if os.environ.get("ROS_AUTOMATIC_DISCOVERY_RANGE") != "LOCALHOST":
        print("bench/load.py: run it through scripts/isolated.sh (ROS_AUTOMATIC_DISCOVERY_RANGE "
              "must be LOCALHOST)", file=sys.stderr)
        return 2
    import rclpy
    from rclpy.signals import SignalHandlerOptions

    from fleet_coord.fleet_config import load_fleet_config, load_roadmap
    from fleet_coord.launcher import FleetLauncher, clean_shm, mapped_shm, shm_files
    from fleet_coord.node_set import fleet_nodes

    out = os.path.abspath(args.out)
    os.makedirs(out, exist_ok=True)
    png = os.path.abspath(args.png or os.path.join(out, "load.png"))
    for stale in ("events.jsonl", "fleet.log"):
        if os.path.exists(os.path.join(out, stale)):
            os.unlink(os.path.join(out, stale))
    git_at_start = _git()   # the fleet's processes load the tree as it is now
    workdir = tempfile.mkdtemp(prefix="fleet-coord-load-")
    roadmap = load_roadmap("")
    picks, drops = stations(roadmap)
    starts = spread_starts(roadmap, args.robots, set(picks) | set(drops))
    cfg_path = os.path.join(out, "fleet.yaml")
    write_config(cfg_path, workdir, out, starts, args)
    cfg = load_fleet_config(cfg_path)
    specs = fleet_nodes(cfg)
    robots = [r.name for r in cfg.robots]
    fleet_log_path = os.path.join(out, "fleet.log")
    fleet_log = open(fleet_log_path, "w", encoding="utf-8")
    shm_before = shm_files()
    extra_env = {"ROS_LOG_DIR": os.path.join(workdir, "ros_log")}
    if args.tracemalloc > 0:
        from fleet_coord import memtrace
        extra_env[memtrace.ENV] = os.path.join(out, "tracemalloc")
        extra_env[memtrace.ENV_PERIOD] = str(args.tracemalloc)
        extra_env[memtrace.ENV_ONLY] = args.tracemalloc_only
    launcher = FleetLauncher(cfg, specs, out=fleet_log, grace_s=5.0, extra_env=extra_env)
    rng = random.Random(args.seed)
    interval = 60.0 / args.rate
    n_tasks = int(round(args.minutes * args.rate))
    stream_s = args.minutes * 60.0
    print(f"load: {args.robots} robots ({args.agents_per_process} agents per process, "
          f"{len(specs)} processes) on {os.path.relpath(cfg.map, REPO)}, backend ideal; "
          f"{n_tasks} tasks at {args.rate:g}/min for {args.minutes:g} min (seed {args.seed}); "
          f"{len(picks)} pick and {len(drops)} drop stations; output in {out}", flush=True)

    stop = {"flag": False}

    def on_signal(*_a):
        stop["flag"] = True
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)

    ctx = rclpy.Context()
    rclpy.init(context=ctx, args=[], signal_handler_options=SignalHandlerOptions.NO)
    from rclpy.experimental import EventsExecutor
    ex = EventsExecutor(context=ctx)
    bench = BenchNode(ctx, robots)
    ex.add_node(bench.node)

    def spin_for(seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            ex.spin_once(timeout_sec=min(0.02, max(0.0, end - time.monotonic())))

    samples: list[dict] = []
    result: dict = {}
    dead: dict[str, int] = {}
    used_shm: set[str] = set()
    wall0 = time.time()
    t0 = None
    try:
        launcher.start()
        deadline = time.monotonic() + 60.0 + 2.0 * args.robots
        while not bench.ready():
            launcher.poll()
            gone = [c.spec.process_name for c in launcher.children if c.proc is None]
            if gone or stop["flag"] or time.monotonic() > deadline:
                missing = sorted(set(robots) - bench.holders)[:10]
                raise SystemExit(f"the fleet did not come up (exited: {gone or 'none'}; not "
                                 f"parked: {missing or 'none'}); see {fleet_log_path}")
            spin_for(0.1)
        startup_s = time.time() - wall0
        print(f"fleet up in {startup_s:.1f} s: every robot parked and heard", flush=True)
        spin_for(1.0)

        names = [c.spec.process_name for c in launcher.children] + ["bench"]
        pids = {c.spec.process_name: c.proc.pid for c in launcher.children}
        pids["bench"] = os.getpid()
        prev_cpu = {n: cpu_s(p) for n, p in pids.items()}
        prev_machine = machine_cpu()
        prev_t = time.time()
        t0 = prev_t
        pending: dict[str, tuple] = {}
        submitted = 0
        next_sample = t0 + args.sample_s
        end_stream = t0 + stream_s
        drain_until = end_stream + args.drain_s
        state_i = 0

        def take_sample(now: float) -> dict:
            nonlocal prev_cpu, prev_machine, prev_t, state_i
            dt = now - prev_t
            launcher.poll()
            for c in launcher.children:
                if c.proc is None or c.proc.poll() is not None:
                    if c.spec.process_name not in dead:
                        dead[c.spec.process_name] = c.exit_codes[-1] if c.exit_codes else (
                            c.proc.returncode if c.proc else -1)
            rss = {n: rss_mb(p) for n, p in pids.items()}
            cpu_now = {n: cpu_s(p) for n, p in pids.items()}
            cpu = {n: ((cpu_now[n] - prev_cpu[n]) / dt if cpu_now[n] is not None
                       and prev_cpu.get(n) is not None and dt > 0 else None) for n in pids}
            busy, total = machine_cpu()
            mbusy = ((busy - prev_machine[0]) / (total - prev_machine[1]) * os.cpu_count()
                     if total > prev_machine[1] else None)
            prev_cpu, prev_machine = cpu_now, (busy, total)
            n_states = len(bench.state_recv)
            ages = bench.state_age[state_i:n_states].tolist()
            state_i = n_states
            recs = list(bench.tasks.values())
            acc = [r for r in recs if r.accepted is not None]
            win = lambda x: x is not None and prev_t < x <= now  # noqa: E731
            snap = bench.snapshots[-1] if bench.snapshots else (0, 0, 0, 0)
            s = {
                "t": now - t0, "dt": dt, "rss_mb": rss, "cpu": cpu,
                "load1": loadavg()[0], "machine_busy_cores": mbusy,
                "submitted": len(recs), "accepted": len(acc),
                "refused": sum(1 for r in recs if r.refused),
                "done": sum(1 for r in recs if r.done is not None),
                "failed": sum(1 for r in recs if r.failed is not None),
                "handbacks": sum(r.handbacks for r in recs),
                "backlog": sum(1 for r in acc if not r.ended),
                "unassigned": sum(1 for r in acc if not r.ended and r.awarded is None),
                "lost_declarations": len(bench.lost),
                "table_snapshot": {"version": snap[1], "reservations": snap[2],
                                   "ended": snap[3]},
                "state_age_s": dist(ages),
                "auction_s": dist([r.awarded - r.sent for r in recs if win(r.awarded)]),
                "task_time_s": dist([r.done - r.sent for r in recs if win(r.done)]),
            }
            prev_t = now
            return s

        def progress(s: dict) -> None:
            fleet_rss = sum(v for k, v in s["rss_mb"].items() if k != "bench" and v)
            fleet_cpu = sum(v for k, v in s["cpu"].items() if k != "bench" and v)
            f = lambda d, sc=1e3: "-" if d["p99"] is None else f"{d['p99'] * sc:.0f}"  # noqa: E731
            print(f"[{s['t'] / 60:5.2f} min] submitted {s['submitted']:4d} done {s['done']:4d} "
                  f"failed {s['failed']} backlog {s['backlog']:3d} (unassigned "
                  f"{s['unassigned']}) | RSS fleet {fleet_rss:6.0f} MB | CPU fleet "
                  f"{fleet_cpu:4.2f} cores | p99 auction {f(s['auction_s'])} ms, state age "
                  f"{f(s['state_age_s'])} ms, task {f(s['task_time_s'], 1)} s | table "
                  f"{s['table_snapshot']['reservations']} | lost {s['lost_declarations']} | "
                  f"load {s['load1']:.1f}", flush=True)

        while not stop["flag"]:
            now = time.time()
            if submitted < n_tasks and now >= t0 + submitted * interval:
                tid, kind, st = make_task(rng, submitted, picks, drops, args.goto_share)
                req, fut = bench.submit(tid, kind, st)
                bench.tasks[tid] = TaskRec(tid, kind, st, sent=now)
                pending[tid] = (fut, req, now)
                submitted += 1
            for tid, (fut, req, sent) in list(pending.items()):
                if fut.done():
                    del pending[tid]
                    resp = fut.result()
                    if resp.accepted:
                        bench.tasks[tid].accepted = time.time()
                    else:
                        bench.tasks[tid].refused = resp.error or "refused"
                elif time.time() - sent > 5.0:
                    # a response can be lost before the client's reader is matched;
                    # SubmitTask is idempotent for the same task
                    bench.submit_client.remove_pending_request(fut)
                    pending[tid] = (bench.submit_client.call_async(req), req, time.time())
            if now >= next_sample:
                s = take_sample(now)
                samples.append(s)
                progress(s)
                used_shm |= mapped_shm(launcher.pids().values())
                next_sample += args.sample_s
            if submitted >= n_tasks and not pending:
                open_ = [r for r in bench.tasks.values() if not r.ended and not r.refused]
                if now >= end_stream and (not open_ or now >= drain_until):
                    break
            if len(dead) == len(launcher.children):
                print("every fleet process exited; stopping", flush=True)
                break
            spin_for(0.02)
        if stop["flag"]:
            print("interrupted: analysing what was recorded", flush=True)
        t_end = time.time()
        spin_for(0.2)
        events_path = os.path.join(out, "events.jsonl")
        result = analyse(args, bench, samples, t0, t_end, stream_s, names, events_path)
        result.update(startup_s=startup_s, dead_processes=dead, n_tasks_planned=n_tasks,
                      starts=[list(c) for c in starts], config=cfg_path,
                      pids=pids, stations={"picks": len(picks), "drops": len(drops)})
        result["machine"]["git_at_start"] = git_at_start
    finally:
        used_shm |= mapped_shm(launcher.pids().values())
        launcher.shutdown()
        left = [c.proc.pid for c in launcher.children
                if c.proc is not None and c.proc.poll() is None]
        ex.remove_node(bench.node)
        bench.node.destroy_node()
        ex.shutdown()
        rclpy.try_shutdown(context=ctx)
        clean_shm(shm_before, used_shm | mapped_shm([os.getpid()]))
        fleet_log.close()
        strays = leftover_processes(launcher.rundir)
        shm_left = sorted(n for n in used_shm if ("fastdds" in n or "fastrtps" in n)
                          and os.path.exists(os.path.join("/dev/shm", n)))
        shutil.rmtree(workdir, ignore_errors=True)
        shutil.rmtree(launcher.rundir, ignore_errors=True)
        print(f"shutdown: {len(launcher.children)} fleet processes stopped; left running: "
              f"{(left + strays) or 'none'}; Fast DDS /dev/shm files of the run left: "
              f"{shm_left or 'none'}", flush=True)
    result["shutdown"] = {"left_running": left + strays, "shm_left": shm_left}
    result["fleet_log"] = scan_log(fleet_log_path)
    result["wall_total_s"] = time.time() - wall0
    plot(result, png)
    with open(os.path.join(out, "load.json"), "w") as f:
        json.dump(result, f, indent=1, default=str)
    report(result, png, out)
    return 0


def leftover_processes(rundir: str) -> list[int]:
    """Live processes started with a params file from the launcher's run folder."""
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if rundir.encode() in f.read():
                    found.append(int(pid))
        except OSError:
            pass
    return found


# ------------------------------------------------------------------------- analysis

def analyse(args, bench: BenchNode, samples: list[dict], t0: float, t_end: float,
            stream_s: float, names: list[str], events_path: str) -> dict:
    recs = list(bench.tasks.values())
    rounds = auction_rounds(events_path)
    span = max(t_end - t0, stream_s)
    windows = []
    w0 = 0.0
    while w0 < span - 1e-6:
        w1 = min(w0 + args.window_s, span)
        a, b = t0 + w0, t0 + w1
        inw = lambda x: x is not None and a < x <= b  # noqa: E731, B023 (used in this iteration)
        done = [r for r in recs if inw(r.done)]
        windows.append({
            "t0": w0, "t1": w1, "in_stream": w1 <= stream_s + 1e-6,
            "submitted": sum(1 for r in recs if inw(r.sent)),
            "done": len(done), "failed": sum(1 for r in recs if inw(r.failed)),
            "done_per_min": len(done) / (w1 - w0) * 60.0,
            "auction": dist([r.awarded - r.sent for r in recs if inw(r.awarded)]),
            "cfp_award": dist([r["latency_s"] for r in rounds
                               if "latency_s" in r and inw(r["award"])]),
            "task_time": dist([r.done - r.sent for r in done]),
            "state_age": dist(bench.ages_between(a, b)),
        })
        w0 = w1
    half = stream_s / 2.0
    second = [s for s in samples if half <= s["t"] <= stream_s + 1e-6]
    first_s = samples[0] if samples else None
    last_s = max((s for s in samples if s["t"] <= stream_s + 1e-6), key=lambda s: s["t"],
                 default=None)
    # the traffic authority's table, from its snapshots: the past is never dropped
    tfit = regress([s["t"] / 60.0 for s in second],
                   [s["table_snapshot"]["reservations"] for s in second])
    procs = {}
    for n in names:
        fit = regress([s["t"] / 60.0 for s in second], [s["rss_mb"].get(n) for s in second])
        cfit = regress([s["t"] / 60.0 for s in second], [s["cpu"].get(n) for s in second])
        procs[n] = {
            "rss_start_mb": first_s["rss_mb"].get(n) if first_s else None,
            "rss_end_mb": last_s["rss_mb"].get(n) if last_s else None,
            "rss_fit_second_half": fit,
            "rss_tol_mb_per_min": fit["mean"] * RSS_TOL_PER_MIN if fit else None,
            "rss_verdict": verdict(fit, fit["mean"] * RSS_TOL_PER_MIN) if fit else "n/a",
            "cpu_first_min": _mean([s["cpu"].get(n) for s in samples if s["t"] <= 60.0]),
            "cpu_last_min": _mean([s["cpu"].get(n) for s in samples
                                   if stream_s - 60.0 < s["t"] <= stream_s + 1e-6]),
            "cpu_fit_second_half": cfit,
            # RSS growth per reservation the table gained (second half)
            "kb_per_table_reservation": (fit["slope"] * 1024.0 / tfit["slope"]
                                         if fit and tfit and tfit["slope"] > 0 else None),
        }
    wsec = [w for w in windows if w["in_stream"] and w["t0"] >= half - 1e-6]
    lat = {}
    for key in ("auction", "cfp_award", "task_time", "state_age"):
        for q in ("p50", "p99"):
            fit = regress([(w["t0"] + w["t1"]) / 120.0 for w in wsec],
                          [(w[key][q] * 1e3 if w[key][q] is not None else None) for w in wsec])
            tol = fit["mean"] * LATENCY_TOL_PER_MIN if fit else None
            lat[f"{key}_{q}"] = {"fit_ms_per_min": fit, "tol_ms_per_min": tol,
                                 "verdict": verdict(fit, tol) if fit else "n/a"}
    bfit = regress([s["t"] / 60.0 for s in second], [s["backlog"] for s in second])
    btol = args.rate * BACKLOG_TOL_OF_RATE
    done = [r for r in recs if r.done is not None]
    failed = [r for r in recs if r.failed is not None]
    all_state = bench.state_age.tolist()
    def grows(v: str) -> bool:       # above the threshold and beyond 2 SE
        return v == "GROWS"

    def unclear(v: str) -> bool:     # above the threshold but within 2 SE
        return v.startswith("GROWS (")

    fleet = [n for n in procs if n != "bench"]   # the bench's RSS is its own recording
    mem_grows = [n for n in fleet if grows(procs[n]["rss_verdict"])]
    mem_unclear = [n for n in fleet if unclear(procs[n]["rss_verdict"])]
    lat_keys = ("auction_p99", "cfp_award_p99", "state_age_p99")
    lat_grows = [k for k in lat_keys if grows(lat[k]["verdict"])]
    lat_unclear = [k for k in lat_keys if unclear(lat[k]["verdict"])]

    def say(g: list[str], u: list[str]) -> str:
        parts = (["GROWS: " + ", ".join(g)] if g else []) + \
            (["above the threshold within noise: " + ", ".join(u)] if u else [])
        return "; ".join(parts) if parts else "flat"
    result = {
        "args": vars(args), "stream_s": stream_s, "t0_wall": t0,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "platform": platform.platform(), "git": _git()},
        "load_mean": _mean([s["load1"] for s in samples]) or 0.0,
        "load_max": max((s["load1"] for s in samples), default=0.0),
        "machine_busy_mean_cores": _mean([s["machine_busy_cores"] for s in samples]),
        "processes": names,
        "samples": samples, "windows": windows,
        "per_process": procs, "latency_fits": lat,
        "backlog_fit": bfit, "backlog_tol_per_min": btol, "table_fit": tfit,
        "totals": {
            "submitted": len(recs), "accepted": sum(1 for r in recs if r.accepted is not None),
            "refused": sum(1 for r in recs if r.refused),
            "done": len(done), "failed": len(failed),
            "open_at_end": sum(1 for r in recs if r.accepted is not None and not r.ended),
            "handbacks": sum(r.handbacks for r in recs),
            "reawarded": sum(1 for r in recs if r.awards > 1),
            "failed_tasks": [{"id": r.id, "kind": r.kind, "stations": r.stations,
                              "reason": r.reason, "handbacks": r.handbacks} for r in failed],
            "open_tasks": [{"id": r.id, "kind": r.kind, "stations": r.stations,
                            "robot": r.robot, "last_state": r.last_state,
                            "age_s": t_end - r.sent}
                           for r in recs if r.accepted is not None and not r.ended],
            "auction_s": dist([r.awarded - r.sent for r in recs if r.awarded is not None]),
            "task_time_s": dist([r.done - r.sent for r in done]),
            "state_age_s": dist(all_state),
            "state_messages": len(all_state),
            "state_gaps_over_1s": [{"t": g[0] - t0, "robot": g[1], "gap_s": g[2]}
                                   for g in bench.state_gaps],
            "lost": [{"t": t - t0, "robot": r} for t, r in bench.lost],
            "auction_rounds": len(rounds),
            "rounds_without_award": sum(1 for r in rounds if r["award"] is None),
            "answers_before_award": dist([r["answers_before_award"] for r in rounds
                                          if "answers_before_award" in r]),
            "tasks_per_robot": dict(Counter(r.robot for r in done)),
            "unknown_status_msgs": bench.unknown_status,
        },
        "table_snapshots": [{"t": t - t0, "version": v, "reservations": n, "ended": p}
                            for t, v, n, p in bench.snapshots],
        "rounds": rounds,
        "tasks": [vars(r) for r in recs],
        "verdict": {
            "memory": say(mem_grows, mem_unclear),
            "latency": say(lat_grows, lat_unclear),
            "backlog": verdict(bfit, btol).split(" (")[0] if bfit else "n/a",
            "rules": (f"second half of the stream ({half / 60:.1f}-{stream_s / 60:.1f} min); "
                      f"RSS grows if its slope > {RSS_TOL_PER_MIN * 100:g} %/min of its mean; "
                      f"a p99 latency grows if the slope of its per-{args.window_s:g}-s-window "
                      f"values > {LATENCY_TOL_PER_MIN * 100:g} %/min of their mean; the backlog "
                      f"grows if its slope > {BACKLOG_TOL_OF_RATE * 100:g} % of the rate "
                      f"({btol:.2f} tasks/min)"),
        },
    }
    return result


def _mean(xs) -> float | None:
    xs = [x for x in xs if x is not None]
    return statistics.fmean(xs) if xs else None


def _git() -> str:
    try:
        head = subprocess.run(["git", "-C", REPO, "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True, timeout=5).stdout.strip()
        dirty = subprocess.run(["git", "-C", REPO, "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5).stdout.strip()
        return head + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "?"


def report(r: dict, png: str, out: str) -> None:
    a, T = r["args"], r["totals"]
    ms = lambda x: "-" if x is None else f"{x * 1e3:.0f}"  # noqa: E731
    print()
    print(f"== load: {a['robots']} robots, {a['rate']:g} tasks/min for {a['minutes']:g} min "
          f"(+ drain), load average mean {r['load_mean']:.1f} / max {r['load_max']:.1f} on "
          f"{r['machine']['cpus']} CPUs, machine busy {r['machine_busy_mean_cores'] or 0:.2f} cores")
    print(f"tasks: {T['submitted']} submitted, {T['accepted']} accepted, {T['refused']} refused, "
          f"{T['done']} done, {T['failed']} failed, {T['open_at_end']} open at the end; "
          f"{T['handbacks']} hand-backs, {T['reawarded']} re-awarded; "
          f"{len(T['lost'])} robot-lost declarations; {len(T['state_gaps_over_1s'])} state gaps > 1 s")
    print(f"whole run: auction p50 {ms(T['auction_s']['p50'])} / p99 {ms(T['auction_s']['p99'])} ms; "
          f"task time p50 {T['task_time_s']['p50'] or 0:.1f} / p99 {T['task_time_s']['p99'] or 0:.1f} s; "
          f"state age p50 {ms(T['state_age_s']['p50'])} / p99 {ms(T['state_age_s']['p99'])} / "
          f"max {ms(T['state_age_s']['max'])} ms ({T['state_messages']} states); answers heard "
          f"before the award p50 {T['answers_before_award']['p50']} of {a['robots']}")
    print(f"rules: {r['verdict']['rules']}")
    print(f"{'process':<14} {'RSS start':>9} {'RSS end':>8} {'slope MB/min':>13} {'thresh':>7}  "
          f"{'CPU 1st/last min':>17} {'KB/resv':>8}  verdict")
    for n, p in r["per_process"].items():
        fit = p["rss_fit_second_half"]
        sl = f"{fit['slope']:+.3f}±{fit['se']:.3f}" if fit else "-"
        f2 = lambda x: "-" if x is None else f"{x:.0f}"  # noqa: E731
        c = lambda x: "-" if x is None else f"{x:.2f}"  # noqa: E731
        kb = p['kb_per_table_reservation']
        kb = '-' if kb is None else format(kb, '.1f')
        print(f"{n:<14} {f2(p['rss_start_mb']):>9} {f2(p['rss_end_mb']):>8} {sl:>13} "
              f"{(p['rss_tol_mb_per_min'] or 0):7.3f}  {c(p['cpu_first_min']):>8}/{c(p['cpu_last_min']):<8} "
              f"{kb:>8}"
              f"  {p['rss_verdict']}")
    stream_w = [w for w in r["windows"] if w["in_stream"]]
    w1, wn = (stream_w[0], stream_w[-1]) if stream_w else ({}, {})
    print(f"{'latency':<18} {'first window':>12} {'last window':>12} {'slope /min':>16} "
          f"{'thresh':>8}  verdict   (ms; task time in s; windows of {a['window_s']:g} s)")
    for key in ("auction", "cfp_award", "state_age", "task_time"):
        sc = 1e-3 if key == "task_time" else 1.0     # the fits are in ms
        for q in ("p99", "p50"):
            L = r["latency_fits"][f"{key}_{q}"]
            fit = L["fit_ms_per_min"]
            sl = f"{fit['slope'] * sc:+.1f}±{fit['se'] * sc:.1f}" if fit else "-"
            fw = lambda w: ("-" if not w or w[key][q] is None  # noqa: E731, B023
                            else f"{w[key][q] * 1e3 * sc:.0f}")  # noqa: B023
            print(f"{key + ' ' + q:<18} {fw(w1):>12} {fw(wn):>12} {sl:>16} "
                  f"{(L['tol_ms_per_min'] or 0) * sc:8.1f}  {L['verdict']}")
    bf = r["backlog_fit"]
    print(f"backlog slope {bf['slope']:+.2f}±{bf['se']:.2f} tasks/min (threshold "
          f"{r['backlog_tol_per_min']:.2f}): {r['verdict']['backlog']}" if bf else "backlog: n/a")
    snaps = r["table_snapshots"]
    if snaps:
        tf = r.get("table_fit")
        print(f"traffic table (snapshots): {snaps[0]['reservations']} reservations at "
              f"{snaps[0]['t'] / 60:.1f} min -> {snaps[-1]['reservations']} at "
              f"{snaps[-1]['t'] / 60:.1f} min ({snaps[-1]['ended']} of them already ended)"
              + (f"; +{tf['slope']:.0f}/min in the second half (KB/resv: RSS slope per "
                 f"reservation added)" if tf else ""))
    log = r.get("fleet_log") or {}
    print(f"fleet log: {log.get('levels', {})}, {log.get('tracebacks', 0)} tracebacks; top "
          f"warnings:")
    for p in (log.get("patterns") or [])[:8]:
        print(f"  {p['count']:6d}x {p['pattern'][:150]}")
    print(f"VERDICT: memory {r['verdict']['memory']}; latency {r['verdict']['latency']}; "
          f"backlog {r['verdict']['backlog']}")
    print(f"written: {os.path.join(out, 'load.json')}, {png}, {os.path.join(out, 'fleet.log')}, "
          f"{os.path.join(out, 'events.jsonl')}")


if __name__ == "__main__":
    sys.exit(main())

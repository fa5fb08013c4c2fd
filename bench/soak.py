"""Soak: a fleet doing tasks for a long time while a random fault hits it every minute.
Does any task get lost, any reservation conflict or any robot leave its reservations?
(issue 15 acceptance; figures in docs/reliability.md, "Soak").

The fleet is the one the multi-host fault tests run (tests/multihost_fleet.py, the same
config: the ideal driver's fast robot, `lost_after` 1.5 s, the table log on, one SQLite
ledger) with the launcher's restart policy on (`restart: on-failure`, the shipped default):
hosts are network namespaces on one bridge (tests/netns.py): host "a" runs traffic,
dispatcher and fleet_monitor; each robot host (`--robots-per-host` robots) runs one ideal
driver for its robots and one agent process per robot, as on real robots. Discovery is
SUBNET inside the topology; nothing leaves it. An observer per host (tests/mh_observer.py)
logs what crossed the network: odometry, the authority's table updates, task statuses,
robots declared lost.

Workload: tasks from bench/load.py's generator (seeded: 80 % pick_and_drop from a
shelf-facing cell to a drop cell, 20 % goto a shelf-facing cell), submitted through the
real `/fleet/submit_task` so that `--backlog` tasks (default: one per robot) are open at
any time, for `--minutes`; then the fleet gets up to `--drain-s` to end the open ones.

Faults: from `--fault-every` s on, every `--fault-every` s one of `--faults`, drawn with
the seed:
  agent       kill -9 of a random robot's agent process (the launcher restarts it)
  traffic     kill -9 of the traffic authority (restarted; it reloads its table log)
  dispatcher  kill -9 of the dispatcher (restarted on the same ledger)
  cut         a random robot host's link down for `--cut-s` (2 s: its robots are
              declared lost, then rejoin)
  loss        `--loss-percent` (20) % packet loss on a random host for `--loss-s` (30 s)

Checks, offline after the run from the observers' logs (multihost_fleet.analyse, the
fault tests' oracle): conflicting holds in the authority's table, every robot's footprint
outside what it held (> 0.1 m; every robot, one that holds nothing included), version
gaps (the replay then resynchronises on the next periodic snapshot; samples meanwhile are
unchecked and counted), the closest two robots came. Tasks: every accepted task must end DONE exactly once
(done by two robots = run twice), none FAILED, none open when the drain ends: such a task
is "lost" if nothing was heard of it for `--silent-s` (no robot works on it, no auction
tries it), else "not ended" (still worked on: the drain was too short).

Progress: a line every `--progress-s` (tasks done, open, failed; faults so far; load).
Output in `--out`: soak.json (every fault, task, check and figure), soak.png (tasks done
and open over time with the faults marked; throughput per minute), fleet.log (every
process's output), the observers' JSONL. Exit status 0 when every check holds, 1 if not.

The fleet runs on wall-clock time (sim time = wall time): every process keeps its own
timers, as on real robots. Needs root (network namespaces) and nftables (`loss`); run it
inside scripts/isolated.sh (from the repository root):

    bash scripts/isolated.sh .venv/bin/python bench/soak.py                  # 20 robots, 30 min
    bash scripts/isolated.sh .venv/bin/python bench/soak.py --robots 6 --minutes 5
"""
from __future__ import annotations

import argparse
import json
import math
import os
import random
import sys
import time
from collections import Counter

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
for p in (REPO, HERE, os.path.join(REPO, "tests")):
    if p not in sys.path:
        sys.path.insert(0, p)

FAULTS = ("agent", "traffic", "dispatcher", "cut", "loss")
SERVER = "a"


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--robots", type=int, default=20)
    ap.add_argument("--minutes", type=float, default=30.0, help="task stream length")
    ap.add_argument("--fault-every", type=float, default=60.0, help="seconds between faults")
    ap.add_argument("--faults", default=",".join(FAULTS),
                    help=f"comma-separated subset of {','.join(FAULTS)}")
    ap.add_argument("--robots-per-host", type=int, default=4)
    ap.add_argument("--agents-per-process", type=int, default=1,
                    help="robot agents per process on a robot host (1: one per robot, as on "
                         "real robots; N: an agent fault kills the process of N robots)")
    ap.add_argument("--backlog", type=int, default=None,
                    help="open tasks kept submitted (default: one per robot)")
    ap.add_argument("--drain-s", type=float, default=300.0,
                    help="after the stream, wait up to this long for the open tasks to end")
    ap.add_argument("--cut-s", type=float, default=2.0)
    ap.add_argument("--loss-percent", type=int, default=20)
    ap.add_argument("--loss-s", type=float, default=30.0)
    ap.add_argument("--goto-share", type=float, default=0.2)
    ap.add_argument("--silent-s", type=float, default=30.0)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--progress-s", type=float, default=30.0)
    ap.add_argument("--out", default="reports/soak")
    a = ap.parse_args(argv)
    faults = [f.strip() for f in a.faults.split(",") if f.strip()]
    bad = [f for f in faults if f not in FAULTS]
    if bad or not faults:
        ap.error(f"--faults: expected a comma-separated subset of {','.join(FAULTS)}, "
                 f"got {a.faults!r}")
    a.faults = faults
    for name in ("robots", "robots_per_host", "agents_per_process"):
        if getattr(a, name) < 1:
            ap.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(a, name)}")
    for name in ("minutes", "fault_every", "cut_s", "loss_s", "progress_s"):
        v = getattr(a, name)
        if not (math.isfinite(v) and v > 0):
            ap.error(f"--{name.replace('_', '-')} must be a positive number, got {v}")
    if not (math.isfinite(a.drain_s) and a.drain_s >= 0):
        ap.error(f"--drain-s must be >= 0, got {a.drain_s}")
    if not 0 <= a.loss_percent <= 100:
        ap.error(f"--loss-percent must be 0..100, got {a.loss_percent}")
    if a.backlog is None:
        a.backlog = a.robots
    if a.backlog < 1:
        ap.error(f"--backlog must be >= 1, got {a.backlog}")
    return a


def layout_of(robots: int, per_host: int) -> dict[str, list[str]]:
    """{"a": []} + robot hosts b, c, ... with `per_host` robots each (b1, b2, ...)."""
    hosts = [chr(ord("b") + i) for i in range(math.ceil(robots / per_host))]
    if len(hosts) > 25:
        raise SystemExit(f"--robots {robots} / --robots-per-host {per_host} needs "
                         f"{len(hosts)} robot hosts; at most 25")
    names = [f"{h}{i + 1}" for h in hosts for i in range(per_host)][:robots]
    return {SERVER: [], **{h: [n for n in names if n[0] == h] for h in hosts}}


class Soak:
    def __init__(self, args, fleet, rng: random.Random, picks, drops) -> None:
        self.a, self.fleet, self.rng = args, fleet, rng
        self.picks, self.drops = picks, drops
        self.t0 = time.monotonic()
        self.w0 = time.time()
        self.tasks: dict[str, dict] = {}       # id -> {kind, stations, submitted_w, ...}
        self.done_by: dict[str, set[str]] = {}
        self.heard: dict[str, float] = {}       # id -> wall time of its last status
        self.final: dict[str, dict] = {}
        self.faults: list[dict] = []
        self.undo: list[tuple[float, str, str]] = []   # (monotonic time, action, host)
        self.lost: list[dict] = []
        self._seen = 0
        self._n = 0
        self.samples: list[dict] = []

    # -- what crossed the network ------------------------------------------------------
    def read(self) -> None:
        ev = self.fleet.events()
        new, self._seen = ev.lines[self._seen:], len(ev.lines)
        from multihost_fleet import DONE, FAILED
        for e in new:
            k = e["k"]
            if k == "status" and e["task"] in self.tasks:
                t = e["task"]
                self.heard[t] = e["w"]
                if e["state"] == DONE and e["robot"]:
                    self.done_by.setdefault(t, set()).add(e["robot"])
                    self.final.setdefault(t, e)
                elif e["state"] == FAILED and not e["robot"]:
                    self.final.setdefault(t, e)
            elif k == "submitted" and e["task"] in self.tasks:
                self.tasks[e["task"]].setdefault("accepted", e["ok"])
                if not e["ok"]:
                    self.tasks[e["task"]]["error"] = e["error"]
            elif k == "lost":
                self.lost.append({"robot": e["robot"], "t": e["w"] - self.w0})

    def open_tasks(self) -> int:
        return sum(1 for t in self.tasks if t not in self.final
                   and self.tasks[t].get("accepted", True))

    def top_up(self) -> None:
        from load import make_task
        while self.open_tasks() < self.a.backlog:
            tid, kind, stations = make_task(self.rng, self._n, self.picks, self.drops,
                                            self.a.goto_share)
            tid = f"S{self._n:05d}"
            self._n += 1
            self.tasks[tid] = {"kind": kind, "stations": stations,
                               "t": time.time() - self.w0}
            self.fleet.submit(tid, kind, *stations)

    # -- faults ------------------------------------------------------------------------
    def inject(self) -> dict:
        kind = self.rng.choice(self.a.faults)
        L = self.fleet.launcher
        rec = {"kind": kind, "t": time.time() - self.w0}
        if kind == "agent":
            robot = self.rng.choice(self.fleet.robots)
            name = next(c.spec.process_name for c in L.children
                        if c.spec.executable == "robot_agent" and robot in c.spec.robots)
            rec["target"] = robot if name == f"agent_{robot}" else f"{name} ({robot})"
        elif kind in ("traffic", "dispatcher"):
            rec["target"] = name = kind
        if kind in ("agent", "traffic", "dispatcher"):
            child = L.child(name)
            if child.proc is None or child.proc.poll() is not None:
                rec["skipped"] = "not running (being restarted)"
            else:
                rec["pid"] = child.proc.pid
                L.kill(name)
        elif kind == "cut":
            host = self.rng.choice([h for h in self.fleet.layout if self.fleet.layout[h]])
            rec["target"] = host
            self.fleet.net.link_down(host)
            self.undo.append((time.monotonic() + self.a.cut_s, "link_up", host))
        elif kind == "loss":
            hosts = [h for h in self.fleet.layout if h != SERVER and self.fleet.layout[h]]
            busy = {h for _, act, h in self.undo if act == "clear_loss"}
            host = self.rng.choice([h for h in [SERVER, *hosts] if h not in busy] or [SERVER])
            rec["target"] = host
            if host in busy:
                rec["skipped"] = "loss already on"
            else:
                self.fleet.net.packet_loss(host, self.a.loss_percent)
                self.undo.append((time.monotonic() + self.a.loss_s, "clear_loss", host))
        rec["duration_s"] = {"cut": self.a.cut_s, "loss": self.a.loss_s}.get(kind, 0.0)
        self.faults.append(rec)
        return rec

    def undo_due(self, force: bool = False) -> None:
        now = time.monotonic()
        keep = []
        for when, act, host in self.undo:
            if force or now >= when:
                if act == "link_up":
                    self.fleet.net.link_up(host)
                else:
                    self.fleet.net.clear_packet_loss(host)
            else:
                keep.append((when, act, host))
        self.undo = keep

    # -- the run -----------------------------------------------------------------------
    def done_count(self) -> int:
        return sum(1 for t in self.final if t in self.done_by)

    def failed_count(self) -> int:
        return sum(1 for t, e in self.final.items() if t not in self.done_by)

    def progress(self, phase: str) -> None:
        el = time.time() - self.w0
        kinds = Counter(f["kind"] for f in self.faults)
        restarts = sum(c.restarts for c in self.fleet.launcher.children)
        line = (f"[soak] {phase} {el / 60:5.1f} min: done {self.done_count()}, "
                f"open {self.open_tasks()}, failed {self.failed_count()}, "
                f"faults {len(self.faults)} ({', '.join(f'{k} {n}' for k, n in sorted(kinds.items()))}), "
                f"restarts {restarts}, robots declared lost {len(self.lost)}, "
                f"load {os.getloadavg()[0]:.1f}")
        print(line, flush=True)

    def sample(self) -> None:
        self.samples.append({"t": time.time() - self.w0, "done": self.done_count(),
                             "open": self.open_tasks(), "failed": self.failed_count(),
                             "load1": os.getloadavg()[0]})

    def run(self) -> float:
        a = self.a
        stream_end = self.t0 + a.minutes * 60.0
        next_fault = self.t0 + a.fault_every
        next_progress = self.t0 + a.progress_s
        next_sample = self.t0
        while True:
            now = time.monotonic()
            self.fleet.launcher.poll()
            self.undo_due()
            self.read()
            streaming = now < stream_end
            if streaming:
                self.top_up()
                if now >= next_fault:
                    rec = self.inject()
                    print(f"[soak] fault {len(self.faults)} at {rec['t'] / 60:.1f} min: "
                          f"{rec['kind']} {rec.get('target', '')}"
                          + (f" (skipped: {rec['skipped']})" if "skipped" in rec else ""),
                          flush=True)
                    next_fault += a.fault_every
            elif self.undo:
                self.undo_due(force=True)
            if now >= next_sample:
                self.sample()
                next_sample += 5.0
            if now >= next_progress:
                self.progress("stream" if streaming else "drain")
                next_progress += a.progress_s
            if not streaming and (self.open_tasks() == 0 or now >= stream_end + a.drain_s):
                break
            time.sleep(0.2)
        self.sample()
        self.progress("end")
        return time.time() - self.w0


def plot(result: dict, path: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colors = {"agent": "tab:orange", "traffic": "tab:red", "dispatcher": "tab:purple",
              "cut": "tab:blue", "loss": "tab:green"}
    s = result["samples"]
    t = [x["t"] / 60.0 for x in s]
    fig, (ax, bx) = plt.subplots(2, 1, figsize=(11, 6.4), dpi=80, sharex=True,
                                 gridspec_kw={"height_ratios": [3, 1.3]})
    ax.plot(t, [x["done"] for x in s], color="black", lw=1.6, label="tasks done (cumulative)")
    ax.plot(t, [x["open"] for x in s], color="gray", lw=1.0, label="tasks open")
    if any(x["failed"] for x in s):
        ax.plot(t, [x["failed"] for x in s], color="red", lw=1.0, label="tasks failed")
    seen = set()
    for f in result["faults"]:
        m = f["t"] / 60.0
        c = colors[f["kind"]]
        lab = f["kind"] if f["kind"] not in seen else None
        seen.add(f["kind"])
        if f["duration_s"] > 5:
            ax.axvspan(m, m + f["duration_s"] / 60.0, color=c, alpha=0.15, lw=0, label=lab)
        else:
            ax.axvline(m, color=c, lw=1.2, alpha=0.8, label=lab)
    ex = result["checks"]["excursion_times"]
    if ex:
        ax.plot([x / 60.0 for x in ex], [0] * len(ex), "rx", ms=7,
                label=f"excursion ({len(ex)})")
    cf = result["checks"]["conflict_times"]
    if cf:
        ax.plot([x / 60.0 for x in cf], [0] * len(cf), "m^", ms=7, label=f"conflict ({len(cf)})")
    ax.axvline(result["stream_s"] / 60.0, color="black", lw=0.8, ls=":")
    ax.set_ylabel("tasks")
    ax.legend(fontsize=8, loc="upper left", ncol=2)
    tot = result["totals"]
    ax.set_title(f"bench/soak.py: {result['args']['robots']} robots, "
                 f"{result['stream_s'] / 60:.0f} min stream, a fault every "
                 f"{result['args']['fault_every']:g} s ({len(result['faults'])} faults) - "
                 f"done {tot['done']}, lost {tot['lost']}, failed {tot['failed']}, "
                 f"conflicts {tot['conflicts']}, excursions {tot['excursions']}", fontsize=10)
    # throughput per minute
    per_min = Counter(int(d // 60) for d in result["done_times"])
    mins = range(int(max(t, default=0)) + 1)
    bx.bar([m + 0.5 for m in mins], [per_min.get(m, 0) for m in mins], width=0.9,
           color="0.6")
    for f in result["faults"]:
        bx.axvline(f["t"] / 60.0, color=colors[f["kind"]], lw=1.0, alpha=0.8)
    bx.set_ylabel("done / min")
    bx.set_xlabel("minutes since the fleet was up (dotted: the task stream ends, then the drain)")
    for a in (ax, bx):
        a.tick_params(labelsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main(argv=None) -> int:
    args = parse_args(argv)
    from netns import Topology, nft_skip_reason, skip_reason
    why = skip_reason() or (nft_skip_reason() if "loss" in args.faults else None)
    if why:
        print(f"soak: cannot run here: {why}", file=sys.stderr)
        return 2
    from load import spread_starts, stations
    from multihost_fleet import MultiHostFleet, analyse

    from fleet_coord.fleet_config import DEFAULT_MAP, load_roadmap_and_exclusion
    roadmap, _, _ = load_roadmap_and_exclusion(DEFAULT_MAP, 0.15)
    picks, drops = stations(roadmap)
    layout = layout_of(args.robots, args.robots_per_host)
    names = [r for rs in layout.values() for r in rs]
    starts = dict(zip(names, spread_starts(roadmap, len(names), set(picks) | set(drops))))
    out = os.path.abspath(args.out)
    os.makedirs(out, exist_ok=True)
    for f in os.listdir(out):   # one run per folder: the observers append
        if f.endswith(".jsonl") or f.startswith("ledger") or f == "fleet.log":
            os.unlink(os.path.join(out, f))
    rng = random.Random(args.seed)
    print(f"[soak] {args.robots} robots on {len(layout) - 1} robot hosts, "
          f"{args.minutes:g} min, a fault every {args.fault_every:g} s from "
          f"{','.join(args.faults)}; output in {out}", flush=True)
    with Topology(list(layout)) as net:
        fleet = MultiHostFleet(net, out, layout, starts, domain_id=100 + os.getpid() % 100,
                               restart="on-failure",
                               agents_per_process=args.agents_per_process)
        soak = None
        try:
            up = fleet.start(timeout=60.0 + 6.0 * args.robots)
            print(f"[soak] fleet up in {up:.1f} s", flush=True)
            soak = Soak(args, fleet, rng, picks, drops)
            wall = soak.run()
        finally:
            if soak is not None:
                soak.undo_due(force=True)
            fleet.stop()
        leftover = [c.spec.process_name for c in fleet.launcher.children
                    if c.proc is not None and c.proc.poll() is None]
    soak.read()
    with open(os.path.join(out, "soak_run.json"), "w") as f:   # kept if the analysis is cut short
        json.dump({"args": vars(args), "wall_s": wall, "w0": soak.w0, "faults": soak.faults,
                   "tasks": soak.tasks, "final": soak.final, "samples": soak.samples,
                   "done_by": {t: sorted(r) for t, r in soak.done_by.items()}}, f, default=str)
    print("[soak] analysing the observers' logs ...", flush=True)
    ev = fleet.events()
    checks = analyse(ev)
    w0 = soak.w0
    accepted = [t for t, r in soak.tasks.items() if r.get("accepted")]
    refused = {t: r.get("error", "") for t, r in soak.tasks.items() if r.get("accepted") is False}
    twice = {t: sorted(rs) for t, rs in soak.done_by.items() if len(rs) > 1}
    failed = {t: e.get("reason", "") for t, e in soak.final.items() if t not in soak.done_by}
    end_w = soak.w0 + wall
    open_end = [t for t in accepted if t not in soak.final]
    lost = [t for t in open_end if end_w - soak.heard.get(t, 0.0) > args.silent_s]
    not_ended = [t for t in open_end if t not in lost]
    unanswered = [t for t, r in soak.tasks.items() if "accepted" not in r]
    done_times = sorted(e["w"] - w0 for t, e in soak.final.items() if t in soak.done_by)
    restarts = {c.spec.process_name: c.restarts for c in fleet.launcher.children if c.restarts}
    totals = {"submitted": len(soak.tasks), "accepted": len(accepted), "refused": len(refused),
              "unanswered": len(unanswered), "done": len(done_times), "run_twice": len(twice),
              "failed": len(failed), "lost": len(lost), "not_ended": len(not_ended),
              "conflicts": len(checks["conflicts"]), "excursions": len(checks["excursions"]),
              "version_gaps": len(checks["version_gaps"]),
              "unchecked_samples": checks["unchecked"],
              "min_distance_m": round(checks["min_distance"][0], 3),
              "robots_declared_lost": len(soak.lost), "restarts": restarts,
              "leftover_processes": leftover}
    stream_s = min(args.minutes * 60.0, wall)
    result = {
        "args": vars(args), "wall_s": round(wall, 1), "stream_s": stream_s,
        "startup_s": round(up, 1), "totals": totals, "faults": soak.faults,
        "samples": soak.samples, "done_times": done_times, "robots_lost": soak.lost,
        "tasks_run_twice": twice, "tasks_failed": failed, "tasks_lost": lost, "tasks_not_ended": not_ended,
        "tasks_refused": refused, "tasks_unanswered": unanswered,
        "checks": {"conflicts": checks["conflicts"][:50],
                   "excursions": checks["excursions"][:200],
                   "version_gaps": checks["version_gaps"][:50],
                   "min_distance": checks["min_distance"],
                   "odom_samples": checks["odom_samples"], "updates": checks["updates"],
                   "excursion_times": [x[1] - w0 for x in checks["excursions"]],
                   "conflict_times": [s[2] - w0 for s, _ in checks["conflicts"]]},
        "load_mean": round(sum(s["load1"] for s in soak.samples) / max(1, len(soak.samples)), 2),
    }
    with open(os.path.join(out, "soak.json"), "w") as f:
        json.dump(result, f, indent=1, default=str)
    png = os.path.join(out, "soak.png")
    plot(result, png)
    ok = (totals["lost"] == 0 and totals["not_ended"] == 0 and totals["failed"] == 0
          and totals["run_twice"] == 0 and totals["conflicts"] == 0
          and totals["excursions"] == 0 and not leftover)
    kinds = Counter(f["kind"] for f in soak.faults)
    print(f"[soak] {args.robots} robots, {stream_s / 60:.1f} min stream + drain, wall "
          f"{wall / 60:.1f} min, load average {result['load_mean']}")
    print(f"[soak] faults {len(soak.faults)}: "
          + ", ".join(f"{k} {n}" for k, n in sorted(kinds.items()))
          + f"; restarts {restarts}; robots declared lost {len(soak.lost)}")
    print(f"[soak] tasks: submitted {totals['submitted']}, accepted {totals['accepted']}, "
          f"done {totals['done']}, run twice {totals['run_twice']}, failed {totals['failed']}, "
          f"lost {totals['lost']}, still worked on after the drain {totals['not_ended']} "
          f"(unanswered submissions {totals['unanswered']})")
    print(f"[soak] checks: conflicts {totals['conflicts']}, excursions {totals['excursions']}, "
          f"version gaps {totals['version_gaps']} (observer missed a delta: "
          f"{totals['unchecked_samples']} samples unchecked until the next snapshot), "
          f"min distance {totals['min_distance_m']} m, "
          f"{checks['odom_samples']} odometry samples, {checks['updates']} table updates")
    print(f"[soak] {'PASS' if ok else 'FAIL'}; picture {png}, figures {out}/soak.json")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

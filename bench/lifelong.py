"""Lifelong throughput on League of Robot Runners instances, per task assignment rule.

Runs `fleet_coord.core.lifelong.run_lifelong` (the fleet's heading-aware SIPP, its
reservation table, and the rule's allocation) on each instance for its number of steps
with each rule, checks every result with the independent checker
(tests/lifelong_checker.py; the run aborts on an invalid one), and records tasks
finished, tasks per step, the ratio to `greedy` of the same instance, and CPU per step
(process time of the step loop: allocation + planning + execution). The heaviest run
(most agents x steps) gets a picture: tasks finished per 100 steps, one curve per rule.

Run:  .venv/bin/python bench/lifelong.py                     (docs/benchmarks.md)
      .venv/bin/python bench/lifelong.py --quick             (a smoke run)
      .venv/bin/python bench/lifelong.py INSTANCE.json:STEPS ...  (your own)
      .venv/bin/python bench/lifelong.py --league ARCHIVE    (the League's random-32-32-20
          100-agent instances, next to their best-known results)
Results: build/bench/lifelong.{md,json}, build/bench/lifelong_throughput.png.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "tests"))  # the independent checker

from lifelong_checker import check_result, read_instance  # noqa: E402
from tqdm import tqdm  # noqa: E402

from fleet_coord.core.lifelong import ASSIGNMENTS, LifelongConfig, run_lifelong  # noqa: E402
from fleet_coord.core.lorr import load_lorr  # noqa: E402

LORR = os.environ.get("FLEET_COORD_LORR", os.path.join(os.path.dirname(REPO), "shared", "lorr"))
# The start kit's example instances (LoRR 2026 files, run with the 2023 action model):
# (instance, steps, replan every); the big ones plan every 4 steps to stay affordable.
DEFAULT = [("maze.domain/maze-example_40.json", 1000, 1),
           ("room.domain/room-example_150.json", 1000, 1),
           ("random.domain/random-example_400.json", 500, 1),
           ("city.domain/bos-example_600.json", 300, 4),
           ("warehouse.domain/fulfill-example_2500.json", 100, 4)]
QUICK = [("maze.domain/maze-example_40.json", 100, 1)]
# The League's own random-32-32-20 instances at 100 agents and their best-known results
# (Benchmark-Archive README.md, commit 25ffd5b): (instance, steps, rules, name, best, team).
# MR23-I-04 is a 2023 instance (one errand per task, the roundrobin rule fixed by the
# rules); MR24-RANDOM-01 a 2024 one (the scheduler is the entrant's).
LEAGUE = [("2024 Competition/Main Round Evaluation Instances/random.domain/RANDOM-01.json",
           600, ["greedy", "auction", "roundrobin"], "MR24-RANDOM-01", 696, "Team_RAPID"),
          ("2023 Competition/Main Round Evaluation Instances/random.domain/MR23-I-04.json",
           500, ["roundrobin"], "MR23-I-04", 1741, "Team_Shadoks")]


def run_one(path: str, steps: int, rule: str, config: LifelongConfig) -> dict:
    instance = load_lorr(path)
    name = os.path.basename(path)
    with tqdm(total=steps, unit="step", desc=f"{name} {rule}", file=sys.stderr,
              leave=False) as bar:
        def progress(step: int, finished: int) -> None:
            bar.update(1)
            if step % 20 == 0:
                bar.set_postfix(finished=finished, refresh=False)
        t0 = time.process_time()
        result = run_lifelong(instance, steps, rule, config=config, progress=progress)
        cpu = time.process_time() - t0
    errors = check_result(read_instance(path), json.loads(json.dumps(result.document())),
                          "roundrobin" if rule == "roundrobin" else "pool")
    if errors:
        raise SystemExit(f"{name} {rule}: {len(errors)} violations, e.g. {errors[:3]}")
    return {"instance": name, "agents": instance.team_size, "steps": steps, "rule": rule,
            "finished": result.finished, "tasks_per_step": result.finished / steps,
            "cpu_per_step_ms": 1000 * sum(result.cpu_per_step) / steps,
            "cpu_s": cpu, "per_100": [sum(result.finished_per_step[i:i + 100])
                                      for i in range(0, steps, 100)],
            **result.stats}


def picture(rows: list[dict], target: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    heaviest = max(rows, key=lambda r: r["agents"] * r["steps"])
    runs = [r for r in rows if r["instance"] == heaviest["instance"]]
    fig, ax = plt.subplots(figsize=(7, 4))
    for r in runs:
        xs = [100 * (k + 1) for k in range(len(r["per_100"]))]
        ax.plot(xs, r["per_100"], marker="o", label=f"{r['rule']} ({r['finished']} tasks)")
    ax.set_xlabel("step")
    ax.set_ylabel("tasks finished in the last 100 steps")
    ax.set_title(f"{heaviest['instance']}: {heaviest['agents']} agents")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(target, dpi=110)
    plt.close(fig)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("instances", nargs="*", metavar="INSTANCE.json:STEPS",
                    help="instances to run (default: the LoRR example instances)")
    ap.add_argument("--rules", nargs="+", default=["greedy", "auction", "roundrobin"],
                    choices=ASSIGNMENTS)
    ap.add_argument("--replan-every", type=int, default=None,
                    help="override every instance's (default 1 for your own)")
    ap.add_argument("--quick", action="store_true", help="one short run (smoke test)")
    ap.add_argument("--league", metavar="ARCHIVE",
                    help="run the League's random-32-32-20 100-agent instances from this "
                         "checkout of github.com/MAPF-Competition/Benchmark-Archive and "
                         "compare with their best-known results")
    ap.add_argument("--out", default=os.path.join(REPO, "build", "bench"))
    args = ap.parse_args()
    best: dict[str, tuple[str, int, str]] = {}   # instance file -> (name, best, team)
    if args.league:
        todo = []
        for p, s, rules, name, known, team in LEAGUE:
            path = os.path.join(args.league, p)
            if not os.path.isfile(path):
                raise SystemExit(f"--league {args.league}: no {p} there (a checkout of "
                                 f"MAPF-Competition/Benchmark-Archive?)")
            todo.append((path, s, 1, rules))
            best[os.path.basename(path)] = (name, known, team)
    elif args.instances:
        todo = [(p.rsplit(":", 1)[0], int(p.rsplit(":", 1)[1]), 1, args.rules)
                for p in args.instances]
    else:
        todo = [(os.path.join(LORR, p), s, k, args.rules)
                for p, s, k in (QUICK if args.quick else DEFAULT)]
    os.makedirs(args.out, exist_ok=True)
    rows = []
    for path, steps, every, rules in todo:
        config = LifelongConfig(replan_every=args.replan_every or every)
        for rule in rules:
            row = run_one(path, steps, rule, config)
            row["replan_every"] = config.replan_every
            rows.append(row)
            print(f"{row['instance']} {rule}: {row['finished']} tasks in {steps} steps "
                  f"({row['tasks_per_step']:.3f}/step), {row['cpu_per_step_ms']:.1f} ms CPU "
                  f"per step", flush=True)
    greedy = {r["instance"]: r["tasks_per_step"] for r in rows if r["rule"] == "greedy"}
    lines = ["| instance | agents | steps | replan every | rule | finished | tasks/step | "
             "x greedy | CPU/step (ms) |", "|---|---:|---:|---:|---|---:|---:|---:|---:|"]
    for r in rows:
        g = greedy.get(r["instance"])
        ratio = f"{r['tasks_per_step'] / g:.3f}" if g else "-"
        lines.append(f"| {r['instance']} | {r['agents']} | {r['steps']} | "
                     f"{r['replan_every']} | {r['rule']} | "
                     f"{r['finished']} | {r['tasks_per_step']:.3f} | {ratio} | "
                     f"{r['cpu_per_step_ms']:.1f} |")
    if best:
        lines += ["", "| instance | League | best-known (team) | rule | finished | of best |",
                  "|---|---|---:|---|---:|---:|"]
        for r in rows:
            name, known, team = best[r["instance"]]
            r["best_known"] = known
            lines.append(f"| {r['instance']} | {name} | {known} ({team}) | {r['rule']} | "
                         f"{r['finished']} | {r['finished'] / known:.3f} |")
    table = "\n".join(lines)
    print(table)
    meta = {"python": platform.python_version(), "machine": platform.machine(),
            "load": os.getloadavg()}
    with open(os.path.join(args.out, "lifelong.md"), "w") as f:
        f.write(table + "\n")
    with open(os.path.join(args.out, "lifelong.json"), "w") as f:
        json.dump({"meta": meta, "rows": rows}, f, indent=1)
    picture(rows, os.path.join(args.out, "lifelong_throughput.png"))
    return 0


if __name__ == "__main__":
    sys.exit(main())

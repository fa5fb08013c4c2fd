"""``fleet-coord lifelong``: run a League of Robot Runners instance with the fleet's own
planner, reservation table and allocation, in discrete steps (fleet_coord.core.lifelong).

Writes ``DIR/result.json``::

    {"steps": N, "agents": [{"start": [x, y], "path": [[x, y, o], ...]}, ...],
     "tasks": [{"id": i, "errands": [[x, y], ...], "agent": a, "finished_step": f}, ...],
     "finished": K}

``path`` has N + 1 entries (the start, then one per step); x = column, y = row, o the
heading (0 = +x, 1 = +y, 2 = -x, 3 = -y); ``agent`` is null for a task nobody holds,
``finished_step`` null for an unfinished one. ``DIR/stats.json`` holds the measurements
(tasks per step, CPU per step, tasks finished per 100 steps, planner counters).
"""
from __future__ import annotations

import argparse
import os
import sys
import time

from fleet_coord.cli_plan import _positive_int, write_json


def register(subparsers) -> None:
    from fleet_coord.core.lifelong import ASSIGNMENTS
    p = subparsers.add_parser(
        "lifelong", help="run a League of Robot Runners (LoRR) lifelong instance",
        description="Run a LoRR instance (JSON + map + agents + tasks) for N steps with "
                    "the LoRR 2023 action model (a step: forward, a 90-degree turn or a "
                    "wait; start facing +x), planned by the fleet's SIPP against its "
                    "reservation table, tasks allocated by the chosen rule.",
        epilog="Writes DIR/result.json (paths and tasks) and DIR/stats.json (tasks per "
               "step, CPU per step, throughput per 100 steps). Exit status: 0 done, 2 bad "
               "input.")
    p.add_argument("instance", metavar="INSTANCE.json", help="the LoRR problem file")
    p.add_argument("--steps", required=True, type=_positive_int, metavar="N",
                   help="steps to simulate")
    p.add_argument("--assignment", choices=ASSIGNMENTS, default="auction",
                   help="auction: the fleet's Contract Net allocation with batch "
                        "re-balancing (default); greedy: LoRR's default scheduler (a free "
                        "robot takes the task with the shortest total trip); roundrobin: "
                        "LoRR 2023 (task k to robot k mod n)")
    p.add_argument("--horizon", type=_positive_int, default=None, metavar="STEPS",
                   help="steps a plan reserves ahead (default 20)")
    p.add_argument("--replan-every", type=_positive_int, default=None, metavar="STEPS",
                   help="a robot plans again at least every STEPS steps (default 1: every "
                        "step; larger is cheaper for big fleets, and worse)")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (created)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from fleet_coord.cli import CliError
    from fleet_coord.core.lifelong import LifelongConfig, run_lifelong
    from fleet_coord.core.lorr import load_lorr
    from fleet_coord.core.yaml_reader import FileFormatError

    try:
        instance = load_lorr(args.instance)
    except FileFormatError as err:
        raise CliError(str(err)) from None
    try:
        os.makedirs(args.out, exist_ok=True)
    except OSError as err:
        raise CliError(f"--out {args.out}: cannot create the folder: {err.strerror}") from None
    config = LifelongConfig(**{k: v for k, v in (("horizon", args.horizon),
                                                 ("replan_every", args.replan_every))
                               if v is not None})

    bar = None
    if not args.quiet:
        from tqdm import tqdm
        bar = tqdm(total=args.steps, unit="step", file=sys.stderr,
                   desc=f"{os.path.basename(args.instance)} {args.assignment}")

    def progress(step: int, finished: int) -> None:
        if bar is not None:
            bar.update(1)
            if step % 10 == 0 or step == args.steps:
                bar.set_postfix(finished=finished, refresh=False)

    wall = time.perf_counter()
    try:
        result = run_lifelong(instance, args.steps, args.assignment, config=config,
                              progress=progress)
    finally:
        if bar is not None:
            bar.close()
    wall = time.perf_counter() - wall
    stats = summary(result, args.assignment, wall)
    write_json(os.path.join(args.out, "result.json"), result.document())
    write_json(os.path.join(args.out, "stats.json"), stats)
    print(f"{instance.team_size} agents, {args.steps} steps, {args.assignment}: "
          f"{result.finished} tasks finished ({stats['tasks_per_step']:.3f} per step), "
          f"CPU {stats['cpu_per_step_ms']:.1f} ms per step -> {args.out}")
    return 0


def summary(result, assignment: str, wall_s: float) -> dict:
    """The measurements of a run (stats.json)."""
    steps = result.steps
    per_100 = [sum(result.finished_per_step[i:i + 100]) for i in range(0, steps, 100)]
    cpu = result.cpu_per_step
    return {
        "assignment": assignment,
        "agents": len(result.paths),
        "steps": steps,
        "finished": result.finished,
        "tasks_per_step": result.finished / steps if steps else 0.0,
        "finished_per_100_steps": per_100,
        "cpu_per_step_ms": 1000 * sum(cpu) / len(cpu) if cpu else 0.0,
        "cpu_per_step_max_ms": 1000 * max(cpu) if cpu else 0.0,
        "wall_s": wall_s,
        **result.stats,
    }

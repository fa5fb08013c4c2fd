"""``fleet-coord demo``: the main job on embedded defaults (``make demo``).

By default a simulated warehouse fleet over ROS 2 (fleet_coord.demo_run): 8 robots on the
bundled warehouse map in PyBullet, 40 pick-and-drop tasks submitted to the dispatcher,
run to completion, with a summary and a report folder.

``--dry-run``: the same workload with no ROS and no robots (fleet_coord.core.dry_run):
tasks allocated by Contract Net bids and driven leg by leg with SIPP against one shared
reservation table, checked conflict-free by an independent pass over the table, with a
summary and a picture of the trajectories.
"""
from __future__ import annotations

import argparse
import json
import os
import time

from fleet_coord.cli_plan import _positive_int

DEFAULT_OUT = "reports/demo"


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text!r}") from None
    if not (value > 0 and value < float("inf")):
        raise argparse.ArgumentTypeError(f"expected a finite number > 0, got {text}")
    return value


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "demo", help="run a simulated warehouse fleet on the bundled map (ROS 2 + PyBullet)",
        description="The main job: start a simulated fleet (PyBullet sim, traffic, "
                    "dispatcher, monitor, robot agents) as ROS 2 processes, submit "
                    "pick-and-drop tasks through the dispatcher, follow them to the end and "
                    "write a report (metrics JSON, trajectories, timeline, GIF). "
                    "--dry-run: the same workload allocated and planned in one process, "
                    "no ROS, no robots.")
    p.add_argument("--robots", type=_positive_int, default=8, help="fleet size (default 8)")
    p.add_argument("--tasks", type=_positive_int, default=40, help="pick-and-drop tasks (default 40)")
    p.add_argument("--map", default="", help="MovingAI .map (default: the bundled warehouse)")
    p.add_argument("--seed", type=int, default=7, help="task generator seed (default 7)")
    p.add_argument("--mode", choices=("kinematic", "physics"), default="kinematic",
                   help="PyBullet mode (default kinematic)")
    p.add_argument("--rtf", type=_positive_float, default=None,
                   help="real-time factor cap: sim seconds per wall second (default 4 "
                        "kinematic, 2 physics; the sim also waits for the slowest agent)")
    p.add_argument("--agents-per-process", type=_positive_int, default=None, metavar="N",
                   help="robot agents per process (default: all in one; 1 = one process "
                        "per robot, as on real robots)")
    p.add_argument("--timeout", type=_positive_float, default=None, metavar="S",
                   help="stop after this many wall seconds (default: no limit; a run in which "
                        "no task ends for 900 s of sim time stops as stalled). A stopped "
                        "run still writes its report, marked partial, and exits 1")
    p.add_argument("--out", default=DEFAULT_OUT, help="report folder (default %(default)s)")
    p.add_argument("--no-gif", action="store_true", help="skip the animated GIF")
    p.add_argument("--no-record", action="store_true",
                   help="do not record the fleet's topics to <out>/fleet.mcap (MCAP: ros2 bag, "
                        "Foxglove; `fleet-coord report` rebuilds the report from it)")
    p.add_argument("--auth", choices=("enforce", "off"), default="enforce",
                   help="enforce (default): the fleet signs and checks its messages with keys "
                        "the demo provisions in its temporary folder (docs/security.md); off: "
                        "unsigned, to compare (the --vda5050 fleet too). The --in-process fleet "
                        "has nothing to sign (one process)")
    p.add_argument("--dry-run", action="store_true",
                   help="no ROS: allocate by Contract Net and plan with SIPP in one process")
    p.add_argument("--vda5050", type=_positive_int, default=None, metavar="N",
                   help="a mixed fleet: the --robots robots driven over ROS (ideal driver) "
                        "plus N emulated VDA 5050 vehicles on a private Mosquitto, on wall "
                        "time (docs/vda5050.md)")
    p.add_argument("--allocation", choices=("pool", "pool_rebalance", "per_task"),
                   default="pool",
                   help="--dry-run and --in-process: how tasks are allocated: pool (batch "
                        "rounds of completion-time bids, one next task per robot: what the "
                        "dispatcher does; the default), pool_rebalance (--dry-run only: the "
                        "rounds also move awarded, unstarted tasks) or per_task (one auction "
                        "per task, travel bids: what it did before)")
    p.add_argument("--time-model", choices=("auto", "stop_and_turn", "real"),
                   default="auto",
                   help="how the robots' paths are timed (the agents' time_model; the dry "
                        "run models it): real (the robots' limits, core/time_model.py), "
                        "stop_and_turn (every lane at the plan speed) or auto (the default: "
                        "real when the agents' 20 Hz control loop holds the demo robots at "
                        "their limits, which it does)")
    p.add_argument("--in-process", action="store_true",
                   help="no DDS: the same dispatcher, traffic and agent cores and ideal "
                        "kinematic robots in one process on a virtual clock (as fast as the "
                        "CPU allows; reproducible from --seed)")
    p.set_defaults(run=run)


def make_workload(roadmap, n_robots: int, n_tasks: int, seed: int):
    """Stations on a warehouse grid: picks are aisle cells next to a shelf, drops and
    robot homes lie along the open area at the bottom. Deterministic for a seed."""
    import numpy as np

    from fleet_coord.cli import CliError
    from fleet_coord.core.tasks import Task

    grid = roadmap.grid
    if grid is None:
        raise CliError("the demo needs a grid map (.map)")
    free = grid.free
    h, w = free.shape
    picks = [(x, y) for y in range(1, h - 1) for x in range(1, w - 1)
             if free[y, x] and (not free[y - 1, x] or not free[y + 1, x])
             and y < h - 4]
    bottom = [y for y in range(h - 2, 0, -1) if free[y, 1:w - 1].all()]
    if len(bottom) < 2:
        raise CliError(f"map {grid.path}: needs two fully open rows for drops and homes")
    home_row, drop_row = bottom[0], bottom[1]
    xs = [x for x in range(1, w - 1)]
    per_row = len(xs) // 2
    if n_robots <= per_row:
        homes = [(x, home_row) for x in xs[::max(1, len(xs) // n_robots)][:n_robots]]
    else:
        # a big fleet: every other cell of the bottom row, then of the open rows above
        # the drops that hold no pick, skipping every second such row (a free lane)
        pick_rows = {y for _, y in picks}
        extra = [y for y in bottom[2:] if y not in pick_rows][::2]
        rows = [home_row] + extra
        slots = [(x, y) for y in rows for x in xs[::2]]
        if len(slots) < n_robots:
            raise CliError(f"map {grid.path} has room for at most {len(slots)} robots' homes "
                           f"(open rows at the bottom, every other cell), not {n_robots}")
        homes = slots[:n_robots]
    drops = [(x, drop_row) for x in xs[1::3]]
    rng = np.random.default_rng(seed)
    name = lambda xy: roadmap.names[roadmap.vertex_at(*xy)]  # noqa: E731
    tasks = []
    for i in range(n_tasks):
        pick = picks[rng.integers(len(picks))]
        drop = drops[rng.integers(len(drops))]
        tasks.append(Task(id=f"t{i:03d}", kind="pick_and_drop",
                          stations=[name(pick), name(drop)], submitted_at=0.0))
    robots = {f"robot_{i + 1}": roadmap.vertex_at(*xy) for i, xy in enumerate(homes)}
    return robots, tasks


def independent_conflict_count(table, exclusion) -> int:
    """Pairs of holds by different robots on mutually exclusive resources over overlapping
    intervals, counted from the table's contents with no help from its index."""
    from collections import defaultdict
    by_res = defaultdict(list)
    for r in table.reservations():
        by_res[r.resource].append(r)
    bad = 0
    for res, holds in by_res.items():
        for other in exclusion.of(res):
            for a in holds:
                for b in by_res.get(int(other), ()):
                    if a.robot != b.robot and a.t_start < b.t_end and b.t_start < a.t_end:
                        bad += 1
    return bad // 2


def _load(args):
    """Map and workload, checked before anything starts (a CliError: exit 2)."""
    from fleet_coord.cli import CliError
    from fleet_coord.core.roadmap import MapError
    from fleet_coord.fleet_config import load_roadmap_and_exclusion

    try:
        roadmap, exclusion, _ = load_roadmap_and_exclusion(args.map, 0.15)
    except (MapError, FileNotFoundError) as e:
        raise CliError(str(e)) from None
    robots, tasks = make_workload(roadmap, args.robots + (getattr(args, "vda5050", None) or 0),
                                  args.tasks, args.seed)
    if os.path.exists(args.out) and not os.path.isdir(args.out):
        raise CliError(f"--out {args.out!r} exists and is not a folder")
    try:
        os.makedirs(args.out, exist_ok=True)
    except OSError as e:
        raise CliError(f"--out {args.out!r}: cannot create the report folder ({e.strerror})") from None
    return roadmap, exclusion, robots, tasks


def run(args) -> int:
    from fleet_coord.cli import CliError
    if getattr(args, "dry_run", False):
        return run_dry(args)
    if getattr(args, "allocation", "pool") != "pool" and not getattr(args, "in_process", False):
        raise CliError(f"--allocation {args.allocation} applies to --dry-run and --in-process; "
                       "the full demo runs the dispatcher's default, pool (another: "
                       "nodes.dispatcher.allocation in a fleet config, docs/fleet-config.md)")
    if getattr(args, "vda5050", None):
        if args.mode != "kinematic" or args.rtf is not None:
            raise CliError("--vda5050 runs on wall time with the ideal driver: --mode and "
                           "--rtf do not apply")
        from fleet_coord.vda5050.mixed_demo import run_mixed_demo
        return run_mixed_demo(args, *_load(args))
    if getattr(args, "in_process", False):
        from fleet_coord.in_process import run_demo as run_in_process
        if args.allocation == "pool_rebalance":
            raise CliError("--allocation pool_rebalance is only modelled by --dry-run (the "
                           "dispatcher does pool or per_task)")
        return run_in_process(args, *_load(args))
    from fleet_coord.demo import run_demo
    return run_demo(args, *_load(args))


def run_dry(args) -> int:
    import numpy as np
    from tqdm import tqdm

    from fleet_coord.core.dry_run import dry_run

    from fleet_coord.core.execution import ExecutionConfig
    from fleet_coord.core.kinematics import Limits
    from fleet_coord.core.tracking import (plan_speed_for, resolve_time_model,
                                           robot_time_model)
    from fleet_coord.demo import (CONTROL_RATE_HZ, ROBOT_LIMITS, SUBMIT_INTERVAL_S,
                                  TURN_MARGIN_S)

    roadmap, exclusion, robots, tasks = _load(args)
    # What the demo's agents do: plan with their time model, no dwell, tasks submitted
    # one every SUBMIT_INTERVAL_S.
    limits = Limits(**ROBOT_LIMITS)
    speed = plan_speed_for(limits, exclusion.clearance, TURN_MARGIN_S)
    kind = resolve_time_model(args.time_model, limits, CONTROL_RATE_HZ)
    # the agents' run-on (the sim's watchdog + a control period): ExecutionConfig's default
    model = robot_time_model(limits, exclusion.clearance, kind, turn_margin=TURN_MARGIN_S,
                             run_on=ExecutionConfig().run_on)
    timing = (f"the robots' limits ({limits.max_v:g} m/s)" if kind == "real"
              else f"the agents' plan speed {speed:.2f} m/s")
    print(f"demo: {len(robots)} robots, {len(tasks)} pick-and-drop tasks on "
          f"{os.path.relpath(roadmap.grid.path)} (seed {args.seed}); dry run: Contract Net "
          f"allocation ({args.allocation}) + SIPP at {timing} into one reservation table")
    t0 = time.perf_counter()
    with tqdm(total=len(tasks), unit="task", desc="tasks done", leave=True) as bar:
        def progress(n):
            bar.update(n - bar.n)
        result = dry_run(roadmap, exclusion, robots, tasks, dwell=0.0, speed=model,
                         submit_interval=SUBMIT_INTERVAL_S, allocation=args.allocation,
                         progress=progress)
    wall = time.perf_counter() - t0
    conflicts = independent_conflict_count(result.table, exclusion)
    durations = np.array(sorted(result.task_times)) if result.done else np.zeros(1)
    per_robot = result.tasks_per_robot()
    summary = {
        "robots": len(robots), "tasks": len(tasks), "done": len(result.done),
        "failed": result.failed, "allocation": args.allocation,
        "time_model": kind, "makespan_s": round(result.makespan, 2),
        "mean_task_completion_s": round(float(durations.mean()), 2),
        "p95_task_completion_s": round(float(np.percentile(durations, 95)), 2),
        "tasks_per_hour": round(result.tasks_per_hour, 1),
        "route_time_s": round(result.route_time, 1),
        "tasks_per_robot": {r: per_robot.get(r, 0) for r in sorted(robots)},
        "legs_planned": len(result.legs),
        "leg_retries": sum(leg.retries for leg in result.legs),
        "reservation_conflicts": conflicts, "planning_wall_s": round(wall, 3),
        "seed": args.seed,
    }
    with open(os.path.join(args.out, "metrics.json"), "w") as f:
        json.dump(summary, f, indent=2)
    png = os.path.join(args.out, "trajectories.png")
    _plot(roadmap, result, png)
    print(f"done {summary['done']}/{len(tasks)} tasks, failed {len(result.failed)}; makespan "
          f"{summary['makespan_s']} s (simulated); task time (submitted -> done) mean "
          f"{summary['mean_task_completion_s']} s, p95 {summary['p95_task_completion_s']} s; "
          f"{summary['tasks_per_hour']} tasks/hour; route time {summary['route_time_s']} s; "
          f"tasks per robot {', '.join(str(v) for v in summary['tasks_per_robot'].values())}; "
          f"{summary['legs_planned']} legs planned ({summary['leg_retries']} retries) in "
          f"{wall:.2f} s; reservation conflicts: {conflicts}")
    print(f"report: {args.out}/metrics.json, {png}")
    return 0 if conflicts == 0 and not result.failed else 1


def _plot(roadmap, result, path: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from fleet_coord.core.dry_run import positions

    grid = roadmap.grid
    fig, ax = plt.subplots(figsize=(grid.width / 3, grid.height / 3 + 0.6))
    ax.imshow(~grid.free, cmap="Greys", origin="upper", vmin=0, vmax=1.6)
    robots = sorted({leg.robot for leg in result.legs})
    colors = plt.cm.tab10(np.linspace(0, 1, max(len(robots), 1)))
    for robot, color in zip(robots, colors):
        for leg in (lg for lg in result.legs if lg.robot == robot):
            ts = np.linspace(leg.path[0][1], leg.path[-1][1], 8 * len(leg.path))
            xy = positions(roadmap, leg.path, ts)
            ax.plot(xy[:, 0], xy[:, 1], color=color, lw=1.2, alpha=0.6)
        ax.plot([], [], color=color, label=robot)
    ax.set_title(f"{len(result.done)} tasks, makespan {result.makespan:.0f} s, 0 conflicts"
                 if result.done else "no tasks done")
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)

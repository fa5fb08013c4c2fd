"""``fleet-coord plan``: plan a MovingAI MAPF instance with prioritised SIPP.

Reads a ``.map`` and the first ``--agents`` rows of a ``.scen``, plans every agent on
the 4-connected grid (unit time per move, vertex and swap conflicts forbidden — the
classic MAPF rules of docs/core-model.md) and writes::

    {"map": "<map path>", "scen": "<scen path>",
     "agents": [{"start": [x, y], "goal": [x, y], "path": [[x, y], ...]}, ...],
     "sum_of_costs": ..., "makespan": ..., "solve_time_s": ...}

``path[t]`` is the agent's cell at integer time ``t`` (x = column, y = row), from its
start at ``t = 0`` to the time it reaches its goal for the last time; afterwards the
agent stays at its goal (so pad with the last cell to compare paths of different
lengths). Sum of costs = sum of ``len(path) - 1``; makespan = the longest of those.
"""
from __future__ import annotations

import argparse
import json
import os

# A disc this small keeps the grid's closed-form exclusion: classic MAPF conflicts.
MAPF_ROBOT_RADIUS = 0.1


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {text!r}")
    return value


def write_json(path: str, document: object) -> None:
    """Write ``document`` as one line of JSON; a failure is the user's CliError."""
    from .cli import CliError
    try:
        with open(path, "w") as f:
            json.dump(document, f, separators=(",", ":"))
            f.write("\n")
    except OSError as err:
        raise CliError(f"cannot write {path}: {err.strerror or err}") from None


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "plan", help="plan a MovingAI MAPF instance (prioritised SIPP)",
        description="Plan the first N agents of a MovingAI scenario on its map with "
                    "prioritised SIPP (with restarts) and write the plan as JSON.",
        epilog="path[t] in the output is the agent's cell (x = column, y = row) at integer "
               "time t, up to the time it reaches its goal for the last time; it stays "
               "there afterwards. Exit status: 0 planned, 2 bad input or no plan within "
               "the time limit.")
    parser.add_argument("--map", required=True, metavar="M.map", help="MovingAI .map file")
    parser.add_argument("--scen", required=True, metavar="S.scen", help="MovingAI .scen file")
    parser.add_argument("--agents", required=True, type=_positive_int, metavar="N",
                        help="plan the first N rows of the scenario")
    parser.add_argument("--time-limit", type=_positive_float, default=60.0, metavar="SEC",
                        help="give up after SEC seconds of planning (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed of the priority order's tie-breaking (default: %(default)s)")
    parser.add_argument("--out", required=True, metavar="plan.json",
                        help="where to write the plan (JSON)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from .cli import CliError
    from .core.planner import plan_prioritized, vertices_at_unit_times
    from .core.roadmap import (Footprint, MapError, Roadmap, load_movingai_map,
                               load_scenario)

    try:
        grid = load_movingai_map(args.map)
        rows = load_scenario(args.scen, args.agents, grid=grid)
    except MapError as err:
        raise CliError(str(err)) from None
    except OSError as err:
        raise CliError(f"cannot read {err.filename or args.map}: "
                       f"{err.strerror or err}") from None
    out_dir = os.path.dirname(os.path.abspath(args.out))
    if not os.path.isdir(out_dir):
        raise CliError(f"--out {args.out}: folder {out_dir} does not exist")

    roadmap = Roadmap.from_grid(grid)
    exclusion = roadmap.exclusion(Footprint(radius=MAPF_ROBOT_RADIUS))
    starts = [roadmap.vertex_at(*start) for start, _ in rows]
    goals = [roadmap.vertex_at(*goal) for _, goal in rows]
    for what, cells, vertices in (("start", [r[0] for r in rows], starts),
                                  ("goal", [r[1] for r in rows], goals)):
        seen = {}
        for i, (cell, v) in enumerate(zip(cells, vertices)):
            if v in seen:
                raise CliError(f"{args.scen}: agents {seen[v]} and {i} share the {what} "
                               f"cell {list(cell)}")
            seen[v] = i
    for i, (s, g) in enumerate(zip(starts, goals)):
        if roadmap.shortest_times(g)[s] == float("inf"):
            raise CliError(f"{args.scen}: agent {i}'s goal {list(rows[i][1])} cannot be "
                           f"reached from its start {list(rows[i][0])} on {args.map}")

    plan = plan_prioritized(roadmap, exclusion, starts, goals, time_limit_s=args.time_limit,
                            seed=args.seed)
    if plan is None:
        raise CliError(f"no plan found for {len(rows)} agents within {args.time_limit:g} s "
                       "(prioritised planning is incomplete: try a longer --time-limit, "
                       "another --seed or fewer agents)")

    xy = roadmap.pos.astype(int).tolist()
    agents = []
    for (start, goal), path in zip(rows, plan.paths):
        cells = [xy[v] for v in vertices_at_unit_times(path)]
        agents.append({"start": list(start), "goal": list(goal), "path": cells})
    sum_of_costs = sum(len(a["path"]) - 1 for a in agents)
    makespan = max(len(a["path"]) - 1 for a in agents)
    document = {"map": args.map, "scen": args.scen, "agents": agents,
                "sum_of_costs": sum_of_costs, "makespan": makespan,
                "solve_time_s": round(plan.solve_time_s, 4)}
    write_json(args.out, document)
    print(f"planned {len(agents)} agents in {plan.solve_time_s:.3f} s "
          f"({plan.attempts} attempt{'s' if plan.attempts != 1 else ''}): "
          f"sum of costs {sum_of_costs}, makespan {makespan} -> {args.out}")
    return 0

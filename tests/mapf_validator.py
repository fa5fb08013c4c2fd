"""An independent checker of classic MAPF plans (4-connected grid, unit time).

Written from the MAPF definitions (Stern et al., SoCS 2019) and sharing no code with the
planner: a plan is a list of per-agent cell sequences, ``paths[i][t] = (x, y)`` the cell
of agent ``i`` at integer time ``t`` (x = column, y = row). A path ends when its agent
reaches its goal for the last time; the agent stays there afterwards, so shorter paths
are padded with their last cell up to the makespan before checking conflicts.

``check_plan`` returns the list of violations (empty = valid); ``assert_valid_plan``
raises ``AssertionError`` listing the first few.
"""
from __future__ import annotations

from typing import List, Sequence, Tuple

Cell = Tuple[int, int]


def check_plan(free, starts: Sequence[Cell], goals: Sequence[Cell],
               paths: Sequence[Sequence[Cell]]) -> List[str]:
    """Violations of ``paths`` on the grid ``free[y][x]`` (truthy = free cell)."""
    errors: List[str] = []
    height = len(free)
    width = len(free[0]) if height else 0
    if not (len(starts) == len(goals) == len(paths)):
        return [f"{len(starts)} starts, {len(goals)} goals, {len(paths)} paths"]
    cleaned: List[List[Cell]] = []
    for i, path in enumerate(paths):
        path = [(int(c[0]), int(c[1])) for c in path]
        cleaned.append(path)
        if not path:
            errors.append(f"agent {i}: empty path")
            continue
        if path[0] != tuple(starts[i]):
            errors.append(f"agent {i}: starts at {path[0]}, not at its start {tuple(starts[i])}")
        if path[-1] != tuple(goals[i]):
            errors.append(f"agent {i}: ends at {path[-1]}, not at its goal {tuple(goals[i])}")
        for t, (x, y) in enumerate(path):
            if not (0 <= x < width and 0 <= y < height) or not free[y][x]:
                errors.append(f"agent {i}: at t={t} in cell {(x, y)}, which is blocked or off the map")
        for t in range(1, len(path)):
            (x0, y0), (x1, y1) = path[t - 1], path[t]
            if abs(x0 - x1) + abs(y0 - y1) > 1:
                errors.append(f"agent {i}: jumps from {(x0, y0)} to {(x1, y1)} at t={t}")
    if errors:
        return errors
    makespan = max((len(p) for p in cleaned), default=0)
    padded = [p + [p[-1]] * (makespan - len(p)) for p in cleaned]
    for t in range(makespan):
        seen = {}
        for i, p in enumerate(padded):
            other = seen.setdefault(p[t], i)
            if other != i:
                errors.append(f"vertex conflict: agents {other} and {i} in {p[t]} at t={t}")
        if t == 0:
            continue
        moves = {}
        for i, p in enumerate(padded):
            if p[t - 1] != p[t]:
                moves[(p[t - 1], p[t])] = i
        for (a, b), i in moves.items():
            j = moves.get((b, a))
            if j is not None and i < j:
                errors.append(f"swap conflict: agents {i} and {j} swap {a} <-> {b} "
                              f"between t={t - 1} and t={t}")
    return errors


def assert_valid_plan(free, starts, goals, paths) -> None:
    errors = check_plan(free, starts, goals, paths)
    assert not errors, f"{len(errors)} violations, e.g. " + "; ".join(errors[:5])


def sum_of_costs(paths: Sequence[Sequence[Cell]]) -> int:
    return sum(len(p) - 1 for p in paths)


def makespan(paths: Sequence[Sequence[Cell]]) -> int:
    return max((len(p) - 1 for p in paths), default=0)

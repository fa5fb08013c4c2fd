"""An independent checker of lifelong runs (``fleet-coord lifelong`` result.json) on
League of Robot Runners instances.

Written from the LoRR rules (start kit ``Input_Output_Format.md``, the 2023 action
model) and sharing no code with the runner or its loader: it reads the instance files
itself. A run is valid when

- every agent starts on its start cell facing +x (o = 0) and its path has steps + 1
  entries, each a free cell of the map;
- every step is one action: forward one cell in the heading (0 = +x, 1 = +y, 2 = -x,
  3 = -y; x = column, y = row), a 90-degree turn in place, or a wait;
- no two agents share a cell at a step (vertex conflict) or swap cells in a step (swap
  conflict);
- every task listed carries the errands of its line of the tasks file (ids wrap around);
  a task counts as finished at step f only if its agent visited its errands in order,
  one per step, after that agent's previous finished task and (pool rules) after the
  task was revealed, and stood on the last errand at step f; ``finished`` is the count.

``check_result`` returns the list of violations (empty = valid).
"""
from __future__ import annotations

import json
import os
from typing import Any

STEP = ((1, 0), (0, 1), (-1, 0), (0, -1))


def _data_lines(path: str) -> list[str]:
    with open(path) as f:
        return [s.strip() for s in f if s.strip() and not s.strip().startswith("#")]


def read_instance(path: str) -> dict[str, Any]:
    """The instance as plain data: free[y][x], starts [(x, y)], tasks [[(x, y), ...]],
    reveal (tasks open at a time)."""
    with open(path) as f:
        doc = json.load(f)
    base = os.path.dirname(os.path.abspath(path))
    with open(os.path.join(base, doc["mapFile"])) as f:
        lines = [s.rstrip("\r\n") for s in f]
    height = int(lines[1].split()[1])
    width = int(lines[2].split()[1])
    free = [[ch in ".GSE" for ch in row] for row in lines[4:4 + height]]
    cell = lambda word: (int(word) % width, int(word) // width)  # noqa: E731
    team = int(doc["teamSize"])
    starts = [cell(w) for w in _data_lines(os.path.join(base, doc["agentFile"]))[1:1 + team]]
    rows = _data_lines(os.path.join(base, doc["taskFile"]))
    tasks = [[cell(w) for w in row.split(",")] for row in rows[1:1 + int(rows[0])]]
    reveal = max(1, int(float(doc.get("numTasksReveal", 1)) * team))
    return {"free": free, "width": width, "height": height, "starts": starts,
            "tasks": tasks, "reveal": reveal}


def check_result(instance: dict[str, Any], result: dict[str, Any], rule: str) -> list[str]:
    """Violations of ``result`` (result.json as loaded) on ``instance`` (read_instance);
    ``rule`` is "roundrobin" (task k is agent k mod n's) or "pool" (greedy, auction)."""
    errors: list[str] = []
    free, W, H = instance["free"], instance["width"], instance["height"]
    N = result["steps"]
    agents = result["agents"]
    n = len(instance["starts"])
    if len(agents) != n:
        return [f"{len(agents)} agents in the result, the instance has {n}"]
    paths = []
    for a, agent in enumerate(agents):
        path = [tuple(p) for p in agent["path"]]
        paths.append(path)
        if len(path) != N + 1:
            errors.append(f"agent {a}: {len(path)} path entries, expected {N + 1}")
            continue
        start = tuple(instance["starts"][a])
        if tuple(agent["start"]) != start or path[0] != (*start, 0):
            errors.append(f"agent {a}: starts at {path[0]}, expected {(*start, 0)}")
        for t, (x, y, o) in enumerate(path):
            if not (0 <= x < W and 0 <= y < H and free[y][x]) or o not in (0, 1, 2, 3):
                errors.append(f"agent {a}: step {t} at {(x, y, o)}: not a free cell and heading")
        for t in range(1, len(path)):
            (x0, y0, o0), (x1, y1, o1) = path[t - 1], path[t]
            wait = (x0, y0, o0) == (x1, y1, o1)
            turn = (x0, y0) == (x1, y1) and (o1 - o0) % 4 in (1, 3)
            forward = (o0 == o1 and (x1 - x0, y1 - y0) == STEP[o0])
            if not (wait or turn or forward):
                errors.append(f"agent {a}: step {t}: {path[t - 1]} -> {path[t]} is not a "
                              "move forward, a turn or a wait")
    if errors:
        return errors
    for t in range(N + 1):
        seen: dict[tuple[int, int], int] = {}
        for a in range(n):
            c = paths[a][t][:2]
            if c in seen:
                errors.append(f"vertex conflict: agents {seen[c]} and {a} at {c}, step {t}")
            seen[c] = a
        if t:
            moves = {(paths[a][t - 1][:2], paths[a][t][:2]): a for a in range(n)
                     if paths[a][t - 1][:2] != paths[a][t][:2]}
            for (u, v), a in moves.items():
                b = moves.get((v, u))
                if b is not None and a < b:
                    errors.append(f"swap conflict: agents {a} and {b} swap {u} <-> {v} "
                                  f"at step {t}")
    errors += _check_tasks(instance, result, rule, paths)
    return errors


def _check_tasks(instance, result, rule, paths) -> list[str]:
    errors: list[str] = []
    n, N = len(paths), result["steps"]
    file_tasks, R = instance["tasks"], instance["reveal"]
    ids = set()
    finished_steps = []
    by_agent: dict[int, list[dict]] = {}
    for task in result["tasks"]:
        k = task["id"]
        if k in ids:
            errors.append(f"task {k} listed twice")
        ids.add(k)
        want = [list(c) for c in file_tasks[k % len(file_tasks)]]
        if [list(c) for c in task["errands"]] != want:
            errors.append(f"task {k}: errands {task['errands']}, the tasks file says {want}")
        f = task["finished_step"]
        if f is None:
            continue
        a = task["agent"]
        if not (isinstance(a, int) and 0 <= a < n) or not (isinstance(f, int) and 0 < f <= N):
            errors.append(f"task {k}: finished at {f!r} by agent {a!r}: not a step and agent")
            continue
        if rule == "roundrobin" and a != k % n:
            errors.append(f"task {k} finished by agent {a}, round robin gives it to {k % n}")
        finished_steps.append(f)
        by_agent.setdefault(a, []).append(task)
    if result["finished"] != len(finished_steps):
        errors.append(f"'finished' is {result['finished']}, {len(finished_steps)} tasks "
                      "have a finished_step")
    finished_steps.sort()

    def finished_by(step: int) -> int:   # tasks finished at steps <= step
        lo, hi = 0, len(finished_steps)
        while lo < hi:
            mid = (lo + hi) // 2
            if finished_steps[mid] <= step:
                lo = mid + 1
            else:
                hi = mid
        return lo

    for a, tasks in by_agent.items():
        path = paths[a]
        prev = 0
        for j, task in enumerate(sorted(tasks, key=lambda t: t["finished_step"])):
            k, f = task["id"], task["finished_step"]
            if rule == "roundrobin" and k != j * n + a:
                errors.append(f"agent {a}'s finished task number {j + 1} is {k}, round "
                              f"robin gives it task {j * n + a}")
            earliest = prev + 1
            if rule == "pool":
                # Task k is revealed once k - R + 1 tasks are finished; visits follow.
                while finished_by(earliest - 1) < k - R + 1 and earliest <= N:
                    earliest += 1
            errands = [tuple(c) for c in task["errands"]]
            s = earliest - 1
            ok = True
            for e in errands[:-1]:
                s += 1
                while s < f and path[s][:2] != e:
                    s += 1
                if s >= f:
                    ok = False
                    break
            if not ok or f <= s or path[f][:2] != errands[-1]:
                errors.append(f"task {k}: agent {a} did not visit its errands {errands} in "
                              f"order between steps {earliest} and {f}")
            prev = f
    return errors

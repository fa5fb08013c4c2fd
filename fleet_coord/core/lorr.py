"""League of Robot Runners (LoRR) problem files: the lifelong benchmark's instances.

An instance is a JSON file naming, relative to itself, a map, an agents file and a tasks
file (format: the start kit's ``Input_Output_Format.md``)::

    {"mapFile": "maps/x.map", "agentFile": "agents/x.agents", "taskFile": "tasks/x.tasks",
     "teamSize": 400, "numTasksReveal": 1.5, ...}

- the map is a MovingAI ``.map``; ``E`` (emitter) and ``S`` (service) cells are free;
- ``.agents``: the number of agents, then one start cell per line;
- ``.tasks``: the number of tasks, then one task per line: its errand cells in the order
  they must be visited, comma-separated;
- a cell is *linearised*: ``row * width + column``; lines starting with ``#`` are comments;
- ``teamSize`` agents take the first ``teamSize`` starts; ``numTasksReveal`` x
  ``teamSize`` tasks are revealed at a time, and each finished task is replaced by the
  next one of the file (the file wraps around when it runs out, as in the start kit).

Other keys (``agentCounter``, ``delayConfig``, ...) belong to later rule sets and are
kept in ``LorrInstance.extra`` but not modelled. Every problem is reported as a
``LorrError`` naming the file and line.

Pure core: no rclpy.
"""
from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass, field
from typing import Any

from fleet_coord.core.roadmap import GridMap, load_movingai_map
from fleet_coord.core.yaml_reader import FileFormatError

__all__ = ["LorrError", "LorrInstance", "load_lorr"]

Cell = tuple[int, int]   # (x, y) = (column, row)


class LorrError(FileFormatError):
    """A LoRR instance that cannot be used; ``str(err)`` reads ``"<path>:<line>: <why>"``."""


@dataclass
class LorrInstance:
    """A loaded instance. Cells are ``(x, y)`` = (column, row)."""
    path: str
    grid: GridMap
    starts: list[Cell]              # teamSize start cells
    tasks: list[list[Cell]]         # every task of the file: its errands in order
    reveal: int                     # tasks revealed at a time
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def team_size(self) -> int:
        return len(self.starts)

    def task(self, task_id: int) -> list[Cell]:
        """The errands of task ``task_id`` (ids count on past the file's end: it wraps)."""
        return self.tasks[task_id % len(self.tasks)]


def _key_line(text: str, key: str) -> int | None:
    m = re.search(r'"' + re.escape(key) + r'"\s*:', text)
    return None if m is None else text.count("\n", 0, m.start()) + 1


def _numbered_lines(path: str, what: str) -> list[tuple[int, str]]:
    """(line number, stripped text) of every non-blank, non-comment line of ``path``."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            lines = f.read().split("\n")
    except OSError as err:
        raise LorrError(f"cannot read the {what}: {err.strerror}", path) from None
    return [(i + 1, s.strip()) for i, s in enumerate(lines)
            if s.strip() and not s.lstrip().startswith("#")]


def _count(path: str, lines: list[tuple[int, str]], what: str) -> int:
    if not lines:
        raise LorrError(f"expected the number of {what} on the first line, got an empty file",
                        path, 1)
    line, text = lines[0]
    if not text.isdigit():
        raise LorrError(f"expected the number of {what} (an integer), got {text!r}", path, line)
    n = int(text)
    if len(lines) - 1 < n:
        raise LorrError(f"the file announces {n} {what} but has {len(lines) - 1}", path,
                        lines[-1][0])
    return n


def _cell(path: str, line: int, word: str, grid: GridMap, what: str) -> Cell:
    if not word.isdigit():
        raise LorrError(f"expected {what} as a linearised cell (row * width + column, an "
                        f"integer >= 0), got {word!r}", path, line)
    index = int(word)
    if index >= grid.width * grid.height:
        raise LorrError(f"{what} {index} is off the {grid.width} x {grid.height} map "
                        f"(cells 0..{grid.width * grid.height - 1})", path, line)
    y, x = divmod(index, grid.width)
    if not grid.free[y, x]:
        raise LorrError(f"{what} {index} (x={x}, y={y}) is an obstacle on {grid.path}",
                        path, line)
    return (x, y)


def load_lorr(path: str | os.PathLike[str]) -> LorrInstance:
    """Read a LoRR instance (JSON + map + agents + tasks); raise ``LorrError`` (or the
    map's ``MapError``) naming the file and line of the first problem."""
    path = os.fspath(path)
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as err:
        raise LorrError(f"cannot read the instance: {err.strerror}", path) from None
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as err:
        raise LorrError(f"invalid JSON: {err.msg}", path, err.lineno) from None
    if not isinstance(doc, dict):
        raise LorrError("expected a JSON object with mapFile, agentFile, taskFile, teamSize",
                        path, 1)

    def need(key: str, kind: type, what: str) -> Any:
        if key not in doc:
            raise LorrError(f"missing key {key!r} ({what})", path, 1)
        value = doc[key]
        ok = (isinstance(value, kind) and not isinstance(value, bool)
              if kind is not float else
              isinstance(value, (int, float)) and not isinstance(value, bool))
        if not ok:
            raise LorrError(f"expected {key!r} to be {what}, got {value!r}", path,
                            _key_line(text, key))
        return value

    base = os.path.dirname(os.path.abspath(path))
    files = {}
    for key, what in (("mapFile", "the map"), ("agentFile", "the agents file"),
                      ("taskFile", "the tasks file")):
        rel = need(key, str, f"the path of {what}, relative to the instance")
        full = os.path.join(base, rel)
        if not os.path.isfile(full):
            raise LorrError(f"{key} {rel!r}: no such file ({full})", path, _key_line(text, key))
        files[key] = full
    team = need("teamSize", int, "the number of agents, an integer >= 1")
    if team < 1:
        raise LorrError(f"expected 'teamSize' >= 1, got {team}", path, _key_line(text, "teamSize"))
    reveal_factor = float(doc.get("numTasksReveal", 1))
    if "numTasksReveal" in doc:
        reveal_factor = need("numTasksReveal", float, "a number > 0")
    if not (math.isfinite(reveal_factor) and reveal_factor > 0):
        raise LorrError(f"expected 'numTasksReveal' > 0, got {reveal_factor!r}", path,
                        _key_line(text, "numTasksReveal"))

    try:
        grid = load_movingai_map(files["mapFile"], extra_free="E")
    except OSError as err:
        raise LorrError(f"cannot read the map: {err.strerror}", files["mapFile"]) from None

    agents_path = files["agentFile"]
    lines = _numbered_lines(agents_path, "agents file")
    n = _count(agents_path, lines, "agents")
    if team > n:
        raise LorrError(f"teamSize {team} but the agents file {agents_path} has only {n} "
                        "starts", path, _key_line(text, "teamSize"))
    free_cells = int(grid.free.sum())
    if team > free_cells:
        raise LorrError(f"teamSize {team} is more than the {free_cells} free cells of "
                        f"{grid.path}", path, _key_line(text, "teamSize"))
    starts: list[Cell] = []
    seen: dict[Cell, int] = {}
    for line, word in lines[1:1 + team]:
        cell = _cell(agents_path, line, word, grid, "start")
        if cell in seen:
            raise LorrError(f"start {word} (x={cell[0]}, y={cell[1]}) is also the start of "
                            f"agent {seen[cell]}", agents_path, line)
        seen[cell] = len(starts)
        starts.append(cell)

    tasks_path = files["taskFile"]
    lines = _numbered_lines(tasks_path, "tasks file")
    m = _count(tasks_path, lines, "tasks")
    if m < 1:
        raise LorrError("expected at least one task", tasks_path, lines[0][0])
    tasks: list[list[Cell]] = []
    for line, text_line in lines[1:1 + m]:
        words = [w.strip() for w in text_line.split(",")]
        if any(not w for w in words):
            raise LorrError(f"expected errand cells separated by commas, got {text_line!r}",
                            tasks_path, line)
        tasks.append([_cell(tasks_path, line, w, grid, "errand") for w in words])

    reveal = max(1, int(reveal_factor * team))
    known = {"mapFile", "agentFile", "taskFile", "teamSize", "numTasksReveal"}
    return LorrInstance(path=path, grid=grid, starts=starts, tasks=tasks, reveal=reveal,
                        extra={k: v for k, v in doc.items() if k not in known})

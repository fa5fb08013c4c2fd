"""The causal event log: every cfp, proposal, refusal, award, reservation change, task
status and robot loss, one JSON object per line, each with a Lamport timestamp.

Lamport clocks (Lamport, CACM 1978): every fleet process keeps a counter, stamps what it
sends with `tick()`, and on receipt moves to `max(own, received) + 1` (`witness`). Sorting
the log by (lamport, source, seq) gives an order consistent with causality: an award is
always after the proposal it accepts, a task's DONE after its award. `replay` rebuilds the
end state of a run (each task's state and robot, the reservation table version) from the
log alone.
"""
from __future__ import annotations

import json
import math
import os
import threading
from dataclasses import dataclass, field
from typing import IO, Any, Iterable, Iterator


class LamportClock:
    """A thread-safe Lamport clock."""

    def __init__(self, start: int = 0) -> None:
        self._t = int(start)
        self._lock = threading.Lock()

    @property
    def time(self) -> int:
        return self._t

    def tick(self) -> int:
        """A local event or a send: advance and return the new timestamp."""
        with self._lock:
            self._t += 1
            return self._t

    def witness(self, received: int) -> int:
        """A receive of a message stamped `received`: jump past it."""
        with self._lock:
            self._t = max(self._t, int(received)) + 1
            return self._t


def _jsonable(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return "inf" if value > 0 else ("-inf" if value < 0 else "nan")
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


class EventLog:
    """Append-only JSONL writer. Each line: {"lamport", "seq", "source", "event", "task_id",
    "robot", "t", ...detail}. Lines are flushed as they are written, so a crash loses at
    most the line being written (the reader skips a torn last line)."""

    def __init__(self, path: str | None, source: str) -> None:
        self.path = path
        self.source = source
        self.clock = LamportClock()
        self._seq = 0
        self._lock = threading.Lock()
        self._f: IO[str] | None = None
        if path:
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
            self._f = open(path, "a", encoding="utf-8")

    def record(self, event: str, *, t: float, task_id: str = "", robot: str = "",
               lamport: int | None = None, **detail: Any) -> dict[str, Any]:
        """Record an event; `lamport` is the sender's stamp of a received message (the
        log's clock witnesses it), None for a local event."""
        stamp = self.clock.witness(lamport) if lamport is not None else self.clock.tick()
        with self._lock:
            self._seq += 1
            row = {"lamport": stamp, "seq": self._seq, "source": self.source, "event": event,
                   "task_id": task_id, "robot": robot, "t": t, **_jsonable(detail)}
            if self._f is not None:
                self._f.write(json.dumps(row, separators=(",", ":")) + "\n")
                self._f.flush()
        return row

    def close(self) -> None:
        if self._f is not None:
            self._f.close()
            self._f = None


def read_log(paths: Iterable[str]) -> list[dict[str, Any]]:
    """All events of one or more logs in causal order. A torn last line (a crash mid-write)
    is skipped; any other malformed line raises ValueError naming file and line."""
    rows = []
    for path in paths:
        with open(path, encoding="utf-8") as f:
            lines = f.read().split("\n")
        for i, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as e:
                if i == len(lines) or (i == len(lines) - 1 and lines[-1] == ""):
                    continue  # the torn tail of a crashed writer
                raise ValueError(f"{path}:{i}: not a JSON event ({e.msg})") from None
    rows.sort(key=lambda r: (r["lamport"], r["source"], r["seq"]))
    return rows


@dataclass
class ReplayedRun:
    tasks: dict[str, dict[str, str]] = field(default_factory=dict)   # task id -> {"state", "robot"}
    awards: dict[str, list[str]] = field(default_factory=dict)  # task id -> robots awarded
    table_version: int = 0
    lost: list[str] = field(default_factory=list)


def replay(events: Iterator[dict[str, Any]] | list[dict[str, Any]]) -> ReplayedRun:
    """Rebuild the end state of a run from its events."""
    run = ReplayedRun()
    for ev in events:
        kind, tid = ev["event"], ev.get("task_id", "")
        if kind == "submit":
            run.tasks[tid] = {"state": "QUEUED", "robot": ""}
        elif kind == "award":
            run.awards.setdefault(tid, []).append(ev["robot"])
            run.tasks.setdefault(tid, {})["robot"] = ev["robot"]
            run.tasks[tid]["state"] = "AWARDED"
        elif kind == "status":
            entry = run.tasks.setdefault(tid, {"robot": ev.get("robot", "")})
            entry["state"] = ev["state"]
            if ev.get("robot"):
                entry["robot"] = ev["robot"]
        elif kind == "reservation":
            run.table_version = max(run.table_version, int(ev.get("version", 0)))
        elif kind == "robot_lost":
            run.lost.append(ev["robot"])
    return run

"""The traffic authority's durable state: the reservation table, which robots are lost
and what was revoked from robots not heard since survive a crash of the traffic node, so
a restarted authority never grants what the dead one had already granted to someone
else, nor what a robot that has not heard its revocation may still be driving.

An append-only JSON-lines file, written ahead of every answer the authority gives:

    {"header": {"format": 1, "roadmap_id": ...}}
    {"snapshot": {"version": v, "reservations": [...]}, "lost": [...]}
    {"update": {"version": v+1, "robot": ..., "removed": [...], "added": [...]}}
    {"lost": [...]}                        # the lost set after a change
    {"unheard": {robot: [[resource, t_start, t_end, revoked_at], ...]}}   # after a change
    ...

`load` replays it (snapshot, then every update in order; a torn last line from a crash
mid-write is ignored — its answer was never sent). `append` writes, flushes and (by
default) fsyncs before returning, so a granted reservation is on disk before the robot
hears "ok". `compact` rewrites the file as one snapshot (to a temporary file, fsync,
atomic rename) when it has grown. Version numbers continue across restarts, so the
agents' table replicas keep applying deltas as if nothing happened.

Pure file I/O; no rclpy.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any, BinaryIO, Iterable, Mapping, Sequence

from fleet_coord.core.errors import CannotStart
from fleet_coord.core.reservations import Exclusion, ReservationTable

FORMAT = 1

#: robot -> what was revoked from it that it has not heard: (resource, t0, t1, revoked at)
Unheard = Mapping[str, Sequence[tuple[int, float, float, float]]]


def _unheard_json(unheard: Unheard) -> dict[str, list[list[float]]]:
    return {robot: [list(h) for h in holds] for robot, holds in sorted(unheard.items()) if holds}


class TableLogError(CannotStart, RuntimeError):
    """The log cannot be used (another roadmap, corrupt in the middle, wrong format): the
    traffic node stops with the message instead of starting on a table it cannot trust."""


@dataclass
class Recovered:
    table: ReservationTable
    lost: set[str] = field(default_factory=set)
    updates: int = 0          # updates replayed after the snapshot
    #: robot -> what was revoked from it, not heard since: (resource, t0, t1, revoked at)
    unheard: dict[str, list[tuple[int, float, float, float]]] = field(default_factory=dict)


class TableLog:
    def __init__(self, path: str, roadmap_id: str, *, fsync: bool = True,
                 compact_every: int = 5000) -> None:
        self.path = path
        self.roadmap_id = roadmap_id
        self.fsync = fsync
        self.compact_every = compact_every
        self._since_compact = 0
        self._f: BinaryIO | None = None
        #: the authority incarnation whose table this is (the header's; None: not recorded)
        self.epoch: int | None = None

    # -- reading ---------------------------------------------------------------------------
    def load(self, exclusive: Exclusion, num_resources: int) -> Recovered | None:
        """The state the log records, or None when there is no log yet."""
        if not os.path.exists(self.path) or os.path.getsize(self.path) == 0:
            return None
        with open(self.path, "rb") as f:
            raw = f.read().split(b"\n")
        table, lost, n = None, set(), 0
        unheard: dict[str, list[tuple[int, float, float, float]]] = {}
        for i, line in enumerate(raw):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except ValueError:
                if i == len(raw) - 1 or all(not x.strip() for x in raw[i + 1:]):
                    break   # a torn last write: never acknowledged
                raise TableLogError(f"{self.path}:{i + 1}: not JSON, and not the last line "
                                    "(the table log is corrupt)") from None
            if "header" in rec:
                h = rec["header"]
                if h.get("format") != FORMAT:
                    raise TableLogError(f"{self.path}: format {h.get('format')!r}, expected {FORMAT}")
                if isinstance(h.get("epoch"), int):
                    self.epoch = h["epoch"]
                if h.get("roadmap_id") != self.roadmap_id:
                    raise TableLogError(
                        f"{self.path} records roadmap {h.get('roadmap_id')!r}, this fleet's is "
                        f"{self.roadmap_id!r}: move the old log away to start a new table")
            if "snapshot" in rec:
                table = ReservationTable.from_snapshot(rec["snapshot"], exclusive, num_resources)
                n = 0
            if "update" in rec:
                if table is None:
                    raise TableLogError(f"{self.path}:{i + 1}: an update before any snapshot")
                table.apply_update(rec["update"])
                n += 1
            if "lost" in rec:
                lost = set(rec["lost"])
            if "unheard" in rec:
                unheard = self._unheard_record(rec["unheard"], i + 1)
        if table is None:
            return None
        table.drain_updates()
        return Recovered(table, lost, n, unheard)

    def _unheard_record(self, raw: Any, line: int) -> dict[str, list[tuple[int, float, float, float]]]:
        try:
            out = {}
            for robot, holds in raw.items():
                if not all(len(h) == 4 for h in holds):
                    raise ValueError(robot)
                out[str(robot)] = [(int(h[0]), float(h[1]), float(h[2]), float(h[3]))
                                   for h in holds]
            return out
        except (AttributeError, TypeError, ValueError):
            raise TableLogError(f"{self.path}:{line}: \"unheard\" is not a map of robot to "
                                "[resource, t_start, t_end, revoked_at] lists (the table log "
                                "is corrupt)") from None

    # -- writing ---------------------------------------------------------------------------
    def start(self, table: ReservationTable, lost: Iterable[str] = (),
              unheard: Unheard | None = None) -> None:
        """Begin writing: the file becomes one snapshot of `table` (what was loaded)."""
        self.compact(table, lost, unheard)

    def append(self, updates: list[dict[str, Any]], lost: Iterable[str] | None = None,
               unheard: Unheard | None = None) -> None:
        """Write `updates`, and the lost set and the unheard revocations when given (they
        changed), ahead of announcing them."""
        if not updates and lost is None and unheard is None:
            return
        lines = [json.dumps({"update": u}) for u in updates]
        if lost is not None:
            lines.append(json.dumps({"lost": sorted(lost)}))
        if unheard is not None:
            lines.append(json.dumps({"unheard": _unheard_json(unheard)}))
        f = self._f
        if f is None:
            raise RuntimeError(f"table log {self.path}: append before start()")
        f.write(("\n".join(lines) + "\n").encode())
        f.flush()
        if self.fsync:
            os.fsync(f.fileno())
        self._since_compact += len(updates)

    def should_compact(self) -> bool:
        return self._since_compact >= self.compact_every

    def compact(self, table: ReservationTable, lost: Iterable[str] = (),
                unheard: Unheard | None = None) -> None:
        tmp = self.path + ".tmp"
        with open(tmp, "wb") as f:
            header: dict[str, Any] = {"format": FORMAT, "roadmap_id": self.roadmap_id}
            if self.epoch is not None:
                header["epoch"] = self.epoch
            f.write((json.dumps({"header": header})
                     + "\n" + json.dumps({"snapshot": table.snapshot(), "lost": sorted(lost),
                                           "unheard": _unheard_json(unheard or {})})
                     + "\n").encode())
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)
        if self.fsync:
            dfd = os.open(os.path.dirname(os.path.abspath(self.path)), os.O_RDONLY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)
        if self._f is not None:
            self._f.close()
        self._f = open(self.path, "ab")
        self._since_compact = 0

    def close(self) -> None:
        if self._f is not None:
            self._f.close()
            self._f = None

"""A local replica of the traffic authority's reservation table, fed by its updates.

Agents plan against it, the dispatcher and the monitors read it. Deltas apply in version
order; a snapshot replaces the replica when it is at least as new; a gap (a lost delta)
leaves the replica as it is and marks it stale until the next snapshot (the authority
publishes one periodically). Applying is idempotent, so one replica can be shared by
every agent of a process and each may hand it the same update.

Pure: the updates are core `TableUpdate`s (fleet_coord.convert makes them from
/traffic/updates messages).
"""
from __future__ import annotations

from dataclasses import dataclass

from fleet_coord.core.reservations import Exclusion, Reservation, ReservationTable

__all__ = ["Replica", "TableUpdate"]


@dataclass(frozen=True)
class TableUpdate:
    """One message of the authority: a delta (what `robot` lost and gained, making the
    table `version`) or a whole-table snapshot (`added` is the table)."""
    version: int
    robot: str = ""
    is_snapshot: bool = False
    roadmap_id: str = ""
    added: tuple[Reservation, ...] = ()
    removed: tuple[Reservation, ...] = ()


#: (roadmap id, resources) -> the table whose exclusion cache the replicas share
_CACHE_TABLES: dict[tuple[str, int], ReservationTable] = {}


class Replica:
    def __init__(self, exclusive: Exclusion, num_resources: int, roadmap_id: str = "") -> None:
        self.exclusive = exclusive
        self.num_resources = num_resources
        self.roadmap_id = roadmap_id
        self.table = ReservationTable(exclusive, num_resources)
        if roadmap_id:   # one exclusion cache for every replica of this roadmap in the process
            holder = _CACHE_TABLES.get((roadmap_id, num_resources))
            if holder is None:   # an empty table that only holds the cache
                holder = _CACHE_TABLES[(roadmap_id, num_resources)] = ReservationTable(
                    exclusive, num_resources, record_updates=False)
            self.table.share_exclusion_cache(holder)
        self.stale = True  # until the first snapshot or delta chain from version 0

    @property
    def version(self) -> int:
        return self.table.version

    def wants(self, version: int, is_snapshot: bool, roadmap_id: str = "") -> bool:
        """Would `apply` change the replica with an update of this header? (Checked before
        converting a message: a whole snapshot costs.)"""
        if roadmap_id and self.roadmap_id and roadmap_id != self.roadmap_id:
            return False
        if is_snapshot:
            return version > self.table.version or (version == self.table.version
                                                    and self.stale)
        return version > self.table.version

    def apply(self, update: TableUpdate) -> bool:
        """Apply one update; returns True when the replica changed."""
        if not self.wants(update.version, update.is_snapshot, update.roadmap_id):
            return False
        if update.is_snapshot:
            self.table = ReservationTable.from_snapshot(
                {"version": update.version,
                 "reservations": [r.to_dict() for r in update.added]},
                self.exclusive, self.num_resources, share_cache_with=self.table)
            self.stale = False
            return True
        if update.version != self.table.version + 1:
            self.stale = True
            return False
        self.table.apply_update({"version": update.version, "robot": update.robot,
                                 "removed": [r.to_dict() for r in update.removed],
                                 "added": [r.to_dict() for r in update.added]})
        if update.version == 1:
            self.stale = False
        return True

"""A local replica of the traffic authority's reservation table, fed by its updates.

Agents plan against it, the dispatcher and the monitors read it. Every update carries the
authority's `epoch` (its incarnation: a restarted authority picks a new one) and a
`version` (counted within the epoch). The rules, and why:

- a delta applies only within the replica's epoch, at version + 1. A gap or a jump (a
  lost delta, a bogus version) marks the replica stale until the next snapshot: it is
  never applied out of order and never waited for;
- a delta of another epoch marks the replica stale (a new incarnation speaks: its
  snapshot follows at once), unless it is of an epoch the replica has left (a straggler
  of a dead incarnation);
- a snapshot the replica does not have - another epoch, another version, or any while
  stale - replaces it. So a new incarnation resynchronises every replica even when its
  versions start again lower (a restart without a table log), and a snapshot with a bogus
  version (2^64-1) holds the replica only until the authority's next periodic snapshot:
  versions order updates, they never lock a replica out of the authority.

A gap leaves the replica as it is, marked stale until the next snapshot: its owner asks
the authority for one at once (`Resync`: /traffic/resync), and the authority also publishes
one periodically. Applying is idempotent, so one replica can be shared by every
agent of a process and each may hand it the same update.

Pure: the updates are core `TableUpdate`s (fleet_coord.convert makes them from
/traffic/updates messages).
"""
from __future__ import annotations

from dataclasses import dataclass

from fleet_coord.core.reservations import (Exclusion, ReplicaOutOfSync, Reservation,
                                           ReservationTable)

__all__ = ["Replica", "Resync", "TableUpdate"]


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
    epoch: int = 0              # the authority's incarnation
    recovering: bool = False    # a new incarnation re-learns what robots hold


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
            # an empty table that only holds the cache; replaced when built on another
            # relation (two maps, or footprints, given the same id and size: the unit
            # tests' worlds) - the replica would otherwise read the other one's exclusions
            if holder is None or not holder.built_on(exclusive):
                holder = _CACHE_TABLES[(roadmap_id, num_resources)] = ReservationTable(
                    exclusive, num_resources, record_updates=False)
            self.table.share_exclusion_cache(holder)
        self.stale = True  # until the first snapshot or delta chain from version 0
        self.epoch: int | None = None   # the incarnation followed (None: none heard yet)
        self.recovering = False         # that incarnation re-learns what robots hold
        self.left: set[int] = set()     # epochs followed before (their stragglers ignored)

    @property
    def version(self) -> int:
        return self.table.version

    def wants(self, version: int, is_snapshot: bool, roadmap_id: str = "",
              epoch: int = 0) -> bool:
        """Would `apply` change the replica with an update of this header? (Checked before
        converting a message: a whole snapshot costs.)"""
        if roadmap_id and self.roadmap_id and roadmap_id != self.roadmap_id:
            return False
        if epoch in self.left:
            return False
        if is_snapshot:
            return self.stale or epoch != self.epoch or version != self.table.version
        return epoch != self.epoch or version > self.table.version

    def apply(self, update: TableUpdate) -> bool:
        """Apply one update; returns True when the replica changed."""
        if update.is_snapshot and update.epoch == self.epoch and not self.stale:
            # the end of a recovery changes no reservation: the next snapshot tells it
            self.recovering = update.recovering
        if not self.wants(update.version, update.is_snapshot, update.roadmap_id,
                          update.epoch):
            return False
        if update.is_snapshot:
            try:
                table = ReservationTable.from_snapshot(
                    {"version": update.version,
                     "reservations": [r.to_dict() for r in update.added]},
                    self.exclusive, self.num_resources, share_cache_with=self.table)
            except ValueError as e:
                self.stale = True   # the next good snapshot replaces it
                raise ValueError(f"epoch {update.epoch} snapshot {update.version}: {e}") from None
            self.table = table
            if self.epoch is not None and update.epoch != self.epoch:
                self.left.add(self.epoch)
            self.epoch, self.recovering = update.epoch, update.recovering
            self.stale = False
            return True
        if self.epoch is None and update.version == 1 and self.table.version == 0:
            self.epoch = update.epoch    # a fresh replica follows a fresh authority's chain
        if update.epoch != self.epoch:
            # a new incarnation speaks (its snapshot comes first when it starts; this one
            # was missed or is late): follow nothing until that snapshot
            self.stale = True
            return False
        if update.version != self.table.version + 1:
            self.stale = True
            return False
        try:
            self.table.apply_update({"version": update.version, "robot": update.robot,
                                     "removed": [r.to_dict() for r in update.removed],
                                     "added": [r.to_dict() for r in update.added]})
        except (ValueError, ReplicaOutOfSync) as e:
            # checked before any change: resynchronised by the next snapshot
            self.stale = True
            raise ValueError(f"epoch {update.epoch} update {update.version}: {e}") from None
        self.recovering = update.recovering
        if update.version == 1:
            self.stale = False
        return True

    @property
    def following(self) -> bool:
        """Following an incarnation of the authority (a snapshot or a chain from version 1
        was applied): an epoch change is a restart of the authority, not its first words."""
        return self.epoch is not None


#: s between two resync requests of one replica that stays stale (a request or its
#: snapshot lost)
RESYNC_EVERY = 1.0


class Resync:
    """When the owner of a replica asks the authority for a snapshot (/traffic/resync): as
    soon as the replica finds itself stale (a gap, a jump, another incarnation's delta),
    then every `every` s while it stays stale. Stale, a robot does not see revocations
    made since; the periodic snapshot is up to `snapshot_period` (5 s) away."""

    def __init__(self, every: float = RESYNC_EVERY) -> None:
        self.every = every
        self._asked: float | None = None

    def due(self, now: float, replica: Replica) -> bool:
        """Ask now? (True at most once per `every` s while `replica` is stale, a new one
        before its first snapshot too.)"""
        if not replica.stale:
            self._asked = None
            return False
        if self._asked is not None and now - self._asked < self.every:
            return False
        self._asked = now
        return True

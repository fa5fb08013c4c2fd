"""A local replica of the traffic authority's reservation table, fed by
`/traffic/updates` (msg/ReservationSet). Agents plan against it; the monitor draws it.

Deltas apply in version order; a snapshot replaces the replica when it is at least as
new; a gap (a lost delta) leaves the replica as it is and marks it stale until the next
snapshot (the authority publishes one periodically).
"""
from __future__ import annotations

import math

from fleet_coord_msgs.msg import ReservationSegment, ReservationSet

from fleet_coord.core.reservations import Reservation, ReservationTable


def segment_to_reservation(s: ReservationSegment) -> Reservation:
    return Reservation(robot=s.robot, resource=int(s.resource), t_start=float(s.t_start),
                       t_end=float(s.t_end),
                       lease_expiry=float(s.lease_expiry) if s.lease_expiry > 0 else math.inf)


def reservation_to_segment(r: Reservation) -> ReservationSegment:
    return ReservationSegment(robot=r.robot, resource=int(r.resource), t_start=float(r.t_start),
                              t_end=float(r.t_end),
                              lease_expiry=0.0 if math.isinf(r.lease_expiry) else float(r.lease_expiry))


#: (roadmap id, resources) -> the table whose exclusion cache the replicas share
_CACHE_TABLES: dict[tuple[str, int], ReservationTable] = {}


class TableReplica:
    def __init__(self, exclusive, num_resources: int, roadmap_id: str = "") -> None:
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

    def apply(self, msg: ReservationSet) -> bool:
        """Apply one update; returns True when the replica changed."""
        if msg.roadmap_id and self.roadmap_id and msg.roadmap_id != self.roadmap_id:
            return False
        if msg.is_snapshot:
            if msg.version < self.table.version or (msg.version == self.table.version and not self.stale):
                return False   # (checked first: converting a whole snapshot costs)
            added = [segment_to_reservation(s).to_dict() for s in msg.added]
            self.table = ReservationTable.from_snapshot(
                {"version": msg.version, "reservations": added}, self.exclusive,
                self.num_resources, share_cache_with=self.table)   # same relation
            self.stale = False
            return True
        if msg.version <= self.table.version:
            return False
        if msg.version != self.table.version + 1:
            self.stale = True
            return False
        added = [segment_to_reservation(s).to_dict() for s in msg.added]
        self.table.apply_update({"version": msg.version, "robot": msg.robot,
                                 "removed": [segment_to_reservation(s).to_dict() for s in msg.removed],
                                 "added": added})
        if msg.version == 1:
            self.stale = False
        return True

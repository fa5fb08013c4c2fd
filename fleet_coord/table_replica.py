"""The table replica fed straight from `/traffic/updates` messages (msg/ReservationSet),
for nodes that read the table: the dispatcher, the monitors, the CLI. The replica itself
(ordering, gaps, snapshots) is fleet_coord.core.replica.Replica, here as `core`.
"""
from __future__ import annotations

from fleet_coord_msgs.msg import ReservationSet

from fleet_coord.convert import table_update_from_msg
from fleet_coord.core.replica import Replica
from fleet_coord.core.reservations import Exclusion, ReservationTable


class TableReplica:
    def __init__(self, exclusive: Exclusion, num_resources: int, roadmap_id: str = "") -> None:
        self.core = Replica(exclusive, num_resources, roadmap_id)

    @property
    def table(self) -> ReservationTable:
        return self.core.table

    @property
    def version(self) -> int:
        return self.core.version

    @property
    def stale(self) -> bool:
        return self.core.stale

    @property
    def roadmap_id(self) -> str:
        return self.core.roadmap_id

    def apply(self, msg: ReservationSet) -> bool:
        """Apply one update; returns True when the replica changed. A snapshot is only
        converted when the replica takes it."""
        if not self.core.wants(msg.version, msg.is_snapshot, msg.roadmap_id, msg.epoch):
            if msg.is_snapshot:   # no reservation changed, but a recovery may have ended
                self.core.apply(table_update_from_msg(msg, segments=False))
            return False
        return self.core.apply(table_update_from_msg(msg))

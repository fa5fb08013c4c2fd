"""The table replica fed straight from `/traffic/updates` messages (msg/ReservationSet),
for nodes that read the table: the dispatcher, the monitors, the CLI. The replica itself
(ordering, gaps, snapshots) is fleet_coord.core.replica.Replica, here as `core`.
`ResyncRequester` asks the authority for a snapshot while a replica is stale (the
dispatcher's, the agents').
"""
from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from fleet_coord_msgs.msg import ReservationSet
from std_msgs.msg import String

from fleet_coord import qos
from fleet_coord.convert import table_update_from_msg
from fleet_coord.core.replica import Replica, Resync
from fleet_coord.core.reservations import Exclusion, ReservationTable

#: s between the checks of the replicas for staleness on the node's timer (an update
#: that shows a gap is checked at once)
RESYNC_CHECK_S = 0.5


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


class ResyncRequester:
    """Asks the traffic authority for a snapshot on `/traffic/resync` (std_msgs/String:
    `who` asks, for its log) while one of `replicas()` is stale: at once when `check` runs
    after an update showed it, then every second while it stays stale (core.replica.Resync).
    The authority answers on /traffic/updates, signed as always."""

    def __init__(self, node: Any, names: Callable[[str], str], who: str,
                 replicas: Callable[[], Iterable[Replica]], **timer_kw: Any) -> None:
        self._node = node
        self._pub = node.create_publisher(String, names("/traffic/resync"), qos.PROTOCOL)
        self._who = who
        self._replicas = replicas
        self._resync: dict[int, Resync] = {}
        node.create_timer(RESYNC_CHECK_S, self.check, **timer_kw)

    def check(self) -> None:
        now = self._node.get_clock().now().nanoseconds * 1e-9
        due = False
        for replica in self._replicas():
            due = self._resync.setdefault(id(replica), Resync()).due(now, replica) or due
        if due:   # one snapshot serves every replica
            self._pub.publish(String(data=self._who))

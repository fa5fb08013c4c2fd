"""Named QoS profiles: every topic in the fleet picks one of these on purpose.

- STATE: robot/fleet state and odometry. Best-effort: a late sample is worse than none.
  Odometry (one topic per robot) keeps the last 1; the shared state topics keep a burst
  from every robot (STATE_DEPTH). Liveliness AUTOMATIC with a lease, so DDS
  itself tells subscribers when a robot process goes silent.
- COMMAND: cmd_vel to a driver. Reliable, keep-last 1: the newest command must arrive.
- PROTOCOL: Contract Net and task status messages. Reliable, keep-last 100: every cfp,
  proposal and award counts.
- TABLE: reservation table updates. Reliable + transient-local, a history of ~5 s of
  updates (TABLE_DEPTH), so a replica that joins late receives the latest snapshot and
  the updates after it.
- KEYRING: /fleet/keyring, the operator-signed keyring (run-time key changes). Reliable
  + transient-local, keep-last 1: a node that starts later gets the newest one.
- CLOCK: /clock as Gazebo and ROS publish it (best-effort would drop ticks; reliable,
  keep-last 1 is what rosgraph uses for sim time in practice).
- TF: /tf as tf2_ros broadcasts it (reliable, keep-last 100), so tf2 listeners, RViz and
  Foxglove, which subscribe reliable, match.
- LATCHED: reliable + transient-local, keep-last 1: the newest of something published
  rarely, for late joiners (/tf_static as tf2_ros does it, /fleet/roadmap).
"""
from __future__ import annotations

from rclpy.duration import Duration
from rclpy.qos import (DurabilityPolicy, HistoryPolicy, LivelinessPolicy, QoSProfile,
                       ReliabilityPolicy)

#: Liveliness lease of the state publishers: a silent robot is noticed by DDS after this.
STATE_LEASE_S = 1.0


#: History depth of the state topics. They are keyless and shared by the whole fleet, so a
#: subscriber's keep-last history is one queue for *all* robots: with depth 1, robots whose
#: states arrive in one burst (several agents in one process tick together) overwrite each
#: other before the subscriber takes them, and all but the last robot look silent (seen:
#: a grouped fleet on sim time declared lost again and again). Deep enough for one burst
#: from every robot; best-effort still never resends a late sample.
STATE_DEPTH = 256


def state_qos(lease_s: float = STATE_LEASE_S) -> QoSProfile:
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=STATE_DEPTH,
                      reliability=ReliabilityPolicy.BEST_EFFORT,
                      durability=DurabilityPolicy.VOLATILE,
                      liveliness=LivelinessPolicy.AUTOMATIC,
                      liveliness_lease_duration=Duration(seconds=lease_s))


ODOM = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1,
                  reliability=ReliabilityPolicy.BEST_EFFORT,
                  durability=DurabilityPolicy.VOLATILE)

COMMAND = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1,
                     reliability=ReliabilityPolicy.RELIABLE,
                     durability=DurabilityPolicy.VOLATILE)

PROTOCOL = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=100,
                      reliability=ReliabilityPolicy.RELIABLE,
                      durability=DurabilityPolicy.VOLATILE)

#: History depth of /traffic/updates. A late joiner needs the newest snapshot (every 5 s)
#: and the deltas after it; a replica that misses some is stale until the next snapshot.
#: Deeper costs memory in every writer and reader: Fast DDS keeps a payload buffer per
#: history slot, grown to the largest sample it ever held, and every slot ends up holding
#: a snapshot once; 100 levels off, 1000 does not (docs/benchmarks.md, "Load").
TABLE_DEPTH = 100

TABLE = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=TABLE_DEPTH,
                   reliability=ReliabilityPolicy.RELIABLE,
                   durability=DurabilityPolicy.TRANSIENT_LOCAL)

CLOCK = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1,
                   reliability=ReliabilityPolicy.RELIABLE,
                   durability=DurabilityPolicy.VOLATILE)

KEYRING = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1,
                     reliability=ReliabilityPolicy.RELIABLE,
                     durability=DurabilityPolicy.TRANSIENT_LOCAL)

TF = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=100,
                reliability=ReliabilityPolicy.RELIABLE,
                durability=DurabilityPolicy.VOLATILE)

LATCHED = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1,
                     reliability=ReliabilityPolicy.RELIABLE,
                     durability=DurabilityPolicy.TRANSIENT_LOCAL)

#: A robot's committed path for its VDA 5050 master control (/<robot>/plan) and the
#: vehicle's status (/<robot>/vehicle): the latest one counts, and a node that starts late
#: gets it.
PLAN = LATCHED

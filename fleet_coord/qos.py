"""Named QoS profiles: every topic in the fleet picks one of these on purpose.

- STATE: robot/fleet state and odometry. Best-effort, keep-last 1: only the newest sample
  matters and a late one is worse than none. Liveliness AUTOMATIC with a lease, so DDS
  itself tells subscribers when a robot process goes silent.
- COMMAND: cmd_vel to a driver. Reliable, keep-last 1: the newest command must arrive.
- PROTOCOL: Contract Net and task status messages. Reliable, keep-last 100: every cfp,
  proposal and award counts.
- TABLE: reservation table updates. Reliable + transient-local, deep history, so a replica
  that joins late receives the latest snapshot and the updates after it.
- CLOCK: /clock as Gazebo and ROS publish it (best-effort would drop ticks; reliable,
  keep-last 1 is what rosgraph uses for sim time in practice).
"""
from __future__ import annotations

from rclpy.duration import Duration
from rclpy.qos import (DurabilityPolicy, HistoryPolicy, LivelinessPolicy, QoSProfile,
                       ReliabilityPolicy)

#: Liveliness lease of the state publishers: a silent robot is noticed by DDS after this.
STATE_LEASE_S = 1.0


def state_qos(lease_s: float = STATE_LEASE_S) -> QoSProfile:
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1,
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

TABLE = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1000,
                   reliability=ReliabilityPolicy.RELIABLE,
                   durability=DurabilityPolicy.TRANSIENT_LOCAL)

CLOCK = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1,
                   reliability=ReliabilityPolicy.RELIABLE,
                   durability=DurabilityPolicy.VOLATILE)

"""The independent run monitor (fleet_coord.run_monitor) judges a robot's position against
the table as it was at that time, not against a replica its updates have not reached yet.

Real messages, real replica and geometry; the node is a stand-in that only hands out the
subscription callbacks (the monitor runs on a real node in the demo and its tests).
"""
import math

from fleet_coord_msgs.msg import ReservationSet

from fleet_coord.convert import odometry_msg, segment_msg, to_time
from fleet_coord.core.planner import path_to_segments
from fleet_coord.run_monitor import RunMonitor


class _Node:
    def __init__(self):
        self.callbacks = {}

    def create_subscription(self, _type, topic, callback, _qos):
        self.callbacks[topic] = callback


def _update(version, robot, added, stamp, snapshot=False, removed=()):
    return ReservationSet(version=version, robot="" if snapshot else robot, roadmap_id="",
                          is_snapshot=snapshot, added=[segment_msg(robot, *a) for a in added],
                          removed=[segment_msg(robot, *r) for r in removed], stamp=to_time(stamp))


def test_a_grant_that_reaches_the_monitor_after_the_odometry_is_no_excursion():
    node = _Node()
    mon = RunMonitor(node, ["r1"], check_every=1)
    roadmap, ex = mon.roadmap, mon.exclusion
    a, b = roadmap.vertex("2,2"), roadmap.vertex("3,2")
    odom, table = node.callbacks["/r1/odom"], node.callbacks["/traffic/updates"]
    table(_update(1, "r1", [(a, 0.0, math.inf)], stamp=0.5))               # parked at 2,2
    path = [(a, 1.0), (b, 3.0)]
    segs = path_to_segments(roadmap, ex, path, 1.0)
    # the robot drives the grant (committed at t = 1.0) and reports itself at 3,2 at t = 3.5
    # before the monitor has heard of the grant
    odom(odometry_msg("r1", 3.0, 2.0, 0.0, 0.0, 0.0, to_time(3.5)))
    assert mon.samples == 0 and not mon.excursions                         # not judged yet
    table(_update(2, "r1", segs, stamp=1.0, removed=[(a, 0.0, math.inf)]))
    assert mon.samples == 0                      # the replica is current up to t = 1.0 only
    table(_update(2, "r1", segs, stamp=5.0, snapshot=True))               # the periodic one
    assert mon.samples == 1 and not mon.excursions
    # a robot outside what it holds is still an excursion
    odom(odometry_msg("r1", 5.0, 2.0, 0.0, 0.0, 0.0, to_time(4.0)))
    assert mon.samples == 2 and len(mon.excursions) == 1

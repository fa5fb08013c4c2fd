"""The independent safety monitor's core (fleet_coord.core.monitor): conflicts and
excursions from the table updates and the robots' poses."""
import random

import pytest

from fleet_coord.core.monitor import SafetyMonitor
from fleet_coord.core.replica import TableUpdate
from fleet_coord.core.reservations import Reservation
from fleet_coord.core.tracking import containment_error
from fleet_coord.fleet_config import load_roadmap_and_exclusion


@pytest.fixture(scope="module")
def world():
    roadmap, exclusion, rid = load_roadmap_and_exclusion("", 0.15)
    return roadmap, exclusion, rid


def test_the_quick_check_accepts_only_poses_within_tolerance_and_rejects_few_others(world):
    """`_inside` (centre in the held union eroded by r - tolerance) never passes a pose
    that sticks out by more than the tolerance, and passes nearly all that do not."""
    roadmap, exclusion, rid = world
    rng = random.Random(1)
    mon = SafetyMonitor(exclusion, roadmap.num_resources, rid)
    tol, agree, checked = mon.tolerance_m, 0, 0
    for k in range(40):
        v = rng.randrange(roadmap.num_vertices)
        lanes = [roadmap.edge_resource(int(e)) for e in roadmap.out_edges[v]][:2]
        holds = [(v, 0.0, 10.0)] + [(res, 0.0, 10.0) for res in lanes]
        px, py = roadmap.pos[v]
        for _ in range(20):
            x, y = px + rng.uniform(-0.6, 0.6), py + rng.uniform(-0.6, 0.6)
            err = containment_error(exclusion, holds, x, y, 5.0)
            quick = mon._inside(f"r{k}", holds, 5.0, x, y)
            checked += 1
            if quick:
                assert err <= tol + 1e-9, (holds, x, y, err)
            agree += quick == (err <= tol)
    assert agree / checked > 0.97


def test_a_robot_outside_its_hold_is_an_excursion_and_an_overlapping_grant_a_conflict(world):
    roadmap, exclusion, rid = world
    mon = SafetyMonitor(exclusion, roadmap.num_resources, rid)
    v, w = 0, int(exclusion.of(0)[1]) if len(exclusion.of(0)) > 1 else 0
    a = Reservation("a", v, 0.0, 10.0)
    mon.on_update(TableUpdate(1, "a", is_snapshot=False, roadmap_id=rid, added=(a,)))
    x, y = roadmap.pos[v]
    mon.on_pose("a", 1.0, float(x), float(y))
    assert mon.samples == 1 and not mon.excursions
    mon.on_pose("a", 2.0, float(x) + 1.0, float(y))     # a metre off its only hold
    assert len(mon.excursions) == 1 and mon.excursions[0].outside_m > 0.25
    mon.on_pose("a", 11.0, float(x), float(y))          # the hold is over: nothing held
    assert len(mon.excursions) == 2
    b = Reservation("b", w, 5.0, 15.0)                  # v itself or a resource exclusive with it
    mon.on_update(TableUpdate(2, "b", roadmap_id=rid, added=(b,)))
    assert len(mon.conflicts) == 1 and mon.conflicts[0].robot == "b"


def test_a_pose_from_before_the_robots_first_hold_is_not_checked(world):
    """Odometry starts before the robot's park is granted; a pose from then, checked once
    the park is in the table, is no excursion (a pose after a hold ended still is)."""
    roadmap, exclusion, rid = world
    mon = SafetyMonitor(exclusion, roadmap.num_resources, rid)
    x, y = (float(c) for c in roadmap.pos[0])
    mon.on_pose("a", 4.0, x, y)                          # waits: the replica knows nothing yet
    mon.on_update(TableUpdate(1, "a", is_snapshot=False, roadmap_id=rid,
                              added=(Reservation("a", 0, 5.0, 10.0),)), stamp=6.0)
    mon.on_pose("a", 5.5, x, y)
    assert mon.samples == 1 and not mon.excursions
    mon.on_pose("a", 10.5, x, y)
    mon.on_update(TableUpdate(1, "a", is_snapshot=True, roadmap_id=rid,
                              added=(Reservation("a", 0, 5.0, 10.0),)), stamp=11.0)
    assert len(mon.excursions) == 1

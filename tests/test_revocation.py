"""A robot notices that the table cut its plan and stops before the cut
(fleet_coord.core.revocation, with fleet_coord.core.traffic doing the cutting)."""
import math

import numpy as np

from fleet_coord.core.planner import path_to_segments
from fleet_coord.core.reservations import ReservationTable
from fleet_coord.core.revocation import clip, first_uncovered, legs_done_at, stop_point
from fleet_coord.core.roadmap import Footprint, GridMap, Roadmap
from fleet_coord.core.traffic import TrafficAuthority

INF = math.inf


def setup():
    free = np.ones((3, 8), dtype=bool)
    roadmap = Roadmap.from_grid(GridMap(width=8, height=3, free=free, path="<test>"))
    ex = roadmap.exclusion(Footprint(radius=0.1))
    return roadmap, ex, TrafficAuthority(ReservationTable(ex.of, roadmap.num_resources))


def row_path(roadmap, y, xs, t0=0.0):
    return [(roadmap.vertex_at(x, y), t0 + i) for i, x in enumerate(xs)]


def test_a_lost_robots_block_cuts_the_plan_and_the_robot_stops_before_it():
    roadmap, ex, traffic = setup()
    table = traffic.table
    # "mover" drives along row 1 from x=0 to x=7; "lost" parks at (5, 1) until t=4, then
    # would leave (its plan after t=4 is elsewhere), so mover planned to pass there at t=5.
    lost_v = roadmap.vertex_at(5, 1)
    assert traffic.reserve("lost", [(lost_v, 0.0, 3.6)]).ok
    path = row_path(roadmap, 1, range(8))
    segs = path_to_segments(roadmap, ex, path, 1.0)
    assert traffic.reserve("mover", segs).ok
    assert first_uncovered(table, "mover", segs, 0.0) is None
    # "lost" is declared lost at t=3.5 sitting on (5, 1): its spot stays blocked for ever
    outcome = traffic.robot_lost("lost", 3.5)
    assert outcome.revoked["mover"] <= 5.0
    cut = first_uncovered(table, "mover", segs, 1.0)
    assert cut is not None and cut == outcome.revoked["mover"]
    k = stop_point(table, roadmap, ex, "mover", path, 1.0, cut, legs_driven=1)
    assert k is not None
    stop_v = path[k][0]
    x, _ = roadmap.pos[stop_v]
    assert x < 5 - 0  # before the blocked spot
    assert not any(int(y) == stop_v for y in ex.of(lost_v))   # not touching it either
    # parking there commits: the stop point is free for ever
    stop_segs = clip(path_to_segments(roadmap, ex, path[:k + 1], 1.0), 1.0)
    assert traffic.reserve("mover", stop_segs, replace_from=1.0).ok
    assert first_uncovered(table, "mover", stop_segs, 1.0) is None


def test_no_stop_point_behind_the_robot():
    roadmap, ex, traffic = setup()
    path = row_path(roadmap, 1, range(4))
    segs = path_to_segments(roadmap, ex, path, 1.0)
    assert traffic.reserve("mover", segs).ok
    # it already drove 3 lanes: only the last step is ahead, and the cut is before it
    assert stop_point(traffic.table, roadmap, ex, "mover", path, 1.0, 0.5, legs_driven=3) is None


def test_legs_done_skips_waits_and_clip_drops_the_past():
    v = [0, 1, 1, 2]
    path = list(zip(v, [0.0, 1.0, 2.0, 3.0]))
    assert legs_done_at(path) == [0, 1, 1, 2]
    assert clip([(0, 0.0, 1.0), (1, 0.5, 2.0), (2, 2.0, INF)], 1.0) == [(1, 1.0, 2.0),
                                                                       (2, 2.0, INF)]


def test_uncovered_is_none_while_everything_is_held():
    roadmap, ex, traffic = setup()
    path = row_path(roadmap, 0, range(3))
    segs = path_to_segments(roadmap, ex, path, 1.0)
    assert traffic.reserve("m", segs).ok
    assert first_uncovered(traffic.table, "m", segs, 0.0) is None
    traffic.release("m", after=1.2)
    assert first_uncovered(traffic.table, "m", segs, 0.0) == 1.2


def test_a_stop_point_inside_a_straight_run_is_braked_into():
    """At the robot's real limits it passes the vertices of a straight run at speed; to
    stop at one after a cut it brakes on the lane into it, arriving later than it would
    have passed (stop_prefix), and parks there."""
    from fleet_coord.core.kinematics import Limits
    from fleet_coord.core.planner import sipp
    from fleet_coord.core.timed_path import stop_prefix
    from fleet_coord.core.tracking import robot_time_model

    roadmap, ex, traffic = setup()
    model = robot_time_model(Limits(max_v=1.0, max_w=4.0, max_acc=4.0, max_alpha=20.0),
                             ex.clearance)
    path = sipp(roadmap, ex, traffic.table, "mover", (0, 1), (7, 1), 0.0, model,
                start_heading=0.0)
    assert len(path) == 8                                    # one run, no stop on the way
    assert traffic.reserve("mover", path_to_segments(roadmap, ex, path, model)).ok
    prefix = stop_prefix(roadmap, ex, path, 4, model)
    assert prefix[:4] == path[:4] and prefix[4][0] == path[4][0]
    assert prefix[4][1] > path[4][1]                          # braking takes longer
    path_to_segments(roadmap, ex, prefix, model)              # a valid path of the model
    # its holds cut from when it would enter (5, 1): it stops at (4, 1), braking into it
    five = roadmap.vertex_at(5, 1)
    cut = next(a for r, a, _ in path_to_segments(roadmap, ex, path, model) if r == five)
    traffic.release("mover", after=cut)
    k = stop_point(traffic.table, roadmap, ex, "mover", path, model, cut, legs_driven=1)
    assert k == 4
    stop = stop_prefix(roadmap, ex, path, k, model)
    assert traffic.reserve("mover", clip(path_to_segments(roadmap, ex, stop, model), 0.5),
                           replace_from=0.5).ok

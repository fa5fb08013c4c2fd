"""The time model (fleet_coord.core.time_model) and SIPP planning with it.

Plans are checked by an independent arithmetic here (run and turn times from the
limits, written from the physics, not from time_model), and their holds against the
swept geometry with shapely (core.tracking.containment_error).
"""
import math
import random

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fleet_coord.core.kinematics import Limits
from fleet_coord.core.planner import path_to_segments, sipp, vertices_at_unit_times
from fleet_coord.core.reservations import ReservationTable
from fleet_coord.core.roadmap import Footprint, GridMap, Roadmap
from fleet_coord.core.time_model import RUN_ON_SLACK, Ramp, TimeModel, decode
from fleet_coord.core.tracking import containment_error, plan_speed_for, robot_time_model

INF = math.inf
DEMO_LIMITS = Limits(max_v=1.0, max_w=4.0, max_acc=4.0, max_alpha=20.0)
LORR = TimeModel(max_v=1.0, max_w=math.pi / 2, reverse=False)


def grid(*rows, radius=0.15):
    free = np.array([[ch == "." for ch in row] for row in rows], dtype=bool)
    roadmap = Roadmap.from_grid(GridMap(width=free.shape[1], height=free.shape[0], free=free,
                                        path="<test>"))
    return roadmap, roadmap.exclusion(Footprint(radius=radius))


# ------------------------------------------------------------ independent arithmetic

def rest_to_rest(x, v, a):
    """Least time to cover x m from standstill to standstill (top speed v, acceleration a)."""
    if math.isinf(a):
        return x / v
    return x / v + v / a if x >= v * v / a else 2.0 * math.sqrt(x / a)


def from_rest(x, v, a):
    """Least time to cover x m starting (or ending) at standstill."""
    if math.isinf(a):
        return x / v
    return x / v + v / (2 * a) if x >= v * v / (2 * a) else math.sqrt(2 * x / a)


def in_place(angle, w, alpha):
    """Least time to turn `angle` rad in place, rest to rest."""
    if angle < 1e-3:
        return 0.0
    if math.isinf(alpha):
        return angle / w
    return angle / w + w / alpha if angle >= w * w / alpha else 2.0 * math.sqrt(angle / alpha)


def assert_within_limits(roadmap, path, m: TimeModel, start_heading=None, tol=1e-6):
    """No part of `path` is faster than `m` allows: a straight run between stops (start,
    end, a wait, a change of direction) takes at least the rest-to-rest time of its
    length, a partial run at least the time from / to standstill, a change of direction
    at least the turn in place (a quarter turn at most when the robot may reverse)."""
    pos = roadmap.pos
    blocks = []                       # [vertex, first time, last time, steps]
    for v, t in path:
        if blocks and blocks[-1][0] == v:
            blocks[-1][2] = t
            blocks[-1][3] += 1
        else:
            blocks.append([v, t, t, 1])

    def direction(a, b):
        d = pos[b] - pos[a]
        return math.atan2(d[1], d[0])

    stops = [0]
    for i in range(1, len(blocks) - 1):
        bend = abs(math.remainder(direction(blocks[i - 1][0], blocks[i][0])
                                  - direction(blocks[i][0], blocks[i + 1][0]), 2 * math.pi))
        if bend > 1e-3 or blocks[i][3] > 1:      # a turn or a wait step: a stop
            stops.append(i)
    stops.append(len(blocks) - 1)
    heading = start_heading
    for a, b in zip(stops, stops[1:]):
        run = direction(blocks[a][0], blocks[a + 1][0])
        turn = 0.0
        if heading is not None:
            angle = abs(math.remainder(run - heading, 2 * math.pi))
            if m.reverse:
                angle = min(angle, math.pi - angle)
            turn = in_place(angle, m.max_w, m.max_alpha) + (m.turn_extra if angle >= 1e-3 else 0)
        dist = [0.0]
        for i in range(a, b):
            dist.append(dist[-1] + float(np.linalg.norm(pos[blocks[i + 1][0]] - pos[blocks[i][0]])))
        t_arr, t_dep = blocks[a][1], blocks[a][2]
        total = rest_to_rest(dist[-1], m.max_v, m.max_acc)
        assert blocks[b][1] - t_dep >= total - tol, (a, b, path)
        assert blocks[b][1] - t_arr >= turn + total - tol, ("turn", a, b, path)
        for i in range(a + 1, b):
            assert blocks[i][1] - t_dep >= from_rest(dist[i - a], m.max_v, m.max_acc) - tol
            assert blocks[b][1] - blocks[i][1] >= \
                from_rest(dist[-1] - dist[i - a], m.max_v, m.max_acc) - tol
        heading = direction(blocks[b - 1][0], blocks[b][0])


def reference_positions(roadmap, exclusion, path, m, times):
    """Where the plan puts the robot's reference point at each of `times`."""
    legs = decode(roadmap, exclusion.clearance, path, m)
    out = []
    for t in times:
        xy = roadmap.pos[path[0][0]] if t < path[0][1] or not legs else roadmap.pos[legs[-1].v]
        for tr in legs:
            if t < tr.t_dep:
                xy = roadmap.pos[tr.u]
                break
            if t <= tr.t_arr:
                x, _ = tr.ramp.at(t - tr.t_dep)
                u, v = roadmap.pos[tr.u], roadmap.pos[tr.v]
                xy = u + (v - u) * (x / float(np.linalg.norm(v - u)))
                break
        out.append((float(xy[0]), float(xy[1])))
    return out


def assert_holds_cover(roadmap, exclusion, path, m, samples=60):
    """At every sampled instant t, the footprint at where the plan puts the robot at any
    t + s, |s| <= margin, lies inside what the path holds at t."""
    holds = path_to_segments(roadmap, exclusion, path, m)
    t0, t1 = path[0][1], path[-1][1] + 0.5
    for t in np.linspace(t0, t1, samples):
        for shift in {-m.margin, 0.0, m.margin}:
            (x, y), = reference_positions(roadmap, exclusion, path, m, [max(t0, t + shift)])
            err = containment_error(exclusion, holds, x, y, float(t))
            assert err < 1e-6, (t, shift, x, y, err)


# --------------------------------------------------------------------------- ramps

def test_ramp_rest_to_rest_and_through_profiles():
    r = Ramp.make(10.0, 0.0, 0.0, 1.0, 2.0)
    assert r.duration == pytest.approx(rest_to_rest(10.0, 1.0, 2.0))
    short = Ramp.make(0.1, 0.0, 0.0, 1.0, 2.0)          # never reaches cruise speed
    assert short.duration == pytest.approx(2 * math.sqrt(0.1 / 2.0))
    through = Ramp.make(1.0, 1.0, 1.0, 1.0, 2.0)
    assert through.duration == pytest.approx(1.0)
    assert Ramp.make(0.1, 0.0, 1.0, 1.0, 2.0) is None    # cannot reach 1 m/s in 0.1 m
    for ramp in (r, short, through, Ramp.make(3.0, 0.5, 0.0, 1.0, 1.5)):
        for x in np.linspace(0, ramp.length, 23):
            t = ramp.time_at(x)
            assert ramp.at(t)[0] == pytest.approx(x, abs=1e-9)
            assert 0 <= ramp.at(t)[1] <= ramp.peak + 1e-12


def test_turn_times_follow_the_limits():
    m = robot_time_model(DEMO_LIMITS, 0.3)
    assert m.turn(0.0) == 0.0
    quarter = m.turn(math.pi / 2)
    assert quarter >= in_place(math.pi / 2, DEMO_LIMITS.max_w, DEMO_LIMITS.max_alpha)
    # may reverse: driving back the way it came needs no turn; heading 0 to a lane at
    # 3/4 pi is a quarter turn
    assert m.turn(m.turn_angle(0.0, math.pi)) == 0.0
    assert m.turn_angle(0.0, 0.75 * math.pi) == pytest.approx(math.pi / 4)
    assert LORR.turn(LORR.turn_angle(0.0, math.pi / 2)) == 1.0
    assert LORR.turn(LORR.turn_angle(0.0, math.pi)) == 2.0
    with pytest.raises(ValueError, match="max_acc"):
        TimeModel(max_v=1.0, max_acc=0.0)
    with pytest.raises(ValueError, match="margin"):
        TimeModel(max_v=1.0, margin=-1.0)


def worst_run_on(roadmap, exclusion, path, m, run_on, samples=40):
    """How far (m) past where its run stops a robot ends that drives the plan of `path`
    and, at any sampled instant, keeps its planned speed for `run_on` s (its agent died:
    its driver's watchdog), then brakes at the plan's deceleration (the physics, not
    time_model's formulas: v T + v^2 / 2a)."""
    legs = decode(roadmap, exclusion.clearance, path, m)
    worst = -math.inf
    for i, tr in enumerate(legs):
        rest = 0.0                 # lanes after this one up to where its run stops
        for nxt in legs[i + 1:] if not tr.stops_after else ():
            rest += float(roadmap.edge_length[nxt.e])
            if nxt.stops_after:
                break
        length = float(roadmap.edge_length[tr.e])
        for t in np.linspace(tr.t_dep, tr.t_arr, samples):
            x, v = tr.ramp.at(t - tr.t_dep)
            worst = max(worst, x + v * run_on + v * v / (2 * m.max_acc) - length - rest)
    return worst


@pytest.mark.parametrize("limits", [DEMO_LIMITS, Limits(max_v=3.0, max_w=20.0, max_acc=40.0,
                                                         max_alpha=400.0)], ids=["demo", "fast"])
def test_a_run_on_from_any_point_of_a_planned_profile_stops_within_the_slack(limits):
    """The real-speed plan of a straight run, a turn, a short run (every planned braking):
    at any point - at cruise right before braking starts too - a robot that keeps its
    speed for the run-on time and then brakes stands at most RUN_ON_SLACK past where its
    run stops; the plain trapezoid overshoots by ~v T."""
    roadmap, exclusion = grid("...........", "@@@@@@@@@@.", "@@@@@@@@@@.")
    table = ReservationTable(exclusion.of, roadmap.num_resources)
    run_on = 0.55
    worst = {}
    for t_run in (0.0, run_on):
        m = robot_time_model(limits, exclusion.clearance, run_on=t_run)
        path = sipp(roadmap, exclusion, table, "r", (0, 0), (10, 2), 0.0, m,
                    start_heading=0.0)
        assert roadmap.names[path[-1][0]] == "10,2"
        worst[t_run] = worst_run_on(roadmap, exclusion, path, m, run_on)
        assert_holds_cover(roadmap, exclusion, path, m, samples=30)
    assert worst[run_on] <= RUN_ON_SLACK + 1e-9, worst
    assert worst[0.0] > 0.25, worst


@settings(max_examples=40, deadline=None, derandomize=True)
@given(length=st.floats(0.1, 8.0), cruise=st.floats(0.2, 3.0), acc=st.floats(0.5, 40.0),
       run_on=st.floats(0.02, 1.0), f0=st.floats(0.0, 1.0), f1=st.floats(0.0, 1.0))
def test_run_on_ramps_brake_on_the_reaction_curve_and_invert_exactly(
        length, cruise, acc, run_on, f0, f1):
    """Any feasible profile (entered and left at any speed it allows): at every point a
    run-on then braking at `acc` ends at most RUN_ON_SLACK past the point where braking
    on from the exit speed would stand; `at` inverts `time_at`; it is no faster than
    the plain trapezoid."""
    from fleet_coord.core.time_model import run_on_distance, run_on_speed
    top = min(cruise, run_on_speed(length, acc, run_on))
    v0, v1 = f0 * top, f1 * cruise
    r = Ramp.make(length, v0, v1, cruise, acc, run_on)
    if r is None:
        assert v1 > v0 and v1 * v1 - v0 * v0 > 2 * acc * length - 1e-9
        return
    plain = Ramp.make(length, v0, v1, cruise, acc)
    assert plain is not None and r.duration >= plain.duration - 1e-9
    end = length + run_on_distance(v1, acc, run_on)
    for t in np.linspace(0.0, r.duration, 50):
        x, v = r.at(t)
        assert x + v * run_on + v * v / (2 * acc) <= end + RUN_ON_SLACK + 1e-9
        assert r.time_at(x) == pytest.approx(t, abs=1e-6)
        assert -1e-12 <= v <= r.peak + 1e-12


# --------------------------------------------------------------------- the planner

def test_a_straight_run_is_planned_at_full_speed():
    """The issue's example: a 10-cell straight run, ~45 s in the stop-and-turn model, takes
    what the robot needs: 10 m at 1 m/s plus accelerating and braking."""
    roadmap, exclusion = grid("." * 12)
    table = ReservationTable(exclusion.of, roadmap.num_resources)
    real = robot_time_model(DEMO_LIMITS, exclusion.clearance)
    path = sipp(roadmap, exclusion, table, "r", (0, 0), (10, 0), 0.0, real, start_heading=0.0)
    assert [roadmap.names[v] for v, _ in path] == [f"{x},0" for x in range(11)]
    assert rest_to_rest(10.0, 1.0, DEMO_LIMITS.max_acc) <= path[-1][1] < 10.6
    slow = robot_time_model(DEMO_LIMITS, exclusion.clearance, "stop_and_turn",
                            turn_margin=0.2)
    old = sipp(roadmap, exclusion, table, "r", (0, 0), (10, 0), 0.0, slow)
    assert old[-1][1] == pytest.approx(10.0 / plan_speed_for(DEMO_LIMITS, 0.3, 0.2))
    assert old[-1][1] > 40.0


def test_turn_time_only_where_the_path_turns():
    roadmap, exclusion = grid("......", ".@@@@@", ".@@@@@", ".@@@@@")
    table = ReservationTable(exclusion.of, roadmap.num_resources)
    m = robot_time_model(DEMO_LIMITS, exclusion.clearance, margin=0.0)
    path = sipp(roadmap, exclusion, table, "r", (0, 3), (5, 0), 0.0, m, start_heading=-math.pi / 2)
    run = Ramp.make(3.0, 0.0, 0.0, 1.0, m.max_acc).duration
    run2 = Ramp.make(5.0, 0.0, 0.0, 1.0, m.max_acc).duration
    assert path[-1][1] == pytest.approx(run + m.turn(math.pi / 2) + run2)
    # the same start facing +x: a quarter turn first (reverse is not allowed to help)
    turned = sipp(roadmap, exclusion, table, "r", (0, 3), (5, 0), 0.0, m, start_heading=0.0)
    assert turned[-1][1] == pytest.approx(path[-1][1] + m.turn(math.pi / 2))
    assert_within_limits(roadmap, turned, m, start_heading=0.0)
    # without the turn at the corner: refused
    k = next(k for k in range(1, len(path)) if path[k][0] == path[k - 1][0])
    quick = path[:k] + [(v, t - m.turn(math.pi / 2)) for v, t in path[k + 1:]]
    with pytest.raises(ValueError, match="before it has turned"):
        path_to_segments(roadmap, exclusion, quick, m)


def test_decode_refuses_runs_faster_than_the_acceleration():
    roadmap, exclusion = grid("....")
    m = TimeModel(max_v=1.0, max_acc=1.0)
    a, b, c = (roadmap.vertex_at(x, 0) for x in range(3))
    need = rest_to_rest(2.0, 1.0, 1.0)                  # 3 s: 1 m/s is reached after 0.5 m
    path_to_segments(roadmap, exclusion, [(a, 0.0), (b, need / 2), (c, need)], m)
    with pytest.raises(ValueError, match="before it was there"):
        path_to_segments(roadmap, exclusion, [(a, 0.0), (b, 1.0), (c, 2.0)], m)


def test_holds_cover_the_footprint_with_the_margin_on_a_turning_path():
    roadmap, exclusion = grid("......", "......", "......")
    table = ReservationTable(exclusion.of, roadmap.num_resources)
    m = robot_time_model(DEMO_LIMITS, exclusion.clearance)
    path = sipp(roadmap, exclusion, table, "r", (0, 0), (5, 2), 0.0, m, start_heading=1.0)
    assert_within_limits(roadmap, path, m, start_heading=1.0)
    assert_holds_cover(roadmap, exclusion, path, m, samples=80)


@settings(max_examples=25, deadline=None, derandomize=True)
@given(v=st.floats(0.3, 2.0), acc=st.floats(0.3, 6.0), w=st.floats(0.5, 6.0),
       alpha=st.floats(1.0, 40.0), margin=st.sampled_from([0.0, 0.1, 0.4]),
       reverse=st.booleans(), seed=st.integers(0, 10_000),
       run_on=st.sampled_from([0.0, 0.0, 0.3, 0.55]))
def test_sipp_paths_respect_the_limits_and_their_holds_never_conflict(
        v, acc, w, alpha, margin, reverse, seed, run_on):
    """Random robots on a small map with traffic planned by the same model: every path is
    no faster than the limits allow, its holds cover its footprint (margin included),
    and the table accepts it."""
    rng = random.Random(seed)
    roadmap, exclusion = grid("......", ".@..@.", "......", "..@...", "......")
    m = TimeModel(max_v=v, max_acc=acc, max_w=w, max_alpha=alpha, margin=margin,
                  turn_extra=0.05, reverse=reverse, run_on=run_on)
    table = ReservationTable(exclusion.of, roadmap.num_resources)
    free = list(range(roadmap.num_vertices))
    rng.shuffle(free)
    planned = 0
    for k in range(5):
        s, g = free[2 * k], free[2 * k + 1]
        heading = rng.choice([None, rng.uniform(-math.pi, math.pi)])
        t0 = rng.uniform(0.0, 3.0)
        path = sipp(roadmap, exclusion, table, f"r{k}", s, g, t0, m, start_heading=heading)
        if path is None:
            continue
        planned += 1
        assert path[0] == (s, t0) and path[-1][0] == g
        assert_within_limits(roadmap, path, m, start_heading=heading)
        result = table.commit(f"r{k}", path_to_segments(roadmap, exclusion, path, m))
        assert result.ok, result.conflict
        if k == 0:
            assert_holds_cover(roadmap, exclusion, path, m, samples=25)
    assert planned >= 1


# ------------------------------------------------- the discrete (LoRR) special case

def earliest_lorr_arrival(roadmap, occupied, swaps, start, o0, goal, t_max=60):
    """Breadth-first search over (cell, orientation) in unit time steps with the LoRR
    actions (forward, 90-degree turn, wait): the earliest time the robot stands at `goal`
    and can stay there for good. `occupied[t]`: the cells others hold at integer t (the
    last entry: for ever); `swaps`: (from, to, t) moves of others during [t, t + 1]."""
    xy = roadmap.pos.astype(int).tolist()
    step = [(1, 0), (0, 1), (-1, 0), (0, -1)]

    def taken(cell, t):
        return cell in occupied[min(t, len(occupied) - 1)]

    frontier = {(start, o0)}
    for t in range(t_max):
        for cell, _ in frontier:
            if cell == goal and not any(taken(goal, s) for s in range(t, len(occupied) + 1)):
                return t
        nxt = set()
        for cell, o in frontier:
            for o2 in (o, (o + 1) % 4, (o + 3) % 4):       # wait or turn
                if not taken(cell, t + 1):
                    nxt.add((cell, o2))
            x, y = xy[cell]
            to = roadmap.vertex_at(x + step[o][0], y + step[o][1])
            if to is not None and not taken(to, t + 1) and (to, cell, t) not in swaps:
                nxt.add((to, o))
        frontier = nxt
    return None


def test_the_lorr_action_model_is_the_unit_step_special_case():
    """On a unit grid, TimeModel(max_v=1, max_w=pi/2, reverse=False) plans what a
    (cell, orientation) search with LoRR's one-step actions finds: the same earliest
    arrivals against the same traffic, in integer times (what core/grid_sipp's
    heading-aware variant is tested against)."""
    rng = random.Random(11)
    same = 0
    for _ in range(40):
        rows = ["".join("@" if rng.random() < 0.15 else "." for _ in range(6)) for _ in range(5)]
        roadmap, exclusion = grid(*rows, radius=0.1)
        if roadmap.num_vertices < 8:
            continue
        table = ReservationTable(exclusion.of, roadmap.num_resources)
        free = list(range(roadmap.num_vertices))
        rng.shuffle(free)
        others = []
        for k in range(3):
            p = sipp(roadmap, exclusion, table, f"o{k}", free[2 * k], free[2 * k + 1], 0.0, 1.0)
            if p is not None:
                assert table.commit(f"o{k}", path_to_segments(roadmap, exclusion, p, 1.0)).ok
                others.append(vertices_at_unit_times(p))
        horizon = max(len(c) for c in others) if others else 1
        occupied = [{c[min(t, len(c) - 1)] for c in others} for t in range(horizon)]
        swaps = {(c[t], c[t + 1], t) for c in others for t in range(len(c) - 1)}
        start, goal = free[-1], free[-2]
        o0 = rng.randrange(4)
        want = earliest_lorr_arrival(roadmap, occupied, swaps, start, o0, goal)
        path = sipp(roadmap, exclusion, table, "me", start, goal, 0.0, LORR,
                    start_heading=o0 * math.pi / 2)
        if want is None:
            assert path is None
            continue
        assert path is not None
        assert all(t == int(t) for _, t in path)
        assert path[-1][1] >= want            # float SIPP may miss an exact fit, never beat it
        same += path[-1][1] == want
        assert table.commit("me", path_to_segments(roadmap, exclusion, path, LORR)).ok
    assert same >= 25


def test_vertex_times_count_turns_and_stops():
    """The estimates bids use: the obstacle-free time the model needs, turns included,
    never less than the cruise-speed distance and equal to what SIPP plans on a free map."""
    from fleet_coord.core.sipp import motion_model
    roadmap, exclusion = grid("......", ".@@@@@", ".@@@@@", ".@@@@@")
    m = robot_time_model(DEMO_LIMITS, exclusion.clearance)
    mm = motion_model(roadmap, exclusion, m)
    goal = roadmap.vertex_at(5, 0)
    est = mm.vertex_times_to(goal)
    cruise = roadmap.shortest_times(goal, m.max_v)
    start = roadmap.vertex_at(0, 3)
    table = ReservationTable(exclusion.of, roadmap.num_resources)
    best = min(sipp(roadmap, exclusion, table, "r", start, goal, 0.0, m, start_heading=h)[-1][1]
               for h in (0.0, math.pi / 2))
    assert est[start] == pytest.approx(best)
    assert est[start] > cruise[start] + m.turn(math.pi / 2)
    assert all(e >= c - 1e-9 for e, c in zip(est, cruise))

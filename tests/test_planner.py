"""SIPP, path_to_segments and prioritised planning (fleet_coord.core.planner).

Every multi-robot plan produced here goes through tests/mapf_validator.py, an
independent classic-MAPF checker, and is re-checked against the reservation table.
"""
import math
import os
import random
import time

import numpy as np
import pytest

from fleet_coord.core.planner import (plan_prioritized, path_to_segments, sipp,
                                      vertices_at_unit_times)
from fleet_coord.core.grid_sipp import NEVER, UnitGridTable, grid_sipp, unit_grid_model
from fleet_coord.core.prioritized import SafeIntervalIndex
from fleet_coord.core.reservations import ReservationTable
from fleet_coord.core.roadmap import (Footprint, GridMap, Roadmap, load_movingai_map,
                                      load_scenario)

from mapf_validator import assert_valid_plan

INF = math.inf
SMALL = Footprint(radius=0.1)  # L = 0.2: the classic grid conflicts


def grid_roadmap(*rows):
    """Roadmap of a grid drawn as strings ('.' free, '@' blocked; row 0 first)."""
    free = np.array([[ch == "." for ch in row] for row in rows], dtype=bool)
    grid = GridMap(width=free.shape[1], height=free.shape[0], free=free, path="<test>")
    roadmap = Roadmap.from_grid(grid)
    return roadmap, roadmap.exclusion(SMALL)


def new_table(roadmap, exclusion):
    return ReservationTable(exclusion.of, roadmap.num_resources)


def cells(roadmap, path):
    """The (x, y) cell at every integer time of a timed path."""
    xy = roadmap.pos.astype(int).tolist()
    return [tuple(xy[v]) for v in vertices_at_unit_times(path)]


def park(table, roadmap, exclusion, robot, path, until=INF):
    result = table.commit(robot, path_to_segments(roadmap, exclusion, path, 1.0,
                                                  park_until=until))
    assert result.ok, result.conflict


def assert_table_accepts(roadmap, exclusion, table, robot, path, speed=1.0):
    segments = path_to_segments(roadmap, exclusion, path, speed)
    assert table.check(robot, segments) is None


def validate_multiplan(roadmap, plan, starts, goals):
    """The plan as classic MAPF cell sequences, checked by the independent validator."""
    xy = roadmap.pos.astype(int).tolist()
    paths = [[tuple(xy[v]) for v in vertices_at_unit_times(p)] for p in plan.paths]
    assert_valid_plan(roadmap.grid.free, starts, goals, paths)
    return paths


# --------------------------------------------------------------------- path_to_segments

def test_path_to_segments_holds_vertices_edges_and_parks_at_the_goal():
    roadmap, exclusion = grid_roadmap("...")
    a, b, c = (roadmap.vertex_at(x, 0) for x in range(3))
    V = roadmap.num_vertices
    # Start at a at t=0, wait until t=2, move to b (arrive 3), move to c (arrive 4).
    path = [(a, 0.0), (a, 2.0), (b, 3.0), (c, 4.0)]
    segs = path_to_segments(roadmap, exclusion, path, 1.0)
    c_ = 0.2
    ab, bc = roadmap.edge_id(a, b), roadmap.edge_id(b, c)
    expected = [(a, 0.0, 2 + c_), (V + ab, 2 + c_, 3 - c_), (b, 3 - c_, 3 + c_),
                (V + bc, 3 + c_, 4 - c_), (c, 4 - c_, INF)]
    assert len(segs) == len(expected)
    for got, want in zip(segs, expected):
        assert got[0] == want[0]
        assert got[1] == pytest.approx(want[1]) and got[2] == pytest.approx(want[2])


def test_path_to_segments_implicit_wait_and_finite_parking():
    roadmap, exclusion = grid_roadmap("..")
    a, b = roadmap.vertex_at(0, 0), roadmap.vertex_at(1, 0)
    segs = path_to_segments(roadmap, exclusion, [(a, 1.0), (b, 5.0)], 1.0, park_until=7.0)
    assert segs[0] == (a, 1.0, pytest.approx(4.2))   # departs at 5 - 1 = 4
    assert segs[-1] == (b, pytest.approx(4.8), 7.0)


def test_path_to_segments_omits_empty_lane_middles():
    # A robot of radius 0.3 has L = 0.6 > half a 1 m lane: c = d / 2, no middle.
    roadmap = Roadmap(np.array([[0.0, 0.0], [1.0, 0.0]]), [0, 1], [1, 0])
    exclusion = roadmap.exclusion(Footprint(radius=0.3))
    segs = path_to_segments(roadmap, exclusion, [(0, 0.0), (1, 1.0)], 1.0)
    assert [s[0] for s in segs] == [0, 1]
    assert segs[0][2] == pytest.approx(0.5) and segs[1][1] == pytest.approx(0.5)


def test_path_to_segments_rejects_bad_paths():
    roadmap, exclusion = grid_roadmap("...")
    a, c = roadmap.vertex_at(0, 0), roadmap.vertex_at(2, 0)
    with pytest.raises(ValueError, match="not a lane"):
        path_to_segments(roadmap, exclusion, [(a, 0.0), (c, 1.0)], 1.0)
    b = roadmap.vertex_at(1, 0)
    with pytest.raises(ValueError, match="before it was there"):
        path_to_segments(roadmap, exclusion, [(a, 3.0), (b, 3.5)], 1.0)
    with pytest.raises(ValueError, match="empty"):
        path_to_segments(roadmap, exclusion, [], 1.0)


# --------------------------------------------------------------------------------- SIPP

def test_sipp_on_a_free_grid_takes_a_shortest_path_with_integer_times():
    roadmap, exclusion = grid_roadmap("....", "....", "....")
    table = new_table(roadmap, exclusion)
    path = sipp(roadmap, exclusion, table, "r", (0, 0), (3, 2), 0.0, 1.0)
    assert path[0] == (roadmap.vertex_at(0, 0), 0.0)
    assert path[-1] == (roadmap.vertex_at(3, 2), 5.0)
    assert all(float(t).is_integer() for _, t in path)
    assert len(cells(roadmap, path)) == 6


def test_sipp_waits_when_the_next_vertex_is_reserved():
    roadmap, exclusion = grid_roadmap("...")
    table = new_table(roadmap, exclusion)
    a, b, c = (roadmap.vertex_at(x, 0) for x in range(3))
    # Another robot sits on the middle cell and drives off at t=4 (so holds it until
    # 4 + c); the lane a -> b touches that cell, so our robot may leave a at 4 at the
    # earliest.
    table.commit("other", [(b, 0.0, 4.2)])
    path = sipp(roadmap, exclusion, table, "r", a, c, 0.0, 1.0)
    assert cells(roadmap, path) == [(0, 0)] * 5 + [(1, 0), (2, 0)]
    assert path[-1][1] == 6.0
    assert_table_accepts(roadmap, exclusion, table, "r", path)


def test_sipp_detours_around_a_parked_robot():
    roadmap, exclusion = grid_roadmap("...",
                                      ".@.",
                                      "...")
    table = new_table(roadmap, exclusion)
    park(table, roadmap, exclusion, "parked", [(roadmap.vertex_at(1, 0), 0.0)])
    path = sipp(roadmap, exclusion, table, "r", (0, 0), (2, 0), 0.0, 1.0)
    assert cells(roadmap, path) == [(0, 0), (0, 1), (0, 2), (1, 2), (2, 2), (2, 1), (2, 0)]
    assert_table_accepts(roadmap, exclusion, table, "r", path)


def test_sipp_follows_a_robot_that_leaves_a_cell_in_the_same_step():
    roadmap, exclusion = grid_roadmap("...",
                                      "@.@")
    table = new_table(roadmap, exclusion)
    # The other robot leaves (1, 0) for (1, 1) at t=0; we enter (1, 0) at t=1 behind it.
    park(table, roadmap, exclusion, "other",
         [(roadmap.vertex_at(1, 0), 0.0), (roadmap.vertex_at(1, 1), 1.0)])
    path = sipp(roadmap, exclusion, table, "r", (0, 0), (2, 0), 0.0, 1.0)
    assert cells(roadmap, path) == [(0, 0), (1, 0), (2, 0)]
    assert_table_accepts(roadmap, exclusion, table, "r", path)


def test_sipp_never_swaps_with_an_oncoming_robot():
    roadmap, exclusion = grid_roadmap("...",
                                      "@.@")
    table = new_table(roadmap, exclusion)
    # The other robot drives (2, 0) -> (1, 0) -> (1, 1) and parks there. We, at (1, 0),
    # want (2, 0): moving there at t=0 would swap with it, so we dodge to (0, 0) first.
    park(table, roadmap, exclusion, "other", [(roadmap.vertex_at(2, 0), 0.0),
                                              (roadmap.vertex_at(1, 0), 1.0),
                                              (roadmap.vertex_at(1, 1), 2.0)])
    path = sipp(roadmap, exclusion, table, "r", (1, 0), (2, 0), 0.0, 1.0)
    assert cells(roadmap, path) == [(1, 0), (0, 0), (1, 0), (2, 0)]
    assert_table_accepts(roadmap, exclusion, table, "r", path)


def test_sipp_returns_none_for_an_unreachable_goal_without_searching():
    roadmap, exclusion = grid_roadmap("." * 200 + "@" + ".")
    table = new_table(roadmap, exclusion)
    t0 = time.perf_counter()
    assert sipp(roadmap, exclusion, table, "r", (0, 0), (201, 0), 0.0, 1.0) is None
    assert time.perf_counter() - t0 < 0.05


def test_sipp_returns_none_when_the_goal_is_parked_on_forever():
    roadmap, exclusion = grid_roadmap("....")
    table = new_table(roadmap, exclusion)
    park(table, roadmap, exclusion, "squatter", [(roadmap.vertex_at(3, 0), 0.0)])
    assert sipp(roadmap, exclusion, table, "r", (0, 0), (3, 0), 0.0, 1.0) is None
    # Without parking the goal is no better: it is never free at all.
    assert sipp(roadmap, exclusion, table, "r", (0, 0), (3, 0), 0.0, 1.0, park=False) is None


def test_sipp_parks_only_where_it_can_stay_and_park_false_may_pass_through():
    roadmap, exclusion = grid_roadmap("...")
    table = new_table(roadmap, exclusion)
    goal = roadmap.vertex_at(2, 0)
    table.commit("later", [(goal, 6.0, 8.0)])  # someone needs the goal cell over [6, 8)
    parked = sipp(roadmap, exclusion, table, "r", (0, 0), goal, 0.0, 1.0)
    assert parked[-1] == (goal, pytest.approx(8.8))  # waits until the goal stays free
    passing = sipp(roadmap, exclusion, table, "r", (0, 0), goal, 0.0, 1.0, park=False)
    assert passing[-1] == (goal, 2.0)


def test_sipp_start_vertex_taken_returns_none():
    roadmap, exclusion = grid_roadmap("...")
    table = new_table(roadmap, exclusion)
    table.commit("other", [(roadmap.vertex_at(0, 0), 0.0, 2.0)])
    assert sipp(roadmap, exclusion, table, "r", (0, 0), (2, 0), 1.0, 1.0) is None


def test_sipp_ignores_the_robots_own_reservations():
    roadmap, exclusion = grid_roadmap("...")
    table = new_table(roadmap, exclusion)
    old = [(roadmap.vertex_at(0, 0), 0.0)]
    park(table, roadmap, exclusion, "r", old)
    path = sipp(roadmap, exclusion, table, "r", (0, 0), (2, 0), 0.0, 1.0)
    assert path[-1][1] == 2.0
    result = table.commit("r", path_to_segments(roadmap, exclusion, path, 1.0),
                          replace_from=0.0)
    assert result.ok


def test_sipp_rolling_horizon_stops_early_where_the_robot_can_wait():
    roadmap, exclusion = grid_roadmap("." * 30)
    table = new_table(roadmap, exclusion)
    # Traffic crossing cells 5..8 early on; the horizon ends past it.
    table.commit("x", [(roadmap.vertex_at(6, 0), 0.0, 7.0)])
    path = sipp(roadmap, exclusion, table, "r", (0, 0), (29, 0), 0.0, 1.0, horizon=10.0)
    end, t_end = path[-1]
    assert t_end >= 10.0 and t_end < 29.0 + 7.0
    assert end != roadmap.vertex_at(29, 0)
    # It can be committed parked at its end, and planning on from there reaches the goal.
    park(table, roadmap, exclusion, "r", path)
    rest = sipp(roadmap, exclusion, table, "r", end, (29, 0), t_end, 1.0)
    assert rest[-1][0] == roadmap.vertex_at(29, 0)
    # A horizon beyond the goal gives the full path.
    full = sipp(roadmap, exclusion, new_table(roadmap, exclusion), "r2", (0, 0), (29, 0), 0.0, 1.0,
                horizon=1e6)
    assert full[-1][0] == roadmap.vertex_at(29, 0)


def test_sipp_deadline_gives_up():
    roadmap, exclusion = grid_roadmap(*["." * 60] * 60)
    table = new_table(roadmap, exclusion)
    # A wall of robots parked across the map with one gap: a long search.
    for y in range(1, 60):
        park(table, roadmap, exclusion, f"w{y}", [(roadmap.vertex_at(30, y), 0.0)])
    assert sipp(roadmap, exclusion, table, "r", (0, 59), (59, 59), 0.0, 1.0,
                deadline_s=0.0) is None
    assert sipp(roadmap, exclusion, table, "r", (0, 59), (59, 59), 0.0, 1.0,
                deadline_s=10.0) is not None


YAML_ROADMAP = """
name: speed-test
stations:
  a: {x: 0.0, y: 0.0}
  b: {x: 4.0, y: 0.0}
  c: {x: 8.0, y: 0.0}
  d: {x: 4.0, y: 3.0}
lanes:
  - {from: a, to: b, speed: 0.5}
  - [b, c]
  - [a, d]
  - [d, c]
"""


@pytest.fixture
def yaml_roadmap(tmp_path):
    path = tmp_path / "speed.yaml"
    path.write_text(YAML_ROADMAP)
    roadmap = Roadmap.from_yaml(path)
    return roadmap, roadmap.exclusion(Footprint(radius=0.3))


def test_sipp_continuous_times_with_speed_limits(yaml_roadmap):
    roadmap, exclusion = yaml_roadmap
    table = new_table(roadmap, exclusion)
    a, b, c, d = (roadmap.vertex(n) for n in "abcd")
    # a -> b is limited to 0.5 m/s: 8 s + 4 s = 12 s; a -> d -> c: 5 m + 5 m at 1 m/s = 10 s.
    path = sipp(roadmap, exclusion, table, "r", "a", "c", 0.0, 1.0)
    assert [v for v, _ in path] == [a, d, c]
    assert path[-1][1] == pytest.approx(10.0)
    # A robot slower than both: 0.5 m/s everywhere: 16 s via b beats 20 s via d.
    slow = sipp(roadmap, exclusion, table, "r", "a", "c", 0.0, 0.5)
    assert [v for v, _ in slow] == [a, b, c]
    assert slow[-1][1] == pytest.approx(16.0)
    assert_table_accepts(roadmap, exclusion, table, "r", slow, speed=0.5)


def test_sipp_continuous_waits_exactly_until_the_lane_is_clear(yaml_roadmap):
    roadmap, exclusion = yaml_roadmap
    table = new_table(roadmap, exclusion)
    a, b, c, d = (roadmap.vertex(n) for n in "abcd")
    # Someone drives d -> c departing at 3.0 and parks at c until 20 s: our robot must not
    # enter d's star before they have left it, nor reach c before 20 s.
    other = [(d, 0.0), (d, 3.0), (c, 8.0)]
    park(table, roadmap, exclusion, "other", other, until=20.0)
    path = sipp(roadmap, exclusion, table, "r", "a", "c", 0.0, 1.0)
    assert_table_accepts(roadmap, exclusion, table, "r", path)
    # The last lane's middle already touches c's footprint, so the robot enters it at
    # exactly 20 s: via b (departing b at 19.4, the middle starting 0.6 m later).
    assert [v for v, _ in path][-2:] == [b, c]
    segments = path_to_segments(roadmap, exclusion, path, 1.0)
    assert segments[-2][0] == roadmap.num_vertices + roadmap.edge_id(b, c)
    assert segments[-2][1] == pytest.approx(20.0)
    assert path[-1][1] == pytest.approx(23.4)


def test_sipp_never_conflicts_on_random_tables():
    rng = random.Random(7)
    roadmap, exclusion = grid_roadmap(*["......"] * 6)
    for _trial in range(30):
        table = new_table(roadmap, exclusion)
        cells_free = list(range(roadmap.num_vertices))
        rng.shuffle(cells_free)
        # Random other robots, each planned with SIPP over random times.
        for k in range(6):
            s, g = cells_free[2 * k], cells_free[2 * k + 1]
            t0 = float(rng.randint(0, 3))
            p = sipp(roadmap, exclusion, table, f"o{k}", s, g, t0, 1.0, park=False)
            if p is not None:
                until = p[-1][1] + rng.randint(1, 4)
                table.commit(f"o{k}", path_to_segments(roadmap, exclusion, p, 1.0,
                                                      park_until=until))
        s, g = cells_free[-1], cells_free[-2]
        p = sipp(roadmap, exclusion, table, "me", s, g, 0.0, 1.0)
        if p is not None:
            assert table.commit("me", path_to_segments(roadmap, exclusion, p, 1.0)).ok


# ---------------------------------------------------------------- safe-interval index

def test_safe_interval_index_matches_the_table():
    rng = random.Random(3)
    roadmap, exclusion = grid_roadmap(*["....."] * 5)
    table = new_table(roadmap, exclusion)
    index = SafeIntervalIndex(table, exclusion)
    free = list(range(roadmap.num_vertices))
    rng.shuffle(free)
    for k in range(8):
        p = sipp(roadmap, exclusion, index, f"o{k}", free[2 * k], free[2 * k + 1], 0.0, 1.0,
                 park=False)
        if p is None:
            continue
        until = p[-1][1] + rng.randint(1, 5)
        # (May be refused: park=False does not promise the goal beyond the arrival.)
        index.commit(f"o{k}", path_to_segments(roadmap, exclusion, p, 1.0,
                                              park_until=until))
    assert len(table.robots()) >= 4
    for resource in range(roadmap.num_resources):
        for t_from in (0.0, 2.5, 7.0):
            assert (index.safe_intervals(resource, robot="new", t_from=t_from)
                    == table.safe_intervals(resource, robot="new", t_from=t_from))


# ------------------------------------------------------------ integer-time grid SIPP

def test_unit_grid_model_only_where_integer_time_is_exact(yaml_roadmap):
    roadmap, exclusion = grid_roadmap("....", "....")
    assert unit_grid_model(roadmap, exclusion, 1.0) is not None
    assert unit_grid_model(roadmap, exclusion, 0.5) is None           # 2 s per lane
    big = roadmap.exclusion(Footprint(radius=0.3))                     # stars overlap
    assert unit_grid_model(roadmap, big, 1.0) is None
    assert unit_grid_model(*yaml_roadmap, 1.0) is None                 # not a grid


def test_grid_sipp_matches_sipp_on_random_tables():
    # Robots planned one after the other, parked at their goals, in both tables: the
    # integer search finds the same earliest arrivals, and the reservation table accepts
    # every one of its paths.
    rng = random.Random(5)
    same = better = 0
    for _trial in range(150):
        width = rng.randint(3, 9)
        rows = ["".join("@" if rng.random() < 0.2 else "." for _ in range(width))
                for _ in range(rng.randint(3, 9))]
        roadmap, exclusion = grid_roadmap(*rows)
        if roadmap.num_vertices < 6:
            continue
        model = unit_grid_model(roadmap, exclusion, 1.0)
        table, fast = new_table(roadmap, exclusion), UnitGridTable(model)
        free = list(range(roadmap.num_vertices))
        rng.shuffle(free)
        for k in range(min(8, roadmap.num_vertices // 2)):
            s, g = free[2 * k], free[2 * k + 1]
            slow = sipp(roadmap, exclusion, table, f"o{k}", s, g, 0.0, 1.0)
            quick = grid_sipp(model, fast, s, g, 0)
            if quick is None:
                assert slow is None
                continue
            timed = [(v, float(t)) for v, t in quick]
            assert table.commit(f"o{k}", path_to_segments(roadmap, exclusion, timed, 1.0)).ok
            fast.commit(k, quick)
            if slow is not None and slow[-1][1] == quick[-1][1]:
                same += 1
            else:
                # sipp's float arithmetic may (rarely) miss an exact-fit move, never
                # the other way round.
                assert slow is None or slow[-1][1] > quick[-1][1]
                better += 1
    assert same > 300 and better <= same // 100


def test_grid_sipp_weighted_search_stays_within_its_bound():
    rng = random.Random(4)
    roadmap, exclusion = grid_roadmap(*["........"] * 8)
    model = unit_grid_model(roadmap, exclusion, 1.0)
    exact, weighted = UnitGridTable(model), UnitGridTable(model)
    free = list(range(roadmap.num_vertices))
    rng.shuffle(free)
    for k in range(20):
        s, g = free[2 * k], free[2 * k + 1]
        best = grid_sipp(model, weighted, s, g, 0)
        path = grid_sipp(model, weighted, s, g, 0, weight=1.5)
        assert (best is None) == (path is None)
        if path is not None:
            assert best[-1][1] <= path[-1][1] <= 1.5 * best[-1][1]
            weighted.commit(k, path)   # refused if it conflicted
    with pytest.raises(ValueError, match="weight"):
        grid_sipp(model, exact, free[0], free[1], 0, weight=0.5)


def test_unit_grid_table_refuses_vertex_and_swap_conflicts():
    roadmap, exclusion = grid_roadmap("....")
    model = unit_grid_model(roadmap, exclusion, 1.0)
    table = UnitGridTable(model)
    a, b, c, d = (roadmap.vertex_at(x, 0) for x in range(4))
    table.commit(0, [(a, 0), (b, 1), (c, 2)])            # parked at c from t = 2
    with pytest.raises(ValueError, match="vertex conflict"):
        table.commit(1, [(d, 0), (d, 1), (c, 2)])        # c is taken for good from t = 2
    table.release(0)
    table.commit(0, [(b, 0), (c, 1), (d, 2)])
    with pytest.raises(ValueError, match="swap conflict"):
        table.commit(1, [(c, 0), (b, 1), (a, 2)])        # b <-> c between t = 0 and 1
    table.commit(1, [(a, 0), (b, 1), (b, 2)])            # following is allowed
    assert table.safe[a] == [1, NEVER] and table.safe[d] == [0, 2]
    assert grid_sipp(model, table, b, a, 0) is None       # b is robot 0's start


def test_unit_grid_table_safe_intervals_are_the_complement_of_the_occupied_ones():
    rng = random.Random(9)
    roadmap, exclusion = grid_roadmap(*["......"] * 5)
    model = unit_grid_model(roadmap, exclusion, 1.0)
    table = UnitGridTable(model)
    free = list(range(roadmap.num_vertices))
    rng.shuffle(free)
    held = []
    for k in range(12):
        path = grid_sipp(model, table, free[2 * k], free[2 * k + 1], 0)
        if path is not None:
            table.commit(k, path)
            held.append(k)
        if held and rng.random() < 0.3:
            table.release(held.pop(rng.randrange(len(held))))
        for v in range(roadmap.num_vertices):
            complement, cur = [], 0
            occ = table.occupied[v]
            for a, b in zip(occ[::2], occ[1::2]):
                if a > cur:
                    complement += [cur, a]
                cur = max(cur, b)
            if cur < NEVER:
                complement += [cur, NEVER]
            assert table.safe[v] == complement
    assert len(held) >= 4


# ------------------------------------------------------------------ prioritised planning

@pytest.mark.parametrize("grid_fast_path", [True, False])
def test_prioritized_corridor_swap_waits_in_a_niche(grid_fast_path):
    # Two robots swap the ends of a corridor; the only place to pass is the niche at
    # (5, 0): whoever plans second has to duck into it, or go first.
    roadmap, exclusion = grid_roadmap("@@@@@.@",
                                      ".......")
    starts, goals = [(0, 1), (6, 1)], [(6, 1), (0, 1)]
    for max_bumps in (3, 0):
        attempts = set()
        for seed in range(6):
            plan = plan_prioritized(roadmap, exclusion, starts, goals, seed=seed,
                                    time_limit_s=5, max_bumps=max_bumps,
                                    grid_fast_path=grid_fast_path)
            assert plan is not None
            paths = validate_multiplan(roadmap, plan, starts, goals)
            assert (5, 0) in paths[0] + paths[1]
            # Robot 1 (starting next to the niche) must be planned second. When the seed
            # puts it first, robot 0 fails: robot 1 is lifted out and re-planned after
            # it (max_bumps > 0), or robot 0 moves to the front and planning restarts.
            assert plan.order == [0, 1]
            attempts.add(plan.attempts)
        assert attempts == ({1} if max_bumps else {1, 2})


def test_prioritized_unsolvable_instance_returns_none_within_the_time_limit():
    roadmap, exclusion = grid_roadmap(".....")   # a swap in a corridor: impossible
    t0 = time.perf_counter()
    assert plan_prioritized(roadmap, exclusion, [(0, 0), (4, 0)], [(4, 0), (0, 0)],
                            time_limit_s=0.3) is None
    assert time.perf_counter() - t0 < 1.0


def test_prioritized_off_grid_start_time_uses_the_general_sipp():
    # A start time between ticks: the integer fast path does not apply; the plan is
    # still valid, shifted by the start time.
    roadmap, exclusion = grid_roadmap(*["......"] * 4)
    starts, goals = [(0, 0), (5, 3), (0, 3)], [(5, 3), (0, 0), (5, 0)]
    plan = plan_prioritized(roadmap, exclusion, starts, goals, t_start=0.5)
    assert all(p[0][1] == 0.5 for p in plan.paths)
    assert sorted(plan.table.robots()) == ["0", "1", "2"]
    shifted = [[(v, t - 0.5) for v, t in p] for p in plan.paths]
    xy = roadmap.pos.astype(int).tolist()
    assert_valid_plan(roadmap.grid.free, starts, goals,
                      [[tuple(xy[v]) for v in vertices_at_unit_times(p)] for p in shifted])


def test_prioritized_unreachable_goal_returns_none_at_once():
    roadmap, exclusion = grid_roadmap("..@..")
    t0 = time.perf_counter()
    assert plan_prioritized(roadmap, exclusion, [(0, 0)], [(4, 0)], time_limit_s=10) is None
    assert time.perf_counter() - t0 < 0.5


def test_prioritized_rejects_shared_starts_and_goals():
    roadmap, exclusion = grid_roadmap("....")
    with pytest.raises(ValueError, match="share the start"):
        plan_prioritized(roadmap, exclusion, [(0, 0), (0, 0)], [(1, 0), (2, 0)])
    with pytest.raises(ValueError, match="share the goal"):
        plan_prioritized(roadmap, exclusion, [(0, 0), (1, 0)], [(2, 0), (2, 0)])
    with pytest.raises(ValueError, match="starts but"):
        plan_prioritized(roadmap, exclusion, [(0, 0)], [])


@pytest.mark.parametrize("grid_fast_path", [True, False])
def test_prioritized_plan_is_held_by_its_table(grid_fast_path):
    roadmap, exclusion = grid_roadmap(*["......"] * 4)
    starts, goals = [(0, 0), (5, 3), (0, 3)], [(5, 3), (0, 0), (5, 0)]
    plan = plan_prioritized(roadmap, exclusion, starts, goals, grid_fast_path=grid_fast_path)
    validate_multiplan(roadmap, plan, starts, goals)
    assert sorted(plan.table.robots()) == ["0", "1", "2"]
    assert plan.sum_of_costs == sum(p[-1][1] for p in plan.paths)
    assert plan.makespan == max(p[-1][1] for p in plan.paths)


@pytest.mark.parametrize("grid_fast_path", [True, False])
def test_prioritized_random_instances_on_small_grids_are_valid(grid_fast_path):
    rng = random.Random(11)
    for trial in range(20):
        rows = ["".join("@" if rng.random() < 0.2 else "." for _ in range(10))
                for _ in range(10)]
        roadmap, exclusion = grid_roadmap(*rows)
        xy = [tuple(p) for p in roadmap.pos.astype(int).tolist()]
        n = rng.randint(2, 15)
        picks = rng.sample(xy, 2 * n)
        starts, goals = picks[:n], picks[n:]
        plan = plan_prioritized(roadmap, exclusion, starts, goals, seed=trial,
                                time_limit_s=2.0, grid_fast_path=grid_fast_path)
        if plan is None:
            continue  # unreachable goals or an instance PP cannot solve: allowed
        validate_multiplan(roadmap, plan, starts, goals)


@pytest.mark.parametrize("name,agents", [
    ("random-32-32-20", 60), ("room-32-32-4", 30), ("maze-32-32-2", 15),
    ("empty-32-32", 80), ("den312d", 40), ("warehouse-10-20-10-2-1", 50)])
def test_prioritized_movingai_instances_are_valid(mapf_bench, name, agents):
    grid = load_movingai_map(os.path.join(mapf_bench, f"{name}.map"))
    rows = load_scenario(os.path.join(mapf_bench, f"{name}-random-1.scen"), agents,
                         grid=grid)
    roadmap = Roadmap.from_grid(grid)
    exclusion = roadmap.exclusion(SMALL)
    starts, goals = [r[0] for r in rows], [r[1] for r in rows]
    plan = plan_prioritized(roadmap, exclusion, starts, goals, time_limit_s=20)
    assert plan is not None
    paths = validate_multiplan(roadmap, plan, starts, goals)
    # The reservation table, built from the integer-time plan, accepts all of it.
    assert len(plan.table.robots()) == agents
    # Sum of costs at least the sum of single-robot distances.
    lower = sum(roadmap.shortest_times(roadmap.vertex_at(*g))[roadmap.vertex_at(*s)]
                for s, g in zip(starts, goals))
    assert sum(len(p) - 1 for p in paths) >= lower

"""Roadmap: MovingAI and YAML loading, distances, and the footprint-aware exclusion
relation of docs/core-model.md (including its reduction to classic MAPF conflicts)."""
import os
from collections import deque

import numpy as np
import pytest
import shapely
import shapely.affinity

from fleet_coord.core.roadmap import (Exclusion, Footprint, GridMap, MapError, Roadmap,
                                      load_movingai_map, load_scenario)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLE_YAML = os.path.join(REPO, "config", "maps", "warehouse_small.yaml")
BENCHMARK_MAPS = ["random-32-32-20", "warehouse-10-20-10-2-1", "den312d", "room-32-32-4",
                  "maze-32-32-2", "empty-32-32"]


def grid_from_rows(rows: list[str]) -> Roadmap:
    free = np.array([[c == "." for c in row] for row in rows])
    return Roadmap.from_grid(GridMap(width=len(rows[0]), height=len(rows), free=free,
                                     path="<test>"))


def write(tmp_path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def bfs_hops(roadmap: Roadmap, goal: int) -> np.ndarray:
    """Reference: hops from every vertex to goal, against the edge direction."""
    hops = np.full(roadmap.num_vertices, np.inf)
    hops[goal] = 0
    queue = deque([goal])
    while queue:
        v = queue.popleft()
        for e in roadmap.in_edges[v]:
            u = roadmap.edge_from[e]
            if hops[u] == np.inf:
                hops[u] = hops[v] + 1
                queue.append(u)
    return hops


# --------------------------------------------------------------------------- grids

@pytest.mark.parametrize("name", BENCHMARK_MAPS)
def test_benchmark_map_has_one_vertex_per_free_cell(mapf_bench, name):
    path = os.path.join(mapf_bench, name + ".map")
    with open(path) as f:
        body = f.read().splitlines()[4:]
    free_cells = sum(row.count(".") + row.count("G") + row.count("S") for row in body)

    roadmap = Roadmap.from_grid(load_movingai_map(path))

    assert roadmap.num_vertices == free_cells
    assert roadmap.num_resources == roadmap.num_vertices + roadmap.num_edges
    assert np.all(roadmap.edge_length == 1.0) and np.all(np.isinf(roadmap.edge_speed))
    # 4-connected and two-way: every edge has its reverse, between grid neighbours.
    assert np.all(roadmap.reverse_edges() >= 0)
    step = np.abs(roadmap.pos[roadmap.edge_to] - roadmap.pos[roadmap.edge_from]).sum(axis=1)
    assert np.all(step == 1)
    x, y = (int(c) for c in roadmap.pos[7])
    assert roadmap.vertex((x, y)) == roadmap.vertex(f"{x},{y}") == 7


def test_city_map_with_windows_line_endings_loads(mapf_bench):
    grid = load_movingai_map(os.path.join(mapf_bench, "Berlin_1_256.map"))
    assert (grid.width, grid.height) == (256, 256) and grid.free.any()


def test_bundled_grid_maps_load():
    maps = sorted(f for f in os.listdir(os.path.join(REPO, "config", "maps"))
                  if f.endswith(".map"))
    for name in maps:
        grid = load_movingai_map(os.path.join(REPO, "config", "maps", name))
        assert Roadmap.from_grid(grid).num_vertices == int(grid.free.sum())


GOOD_HEADER = "type octile\nheight 2\nwidth 3\nmap\n"


@pytest.mark.parametrize("text, line, column, expected", [
    ("type octile\nhieght 2\nwidth 3\nmap\n...\n...\n", 2, None,
     "expected 'height <int>', got 'hieght 2'"),
    ("type octile\nheight two\nwidth 3\nmap\n...\n...\n", 2, None, "height <positive int>"),
    ("type octile\nheight 2\nwidth 3\n...\n...\n", 4, None, "expected 'map'"),
    ("", 1, None, "expected 'type <name>', got ''"),
    (GOOD_HEADER + "...\n..\n", 6, None, "expected a row of 3 characters, got 2"),
    (GOOD_HEADER + "...\n", 6, None, "expected 2 map rows, got 1"),
    (GOOD_HEADER + "...\n...\n@@@\n", 7, None, "expected end of file after 2 map rows"),
    (GOOD_HEADER + "...\n.x.\n", 6, 2, "unknown cell character 'x'"),
])
def test_bad_map_file_names_line_and_problem(tmp_path, text, line, column, expected):
    path = write(tmp_path, "bad.map", text)
    with pytest.raises(MapError) as err:
        load_movingai_map(path)
    assert err.value.line == line and err.value.column == column
    assert expected in str(err.value)
    where = f"{path}:{line}" + (f":{column}" if column else "") + ": "
    assert str(err.value).startswith(where)


def test_map_accepts_all_free_and_blocked_characters(tmp_path):
    text = "type octile\r\nheight 2\r\nwidth 4\r\nmap\r\n.GS@\r\nOTW.\r\n"
    grid = load_movingai_map(write(tmp_path, "ok.map", text))
    assert grid.free.tolist() == [[True, True, True, False], [False, False, False, True]]


# --------------------------------------------------------------------------- scenarios

def test_scenario_returns_first_n_rows_as_start_goal_cells(mapf_bench):
    path = os.path.join(mapf_bench, "warehouse-10-20-10-2-1-random-1.scen")
    grid = load_movingai_map(os.path.join(mapf_bench, "warehouse-10-20-10-2-1.map"))
    rows = load_scenario(path, 3, grid=grid)
    assert rows == [((143, 57), (10, 16)), ((134, 28), (91, 6)), ((66, 7), (36, 56))]
    assert len(load_scenario(path)) >= 100


SCEN_ROW = "0\tx.map\t3\t2\t{sx}\t{sy}\t2\t1\t3.0\n"


def test_scenario_with_too_few_rows_is_refused(tmp_path):
    path = write(tmp_path, "s.scen", "version 1\n" + SCEN_ROW.format(sx=0, sy=0) * 2)
    assert len(load_scenario(path, 2)) == 2
    with pytest.raises(MapError, match="asked for 3 agents, but the scenario has only 2"):
        load_scenario(path, 3)


@pytest.mark.parametrize("row, expected", [
    ("0\tx.map\t3\t2\t0\t0\t2\n", "expected 9 fields"),
    ("0\tx.map\t3\t2\ta\t0\t2\t1\t3.0\n", "expected integers"),
])
def test_malformed_scenario_row_names_its_line(tmp_path, row, expected):
    path = write(tmp_path, "s.scen", "version 1\n" + SCEN_ROW.format(sx=0, sy=0) + row)
    with pytest.raises(MapError, match=expected) as err:
        load_scenario(path)
    assert err.value.line == 3


def test_scenario_start_on_a_blocked_cell_is_refused_given_the_grid(tmp_path):
    grid = load_movingai_map(write(tmp_path, "x.map", GOOD_HEADER + "@..\n...\n"))
    path = write(tmp_path, "s.scen", "version 1\n" + SCEN_ROW.format(sx=0, sy=0))
    with pytest.raises(MapError, match=r"start \(0, 0\) is not a free cell") as err:
        load_scenario(path, grid=grid)
    assert err.value.line == 2


# --------------------------------------------------------------------------- YAML

def test_example_warehouse_roadmap_loads():
    roadmap = Roadmap.from_yaml(EXAMPLE_YAML)
    assert 20 <= roadmap.num_vertices <= 40
    assert {"pick", "drop", "charger", "parking"} <= set(roadmap.kinds)
    assert [roadmap.names[v] for v in roadmap.vertices_of_kind("charger")] == [
        "charger_1", "charger_2"]
    assert roadmap.grid is None and roadmap.title == "warehouse_small"


def test_resources_are_named_as_vertices_and_lanes():
    roadmap = Roadmap.from_yaml(EXAMPLE_YAML)
    v = roadmap.vertex
    e = roadmap.edge_id(v("main_a"), v("pick_a1"))
    assert roadmap.resource_name(v("pick_a1")) == "pick_a1"
    assert roadmap.resource_name(roadmap.edge_resource(e)) == "main_a->pick_a1"


def test_one_way_lanes_are_one_way():
    roadmap = Roadmap.from_yaml(EXAMPLE_YAML)
    v = roadmap.vertex
    assert roadmap.edge_id(v("main_a"), v("pick_a1")) is not None
    assert roadmap.edge_id(v("pick_a1"), v("main_a")) is None
    assert roadmap.edge_id(v("pick_b1"), v("main_b")) is not None
    assert roadmap.edge_id(v("main_b"), v("pick_b1")) is None
    # Two-way by default.
    assert roadmap.edge_id(v("main_a"), v("main_b")) is not None
    assert roadmap.edge_id(v("main_b"), v("main_a")) is not None


def test_speed_limit_caps_travel_time():
    roadmap = Roadmap.from_yaml(EXAMPLE_YAML)
    slow = roadmap.edge_id(roadmap.vertex("main_w"), roadmap.vertex("dock_in"))
    fast = roadmap.edge_id(roadmap.vertex("main_w"), roadmap.vertex("main_a"))
    assert roadmap.edge_speed[slow] == 0.5 and roadmap.edge_length[slow] == 2.5
    assert roadmap.travel_time(slow, max_speed=2.0) == pytest.approx(5.0)
    assert roadmap.travel_time(slow, max_speed=0.25) == pytest.approx(10.0)
    assert roadmap.travel_time(fast, max_speed=2.0) == pytest.approx(1.0)


def test_shortest_times_follow_one_way_aisles_and_speed_limits():
    roadmap = Roadmap.from_yaml(EXAMPLE_YAML)
    v = roadmap.vertex
    # Into aisle A from the south directly; out of it only through the top and aisle B.
    to_a2 = roadmap.shortest_times(v("pick_a2"), max_speed=1.0)
    assert to_a2[v("main_a")] == pytest.approx(5.0)
    assert to_a2[v("pick_a3")] == pytest.approx(2.5 + 4 + 10 + 4 + 5)  # top, B, main, A
    # dock_in is behind a 0.5 m/s lane: 2.5 m takes 5 s, then 2 m to main_a.
    to_main_a = roadmap.shortest_times(v("main_a"), max_speed=1.0)
    assert to_main_a[v("dock_in")] == pytest.approx(7.0)


LANE_OK = "  - [a, b]\n"
STATIONS_OK = "stations:\n  a: {x: 0, y: 0}\n  b: {x: 2, y: 0}\n"


@pytest.mark.parametrize("text, line, expected", [
    (STATIONS_OK + "lanes:\n  - [a, c]\n", 5, "lane refers to unknown station 'c'"),
    (STATIONS_OK + "  a: {x: 3, y: 3}\nlanes: []\n", 4, "duplicate station 'a'"),
    ("stations:\n  a: {x: 0, y: north}\nlanes: []\n", 2,
     "expected y of station 'a' as a number, got 'north'"),
    (STATIONS_OK + "lanes:\n  - [a, a]\n", 5, "lane from station 'a' to itself"),
    ("stations:\n  a: {x: 0}\nlanes: []\n", 2, "missing key 'y' in station 'a'"),
    (STATIONS_OK + "lanes:\n  - {from: a, to: b, oneway: true}\n", 5,
     "unknown key 'oneway' in a lane"),
    (STATIONS_OK + "lanes:\n  - {from: a}\n", 5, "missing key 'to' in a lane"),
    (STATIONS_OK, 1, "missing key 'lanes' in the roadmap"),
    (STATIONS_OK + "lanes:\n" + LANE_OK + "  - {from: b, to: a, one_way: true}\n", 6,
     "duplicate lane 'b' -> 'a' (already declared on line 5)"),
    (STATIONS_OK + "lanes:\n  - {from: a, to: b, speed: -1}\n", 5, "expected speed > 0"),
    (STATIONS_OK + "lanes:\n  - {from: a, to: b, one_way: maybe}\n", 5,
     "expected one_way as true or false"),
    ("stations:\n  a: {x: 0, y: 0, kind: shelf}\nlanes: []\n", 2,
     "expected kind of station 'a' to be one of pick | drop"),
    ("stations:\n  a: {x: 0, y: 0}\n  b: {x: 0, y: 0}\nlanes:\n  - [a, b]\n", 5,
     "has zero length"),
    (STATIONS_OK + "lanes:\n  - [a, b\n", 6, "invalid YAML"),
    (STATIONS_OK + "lanes: []\nzones: []\n", 5, "unknown key 'zones' in the roadmap"),
])
def test_bad_yaml_roadmap_names_line_and_problem(tmp_path, text, line, expected):
    path = write(tmp_path, "bad.yaml", text)
    with pytest.raises(MapError) as err:
        Roadmap.from_yaml(path)
    assert expected in str(err.value)
    assert err.value.line == line
    assert str(err.value).startswith(f"{path}:{line}: ")


def test_unknown_station_lookup_lists_known_names():
    roadmap = Roadmap.from_yaml(EXAMPLE_YAML)
    with pytest.raises(KeyError) as err:
        roadmap.vertex("charger_3")
    message = str(err.value)
    assert message.startswith("unknown station 'charger_3'; did you mean")
    assert "known: dock_in, dock_out" in message


def test_vertex_at_gives_none_for_blocked_or_outside_cells():
    roadmap = grid_from_rows([".@.", "..."])
    assert roadmap.vertex_at(0, 0) == 0 and roadmap.vertex_at(2, 0) == 1
    assert roadmap.vertex_at(1, 0) is None and roadmap.vertex_at(3, 0) is None
    assert roadmap.vertex_at(-1, 0) is None
    with pytest.raises(KeyError, match=r"cell \(1, 0\) is not a free cell"):
        roadmap.vertex((1, 0))


# --------------------------------------------------------------------------- distances

def test_shortest_times_equal_breadth_first_search_on_a_grid(mapf_bench):
    roadmap = Roadmap.from_grid(load_movingai_map(os.path.join(mapf_bench,
                                                               "random-32-32-20.map")))
    rng = np.random.default_rng(7)
    for goal in rng.choice(roadmap.num_vertices, size=5, replace=False):
        hops = bfs_hops(roadmap, goal)
        assert np.array_equal(roadmap.shortest_times(goal), hops)
        assert np.allclose(roadmap.shortest_times(goal, max_speed=2.0), hops / 2.0)


def test_shortest_times_are_infinite_where_the_goal_is_unreachable():
    roadmap = grid_from_rows(["..@..", "..@.."])
    times = roadmap.shortest_times(roadmap.vertex((0, 0)))
    assert times[roadmap.vertex((1, 1))] == 2.0
    assert np.isinf(times[roadmap.vertex((3, 0))])


def test_shortest_times_are_cached_and_read_only():
    roadmap = grid_from_rows(["...", "..."])
    times = roadmap.shortest_times(0)
    assert roadmap.shortest_times(0) is times
    with pytest.raises(ValueError):
        times[0] = 5.0


# --------------------------------------------------------------------------- exclusion

SMALL_GRID = ["......",
              ".@@..@",
              "....@.",
              "@.....",
              "...@.."]


@pytest.mark.parametrize("footprint", [
    Footprint(radius=0.05), Footprint(radius=0.15), Footprint(radius=1 / 6),
    Footprint(polygon=((-0.1, -0.08), (0.12, -0.08), (0.12, 0.08), (-0.1, 0.08)))])
def test_grid_closed_form_equals_swept_shapes(footprint):
    roadmap = grid_from_rows(SMALL_GRID)
    closed = roadmap.exclusion(footprint, method="grid")
    swept = roadmap.exclusion(footprint, method="shapely")
    assert roadmap.exclusion(footprint) is roadmap.exclusion(footprint)  # cached
    assert np.array_equal(closed.indptr, swept.indptr)
    assert np.array_equal(closed.indices, swept.indices)
    # Spot-check against the prose of docs/core-model.md.
    V = roadmap.num_vertices
    u, v = roadmap.vertex((0, 0)), roadmap.vertex((1, 0))
    e, back = roadmap.edge_id(u, v), roadmap.edge_id(v, u)
    assert closed.of(V + e).tolist() == sorted([u, v, V + e, V + back])
    touching = sorted(V + np.concatenate([roadmap.out_edges[u], roadmap.in_edges[u]]))
    assert closed.of(u).tolist() == [u] + touching


def test_closed_form_is_refused_when_it_does_not_hold():
    roadmap = grid_from_rows(SMALL_GRID)
    with pytest.raises(ValueError, match="closed form"):
        roadmap.exclusion(Footprint(radius=0.2), method="grid")
    with pytest.raises(ValueError, match="closed form"):
        Roadmap.from_yaml(EXAMPLE_YAML).exclusion(Footprint(radius=0.1), method="grid")


def test_exclusion_is_symmetric_sorted_and_reflexive_on_the_warehouse_example():
    roadmap = Roadmap.from_yaml(EXAMPLE_YAML)
    exclusion = roadmap.exclusion(Footprint(radius=0.3))
    for r in range(roadmap.num_resources):
        row = exclusion.of(r)
        assert np.all(np.diff(row) > 0)
        assert r in row  # every lane of the example is long enough to have a middle
        for s in row:
            assert exclusion.exclusive(s, r)


def test_large_footprint_makes_neighbouring_cells_exclusive():
    roadmap = grid_from_rows(["....."] * 5)
    small = roadmap.exclusion(Footprint(radius=0.15))
    large = roadmap.exclusion(Footprint(radius=0.6))
    centre = roadmap.vertex((2, 2))
    neighbours = [roadmap.vertex(c) for c in [(1, 2), (3, 2), (2, 1), (2, 3), (1, 1), (3, 3)]]
    for n in neighbours:
        assert not small.exclusive(centre, n)
        assert large.exclusive(centre, n)
    # L = 1.2 > half a unit lane: no middles; a traversal hands over at half-way.
    e = roadmap.edge_id(centre, neighbours[0])
    assert len(large.of(roadmap.edge_resource(e))) == 0
    assert large.hold_offset(e, 1.0) == pytest.approx(0.5)
    assert small.hold_offset(e, 1.0) == pytest.approx(0.3)
    assert small.hold_offset(e, 2.0) == pytest.approx(0.15)


def test_polygon_footprint_faces_along_the_lane():
    # Two parallel one-way lanes 1 m apart; a 1.4 m x 0.4 m robot fits side by side when
    # driving along them, though its bounding disc (radius 0.73 m) would not.
    roadmap = Roadmap(pos=[(0, 0), (5, 0), (0, 1), (5, 1)], edge_from=[0, 2], edge_to=[1, 3])
    rectangle = Footprint(polygon=((-0.7, -0.2), (0.7, -0.2), (0.7, 0.2), (-0.7, 0.2)))
    disc = Footprint(radius=rectangle.bounding_radius)
    lane_0, lane_1 = roadmap.edge_resource(0), roadmap.edge_resource(1)
    assert not roadmap.exclusion(rectangle).exclusive(lane_0, lane_1)
    assert roadmap.exclusion(disc).exclusive(lane_0, lane_1)
    # At the stations the robot may turn, so the bounding disc counts there.
    assert roadmap.exclusion(rectangle).exclusive(0, 2)


@pytest.mark.parametrize("polygon", [
    ((-0.3, -0.2), (0.3, -0.2), (0.3, 0.2), (-0.3, 0.2)),                      # convex
    ((-0.3, -0.3), (0.3, -0.3), (0.3, 0.3), (0.1, 0.3), (0.1, -0.1), (-0.3, -0.1)),  # L
])
def test_edge_middle_is_the_polygon_swept_along_the_lane(polygon):
    roadmap = Roadmap(pos=[(0, 0), (3, 4)], edge_from=[0], edge_to=[1])
    footprint = Footprint(polygon=polygon)
    middle = roadmap.exclusion(footprint).geometry(roadmap.edge_resource(0))
    L, heading = 2 * footprint.bounding_radius, np.arctan2(4, 3)
    placed = [shapely.affinity.translate(footprint.geometry(heading), *(s * np.array([0.6, 0.8])))
              for s in np.linspace(L, 5 - L, 400)]
    samples = shapely.union_all(placed)
    assert middle.symmetric_difference(samples).area < 1e-2 * middle.area


def test_a_driving_robot_stays_inside_what_it_holds():
    roadmap = Roadmap.from_yaml(EXAMPLE_YAML)
    footprint = Footprint(radius=0.3)
    exclusion = roadmap.exclusion(footprint)
    L = exclusion.clearance
    for e in range(roadmap.num_edges):
        u, v = roadmap.edge_from[e], roadmap.edge_to[e]
        length = roadmap.edge_length[e]
        for s in np.linspace(0, length, 21):
            held = ([u] if s <= L else []) + ([v] if s >= length - L else [])
            if L <= s <= length - L:
                held.append(roadmap.edge_resource(e))
            where = roadmap.pos[u] + (roadmap.pos[v] - roadmap.pos[u]) * s / length
            robot = shapely.affinity.translate(footprint.geometry(), *where)
            shape = shapely.union_all([exclusion.geometry(r) for r in held])
            # 1% of r absorbs the polygonised circles of the display shapes.
            assert shape.buffer(1e-2 * footprint.radius).contains(robot), (e, s)


# --------------------------------------------------------------------------- classic MAPF

def random_plan(roadmap: Roadmap, rng, steps: int) -> list[int]:
    """A random walk with waits: the vertex at times 0, 1, ..., steps."""
    plan = [int(rng.integers(roadmap.num_vertices))]
    for _ in range(steps):
        here = plan[-1]
        moves = roadmap.out_edges[here]
        if rng.random() < 0.3 or len(moves) == 0:
            plan.append(here)
        else:
            plan.append(int(roadmap.edge_to[rng.choice(moves)]))
    return plan


def plan_to_holds(roadmap: Roadmap, exclusion: Exclusion, plan: list[int]):
    """docs/core-model.md on a unit-time plan: a vertex is held from arrival - c to
    departure + c (from 0 at the start, to t_end + 1 at the end), an edge's middle over
    [t + c, t + 1 - c)."""
    holds = []
    since = 0.0
    for t in range(len(plan) - 1):
        u, v = plan[t], plan[t + 1]
        if u == v:
            continue
        e = roadmap.edge_id(u, v)
        c = exclusion.hold_offset(e, 1.0)
        holds.append((u, since, t + c))
        if t + c < t + 1 - c:
            holds.append((roadmap.edge_resource(e), t + c, t + 1 - c))
        since = t + 1 - c
    holds.append((plan[-1], since, float(len(plan))))
    return holds


def holds_overlap(dense: np.ndarray, holds_a, holds_b) -> bool:
    ra, sa, ea = (np.array(x) for x in zip(*holds_a))
    rb, sb, eb = (np.array(x) for x in zip(*holds_b))
    in_time = np.maximum(sa[:, None], sb[None, :]) < np.minimum(ea[:, None], eb[None, :])
    return bool(np.any(dense[ra[:, None], rb[None, :]] & in_time))


def classic_conflict(a: list[int], b: list[int]) -> bool:
    """Vertex conflict (same cell, same time) or swap conflict (exchange along an edge)."""
    if any(x == y for x, y in zip(a, b)):
        return True
    return any(a[t] == b[t + 1] and a[t + 1] == b[t] and a[t] != a[t + 1]
               for t in range(len(a) - 1))


@pytest.mark.parametrize("radius, method", [(0.15, "auto"), (1 / 6, "shapely"),
                                            (0.05, "shapely")])
def test_overlapping_exclusive_holds_are_exactly_classic_conflicts(radius, method):
    roadmap = grid_from_rows(["....", ".@..", "....", "..@."])
    exclusion = roadmap.exclusion(Footprint(radius=radius), method=method)
    dense = np.zeros((roadmap.num_resources,) * 2, dtype=bool)
    for r in range(roadmap.num_resources):
        dense[r, exclusion.of(r)] = True
    rng = np.random.default_rng(2024)
    outcomes = {True: 0, False: 0}
    for _ in range(3000):
        steps = int(rng.integers(1, 9))
        a, b = random_plan(roadmap, rng, steps), random_plan(roadmap, rng, steps)
        classic = classic_conflict(a, b)
        held = holds_overlap(dense, plan_to_holds(roadmap, exclusion, a),
                             plan_to_holds(roadmap, exclusion, b))
        assert held == classic, (a, b)
        outcomes[classic] += 1
    assert min(outcomes.values()) > 500, outcomes


def test_following_into_a_cell_being_vacated_is_allowed():
    roadmap = grid_from_rows(["...."])
    exclusion = roadmap.exclusion(Footprint(radius=0.15))
    dense = np.zeros((roadmap.num_resources,) * 2, dtype=bool)
    for r in range(roadmap.num_resources):
        dense[r, exclusion.of(r)] = True
    leader, follower = [1, 2, 3], [0, 1, 2]
    assert not classic_conflict(leader, follower)
    assert not holds_overlap(dense, plan_to_holds(roadmap, exclusion, leader),
                             plan_to_holds(roadmap, exclusion, follower))


# --------------------------------------------------------------------------- footprint

@pytest.mark.parametrize("kwargs", [dict(), dict(radius=0.2, polygon=((0, 0), (1, 0), (0, 1))),
                                    dict(radius=0.0), dict(radius=float("nan")),
                                    dict(polygon=((0, 0), (1, 0))),
                                    dict(polygon=((0, 0), (1, 1), (1, 0), (0, 1)))])
def test_invalid_footprint_is_refused(kwargs):
    with pytest.raises(ValueError):
        Footprint(**kwargs)


def test_footprint_bounding_radius_and_geometry():
    square = Footprint(polygon=[(-0.3, -0.4), (0.3, -0.4), (0.3, 0.4), (-0.3, 0.4)])
    assert square.bounding_radius == pytest.approx(0.5)
    assert square.geometry().area == pytest.approx(0.48)
    assert hash(square) == hash(Footprint(polygon=((-0.3, -0.4), (0.3, -0.4), (0.3, 0.4),
                                                   (-0.3, 0.4))))
    disc = Footprint(radius=0.25)
    assert disc.bounding_radius == 0.25
    assert disc.geometry().area == pytest.approx(np.pi * 0.25 ** 2, rel=1e-2)

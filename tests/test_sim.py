"""The PyBullet world alone (no ROS): robots follow twists, contacts are counted, maps load."""
import math
import os

import numpy as np
import pytest

pytest.importorskip("pybullet", reason="pybullet is installed by `make setup`")
from fleet_coord.core.kinematics import Limits, UnicycleState, step  # noqa: E402
from fleet_coord.core.roadmap import load_movingai_map  # noqa: E402
from fleet_coord_sim import ContactCounter, SimWorld, merge_blocked_cells  # noqa: E402
from fleet_coord_sim.contacts import OBSTACLES  # noqa: E402
from fleet_coord_sim.robots import unicycle_step_many  # noqa: E402

LIMITS = Limits(max_v=1.0, max_w=2.0, max_acc=2.0, max_alpha=6.0)
MODES = ("kinematic", "physics")
# The bundled warehouse (config/maps/warehouse.map, 36 x 20): rows 1-2 are a free
# corridor along the top wall (row 0); a shelf fills columns 3-8 of rows 3-4.
CORRIDOR_Y = 1.0
SHELF_X_MIN = 2.5  # west face of the shelf at columns 3..8, rows 3..4


@pytest.fixture
def world_factory():
    worlds = []

    def make(mode="kinematic", map_path="", **kw):
        kw.setdefault("limits", LIMITS)
        w = SimWorld(map_path, mode=mode, dt=kw.pop("dt", 0.02), **kw)
        worlds.append(w)
        return w
    yield make
    for w in worlds:
        w.close()


def run(world, seconds):
    for _ in range(round(seconds / world.dt)):
        world.step()


# ----------------------------------------------------------------- following twists

def test_fleet_integrator_matches_the_scalar_unicycle_step():
    rng = np.random.default_rng(7)
    n = 400
    state = np.column_stack([rng.uniform(-5, 5, (n, 2)), rng.uniform(-math.pi, math.pi, n),
                             rng.uniform(-1.2, 1.2, n), rng.uniform(-2.5, 2.5, n)])
    cmd = rng.uniform(-3, 3, (n, 2))
    cmd[::7, 1] = 0.0                  # straight lines
    cmd[::11, 1] = 1e-12               # numerically straight
    cmd[5] = (math.nan, 0.3)           # a non-finite command means stop
    cmd[6] = (0.2, math.inf)
    state[::13, 4] = 0.0
    for dt in (0.0, 0.02, 0.5):
        got = unicycle_step_many(state, cmd, dt, LIMITS)
        for i in range(n):
            s = step(UnicycleState(*state[i]), cmd[i, 0], cmd[i, 1], dt, LIMITS)
            assert got[i, [0, 1, 3, 4]] == pytest.approx([s.x, s.y, s.v, s.w], abs=1e-9)
            assert math.remainder(got[i, 2] - s.theta, 2 * math.pi) == pytest.approx(0, abs=1e-9)


@pytest.mark.parametrize("mode,tolerance", [("kinematic", 1e-9), ("physics", 0.05)])
@pytest.mark.parametrize("v,w", [(0.5, 0.0), (0.6, 0.8), (0.0, 1.5), (1.0, -0.5)])
def test_robot_follows_commanded_twist_like_the_ideal_unicycle(world_factory, mode,
                                                               tolerance, v, w):
    world = world_factory(mode)
    world.add_robot("r1", 17.0, 15.5, 0.3)  # open floor at the bottom of the warehouse
    world.set_cmd("r1", v, w)
    ideal = UnicycleState(17.0, 15.5, 0.3)
    for _ in range(150):  # 3 s
        world.step()
        ideal = step(ideal, v, w, world.dt, LIMITS)
    x, y, theta = world.pose("r1")
    assert math.hypot(x - ideal.x, y - ideal.y) < tolerance
    assert abs(math.remainder(theta - ideal.theta, 2 * math.pi)) < tolerance
    assert world.velocity("r1") == pytest.approx((v, w), abs=max(tolerance, 1e-9))
    assert world.time == pytest.approx(3.0)
    assert world.contacts.total == 0


@pytest.mark.parametrize("mode", MODES)
def test_commanded_twists_are_clipped_to_the_limits(world_factory, mode):
    world = world_factory(mode)
    world.add_robot("r1", 5.0, 15.5, 0.0)
    world.set_cmd("r1", 3.0, 0.0)
    run(world, 2.0)
    v, _ = world.velocity("r1")
    assert v == pytest.approx(LIMITS.max_v, abs=0.02)
    # 0.5 s ramp at max_acc, then max_v: 0.25 + 1.5 m
    assert world.pose("r1")[0] == pytest.approx(5.0 + 1.75, abs=0.05)


# ----------------------------------------------------------------- contacts

@pytest.mark.parametrize("mode", MODES)
def test_two_robots_driven_into_each_other_count_one_robot_robot_contact(world_factory, mode):
    world = world_factory(mode)
    world.add_robot("a", 5.0, CORRIDOR_Y, 0.0)
    world.add_robot("b", 8.0, CORRIDOR_Y, math.pi)
    world.set_cmd("a", 0.5, 0.0)
    world.set_cmd("b", 0.5, 0.0)
    events = []
    for _ in range(250):  # 5 s: they meet after ~2.8 s and keep pushing (or pass through)
        events += world.step()
    assert world.contacts.robot_robot == 1
    assert world.contacts.robot_obstacle == 0
    (event,) = events
    assert (event.kind, event.a, event.b) == ("robot_robot", "a", "b")
    # footprints touch when the gap of 3 m - 2 x 0.15 m is closed: 1.35 m each, after
    # the 0.25 s ramp to 0.5 m/s: t = 0.0625 ... about 2.8 s
    assert 2.7 < event.time < 3.0
    assert world.contacts.events == events


@pytest.mark.parametrize("mode", MODES)
def test_robot_driven_into_a_shelf_counts_one_robot_obstacle_contact(world_factory, mode):
    world = world_factory(mode)
    world.add_robot("r1", 1.0, 3.0, 0.0)  # in the aisle west of the shelf
    world.set_cmd("r1", 1.0, 0.0)
    run(world, 3.0)
    assert (world.contacts.robot_obstacle, world.contacts.robot_robot) == (1, 0)
    assert world.contacts.events[0].b == "obstacle"
    if mode == "physics":  # the shelf stopped it at its face
        assert world.pose("r1")[0] == pytest.approx(SHELF_X_MIN - 0.15, abs=0.03)
        assert world.contacts.active == {(0, OBSTACLES)}


@pytest.mark.parametrize("mode", MODES)
def test_no_contacts_when_robots_drive_apart_or_turn_next_to_shelves(world_factory, mode):
    world = world_factory(mode)
    world.add_robot("a", 5.0, CORRIDOR_Y, math.pi)   # 0.35 m from the top wall
    world.add_robot("b", 5.4, CORRIDOR_Y, 0.0)      # 0.1 m from robot a
    world.add_robot("c", 2.0, 3.0, 0.0)             # 0.35 m from the shelf
    world.set_cmd("a", 0.5, 0.0)
    world.set_cmd("b", 0.5, 0.0)
    world.set_cmd("c", 0.0, 2.0)                    # spins in place
    run(world, 3.0)
    assert world.contacts.total == 0
    assert world.contacts.active == frozenset()
    assert world.pose("b")[0] - world.pose("a")[0] > 2.5


def test_a_contact_that_persists_or_bounces_is_one_event():
    c = ContactCounter(release_steps=3)
    names = ["a", "b"]
    seq = [{(0, 1)}, {(0, 1)}, set(), {(0, 1)}, set(), set(), set(), {(0, 1)}, {(0, OBSTACLES)}]
    for k, touching in enumerate(seq):
        c.update(touching, k * 0.1, names)
    # bounce after 1 step apart: same event; after 3 steps apart: a new one
    assert (c.robot_robot, c.robot_obstacle) == (2, 1)
    assert [e.time for e in c.events] == pytest.approx([0.0, 0.7, 0.8])
    with pytest.raises(ValueError, match="release_steps"):
        ContactCounter(release_steps=0)


# ----------------------------------------------------------------- maps

def _cover(boxes, shape):
    covered = np.zeros(shape, dtype=int)
    for c0, r0, c1, r1 in boxes:
        covered[r0:r1, c0:c1] += 1
    return covered


def test_merged_boxes_cover_blocked_cells_exactly_once():
    rng = np.random.default_rng(3)
    blocked = rng.random((40, 60)) < 0.35
    blocked[5:15, 10:30] = True
    boxes = merge_blocked_cells(blocked)
    assert np.array_equal(_cover(boxes, blocked.shape), blocked.astype(int))
    assert len(boxes) < blocked.sum()
    assert merge_blocked_cells(np.ones((3, 4), bool)) == [(0, 0, 4, 3)]
    assert merge_blocked_cells(np.zeros((3, 4), bool)) == []


def test_warehouse_map_builds_shelves_as_few_static_boxes(world_factory):
    world = world_factory()
    grid = world.grid
    assert world.blocked_area == (~grid.free).sum() == 252
    # 4 walls + 12 shelves, walls split where they meet the shelves' corners: a handful
    assert len(world.obstacle_bodies) == len(world.obstacle_boxes) <= 20
    cells = [(int(x0 + 0.5), int(y0 + 0.5), int(x1 + 0.5), int(y1 + 0.5))
             for x0, y0, x1, y1 in world.obstacle_boxes]
    assert np.array_equal(_cover(cells, grid.free.shape), (~grid.free).astype(int))


@pytest.mark.parametrize("name", ["warehouse-10-20-10-2-1.map", "Berlin_1_256.map"])
def test_movingai_maps_load_with_exact_obstacle_area(mapf_bench, name):
    path = os.path.join(mapf_bench, name)
    grid = load_movingai_map(path)
    with SimWorld(path) as world:
        assert world.blocked_area == (~grid.free).sum()
        assert len(world.obstacle_bodies) < (~grid.free).sum() / 4


def test_yaml_roadmap_marks_its_stations_and_has_no_obstacles(world_factory):
    world = world_factory(map_path="warehouse_small.yaml")
    assert len(world.obstacle_bodies) == 0
    assert world.stations["dock_in"] == (0.0, 1.5, "drop")
    assert world.stations["pick_a1"][2] == "pick"
    world.add_robot("r1", 0.0, 0.0)
    world.set_cmd("r1", 0.5, 0.0)
    run(world, 1.0)
    assert world.contacts.total == 0  # stations are markers: robots drive over them


# ----------------------------------------------------------------- bad input

def test_bad_robots_and_options_are_refused_naming_the_problem(world_factory):
    world = world_factory()
    world.add_robot("r1", 1.0, 1.0)
    with pytest.raises(ValueError, match="'r1' already exists"):
        world.add_robot("r1", 1.0, 2.0)
    with pytest.raises(ValueError, match="'r2' .* overlaps robot 'r1'"):
        world.add_robot("r2", 1.2, 1.0)
    with pytest.raises(ValueError, match="'r3' .* overlaps the obstacle"):
        world.add_robot("r3", 3.0, 3.0)
    with pytest.raises(ValueError, match="'r4' .* off the map"):
        world.add_robot("r4", 50.0, 1.0)
    with pytest.raises(KeyError, match="unknown robot 'nobody'"):
        world.set_cmd("nobody", 1.0, 0.0)
    with pytest.raises(ValueError, match="mode must be one of"):
        SimWorld("", mode="magic")
    with pytest.raises(ValueError, match="dt must be"):
        SimWorld("", dt=0.0)
    with pytest.raises(FileNotFoundError, match="no_such.map"):
        SimWorld("no_such.map")

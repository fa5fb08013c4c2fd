"""Parked idle robots yield to robots that need their spot (fleet_coord.core.yielding)."""
import math

import numpy as np

from fleet_coord.core.planner import path_to_segments, sipp
from fleet_coord.core.reservations import ReservationTable
from fleet_coord.core.roadmap import Footprint, GridMap, Roadmap
from fleet_coord.core.yielding import (OpenTask, forever_holders, least_disturbing_path, parked_at,
                                       needed_by, position, yield_target)

INF = math.inf
SPEED = 1.0


def grid(*rows):
    free = np.array([[ch == "." for ch in row] for row in rows], dtype=bool)
    roadmap = Roadmap.from_grid(GridMap(width=free.shape[1], height=free.shape[0], free=free,
                                        path="<test>"))
    ex = roadmap.exclusion(Footprint(radius=0.1))
    return roadmap, ex, ReservationTable(ex.of, roadmap.num_resources)


def V(roadmap, x, y):
    return roadmap.vertex_at(x, y)


def park(table, robot, v, t=0.0):
    assert table.commit(robot, [(v, t, INF)]).ok


OPEN_ROOM = ("......",
             "......",
             "......")
# A one-wide corridor between two rooms: (3, 1) is the only way from left to right.
CORRIDOR = ("...@...",
            ".......",
            "...@...")


def test_parked_robot_on_a_task_goal_is_needed_and_yields_off_the_path():
    roadmap, ex, table = grid(*OPEN_ROOM)
    park(table, "idle", V(roadmap, 4, 1))
    park(table, "worker", V(roadmap, 0, 1))
    task = OpenTask("t", "worker", V(roadmap, 4, 1))
    assert needed_by("idle", V(roadmap, 4, 1), [task], table, roadmap, ex, 0.0, SPEED) == task
    target = yield_target("idle", V(roadmap, 4, 1), [task], table, roadmap, ex, 0.0, SPEED)
    assert target is not None
    # off the worker's way: not on row 1 between it and the goal, not the goal itself
    x, y = roadmap.pos[target]
    assert y != 1 or x > 4
    # after yielding nobody needs it: it will not be asked to move again for this task
    table.release("idle")
    park(table, "idle", target)
    assert needed_by("idle", target, [task], table, roadmap, ex, 0.0, SPEED) is None


def test_parked_robot_off_every_path_is_not_needed():
    roadmap, ex, table = grid(*OPEN_ROOM)
    park(table, "idle", V(roadmap, 1, 2))
    park(table, "worker", V(roadmap, 0, 0))
    task = OpenTask("t", "worker", V(roadmap, 5, 0))
    assert needed_by("idle", V(roadmap, 1, 2), [task], table, roadmap, ex, 0.0, SPEED) is None


def test_a_parked_robot_in_the_way_is_passed_around_when_there_is_room():
    roadmap, ex, table = grid(*OPEN_ROOM)
    park(table, "idle", V(roadmap, 2, 1))   # straight on the worker's row, room around it
    park(table, "worker", V(roadmap, 0, 1))
    task = OpenTask("t", "worker", V(roadmap, 5, 1))
    assert needed_by("idle", V(roadmap, 2, 1), [task], table, roadmap, ex, 0.0, SPEED) is None


def test_parked_robot_in_a_bottleneck_yields_out_of_the_corridor():
    roadmap, ex, table = grid(*CORRIDOR)
    spot = V(roadmap, 3, 1)
    park(table, "idle", spot)
    park(table, "worker", V(roadmap, 0, 0))
    task = OpenTask("t", "worker", V(roadmap, 6, 2))
    assert needed_by("idle", spot, [task], table, roadmap, ex, 0.0, SPEED) == task
    target = yield_target("idle", spot, [task], table, roadmap, ex, 0.0, SPEED)
    assert target is not None and target != spot
    path = least_disturbing_path(roadmap, V(roadmap, 0, 0), V(roadmap, 6, 2), SPEED, set())
    assert target not in path
    # and the worker can plan once the idle robot parked there
    table.release("idle")
    park(table, "idle", target)
    assert sipp(roadmap, ex, table, "worker", V(roadmap, 0, 0), V(roadmap, 6, 2), 0.0,
                SPEED) is not None


def test_busy_robots_are_not_asked_and_the_worker_never_yields_to_itself():
    roadmap, ex, table = grid(*OPEN_ROOM)
    park(table, "worker", V(roadmap, 0, 1))
    task = OpenTask("t", "worker", V(roadmap, 0, 1))
    assert needed_by("worker", V(roadmap, 0, 1), [task], table, roadmap, ex, 0.0, SPEED) is None


def test_yield_target_skips_tabu_and_held_vertices_and_other_tasks_stations():
    roadmap, ex, table = grid(*OPEN_ROOM)
    here = V(roadmap, 2, 1)
    park(table, "idle", here)
    park(table, "other", V(roadmap, 1, 1))
    tasks = [OpenTask("t", "w", V(roadmap, 3, 1)), OpenTask("u", "w2", V(roadmap, 2, 0))]
    tabu = {V(roadmap, 2, 2)}
    target = yield_target("idle", here, tasks, table, roadmap, ex, 0.0, SPEED, tabu=tabu)
    assert target not in {here, V(roadmap, 1, 1), V(roadmap, 3, 1), V(roadmap, 2, 0),
                          V(roadmap, 2, 2), None}


def test_yield_target_is_never_behind_a_parked_robot():
    """A free cell behind a robot parked for good is no way out (the move is refused
    until the robot leaves): in a one-wide corridor the nearest free cell (0, 1) lies
    behind `other`, so the robot yields the other way, past the task's stations."""
    roadmap, ex, table = grid("@@@@@@@@", "........", "@@@@@@@@")
    here = V(roadmap, 2, 1)
    park(table, "idle", here)
    park(table, "other", V(roadmap, 1, 1))
    task = OpenTask("t", "w", V(roadmap, 3, 1), (V(roadmap, 4, 1), V(roadmap, 5, 1)))
    target = yield_target("idle", here, [task], table, roadmap, ex, 0.0, SPEED)
    assert target == V(roadmap, 7, 1)   # (6, 1) touches the station (5, 1)
    park(table, "third", V(roadmap, 7, 1))   # now every way out is taken
    assert yield_target("idle", here, [task], table, roadmap, ex, 0.0, SPEED) is None


def test_no_ping_pong_between_two_idle_robots_and_a_stream_of_tasks():
    """Two idle robots, tasks that each need one of their spots in turn: every yield moves
    a robot to a spot no open task needs, and never back to the spot it just left."""
    roadmap, ex, table = grid(*CORRIDOR)
    robots = {"p": V(roadmap, 3, 1), "q": V(roadmap, 5, 1)}
    for r, v in robots.items():
        park(table, r, v)
    park(table, "w", V(roadmap, 0, 1))
    moves = {r: [] for r in robots}
    tabu = {r: set() for r in robots}
    goals = [V(roadmap, 6, 1), V(roadmap, 5, 1), V(roadmap, 3, 1), V(roadmap, 4, 1)]
    for goal in goals:
        tasks = [OpenTask(f"t{goal}", "w", goal)]
        for _ in range(3):   # let everyone react until nobody needs to move
            moved = False
            for r in robots:
                if needed_by(r, robots[r], tasks, table, roadmap, ex, 0.0, SPEED):
                    target = yield_target(r, robots[r], tasks, table, roadmap, ex, 0.0, SPEED,
                                          tabu=tabu[r])
                    assert target is not None
                    tabu[r].add(robots[r])
                    table.release(r)
                    park(table, r, target)
                    moves[r].append((robots[r], target))
                    robots[r] = target
                    moved = True
            if not moved:
                break
        assert not moved, "robots still yielding after the others reacted"
        assert all(needed_by(r, robots[r], tasks, table, roadmap, ex, 0.0, SPEED) is None
                   for r in robots)
    assert sum(len(m) for m in moves.values()) >= 2  # the scenario does make them yield
    for r, m in moves.items():
        assert len(m) <= len(goals)
        assert all((b, a) not in m for a, b in m), f"{r} went back and forth: {m}"


def test_position_and_forever_holders_read_the_table():
    roadmap, ex, table = grid(*OPEN_ROOM)
    path = [(V(roadmap, 0, 0), 0.0), (V(roadmap, 1, 0), 1.0), (V(roadmap, 2, 0), 2.0)]
    assert table.commit("m", path_to_segments(roadmap, ex, path, SPEED)).ok
    assert position(table, roadmap, "m", 0.1) == V(roadmap, 0, 0)
    assert position(table, roadmap, "m", 1.5) in (V(roadmap, 1, 0), V(roadmap, 2, 0))
    assert position(table, roadmap, "m", 5.0) == V(roadmap, 2, 0)
    assert position(table, roadmap, "nobody", 0.0) is None
    held = forever_holders(table, ex)
    assert held[V(roadmap, 2, 0)] == "m" and V(roadmap, 0, 0) not in held
    assert forever_holders(table, ex, skip=["m"]) == {}


def test_parked_at_names_the_robot_holding_a_station_for_good():
    roadmap, ex, table = grid(*OPEN_ROOM)
    park(table, "idle", V(roadmap, 4, 1))
    assert table.commit("m", [(V(roadmap, 1, 1), 0.0, 5.0)]).ok
    assert parked_at(table, ex, V(roadmap, 4, 1), "w") == "idle"
    assert parked_at(table, ex, V(roadmap, 4, 1), "idle") is None
    assert parked_at(table, ex, V(roadmap, 1, 1), "w") is None   # only for a while


def test_a_shared_memo_gives_every_robot_the_same_answers_and_shares_the_searches():
    """YieldMemo (the agents of one process share it): on the warehouse with 30 parked
    robots and 10 open tasks, every robot's needed_by and yield_target are what it
    computes alone; the per-task searches run once per table version, not once per robot;
    a change to the table (a new version) is seen at once."""
    from fleet_coord.core.yielding import YieldMemo
    from fleet_coord.fleet_config import DEFAULT_MAP, load_roadmap_and_exclusion
    roadmap, ex, _ = load_roadmap_and_exclusion(DEFAULT_MAP, 0.15)
    table = ReservationTable(ex.of, roadmap.num_resources)
    rng = np.random.default_rng(5)
    spots = [int(v) for v in rng.choice(roadmap.num_vertices, 60, replace=False)]
    idle = {f"idle_{k}": v for k, v in enumerate(spots[:30])}
    workers = {f"worker_{k}": v for k, v in enumerate(spots[30:40])}
    for robot, v in {**idle, **workers}.items():
        park(table, robot, v)
    # goals: some on idle robots' spots, the rest free vertices
    goals = list(idle.values())[:4] + spots[40:46]
    tasks = [OpenTask(f"t{k}", w, g) for k, (w, g) in enumerate(zip(workers, goals))]

    def answers(memo):
        return {r: (needed_by(r, v, tasks, table, roadmap, ex, 0.0, SPEED, memo=memo),
                    yield_target(r, v, tasks, table, roadmap, ex, 0.0, SPEED, memo=memo))
                for r, v in idle.items()}
    alone = answers(None)
    memo = YieldMemo()
    assert answers(memo) == alone
    assert sum(need is not None for need, _ in alone.values()) >= 4
    assert memo.hits > 10 * memo.misses      # 30 robots, one search per task and version
    # the table changes: a robot parks on the way of some task -> new version, new answers
    misses = memo.misses
    park(table, "newcomer", spots[50])
    assert answers(memo) == answers(None)
    assert memo.misses > misses

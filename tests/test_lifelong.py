"""The lifelong runner (fleet_coord.core.lifelong, `fleet-coord lifelong`) on League of
Robot Runners instances: its loader's errors, its heading-aware planner, and its runs
checked by the independent checker (tests/lifelong_checker.py)."""
import json
import os

import numpy as np
import pytest

from fleet_coord.cli import main
from fleet_coord.core.grid_sipp import (HeadingGridModel, UnitGridTable, grid_sipp_heading,
                                        unit_grid_model)
from fleet_coord.core.lifelong import LifelongConfig, run_lifelong
from fleet_coord.core.lorr import LorrError, load_lorr
from fleet_coord.core.roadmap import Footprint, GridMap, MapError, Roadmap
from lifelong_checker import check_result, read_instance

# A one-cell aisle (x = 3..7, y = 2) between two rooms, with a pocket at (5, 3).
AISLE = ["@@@@@@@@@@@",
         "@..@@@@@..@",
         "@.........@",
         "@..@@.@@..@",
         "@@@@@@@@@@@"]


def write_instance(folder, rows, starts, tasks, reveal=1.5, team=None, name="inst"):
    """A LoRR instance in ``folder``: ``starts`` and ``tasks`` as (x, y) cells."""
    width = len(rows[0])
    lin = lambda c: c[1] * width + c[0]  # noqa: E731
    os.makedirs(folder / "maps", exist_ok=True)
    (folder / "maps" / "m.map").write_text(
        f"type octile\nheight {len(rows)}\nwidth {width}\nmap\n" + "\n".join(rows) + "\n")
    (folder / f"{name}.agents").write_text(
        "# version for LoRR 2026\n" + f"{len(starts)}\n" + "".join(f"{lin(c)}\n" for c in starts))
    (folder / f"{name}.tasks").write_text(
        f"{len(tasks)}\n" + "".join(",".join(str(lin(c)) for c in t) + "\n" for t in tasks))
    path = folder / f"{name}.json"
    path.write_text(json.dumps({
        "mapFile": "maps/m.map", "agentFile": f"{name}.agents", "taskFile": f"{name}.tasks",
        "teamSize": len(starts) if team is None else team, "numTasksReveal": reveal},
        indent=4))
    return str(path)


def edit_json(path, change):
    with open(path) as f:
        doc = json.load(f)
    change(doc)
    with open(path, "w") as f:
        json.dump(doc, f, indent=4)


def run_and_check(path, steps, rule, config=None):
    result = run_lifelong(load_lorr(path), steps, rule, config=config or LifelongConfig())
    doc = json.loads(json.dumps(result.document()))
    errors = check_result(read_instance(path), doc, "roundrobin" if rule == "roundrobin"
                          else "pool")
    assert not errors, f"{len(errors)} violations, e.g. " + "; ".join(errors[:5])
    return result, doc


# -- the heading-aware planner --------------------------------------------------------------

def _grid(rows):
    free = np.array([[c == "." for c in r] for r in rows])
    roadmap = Roadmap.from_grid(GridMap(len(rows[0]), len(rows), free, "test"))
    base = unit_grid_model(roadmap, roadmap.exclusion(Footprint(radius=0.1)), 1.0)
    return roadmap, base, HeadingGridModel(base, roadmap)


def test_heading_plan_counts_turns_and_visits_errands_in_order():
    roadmap, base, model = _grid(["....."] * 5)
    v = roadmap.vertex_at
    table = UnitGridTable(base)
    # facing +x at (0, 0), to (0, 2): a quarter turn then two moves
    path = grid_sipp_heading(model, table, v(0, 0), 0, [v(0, 2)], 0)
    assert [(int(u), o) for u, o in path] == [(v(0, 0), 0), (v(0, 0), 1), (v(0, 1), 1),
                                               (v(0, 2), 1)]
    # the same errand twice in a row is two visits: one step more at the cell
    twice = grid_sipp_heading(model, table, v(0, 0), 0, [v(1, 0), v(1, 0)], 0)
    assert [u for u, _ in twice] == [v(0, 0), v(1, 0), v(1, 0)]
    # errands in order: (4, 0) first although (2, 0) is on the way back
    tour = grid_sipp_heading(model, table, v(0, 0), 0, [v(4, 0), v(2, 0)], 0)
    cells = [u for u, _ in tour]
    assert cells.index(v(4, 0)) < len(cells) - 1 - cells[::-1].index(v(2, 0))
    assert cells[-1] == v(2, 0) and len(tour) - 1 == 4 + 2 + 2   # 4 moves, u-turn, 2 moves


def test_heading_plan_waits_for_a_reservation_and_never_swaps():
    roadmap, base, model = _grid(["....."])           # a one-cell-wide corridor
    v = roadmap.vertex_at
    table = UnitGridTable(base)
    # robot 1 holds (3, 0) until t = 3, then moves on to (4, 0) for good: we follow it
    table.commit(1, [(v(3, 0), 0), (v(4, 0), 4)])
    path = grid_sipp_heading(model, table, v(0, 0), 0, [v(3, 0)], 0)
    assert len(path) - 1 == 4 and path[-1][0] == v(3, 0)
    timed = [(u, t) for t, (u, _) in enumerate(path)]
    assert table.conflict(timed) is None
    roadmap, base, model = _grid(["...", "..."])
    v = roadmap.vertex_at
    table = UnitGridTable(base)
    # robot 1 comes from (1, 0) into (0, 0) at t = 1 and stays: moving east would swap
    table.commit(1, [(v(1, 0), 0), (v(0, 0), 1)])
    assert grid_sipp_heading(model, table, v(0, 0), 0, [v(2, 0)], 0) is None
    path = grid_sipp_heading(model, table, v(0, 0), 1, [v(2, 0)], 0)  # facing +y: escape
    assert path[1] == (v(0, 1), 1) and path[-1][0] == v(2, 0)
    assert table.conflict([(u, t) for t, (u, _) in enumerate(path)]) is None


def test_heading_plan_with_horizon_stops_where_the_robot_may_stay():
    roadmap, base, model = _grid(["........"] * 2)
    v = roadmap.vertex_at
    table = UnitGridTable(base)
    path = grid_sipp_heading(model, table, v(0, 0), 0, [v(7, 1)], 0, horizon=3)
    assert len(path) - 1 == 3 and path[-1] == (v(3, 0), 0)


# -- the loader's errors ------------------------------------------------------------------

def test_loads_an_instance_with_comments_and_emitter_cells(tmp_path):
    rows = ["E.S", "...", "@.."]
    path = write_instance(tmp_path, rows, [(0, 0), (2, 1)], [[(1, 1), (2, 2)], [(0, 1)]],
                          reveal=1.5)
    inst = load_lorr(path)
    assert inst.starts == [(0, 0), (2, 1)] and inst.reveal == 3
    assert inst.tasks == [[(1, 1), (2, 2)], [(0, 1)]] and inst.task(3) == [(0, 1)]


@pytest.mark.parametrize("mutate, where, what", [
    (lambda d: d.pop("teamSize"), "inst.json:1", "missing key 'teamSize'"),
    (lambda d: d.update(agentFile="nope.agents"), "inst.json:3", "no such file"),
    (lambda d: d.update(teamSize=3), "inst.json:5", "has only 2 starts"),
    (lambda d: d.update(teamSize="two"), "inst.json:5", "expected 'teamSize' to be"),
])
def test_bad_instance_json_is_refused_naming_the_file_and_line(tmp_path, mutate, where, what):
    path = write_instance(tmp_path, ["...", "..."], [(0, 0), (1, 0)], [[(2, 1)]])
    edit_json(path, mutate)
    with pytest.raises(LorrError) as err:
        load_lorr(path)
    assert where in str(err.value) and what in str(err.value)


@pytest.mark.parametrize("name, text, error", [
    ("inst.tasks", "3\n0\n2\n4\n", r"inst\.tasks:3: errand 2 \(x=2, y=0\) is an obstacle"),
    ("inst.tasks", "2\n3\n4,x\n", r"inst\.tasks:3: expected errand as a linearised"),
    ("inst.tasks", "1\n3,,4\n", r"inst\.tasks:2: expected errand cells separated"),
    ("inst.tasks", "two\n3\n", r"inst\.tasks:1: expected the number of tasks"),
    ("inst.agents", "2\n0\n0\n", r"inst\.agents:3: start 0 .* also the start of agent 0"),
    ("inst.agents", "3\n0\n1\n", r"inst\.agents:3: the file announces 3 agents but has 2"),
    ("inst.agents", "2\n0\n99\n", r"inst\.agents:3: start 99 is off the 3 x 2 map"),
    ("maps/m.map", "type octile\nheight 2\nwidth 3\nmap\n..@\n.x.\n",
     r"m\.map:6:2: unknown cell character 'x'"),
])
def test_bad_agents_tasks_and_map_lines_are_refused_naming_the_file_and_line(
        tmp_path, name, text, error):
    path = write_instance(tmp_path, ["..@", "..."], [(0, 0), (1, 0)], [[(0, 1)], [(1, 1)]])
    (tmp_path / name).write_text(text)
    with pytest.raises((LorrError, MapError), match=error):
        load_lorr(path)


def test_more_agents_than_free_cells_is_refused(tmp_path):
    path = write_instance(tmp_path, ["..", "@@"], [(0, 0), (1, 0)], [[(0, 0)]], team=2)
    (tmp_path / "inst.agents").write_text("3\n0\n1\n0\n")
    edit_json(path, lambda doc: doc.update(teamSize=3))
    with pytest.raises(LorrError, match=r"inst\.json:5: teamSize 3 is more than the 2 free"):
        load_lorr(path)


def test_cli_reports_bad_input_without_a_traceback(tmp_path, capsys):
    path = write_instance(tmp_path, ["..@", "..."], [(0, 0)], [[(2, 0)]])
    assert main(["lifelong", path, "--steps", "5", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "fleet-coord lifelong: error:" in err and "inst.tasks:2" in err
    assert "Traceback" not in err


# -- runs ---------------------------------------------------------------------------------

@pytest.mark.parametrize("rule", ["roundrobin", "greedy", "auction"])
def test_two_robots_pass_each_other_in_a_one_cell_aisle(tmp_path, rule):
    # Robots at the aisle's two ends; every task has an errand in each room, so whoever
    # takes which, they must pass each other: one makes way (the pocket or the room
    # behind it) -- no livelock.
    path = write_instance(tmp_path, AISLE, [(3, 2), (7, 2)],
                          [[(9, 2), (1, 1)], [(1, 2), (9, 1)]], reveal=1)
    result, doc = run_and_check(path, 80, rule)
    assert doc["finished"] >= 3, result.stats


@pytest.mark.parametrize("rule", ["roundrobin", "greedy", "auction"])
def test_a_dense_random_fleet_runs_valid_and_finishes_tasks(tmp_path, rule):
    rng = np.random.default_rng(3)
    free = rng.random((12, 12)) > 0.15
    rows = ["".join("." if f else "@" for f in row) for row in free]
    cells = [(x, y) for y in range(12) for x in range(12) if free[y, x]]
    pick = rng.permutation(len(cells))
    starts = [cells[i] for i in pick[:20]]
    tasks = [[cells[int(i)] for i in rng.integers(0, len(cells), size=2)] for _ in range(60)]
    path = write_instance(tmp_path, rows, starts, tasks)
    result, doc = run_and_check(path, 80, rule)
    assert doc["finished"] >= 10, result.stats


def test_lifelong_cli_writes_the_result_and_stats(tmp_path, capsys):
    path = write_instance(tmp_path, AISLE, [(1, 1), (9, 3)], [[(9, 2)], [(1, 2)], [(5, 3)]])
    out = tmp_path / "out"
    assert main(["lifelong", path, "--steps", "30", "--assignment", "greedy", "--out",
                 str(out), "--quiet"]) == 0
    doc = json.loads((out / "result.json").read_text())
    assert set(doc) == {"steps", "agents", "tasks", "finished"} and doc["steps"] == 30
    assert all(len(a["path"]) == 31 for a in doc["agents"])
    assert not check_result(read_instance(path), doc, "pool")
    stats = json.loads((out / "stats.json").read_text())
    assert stats["finished"] == doc["finished"] and len(stats["finished_per_100_steps"]) == 1
    assert "tasks finished" in capsys.readouterr().out


def test_the_checker_catches_a_jump_a_collision_and_a_task_never_done(tmp_path):
    path = write_instance(tmp_path, AISLE, [(1, 1), (9, 3)], [[(9, 2)], [(1, 2)], [(5, 3)]])
    _, doc = run_and_check(path, 30, "greedy")
    inst = read_instance(path)
    jump = json.loads(json.dumps(doc))
    jump["agents"][0]["path"][5] = [5, 3, 0]
    assert any("not a move forward" in e for e in check_result(inst, jump, "pool"))
    crash = json.loads(json.dumps(doc))
    crash["agents"][1]["path"] = [list(p) for p in doc["agents"][0]["path"]]
    crash["agents"][1]["start"] = doc["agents"][0]["start"]
    assert any("starts at" in e or "vertex conflict" in e
               for e in check_result(inst, crash, "pool"))
    fake = json.loads(json.dumps(doc))
    undone = [t for t in fake["tasks"] if t["finished_step"] is None]
    undone[0]["finished_step"], undone[0]["agent"] = 30, 0
    fake["finished"] += 1
    assert any("did not visit its errands" in e for e in check_result(inst, fake, "pool"))


def test_lorr_example_maze_runs_valid_with_every_rule(lorr_examples):
    path = os.path.join(lorr_examples, "maze.domain", "maze-example_40.json")
    for rule in ("roundrobin", "greedy", "auction"):
        _, doc = run_and_check(path, 120, rule)
        assert doc["finished"] >= 5


def test_auction_promises_a_robot_about_to_finish_the_task_where_it_ends(tmp_path):
    # Robot 0 has started task 0 and ends it at (9, 0) in one step; task 1 starts next
    # to that. Robot 1 is free but far from task 1 and next to task 2. Robot 0 bids from
    # where its started task ends and wins task 1 as its next one; robot 1 gets task 2.
    # Without the lookahead robot 0 does not bid and task 1 stays open (robot 1 is
    # quicker with task 2).
    from fleet_coord.core.lifelong import _Auction, _Fleet
    path = write_instance(tmp_path, ["............"] * 3, [(8, 0), (0, 2)],
                          [[(7, 0), (9, 0)], [(10, 0), (11, 1)], [(1, 2), (0, 1)]])
    for lookahead in (20, 0):
        fleet = _Fleet(load_lorr(path), LifelongConfig(lookahead=lookahead))
        fleet.reveal(0)
        started, near, far = fleet.open[0], fleet.open[1], fleet.open[2]
        fleet.assign(0, started)
        started.done = 1                          # (7, 0) visited: started
        _Auction(fleet).schedule(0)
        assert fleet.task[0] is started and fleet.task[1] is far
        if lookahead:
            assert fleet.next[0] is near and near.agent == 0
        else:
            assert fleet.next[0] is None and near.agent == -1

"""`fleet-coord plan` end to end: output format, validity, exit codes, error messages."""
import json
import os
import subprocess
import sys

import pytest

from fleet_coord.cli import main
from fleet_coord.core.roadmap import load_movingai_map

from mapf_validator import assert_valid_plan, makespan, sum_of_costs

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def write_instance(tmp_path, rows, agents):
    """A .map from rows of '.'/'@' and a .scen with the (start, goal) pairs."""
    map_path = tmp_path / "t.map"
    map_path.write_text(f"type octile\nheight {len(rows)}\nwidth {len(rows[0])}\nmap\n"
                        + "\n".join(rows) + "\n")
    scen_path = tmp_path / "t.scen"
    lines = ["version 1"]
    for (sx, sy), (gx, gy) in agents:
        lines.append(f"0\tt.map\t{len(rows[0])}\t{len(rows)}\t{sx}\t{sy}\t{gx}\t{gy}\t1")
    scen_path.write_text("\n".join(lines) + "\n")
    return str(map_path), str(scen_path)


def test_plan_writes_a_valid_plan_and_prints_its_costs(mapf_bench, tmp_path, capsys):
    map_path = os.path.join(mapf_bench, "random-32-32-20.map")
    scen_path = os.path.join(mapf_bench, "random-32-32-20-random-1.scen")
    out = tmp_path / "plan.json"
    assert main(["plan", "--map", map_path, "--scen", scen_path, "--agents", "40",
                 "--out", str(out)]) == 0
    plan = json.loads(out.read_text())
    assert plan["map"] == map_path and len(plan["agents"]) == 40
    agents = plan["agents"]
    paths = [[tuple(c) for c in a["path"]] for a in agents]
    grid = load_movingai_map(map_path)
    assert_valid_plan(grid.free, [tuple(a["start"]) for a in agents],
                      [tuple(a["goal"]) for a in agents], paths)
    printed = capsys.readouterr().out
    assert f"sum of costs {sum_of_costs(paths)}" in printed
    assert f"makespan {makespan(paths)}" in printed
    assert plan["sum_of_costs"] == sum_of_costs(paths)


def test_plan_paths_end_when_the_agent_reaches_its_goal(tmp_path):
    map_path, scen_path = write_instance(tmp_path, ["@@@@@.@", "......."],
                                         [((0, 1), (6, 1)), ((6, 1), (0, 1))])
    out = tmp_path / "plan.json"
    assert main(["plan", "--map", map_path, "--scen", scen_path, "--agents", "2",
                 "--out", str(out)]) == 0
    agents = json.loads(out.read_text())["agents"]
    for a in agents:
        assert a["path"][0] == a["start"] and a["path"][-1] == a["goal"]
        assert a["path"][-2] != a["goal"]  # no trailing waits at the goal
    assert_valid_plan([[c == "." for c in r] for r in ["@@@@@.@", "......."]],
                      [tuple(a["start"]) for a in agents], [tuple(a["goal"]) for a in agents],
                      [[tuple(c) for c in a["path"]] for a in agents])


def test_plan_without_a_solution_exits_2_with_a_message(tmp_path, capsys):
    map_path, scen_path = write_instance(tmp_path, ["....."],
                                         [((0, 0), (4, 0)), ((4, 0), (0, 0))])
    out = tmp_path / "plan.json"
    assert main(["plan", "--map", map_path, "--scen", scen_path, "--agents", "2",
                 "--time-limit", "0.3", "--out", str(out)]) == 2
    assert "no plan found for 2 agents within 0.3 s" in capsys.readouterr().err
    assert not out.exists()


def test_plan_unreachable_goal_names_the_agent(tmp_path, capsys):
    map_path, scen_path = write_instance(tmp_path, ["..@.."], [((0, 0), (4, 0))])
    assert main(["plan", "--map", map_path, "--scen", scen_path, "--agents", "1",
                 "--out", str(tmp_path / "p.json")]) == 2
    err = capsys.readouterr().err
    assert "agent 0's goal [4, 0] cannot be reached from its start [0, 0]" in err


@pytest.mark.parametrize("change,expected", [
    (lambda m, s: (m + ".missing", s), "cannot read"),
    (lambda m, s: (s, s), "t.scen:1: expected 'type <name>'"),
    (lambda m, s: (m, m), "t.map:1: expected 'version <number>'"),
])
def test_plan_bad_files_are_named_in_the_error(tmp_path, capsys, change, expected):
    map_path, scen_path = write_instance(tmp_path, ["...."], [((0, 0), (3, 0))])
    map_path, scen_path = change(map_path, scen_path)
    assert main(["plan", "--map", map_path, "--scen", scen_path, "--agents", "1",
                 "--out", str(tmp_path / "p.json")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("fleet-coord plan: error: ") and expected in err
    assert "Traceback" not in err


def test_plan_bad_scenario_rows_name_the_line(tmp_path, capsys):
    map_path, scen_path = write_instance(tmp_path, ["..@."], [((0, 0), (2, 0))])
    assert main(["plan", "--map", map_path, "--scen", scen_path, "--agents", "1",
                 "--out", str(tmp_path / "p.json")]) == 2
    assert "t.scen:2: goal (2, 0) is not a free cell" in capsys.readouterr().err
    map_path, scen_path = write_instance(tmp_path, ["...."], [((0, 0), (2, 0))])
    assert main(["plan", "--map", map_path, "--scen", scen_path, "--agents", "5",
                 "--out", str(tmp_path / "p.json")]) == 2
    assert "asked for 5 agents, but the scenario has only 1 rows" in capsys.readouterr().err


def test_plan_bad_output_folder(tmp_path, capsys):
    map_path, scen_path = write_instance(tmp_path, ["...."], [((0, 0), (3, 0))])
    assert main(["plan", "--map", map_path, "--scen", scen_path, "--agents", "1",
                 "--out", str(tmp_path / "nowhere" / "p.json")]) == 2
    assert "does not exist" in capsys.readouterr().err


@pytest.mark.parametrize("argv,expected", [
    (["--agents", "0"], "argument --agents: expected a positive integer, got 0"),
    (["--agents", "x"], "argument --agents: expected a positive integer, got 'x'"),
    (["--agents", "1", "--time-limit", "-1"], "argument --time-limit"),
    (["--agents", "1", "--seed", "z"], "argument --seed"),
])
def test_plan_bad_arguments_exit_2(tmp_path, capsys, argv, expected):
    map_path, scen_path = write_instance(tmp_path, ["...."], [((0, 0), (3, 0))])
    with pytest.raises(SystemExit) as exit_info:
        main(["plan", "--map", map_path, "--scen", scen_path, "--out",
              str(tmp_path / "p.json")] + argv)
    assert exit_info.value.code == 2
    assert expected in capsys.readouterr().err


def test_no_subcommand_prints_help_and_exits_2(capsys):
    assert main([]) == 2
    assert "plan" in capsys.readouterr().err


def test_python_dash_m_runs_the_cli(tmp_path):
    map_path, scen_path = write_instance(tmp_path, ["....", ".@..", "...."],
                                         [((0, 0), (3, 2)), ((3, 2), (0, 0))])
    out = tmp_path / "p.json"
    done = subprocess.run([sys.executable, "-m", "fleet_coord.cli", "plan", "--map", map_path,
                           "--scen", scen_path, "--agents", "2", "--out", str(out)],
                          capture_output=True, text=True, cwd=REPO, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "planned 2 agents" in done.stdout and out.exists()
    missing = subprocess.run([sys.executable, "-m", "fleet_coord.cli", "plan", "--map",
                              map_path + "x", "--scen", scen_path, "--agents", "2", "--out",
                              str(out)], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert missing.returncode == 2 and "Traceback" not in missing.stderr
    assert "cannot read" in missing.stderr

"""The in-process fleet (fleet_coord.in_process): the dispatcher, authority and execution
cores with ideal robots on a virtual clock and a faulty bus, checked by the independent
safety monitor (core.monitor) and the ledger."""

import json
from dataclasses import replace

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from fleet_coord.bus import Cut, Faults
from fleet_coord.core.execution import ExecutionConfig
from fleet_coord.core.kinematics import Limits
from fleet_coord.core.roadmap import Footprint, GridMap, Roadmap
from fleet_coord.core.tasks import Task, TaskLedger, TaskState
from fleet_coord.in_process import STATE_CODE, Crash, FleetParams, InProcessFleet

# A small room with a shelf in the middle; robots start along the bottom row.
ROOM = ("........",
        "..@@@@..",
        "........",
        "........")
FAST = FleetParams(limits=Limits(max_v=3.0, max_w=20.0, max_acc=40.0, max_alpha=400.0),
                   lost_after=1.5, robot_timeout=2.0, bid_window=0.3, trace_period=0.0)


def room():
    free = np.array([[c == "." for c in row] for row in ROOM], dtype=bool)
    roadmap = Roadmap.from_grid(GridMap(width=free.shape[1], height=free.shape[0], free=free,
                                        path="<room>"))
    return roadmap, roadmap.exclusion(Footprint(radius=0.15))


ROBOTS = {"a": "0,3", "b": "3,3", "c": "7,3"}
TASKS = [Task("t1", "pick_and_drop", ["1,0", "6,2"]), Task("t2", "goto", ["7,0"]),
         Task("t3", "pick_and_drop", ["2,2", "0,0"]), Task("t4", "goto", ["4,0"])]


def fleet(tmp_path, **kw):
    roadmap, exclusion = room()
    robots = {r: roadmap.vertex(v) for r, v in ROBOTS.items()}
    return InProcessFleet(roadmap, exclusion, robots, params=kw.pop("params", FAST),
                          workdir=str(tmp_path), **kw)


def test_a_small_fleet_does_its_tasks_with_no_violation_and_the_same_run_twice(tmp_path):
    runs = []
    for k in range(2):
        with fleet(tmp_path / str(k), seed=5) as f:
            result = f.run(TASKS, submit_at=0.5, interval=0.4, max_sim_s=120.0)
            runs.append((result.outcomes, [(s["task_id"], s["state"], s["robot"], s["t"])
                                           for s in f.statuses]))
            assert result.outcomes == {t.id: "DONE" for t in TASKS}
            assert result.conflicts == 0 and result.excursions == 0
            assert result.monitor_samples > 100
    assert runs[0] == runs[1]


@pytest.mark.parametrize("latency", [0.001, 0.08])
def test_agile_robots_leave_each_vertex_within_its_hold_at_any_fleet_latency(tmp_path, latency):
    """3 m/s, 40 m/s^2 robots planned (stop_and_turn) at a speed whose star holds were
    shorter than the tracker's stop + turn + leave overstayed vertex holds by ~0.07 s at
    every turn; the monitor checks each robot just before and after each of its holds, so
    this shows at every latency (periodic samples saw it only for some phases of the run)."""
    with fleet(tmp_path, seed=0, faults=Faults(latency=latency),
               params=replace(FAST, time_model="stop_and_turn")) as f:
        result = f.run(TASKS[:3], submit_at=0.5, interval=0.4, max_sim_s=60.0)
        assert result.outcomes == {t.id: "DONE" for t in TASKS[:3]}
        assert result.excursions == 0, f.monitor.excursions[:3]
        assert result.monitor_samples > 300


def test_the_real_time_model_drives_the_tasks_inside_its_holds(tmp_path):
    """The demo robot planned at its real limits (time_model real): the same tasks, no
    conflict, no robot outside its holds (checked at both ends of each hold), no contact."""
    limits = Limits(max_v=1.0, max_w=4.0, max_acc=4.0, max_alpha=20.0)
    params = FleetParams(limits=limits, trace_period=0.0, execution=ExecutionConfig(
        limits=limits, turn_margin=0.2, time_model="real", control_latency=0.1))
    with fleet(tmp_path, seed=3, params=params) as f:
        result = f.run(TASKS, submit_at=0.5, interval=0.4, max_sim_s=120.0)
        assert result.outcomes == {t.id: "DONE" for t in TASKS}
        assert result.conflicts == 0 and result.contacts == 0
        assert result.excursions == 0, f.monitor.excursions[:3]
        assert result.monitor_samples > 100


# -- random fault schedules -----------------------------------------------------------

ENDPOINTS = ["dispatcher", "traffic", "agents0", "agents1", "agents2"]


@st.composite
def schedules(draw):
    cuts = tuple(Cut(draw(st.sampled_from(ENDPOINTS)), t0, t0 + draw(st.floats(0.2, 4.0)))
                 for t0 in draw(st.lists(st.floats(0.0, 15.0), max_size=2)))
    faults = Faults(latency=draw(st.floats(0.0005, 0.02)), jitter=draw(st.floats(0.0, 0.1)),
                    drop=draw(st.sampled_from([0.0, 0.0, 0.01, 0.05])), cuts=cuts)
    crashes = tuple(Crash(draw(st.sampled_from(["dispatcher", "traffic", "a", "b", "c"])),
                          at, draw(st.floats(0.1, 3.0)))
                    for at in draw(st.lists(st.floats(0.5, 15.0), max_size=2)))
    return faults, crashes, draw(st.integers(0, 2**16))


@settings(max_examples=int(__import__("os").environ.get("FLEET_COORD_PROPERTY_EXAMPLES", 40)),
          deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(schedule=schedules())
# every robot silent at once (the authority's link cut): a lost robot's block must not
# revoke another lost robot's path, which it cannot hear (b drove 1.5 m outside its holds)
@example(schedule=(Faults(latency=1 / 64, cuts=(Cut("traffic", 7.5, 10.5),)), (), 0))
# a's agent crashed at 8.45 and came back standing on 0,0, whose park was refused for 8 s
# over b's future passage and then b's park there: b drove into it (a contact). A park
# is granted over holds that have not begun (TrafficAuthority._stand).
@example(schedule=(Faults(latency=0.00692, jitter=0.082,
                          cuts=(Cut("dispatcher", 13.02, 16.58), Cut("agents1", 7.806, 10.403))),
                   (Crash("a", 8.4528, 1.7417), Crash("traffic", 2.4808, 1.4962)), 59976))
# b's agent crashed at 4.18 while it drove towards its stop at 3,2 faster than it could
# run on from: its driver ran the last command 0.5 s and b stood 0.19 m past 3,2, towards
# the shelf (every command is one it may run on from: tracking.run_on_speed)
@example(schedule=(Faults(latency=0.02, cuts=(Cut("dispatcher", 4.179, 4.966),)),
                   (Crash("b", 4.179, 2.841), Crash("a", 6.368, 2.438)), 297))
# c and b, each lost once while they held t2 (the authority's cut; b's agent crash), were
# never asked for it again: it waited for a, the one robot never lost, behind a's next
# task and was not done by 90 s while b stood idle (Dispatch._excluded)
@example(schedule=(Faults(latency=1 / 64, jitter=1 / 16,
                          cuts=(Cut("dispatcher", 0, 1), Cut("traffic", 3, 5))),
                   (Crash("b", 10, 2), Crash("c", 4, 1)), 0))
# a's agent crashed at 12.07 while b's agents process was cut off (12.07-15.42): a's park
# where it stood revoked b's passage, which b never heard; a's next plan was granted through
# that space and b drove its old plan into a (1.14 m outside its holds, a contact at 19.7).
# What was revoked from a robot not heard since is no one else's, and b's stale replica asks
# for a snapshot at once instead of waiting for the next one (docs/core-model.md)
@example(schedule=(Faults(latency=0.002133234006168424, jitter=0.024986486236177947,
                          cuts=(Cut("agents1", 12.071969038844752, 15.415068207075521),)),
                   (Crash("a", 12.071969038844752, 0.11964898855730698),), 651))
# every robot lost in the authority's cut (12.8-15.3 s) with b's block on the short way
# from 0,1 to a's station 1,0: a re-committed the long way round the shelf (arriving at
# 65.7 s) and drove it all after b had parked and the short way was free (23.1 s); t1 did
# not end by the stall bound. A driving robot takes a shorter way once it is free
# (Execution._check_detour)
@example(schedule=(Faults(latency=0.019999999999999997, jitter=0.045819887192624476,
                          cuts=(Cut("traffic", 12.836755365418346, 14.564589556542137),
                                Cut("traffic", 13.407951712716754, 15.336028929385485))),
                   (Crash("a", 6.0, 2.1324813865755687),), 3437))
def test_no_fault_schedule_makes_the_fleet_unsafe_or_loses_a_task(tmp_path_factory, schedule):
    """Delays, drops, reorders, partitions and crashes of agents, the authority and the
    dispatcher: the independent monitor sees no conflict and no robot outside what it
    holds (a robot whose agent crashed stands where it stopped until its new agent holds
    its spot: not checked meanwhile), no two robots touch, and once the faults are over
    every task ends (done, or failed with a reason) and the ledger holds each exactly
    once. FLEET_COORD_PROPERTY_EXAMPLES sets how many schedules (docs/benchmarks.md)."""
    faults, crashes, seed = schedule
    params = FleetParams(limits=FAST.limits, lost_after=1.5, robot_timeout=2.0,
                         bid_window=0.3, trace_period=0.0, agents_per_process=1)
    with fleet(tmp_path_factory.mktemp("run"), seed=seed, faults=faults, crashes=crashes,
               params=params) as f:
        # a bound, not a duration: runs end when their tasks do (~40-60 s); one whose
        # robots wait long for each other to yield ends later (94 s in one schedule of 300)
        result = f.run(TASKS[:3], submit_at=0.5, interval=0.4, max_sim_s=120.0,
                       stall_sim_s=60.0)
        assert result.conflicts == 0, f.monitor.conflicts[:3]
        assert result.excursions == 0, f.monitor.excursions[:3]
        assert result.contacts == 0
        assert all(result.outcomes.values()), result.outcomes
        with TaskLedger(f.ledger_path) as ledger:
            for t in TASKS[:3]:
                ends = [e for e in ledger.events(t.id) if e.event in ("done", "failed",
                                                                       "cancelled")]
                assert len(ends) == 1, ends


def test_a_replica_that_missed_a_table_update_is_resynchronised_at_once(tmp_path):
    """One table delta to b's agents process is lost at 10.2 s. Its replica finds the gap
    with the next delta and asks the authority for a snapshot (/traffic/resync): current
    again within a few tenths of a second, not at the next periodic snapshot (15 s), blind
    to revocations meanwhile."""
    params = replace(FAST, agents_per_process=1)
    with fleet(tmp_path, seed=5, params=params) as f:
        send, lost, stale = f.bus.send, [], []

        def lossy(src, dst, fn, *args, channel=""):
            if channel == "table" and dst == "agents1" and f.bus.now >= 10.2 and not lost \
                    and not args[2].is_snapshot:
                lost.append(f.bus.now)
                return False
            return send(src, dst, fn, *args, channel=channel)

        f.bus.send = lossy
        replica = f.group_of["b"].replica
        apply = replica.apply

        def watched(u):   # (time, stale after each update it is handed)
            changed = apply(u)
            stale.append((f.bus.now, replica.stale))
            return changed

        replica.apply = watched
        result = f.run(TASKS, submit_at=0.5, interval=0.4, max_sim_s=16.0)
        assert lost, "no table update after 10.2 s"
        went = next(t for t, s in stale if s and t > lost[0])        # the next delta: a gap
        back = next(t for t, s in stale if not s and t > went)       # a snapshot
        assert back - lost[0] < 0.5, (lost, went, back)
        assert result.conflicts == 0 and result.excursions == 0


def test_a_robot_whose_agent_crashes_at_real_speed_stands_inside_its_holds(tmp_path):
    """Planned at 3 m/s (time_model real), b's agent crashes at 6.69 s while b brakes
    towards 0,0 at the map's edge: its driver runs the last command on for its watchdog's
    0.5 s. Every command is one it may run on from (the plan brakes on the run-on curve,
    the tracker clamps to it), so b stands at 0,0, not 0.25 m past it off the map."""
    params = FleetParams(limits=FAST.limits, lost_after=1.5, robot_timeout=2.0,
                         bid_window=0.3, trace_period=0.0, agents_per_process=1,
                         time_model="real")
    with fleet(tmp_path, seed=2530, faults=Faults(latency=0.0024), params=params,
               crashes=[Crash("c", 11.45, 2.73), Crash("b", 6.69, 1.36)]) as f:
        result = f.run(TASKS[:3], submit_at=0.5, interval=0.4, max_sim_s=90.0)
        assert result.outcomes == {t.id: "DONE" for t in TASKS[:3]}
        assert result.conflicts == 0 and result.contacts == 0
        assert result.excursions == 0, f.monitor.excursions[:3]


def test_fleet_coord_demo_in_process_writes_the_demos_report(tmp_path, capsys):
    from fleet_coord.cli import main
    out = tmp_path / "report"
    code = main(["demo", "--in-process", "--robots", "3", "--tasks", "4", "--seed", "12",
                 "--out", str(out), "--no-gif"])
    printed = capsys.readouterr().out
    assert code == 0, printed
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["mode"] == "in-process"
    assert metrics["done"] == 4 and metrics["failed"] == 0
    assert metrics["robot_robot_collisions"] == 0 and metrics["reservation_violations"] == 0
    assert metrics["monitor_samples"] > 100 and metrics["auction_rounds"] >= 4
    for name in ("trajectories.png", "timeline.png", "events.jsonl"):
        assert (out / name).stat().st_size > 0, name
    assert "tasks: 4/4 done" in printed


def test_a_run_stops_at_max_sim_s_even_while_tasks_are_still_being_submitted(tmp_path):
    seen = []
    with fleet(tmp_path, seed=1) as f:
        result = f.run(TASKS, submit_at=0.5, interval=10.0, max_sim_s=3.0,
                       progress=lambda n, t: seen.append(t))
    assert result.t_end == 3.0 and seen == [1.0, 2.0, 3.0]


def test_an_agent_that_missed_a_tasks_cfp_yields_the_station_it_is_parked_on(tmp_path):
    """a's agent is down while t0, a goto to the vertex a's robot stands on, is announced
    and awarded; restarted, it parks there again. It learns the task from the dispatcher's
    task list once it hears the winner's ACTIVE, and yields: the task is done well before
    the winner's `yield_wait` (30 s) would fail it."""
    params = replace(FAST, agents_per_process=1)
    with fleet(tmp_path, seed=2, crashes=[Crash("a", 0.3, 1.5)], params=params) as f:
        result = f.run([Task("t0", "goto", [ROBOTS["a"]])], submit_at=0.5, max_sim_s=20.0)
        assert result.outcomes == {"t0": "DONE"}
        failed = STATE_CODE[TaskState.FAILED]
        assert not [s for s in f.statuses if s["state"] == failed], f.statuses
        assert result.conflicts == 0 and result.excursions == 0 and result.contacts == 0

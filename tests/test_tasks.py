"""The task model and the durable task ledger (fleet_coord.core.tasks)."""
import itertools
import math
import os
import pathlib
import random
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fleet_coord.core.tasks import (
    LEGAL_TRANSITIONS, DuplicateTask, IllegalTransition, StaleAward, Task,
    TaskError, TaskLedger, TaskState, UnknownTask)

S = TaskState
STATIONS = ["dock_1", "dock_2", "shelf_a", "charger_1"]


def pd(tid="t1", pick="dock_1", drop="shelf_a", **kw):
    return Task(tid, "pick_and_drop", [pick, drop], **kw)


@pytest.fixture
def ledger_dir(tmp_path):
    """Where tests keep ledgers: tmpfs when there is one. synchronous=FULL fsyncs every
    commit (~6 ms on the VM's disk, ~0.25 ms on tmpfs); what these tests check -- atomic
    transitions, and surviving a killed *process* -- does not depend on the fsync, which
    only matters for an OS crash or power cut."""
    if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK):
        d = tempfile.mkdtemp(prefix="fleet-coord-ledger-", dir="/dev/shm")
        yield pathlib.Path(d)
        shutil.rmtree(d, ignore_errors=True)
    else:
        yield tmp_path


@pytest.fixture
def ledger(ledger_dir):
    with TaskLedger(ledger_dir / "tasks.db") as led:
        yield led


# -- the task model -----------------------------------------------------------------------

def test_unknown_station_error_names_task_field_index_and_known_stations():
    with pytest.raises(TaskError) as e:
        pd("t7", drop="dock_9").validate(STATIONS)
    assert str(e.value) == ("task 't7': unknown station 'dock_9' in stations[1]; known "
                            "stations: charger_1, dock_1, dock_2, shelf_a")


@pytest.mark.parametrize("task, match", [
    (Task("", "goto", ["dock_1"]), "task id must be a non-empty string"),
    (Task("t", "fly", ["dock_1"]), "unknown kind 'fly'; expected one of 'pick_and_drop'"),
    (Task("t", "pick_and_drop", ["dock_1"]), r"takes 2 stations \[pick, drop\], got 1"),
    (Task("t", "goto", ["dock_1", "dock_2"]), r"takes 1 station \[goal\], got 2"),
    (Task("t", "charge", []), r"takes 1 station \[charger\], got 0"),
    (Task("t", "goto", [""]), r"stations\[0\] must be a non-empty station name"),
    (Task("t", "goto", ["dock_1"], deadline=-5.0), "deadline must be > 0"),
    (Task("t", "goto", ["dock_1"], deadline=0.0), "deadline must be > 0"),
    (Task("t", "goto", ["dock_1"], deadline=math.nan), "deadline must be a finite number"),
    (Task("t", "goto", ["dock_1"], payload_kg=-1.0), "payload_kg must be >= 0"),
    (Task("t", "goto", ["dock_1"], payload_kg=math.nan), "payload_kg must be a finite"),
    (Task("t", "goto", ["dock_1"], submitted_at=math.nan), "submitted_at must be a finite"),
    (Task("t", "goto", ["dock_1"], priority=True), "priority must be an int"),
])
def test_validate_names_the_bad_field(task, match):
    with pytest.raises(TaskError, match=match):
        task.validate(STATIONS)


def test_valid_tasks_of_each_kind_pass_and_task_error_is_a_value_error():
    for t in (pd(deadline=30.0, payload_kg=12.5, priority=3),
              Task("g", "goto", ["dock_2"]), Task("c", "charge", ["charger_1"])):
        t.validate(STATIONS)
    assert issubclass(TaskError, ValueError)


def test_to_dict_from_dict_round_trip():
    t = pd(deadline=99.5, payload_kg=3.0, priority=-2, submitted_at=12.0)
    d = t.to_dict()
    assert d == {"id": "t1", "kind": "pick_and_drop", "stations": ["dock_1", "shelf_a"],
                 "priority": -2, "deadline": 99.5, "payload_kg": 3.0, "submitted_at": 12.0}
    assert Task.from_dict(d) == t
    assert Task.from_dict({"id": "g", "kind": "goto", "stations": ["x"]}) == \
        Task("g", "goto", ["x"])


@pytest.mark.parametrize("d, match", [
    ({"kind": "goto", "stations": ["x"]}, "missing key 'id'"),
    ({"id": "t", "stations": ["x"]}, "task 't': missing key 'kind'"),
    ({"id": "t", "kind": "goto", "stations": ["x"], "dedline": 3}, "unknown key 'dedline'"),
    ({"id": 7, "kind": "goto", "stations": ["x"]}, "key 'id' must be a string, got int 7"),
    ({"id": "t", "kind": "goto", "stations": "x"}, "key 'stations' must be a list of strings"),
    ({"id": "t", "kind": "goto", "stations": ["x"], "priority": "3"},
     "key 'priority' must be an int, got str '3'"),
    ({"id": "t", "kind": "goto", "stations": ["x"], "deadline": "soon"},
     "key 'deadline' must be a number or null"),
    ({"id": "t", "kind": "goto", "stations": ["x"], "payload_kg": None},
     "key 'payload_kg' must be a number"),
    ({"id": "t", "kind": "goto", "stations": ["x"], "payload_kg": -2}, "payload_kg must be >= 0"),
])
def test_from_dict_names_the_bad_key(d, match):
    with pytest.raises(TaskError, match=match):
        Task.from_dict(d)


# -- the ledger: life cycle ---------------------------------------------------------------

def test_ledger_is_wal_with_synchronous_full(tmp_path):  # on the real disk
    with TaskLedger(tmp_path / "t.db") as led:
        assert led._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert led._db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
        led.submit(pd(), 0.0)
    with TaskLedger(tmp_path / "t.db") as led:
        assert led.get("t1").state is S.QUEUED


def test_full_life_cycle_records_state_robot_and_events(ledger):
    ledger.submit(pd(), now=1.0)
    assert ledger.get("t1").state is S.QUEUED
    rec = ledger.transition("t1", S.ANNOUNCED, 2.0)
    assert rec.round == 1
    ledger.transition("t1", S.AWARDED, 3.0, robot="r1", auction_round=1)
    ledger.transition("t1", S.ACTIVE, 4.0, robot="r1")
    rec = ledger.transition("t1", S.DONE, 5.0, robot="r1")
    assert (rec.state, rec.robot, rec.round, rec.updated_at) == (S.DONE, "r1", 1, 5.0)
    assert ledger.get("t1") == rec
    evs = ledger.events("t1")
    assert [e.event for e in evs] == ["submit", "announced", "awarded", "active", "done"]
    assert [e.t for e in evs] == [1.0, 2.0, 3.0, 4.0, 5.0]
    assert [e.robot for e in evs] == [None, None, "r1", "r1", "r1"]
    assert evs[2].detail == {"from": "ANNOUNCED", "to": "AWARDED", "round": 1}
    assert [e.lamport for e in evs] == sorted({e.lamport for e in evs})


def test_done_task_never_goes_back(ledger):
    ledger.submit(pd(), 0.0)
    ledger.transition("t1", S.ANNOUNCED, 1.0)
    ledger.transition("t1", S.AWARDED, 1.0, robot="r1", auction_round=1)
    ledger.transition("t1", S.ACTIVE, 1.0)
    ledger.transition("t1", S.DONE, 2.0)
    for s in TaskState:
        with pytest.raises(IllegalTransition, match="DONE -> .*final state"):
            ledger.transition("t1", s, 3.0, robot="r1", auction_round=1)
    assert ledger.get("t1").state is S.DONE and len(ledger.events("t1")) == 5


def test_illegal_transition_names_the_states_and_changes_nothing(ledger):
    ledger.submit(pd(), 0.0)
    with pytest.raises(IllegalTransition,
                       match="task 't1': illegal transition QUEUED -> ACTIVE; from QUEUED "
                             "allowed: ANNOUNCED, CANCELLED, FAILED"):
        ledger.transition("t1", S.ACTIVE, 1.0, robot="r1")
    assert ledger.get("t1").state is S.QUEUED and len(ledger.events()) == 1


def test_unknown_task_and_unknown_state_are_named(ledger):
    with pytest.raises(UnknownTask, match="no task 'nope' in the ledger"):
        ledger.transition("nope", S.ANNOUNCED, 0.0)
    ledger.submit(pd(), 0.0)
    with pytest.raises(ValueError, match="unknown task state 'FINISHED'"):
        ledger.transition("t1", "FINISHED", 0.0)
    assert ledger.get("nope") is None


@pytest.fixture(scope="module")
def shared_ledger(tmp_path_factory):
    d = (tempfile.mkdtemp(prefix="fleet-coord-ledger-", dir="/dev/shm")
         if os.access("/dev/shm", os.W_OK) else str(tmp_path_factory.mktemp("ledger")))
    with TaskLedger(os.path.join(d, "t.db")) as led:
        yield led
    shutil.rmtree(d, ignore_errors=True)


_example = itertools.count()


@settings(max_examples=40, deadline=None)
@given(st.lists(st.sampled_from(list(TaskState)), max_size=12))
def test_ledger_accepts_exactly_the_legal_transitions(shared_ledger, requests):
    led, tid = shared_ledger, f"h{next(_example)}"
    led.submit(pd(tid), 0.0)
    state, rnd = S.QUEUED, 0
    for k, want in enumerate(requests):
        legal = want in LEGAL_TRANSITIONS[state]
        try:
            rec = led.transition(tid, want, float(k), robot="r1", auction_round=rnd)
        except IllegalTransition:
            assert not legal
        else:
            assert legal
            state, rnd = rec.state, rec.round
        assert led.get(tid).state is state


def test_requeue_from_a_lost_robot_counts_attempts_and_frees_the_task(ledger):
    ledger.submit(pd(), 0.0)
    for attempt, robot in enumerate(["r1", "r2"], start=1):
        rnd = ledger.transition("t1", S.ANNOUNCED, 1.0).round
        ledger.transition("t1", S.AWARDED, 2.0, robot=robot, auction_round=rnd)
        ledger.transition("t1", S.ACTIVE, 3.0)
        rec = ledger.transition("t1", S.QUEUED, 4.0, reason=f"{robot} lost")
        assert (rec.state, rec.robot, rec.attempts, rec.reason) == \
            (S.QUEUED, None, attempt, f"{robot} lost")
    assert ledger.get("t1").round == 2
    assert ledger.events("t1")[-1].robot == "r2"  # who lost it


def test_reports_from_a_robot_that_does_not_hold_the_task_are_refused(ledger):
    ledger.submit(pd(), 0.0)
    ledger.transition("t1", S.ANNOUNCED, 1.0)
    ledger.transition("t1", S.AWARDED, 2.0, robot="r1", auction_round=1)
    with pytest.raises(IllegalTransition, match="'r2' reported ACTIVE but the task is held "
                                                "by 'r1'"):
        ledger.transition("t1", S.ACTIVE, 3.0, robot="r2")
    ledger.transition("t1", S.ACTIVE, 3.0, robot="r1")
    with pytest.raises(IllegalTransition, match="'r2' reported DONE"):
        ledger.transition("t1", S.DONE, 4.0, robot="r2")
    with pytest.raises(IllegalTransition, match="'r2' gave the task back"):
        ledger.transition("t1", S.QUEUED, 4.0, robot="r2")
    assert ledger.get("t1").state is S.ACTIVE


# -- the ledger: never twice, never lost ----------------------------------------------------

def test_award_needs_robot_and_round(ledger):
    ledger.submit(pd(), 0.0)
    ledger.transition("t1", S.ANNOUNCED, 1.0)
    with pytest.raises(ValueError, match="an award needs the winning robot and the "
                                         "auction_round"):
        ledger.transition("t1", S.AWARDED, 2.0, robot="r1")


def test_stale_award_after_restart_is_refused(ledger_dir):
    path = ledger_dir / "t.db"
    with TaskLedger(path) as led:
        led.submit(pd(), 0.0)
        old_round = led.transition("t1", S.ANNOUNCED, 1.0).round
    # The dispatcher crashed mid-auction. The new one re-announces what is pending...
    with TaskLedger(path) as led:
        assert [r.task.id for r in led.pending()] == ["t1"]
        new_round = led.transition("t1", S.ANNOUNCED, 5.0).round
        assert new_round == old_round + 1
        # ...so an award still computed from the old round is refused,
        with pytest.raises(StaleAward, match="round 1 refused; the current round is 2"):
            led.transition("t1", S.AWARDED, 6.0, robot="r_old", auction_round=old_round)
        # the new round's award goes through, once.
        led.transition("t1", S.AWARDED, 6.0, robot="r_new", auction_round=new_round)
        with pytest.raises(IllegalTransition, match="AWARDED -> AWARDED"):
            led.transition("t1", S.AWARDED, 6.5, robot="r_other", auction_round=new_round)
        assert led.get("t1").robot == "r_new"


def test_concurrent_awards_of_one_round_have_exactly_one_winner(ledger_dir):
    path = ledger_dir / "t.db"
    with TaskLedger(path) as led:
        for k in range(20):
            led.submit(pd(f"t{k}"), 0.0)
            led.transition(f"t{k}", S.ANNOUNCED, 0.0)
    ledgers = [TaskLedger(path) for _ in range(4)]  # four "dispatchers" on one file
    wins: list[tuple[str, str]] = []
    barrier = threading.Barrier(len(ledgers))

    def dispatcher(n):
        barrier.wait()
        for k in range(20):
            try:
                ledgers[n].transition(f"t{k}", S.AWARDED, 1.0, robot=f"r{n}", auction_round=1)
                wins.append((f"t{k}", f"r{n}"))
            except IllegalTransition:
                pass

    threads = [threading.Thread(target=dispatcher, args=(n,)) for n in range(len(ledgers))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(t for t, _ in wins) == sorted(f"t{k}" for k in range(20))
    for task_id, robot in wins:
        assert ledgers[0].get(task_id).robot == robot
        assert sum(e.event == "awarded" for e in ledgers[0].events(task_id)) == 1
    for led in ledgers:
        led.close()


def test_duplicate_id_is_refused_also_after_restart_and_after_done(ledger_dir):
    path = ledger_dir / "t.db"
    with TaskLedger(path) as led:
        led.submit(pd(), 0.0)
        led.transition("t1", S.CANCELLED, 1.0, reason="user")
        with pytest.raises(DuplicateTask, match="task 't1' was already submitted"):
            led.submit(pd(), 2.0)
    with TaskLedger(path) as led:
        with pytest.raises(DuplicateTask):
            led.submit(pd(drop="dock_2"), 3.0)
        assert led.get("t1").state is S.CANCELLED
        assert led.get("t1").task.stations == ["dock_1", "shelf_a"]


def test_pending_and_in_flight_after_restart(ledger_dir):
    path = ledger_dir / "t.db"
    with TaskLedger(path) as led:
        led.submit(pd("low"), 0.0)
        led.submit(pd("high", priority=5), 0.0)
        led.submit(pd("ann"), 0.0)
        led.submit(pd("awd"), 0.0)
        led.submit(pd("act"), 0.0)
        led.submit(pd("fin"), 0.0)
        for t in ("ann", "awd", "act", "fin"):
            led.transition(t, S.ANNOUNCED, 1.0)
        for t in ("awd", "act", "fin"):
            led.transition(t, S.AWARDED, 2.0, robot="r1", auction_round=1)
        for t in ("act", "fin"):
            led.transition(t, S.ACTIVE, 3.0)
        led.transition("fin", S.DONE, 4.0)
    with TaskLedger(path) as led:
        assert [r.task.id for r in led.pending()] == ["high", "low", "ann"]
        assert [(r.task.id, r.state, r.robot) for r in led.in_flight()] == \
            [("awd", S.AWARDED, "r1"), ("act", S.ACTIVE, "r1")]
        assert [r.task.id for r in led.list([S.DONE])] == ["fin"]
        assert [r.task.id for r in led.list()] == ["low", "high", "ann", "awd", "act", "fin"]
        assert led.list([]) == []


def test_who_gave_a_task_back_survives_a_restart(ledger_dir):
    """A restarted dispatcher reads from the ledger which robots gave a task back, which
    of them were lost (their late DONE still counts; asked again once back without it)
    and which gave it back otherwise (not asked again)."""
    path = ledger_dir / "t.db"
    with TaskLedger(path) as led:
        led.submit(pd(), 0.0)
        for rnd, (robot, lost) in enumerate([("r1", True), ("r2", False)], start=1):
            led.transition("t1", S.ANNOUNCED, 1.0)
            led.transition("t1", S.AWARDED, 2.0, robot=robot, auction_round=rnd)
            led.transition("t1", S.QUEUED, 3.0, robot=robot, reason="gone", lost=lost)
        led.transition("t1", S.ANNOUNCED, 4.0)
        led.transition("t1", S.AWARDED, 5.0, robot="r3", auction_round=3)
        led.transition("t1", S.QUEUED, 6.0, reason="not confirmed")   # no robot named
    with TaskLedger(path) as led:
        assert led.given_back("t1") == ({"r1", "r2"}, {"r1"}, {"r2"})
        assert led.given_back("nope") == (set(), set(), set())


def test_lamport_clock_survives_restart_and_passes_remote_stamps(ledger_dir):
    path = ledger_dir / "t.db"
    with TaskLedger(path) as led:
        led.submit(pd(), 0.0)
        led.transition("t1", S.ANNOUNCED, 1.0)
    with TaskLedger(path) as led:
        led.transition("t1", S.AWARDED, 2.0, robot="r1", auction_round=1)
        led.transition("t1", S.ACTIVE, 3.0, robot="r1", remote_lamport=40)
        led.submit(pd("t2"), 4.0)
        assert [e.lamport for e in led.events()] == [1, 2, 3, 41, 42]
        assert [e.seq for e in led.events("t2")] == [5]


# -- crash: kill -9 at random points, then reopen ---------------------------------------------

CHILD = r"""
import random, sys
from fleet_coord.core.tasks import DuplicateTask, Task, TaskLedger, TaskState as S

path, seed, run = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rng = random.Random(seed)
led = TaskLedger(path)
# A restarted dispatcher: pick up what the previous one left.
live = {r.task.id: (r.state, r.round) for r in led.pending() + led.in_flight()}
old = [r.task.id for r in led.list()]
if old:
    try:
        led.submit(Task(rng.choice(old), "goto", ["a"]), 0.0)
        print("DUP-ACCEPTED", flush=True)
    except DuplicateTask:
        pass
now = 1000.0 * run
k = 0
while True:
    now += 0.01
    tid = f"r{run}-{k}"
    k += 1
    led.submit(Task(tid, "pick_and_drop", ["a", "b"], submitted_at=now), now)
    print("S", tid, flush=True)
    live[tid] = (S.QUEUED, 0)
    for tid in rng.sample(sorted(live), min(3, len(live))):
        state, rnd = live[tid]
        x = rng.random()
        if state in (S.QUEUED, S.ANNOUNCED) and x < 0.5:
            rec = led.transition(tid, S.ANNOUNCED, now)
        elif state is S.ANNOUNCED:
            rec = led.transition(tid, S.AWARDED, now, robot=f"bot{rng.randrange(4)}",
                                 auction_round=rnd)
        elif state is S.AWARDED:
            rec = led.transition(tid, S.ACTIVE if x < 0.8 else S.QUEUED, now)
        elif state is S.ACTIVE:
            rec = led.transition(tid, S.DONE if x < 0.7 else S.QUEUED if x < 0.9 else S.FAILED,
                                 now, reason="test")
        else:
            continue
        if rec.state is S.DONE:
            print("D", tid, flush=True)
        if rec.state in (S.DONE, S.FAILED, S.CANCELLED):
            del live[tid]
        else:
            live[tid] = (rec.state, rec.round)
"""


def check_ledger_integrity(path):
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    db.close()
    with TaskLedger(path) as led:
        records = {r.task.id: r for r in led.list()}
        events = led.events()
    seqs = [e.seq for e in events]
    lamports = [e.lamport for e in events]
    assert seqs == sorted(seqs) and lamports == sorted(set(lamports))
    replay: dict[str, tuple] = {}  # task id -> (state, robot, round, attempts)
    for e in events:
        if e.event == "submit":
            assert e.task_id not in replay, f"{e.task_id} submitted twice"
            replay[e.task_id] = (S.QUEUED, None, 0, 0)
            continue
        state, robot, rnd, attempts = replay[e.task_id]
        new = S(e.detail["to"])
        assert S(e.detail["from"]) is state and new in LEGAL_TRANSITIONS[state], e
        if new is S.ANNOUNCED:
            rnd, robot = rnd + 1, None
        elif new is S.AWARDED:
            assert robot is None, f"{e.task_id} awarded to {e.robot} while held by {robot}"
            robot = e.robot
        elif new is S.QUEUED:
            attempts += state in (S.AWARDED, S.ACTIVE)
            robot = None
        assert e.detail["round"] == rnd
        replay[e.task_id] = (new, robot, rnd, attempts)
    assert set(replay) == set(records)
    for tid, rec in records.items():
        assert (rec.state, rec.robot, rec.round, rec.attempts) == replay[tid], tid
        if rec.state in (S.AWARDED, S.ACTIVE, S.DONE):
            assert rec.robot is not None, tid
        elif rec.state in (S.QUEUED, S.ANNOUNCED):
            assert rec.robot is None, tid
    return records


def test_no_acknowledged_task_is_lost_when_the_dispatcher_is_killed(ledger_dir):
    path = str(ledger_dir / "crash.db")
    rng = random.Random(2024)
    acked: set[str] = set()
    done: set[str] = set()
    kills_mid_run = 0
    for run in range(7):
        child = subprocess.Popen([sys.executable, "-c", CHILD, path, str(rng.randrange(10**6)),
                                  str(run)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                 text=True)
        lines = []
        if run % 3 == 2:
            # Blind kill: anywhere from opening the ledger (WAL recovery) to mid-loop.
            want = 0
            time.sleep(rng.uniform(0.0, 0.2))
        else:
            want = rng.randint(3, 60)
            deadline = time.monotonic() + 10
            while len(lines) < want and time.monotonic() < deadline:
                line = child.stdout.readline()
                if not line:
                    break
                lines.append(line)
            time.sleep(rng.uniform(0, 0.004))  # land the kill anywhere, also mid-transaction
        child.kill()  # SIGKILL
        child.wait()
        lines += child.stdout.read().splitlines(keepends=True)
        err = child.stderr.read()
        assert child.returncode == -9, f"child ended by itself:\n{err}"
        kills_mid_run += want > 0 and len(lines) >= want
        assert not any(ln.startswith("DUP-ACCEPTED") for ln in lines), \
            "a duplicate id was accepted after a restart"
        for ln in lines:
            if ln.endswith("\n") and ln[:2] in ("S ", "D "):
                (acked if ln[0] == "S" else done).add(ln[2:].strip())
        records = check_ledger_integrity(path)
        missing = acked - set(records)
        assert not missing, f"acknowledged tasks lost after kill -9 in run {run}: {missing}"
        assert all(records[t].state is S.DONE for t in done), "a DONE task went back"
    assert kills_mid_run >= 4 and len(acked) > 50

import json

import pytest

from fleet_coord.core.event_log import EventLog, LamportClock, read_log, replay


def test_lamport_clock_orders_send_before_receive():
    a, b = LamportClock(), LamportClock()
    sent = a.tick()
    for _ in range(5):
        b.tick()
    assert b.witness(sent) > sent
    late = a.tick()
    assert b.witness(late) > late  # receive is always after its send


def test_log_from_two_processes_replays_in_causal_order(tmp_path):
    disp = EventLog(str(tmp_path / "dispatcher.jsonl"), "dispatcher")
    agent = EventLog(str(tmp_path / "agent.jsonl"), "robot_1")
    for _ in range(10):  # the agent's clock runs ahead; causality must still win
        agent.record("tick", t=0.0)
    cfp = disp.record("cfp", t=1.0, task_id="t1")
    prop = agent.record("proposal", t=1.1, task_id="t1", robot="robot_1", lamport=cfp["lamport"], cost=4.5)
    award = disp.record("award", t=1.3, task_id="t1", robot="robot_1", lamport=prop["lamport"])
    done = agent.record("status", t=9.0, task_id="t1", robot="robot_1", state="DONE",
                        lamport=award["lamport"])
    disp.record("status", t=9.1, task_id="t1", robot="robot_1", state="DONE", lamport=done["lamport"])
    disp.record("submit", t=0.5, task_id="t0")
    disp.close(), agent.close()
    rows = read_log([tmp_path / "dispatcher.jsonl", tmp_path / "agent.jsonl"])
    order = [r["event"] for r in rows if r["task_id"] == "t1"]
    assert order == ["cfp", "proposal", "award", "status", "status"]
    run = replay(rows)
    assert run.tasks["t1"] == {"state": "DONE", "robot": "robot_1"}
    assert run.awards == {"t1": ["robot_1"]}
    assert run.tasks["t0"]["state"] == "QUEUED"


def test_torn_tail_is_skipped_but_corruption_elsewhere_is_named(tmp_path):
    p = tmp_path / "log.jsonl"
    log = EventLog(str(p), "x")
    log.record("submit", t=0.0, task_id="a", deadline=float("inf"))
    log.close()
    with open(p, "a") as f:
        f.write('{"lamport": 2, "se')  # crash mid-write
    rows = read_log([p])
    assert len(rows) == 1 and rows[0]["deadline"] == "inf"
    p.write_text('garbage\n' + json.dumps(rows[0]) + "\n")
    with pytest.raises(ValueError, match="log.jsonl:1"):
        read_log([p])

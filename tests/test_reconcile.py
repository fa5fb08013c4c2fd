"""Continuous reconciliation in the dispatcher core (fleet_coord.core.dispatch): what
robots report in their states is compared with the ledger, and a lost award, a lost DONE
and a task two robots think they hold are repaired within seconds, each repair in the
ledger's history. And a full disk is a refusal, not an exception."""
import pytest

from fleet_coord.core import contract_net as cn
from fleet_coord.core import dispatch as dp
from fleet_coord.core.tasks import Task, TaskLedger, TaskState
from test_dispatch import auction, make, of

S = TaskState


@pytest.fixture
def ledger(tmp_path):
    with TaskLedger(str(tmp_path / "ledger.db")) as led:
        yield led


def awarded(d, task_id, winner, now, cost=1.0):
    d.submit(now, Task(task_id, "goto", ["s"]))
    _cfp, out = auction(d, task_id, {winner: cost}, now)
    award, = of(out, dp.Award)
    assert award.robot == winner
    return award


def events(ledger, task_id):
    return [(e.event, e.robot) for e in ledger.events(task_id)]


def test_an_award_never_acknowledged_is_sent_again_then_auctioned_again(ledger):
    d = make(ledger)
    award = awarded(d, "t", "a", 0.0)
    t = 0.5
    out = []
    while t < 4.0:   # a's states never list t: its award was lost
        out += d.on_robot_state(t, "a", [""]) + d.on_robot_state(t, "b", [""])
        t += 0.1
    again, = of(out, dp.Award)
    assert (again.task_id, again.round, again.robot) == ("t", award.round, "a")
    assert ("award_resent", "a") in events(ledger, "t")
    assert ledger.get("t").state is S.AWARDED
    while t < 10.0 and ledger.get("t").state is S.AWARDED:
        d.on_robot_state(t, "a", [""])
        d.on_robot_state(t, "b", [""])
        t += 0.1
    rec = ledger.get("t")
    assert rec.state is S.QUEUED and "never acknowledged" in rec.reason
    assert t - 0.0 < 10.0   # within seconds
    cfp = [c for c in of(d.tick(t), dp.CallForProposals) if c.task.id == "t"]
    assert cfp and cfp[0].excluded == ("a",)


def test_an_acknowledged_award_is_left_alone(ledger):
    d = make(ledger)
    awarded(d, "t", "a", 0.0)
    for i in range(100):
        assert d.on_robot_state(0.5 + 0.1 * i, "a", ["", "t"]) == []   # queued at a
    assert ledger.get("t").state is S.AWARDED
    assert [e for e, _ in events(ledger, "t")] == ["submit", "announced", "awarded"]


def test_a_done_that_was_not_heard_is_taken_from_the_robots_state(ledger):
    d = make(ledger)
    awarded(d, "t", "a", 0.0)
    d.on_task_status(0.5, "t", "a", S.ACTIVE)
    d.on_robot_state(1.0, "a", ["t"])
    d.on_robot_state(9.0, "a", [""], done=["t"])   # its DONE was lost
    rec = ledger.get("t")
    assert rec.state is S.DONE and rec.robot == "a" and "reconciled" in rec.reason
    assert "t" not in d.entries


def test_a_task_two_robots_think_they_hold_is_withdrawn_from_the_wrong_one(ledger):
    d = make(ledger)
    first = awarded(d, "t", "a", 0.0)
    d.on_task_status(0.5, "t", "a", S.FAILED, reason="blocked")   # a gave it back...
    _cfp, out = auction(d, "t", {"b": 1.0}, 1.0)
    assert ledger.get("t").robot == "b"
    # ... but a's state still lists it (it missed that it gave it up, say)
    out = d.on_robot_state(2.0, "a", ["t"])
    reject, = of(out, dp.Rejection)
    assert (reject.task_id, reject.round, reject.robot) == ("t", first.round, "a")
    assert "withdrawn" in reject.reason and "b" in reject.reason
    assert ("withdrawn", "a") in events(ledger, "t")
    assert d.on_robot_state(2.1, "a", ["t"]) == []        # not every state: once a while
    assert of(d.on_robot_state(5.5, "a", ["t"]), dp.Rejection)
    assert ledger.get("t").robot == "b"                   # the ledger's holder keeps it


def test_an_active_task_its_robot_forgot_goes_back_only_if_it_reports_what_it_finished(ledger):
    d = make(ledger)
    awarded(d, "t", "a", 0.0)
    d.on_task_status(0.5, "t", "a", S.ACTIVE)
    for i in range(80):   # an agent without a finished list: never guess
        d.on_robot_state(1.0 + 0.1 * i, "a", [""])
    assert ledger.get("t").state is S.ACTIVE
    awarded(d, "u", "a", 9.0)
    d.on_task_status(9.5, "u", "a", S.ACTIVE)
    d.on_task_status(9.6, "u", "a", S.DONE)
    for i in range(80):   # it lists what it finished (u): t is not among them
        d.on_robot_state(10.0 + 0.1 * i, "a", [""], done=["u"])
    rec = ledger.get("t")
    assert rec.state is S.QUEUED and "no longer reports it" in rec.reason


def test_a_full_disk_refuses_submissions_and_cancels_and_the_dispatcher_goes_on(ledger):
    d = make(ledger)
    d.submit(0.0, Task("t", "goto", ["s"]))
    pages = ledger._db.execute("PRAGMA page_count").fetchone()[0]
    ledger._db.execute(f"PRAGMA max_page_count={pages}")   # SQLITE_FULL from here on
    with pytest.raises(dp.Refused, match="disk is full"):
        for i in range(200):
            d.submit(0.1, Task(f"n{i}", "goto", ["s"]))
    try:   # a cancel fits in a page or is refused the same way; nothing else escapes
        d.cancel(0.2, "t")
    except dp.Refused as e:
        assert "disk is full" in str(e)
    for i in range(40):     # ticks and messages keep coming: nothing escapes
        d.tick(0.3 + 0.1 * i)
        d.on_robot_state(0.3 + 0.1 * i, "a", [""])
        d.on_proposal(0.3 + 0.1 * i, cn.Proposal("a", "t", 1, 1.0, 5.0))
    ledger._db.execute("PRAGMA max_page_count=1073741823")   # space is back
    d.submit(5.0, Task("after", "goto", ["s"]))
    assert ledger.get("after") is not None

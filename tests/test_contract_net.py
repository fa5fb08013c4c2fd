"""FIPA Contract Net state machines, bids and batch allocation
(fleet_coord.core.contract_net)."""
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import linear_sum_assignment

from fleet_coord.core.contract_net import (
    AcceptProposal, ContractNetError, Failure, GiveUp, Initiator, InitiatorState, Insertion,
    Participant, Proposal, RefuseReason, Refusal, RejectProposal, Retry, RetryPolicy,
    RobotProfile, RobotState, route_time, sequential_auction)
from fleet_coord.core.tasks import Task, TaskLedger, TaskState

# A small map: stations on a plane, 1 m/s; "island" and "island_charger" are cut off.
POS = {"a": (0, 0), "b": (10, 0), "c": (20, 0), "d": (30, 0), "e": (0, 10),
       "charger": (10, 10), "far": (100, 0), "island": (0, 50), "island_charger": (5, 50)}


def tt(u, v):
    if (u.startswith("island")) != (v.startswith("island")):
        return math.inf
    return math.dist(POS[u], POS[v])


def pd(tid, pick, drop, **kw):
    return Task(tid, "pick_and_drop", [pick, drop], **kw)


def goto(tid, goal, **kw):
    return Task(tid, "goto", [goal], **kw)


def initiator(participants=("r1", "r2", "r3"), now=0.0, window=1.0, task=None, rnd=1):
    return Initiator(task or goto("t1", "b"), rnd, participants, now, window)


# -- Initiator: cfp -> propose/refuse -> accept/reject ------------------------------------------

def test_cfp_carries_task_round_and_bid_deadline():
    ini = initiator(now=5.0, window=2.0, rnd=3)
    assert ini.state is InitiatorState.CFP_SENT
    assert (ini.cfp.task.id, ini.cfp.round, ini.cfp.deadline) == ("t1", 3, 7.0)
    assert ini.cfp.performative == "cfp"


def test_bidding_stays_open_until_the_deadline_while_someone_has_not_answered():
    ini = initiator()
    ini.on_propose("r1", cost=5.0, eta=9.0, now=0.1)
    ini.on_refuse("r2", RefuseReason.BUSY, now=0.2)
    assert ini.tick(0.5) == [] and ini.state is InitiatorState.CFP_SENT
    out = ini.tick(1.0)  # the deadline: r3 never answered
    assert ini.state is InitiatorState.AWARDED and ini.winner == "r1"
    assert out == [AcceptProposal("r1", "t1", 1)]


def test_closes_early_once_every_known_participant_answered():
    ini = initiator()
    ini.on_propose("r1", 5.0, 9.0, 0.1)
    ini.on_propose("r2", 3.0, 9.0, 0.1)
    assert ini.tick(0.15) == []
    ini.on_refuse("r3", "UNREACHABLE", 0.2, station="b")
    out = ini.tick(0.2)
    assert out[0] == AcceptProposal("r2", "t1", 1)
    assert out[1:] == [RejectProposal("r1", "t1", 1, reason="awarded to r2")]
    assert ini.closed_at == 0.2


def test_lowest_cost_wins_ties_break_on_eta_then_robot_name():
    ini = initiator(participants=("r1", "r2", "r3", "r4"))
    ini.on_propose("r4", 4.0, 20.0, 0.1)
    ini.on_propose("r3", 4.0, 10.0, 0.1)
    ini.on_propose("r2", 4.0, 10.0, 0.1)
    ini.on_propose("r1", 4.5, 1.0, 0.1)
    out = ini.tick(1.0)
    assert [type(m).__name__ + ":" + m.robot for m in out] == [
        "AcceptProposal:r2", "RejectProposal:r3", "RejectProposal:r4", "RejectProposal:r1"]


def test_a_winner_found_not_authentic_at_the_award_is_dropped_and_the_next_best_wins():
    ini = initiator()
    for robot, cost in (("r1", 1.0), ("r2", 2.0), ("r3", 3.0)):
        ini.on_propose(robot, cost, cost, 0.1)
    asked = []

    def authentic(p):
        asked.append(p.robot)
        return p.robot != "r1"
    out = ini.tick(1.0, authentic)
    # only the proposals about to win are asked; the forged one gets no answer
    assert asked == ["r1", "r2"]
    assert [type(m).__name__ + ":" + m.robot for m in out] == [
        "AcceptProposal:r2", "RejectProposal:r3"]
    assert ini.winner == "r2" and "r1" not in ini.proposals
    # nothing authentic: no bids
    ini = initiator()
    ini.on_propose("r1", 1.0, 1.0, 0.1)
    assert ini.tick(1.0, lambda p: False) == [] and ini.state is InitiatorState.NO_BIDS


def test_late_proposals_are_rejected_and_do_not_count():
    ini = initiator()
    ini.on_propose("r1", 9.0, 9.0, 0.5)
    late = ini.on_propose("r2", 1.0, 1.0, now=1.01)  # after the deadline, before the tick
    assert late == [RejectProposal("r2", "t1", 1, reason="late: bidding for round 1 closed "
                                                         "at 1 s")]
    assert ini.tick(1.01) == [AcceptProposal("r1", "t1", 1)]
    after = ini.on_propose("r3", 0.5, 0.5, 1.02)  # after the decision
    assert [m.robot for m in after] == ["r3"] and isinstance(after[0], RejectProposal)
    assert ini.on_refuse("r3", "BUSY", 1.02) == [] and "r3" not in ini.refusals
    assert ini.winner == "r1"


def test_messages_of_another_round_are_stale():
    ini = initiator(rnd=2)
    out = ini.on_message(Proposal("r1", "t1", 1, 0.0, 0.0), 0.1)
    assert isinstance(out[0], RejectProposal) and "stale" in out[0].reason
    assert ini.on_message(Refusal("r2", "t1", 1, RefuseReason.BUSY), 0.1) == []
    assert ini.on_message(Proposal("r1", "t1", 2, 3.0, 4.0), 0.1) == []
    assert ini.proposals["r1"].cost == 3.0 and not ini.refusals


def test_a_robot_may_revise_its_answer_before_the_deadline():
    ini = initiator(participants=("r1", "r2"))
    ini.on_propose("r1", 2.0, 2.0, 0.1)
    ini.on_refuse("r1", RefuseReason.BUSY, 0.2)  # its queue filled up meanwhile
    ini.on_propose("r2", 7.0, 7.0, 0.3)
    assert ini.tick(0.3) == [AcceptProposal("r2", "t1", 1)]


def test_bad_proposals_and_out_of_order_steps_are_errors():
    ini = initiator()
    with pytest.raises(ValueError, match="finite cost >= 0"):
        ini.on_propose("r1", math.inf, 1.0, 0.1)
    with pytest.raises(ValueError, match="finite cost >= 0"):
        ini.on_propose("r1", -1.0, 1.0, 0.1)
    ini.on_propose("r1", 1.0, 1.0, 0.1)
    ini.close(0.2)
    assert ini.state is InitiatorState.EVALUATING
    with pytest.raises(ContractNetError, match="cannot award to 'r9', which did not propose"):
        ini.award("r9", 0.3)
    ini.award("r1", 0.3)
    with pytest.raises(ContractNetError, match="cannot cancel in state AWARDED"):
        ini.cancel(0.4)
    with pytest.raises(ValueError, match="bid_window"):
        initiator(window=0)


def test_cancel_rejects_every_proposal():
    ini = initiator()
    ini.on_propose("r2", 1.0, 1.0, 0.1)
    ini.on_propose("r1", 2.0, 1.0, 0.1)
    out = ini.cancel(0.2)
    assert ini.state is InitiatorState.CANCELLED
    assert [(m.robot, m.reason) for m in out] == [("r2", "cancelled"), ("r1", "cancelled")]
    assert ini.tick(5.0) == []


# -- no bids: reasons, retry with back-off, failure -------------------------------------------

def test_no_bids_when_everyone_refuses_names_the_unreachable_station():
    ini = initiator(task=goto("t1", "island"))
    for r in ("r1", "r2", "r3"):
        ini.on_refuse(r, RefuseReason.UNREACHABLE, 0.1, detail="no path", station="island")
    assert ini.tick(0.1) == [] and ini.state is InitiatorState.NO_BIDS
    assert ini.no_bids_reason() == "no robot can reach station 'island'"


@pytest.mark.parametrize("refusals, expected", [
    ([], "no robot answered the cfp for task 't1' (3 asked: r1, r2, r3)"),
    ([("r1", RefuseReason.UNREACHABLE, "x", "b")],
     "no robot can reach station 'b'; no answer from r2, r3"),
    ([("r1", RefuseReason.BATTERY, "battery low", None),
      ("r2", RefuseReason.BATTERY, "battery lower", None),
      ("r3", RefuseReason.BATTERY, "flat", None)],
     "no robot has the battery for task 't1' (r1: battery low; r2: battery lower; r3: flat)"),
    ([("r1", RefuseReason.PAYLOAD, "", None), ("r2", RefuseReason.PAYLOAD, "", None),
      ("r3", RefuseReason.PAYLOAD, "", None)],
     "payload 40 kg is over every robot's capacity"),
    ([("r1", RefuseReason.UNREACHABLE, "cannot reach station 'b' from 'x'", "b"),
      ("r2", RefuseReason.BUSY, "queue full (3/3 tasks)", None),
      ("r3", RefuseReason.UNREACHABLE, "cannot reach station 'b' from 'y'", "b")],
     "no bids for task 't1' (2 UNREACHABLE, 1 BUSY: r1: cannot reach station 'b' from 'x'; "
     "r2: queue full (3/3 tasks); r3: cannot reach station 'b' from 'y')"),
])
def test_no_bids_reason_summarises_the_refusals(refusals, expected):
    ini = initiator(task=goto("t1", "b", payload_kg=40.0))
    for robot, reason, detail, station in refusals:
        ini.on_refuse(robot, reason, 0.1, detail=detail, station=station)
    ini.tick(1.0)
    assert ini.state is InitiatorState.NO_BIDS
    assert ini.no_bids_reason() == expected


def test_no_bids_is_retried_with_exponential_back_off_then_failed_with_the_reason():
    policy = RetryPolicy(base=1.0, factor=2.0, max_attempts=4)
    task = pd("t1", "a", "island")
    robots = {r: Participant(r, tt) for r in ("r1", "r2")}
    states = {"r1": RobotState("a"), "r2": RobotState("c")}
    now, attempt, announced_at = 0.0, 1, []
    while True:
        announced_at.append(now)
        ini = Initiator(task, attempt, robots, now, bid_window=0.5)
        for r, p in robots.items():
            assert ini.on_message(p.on_cfp(ini.cfp, states[r]), now + 0.1) == []
        ini.tick(now + 0.1)
        decision = policy.after_no_bids(attempt, now + 0.1, ini)
        if isinstance(decision, GiveUp):
            break
        assert isinstance(decision, Retry) and decision.attempt == attempt + 1
        now, attempt = decision.at, decision.attempt
    assert np.diff(announced_at) == pytest.approx([1.1, 2.1, 4.1])
    assert decision.reason == ("no robot can reach station 'island' "
                               "(gave up after 4 auction rounds)")


def test_silence_is_retried_for_as_long_as_it_lasts_a_refusal_is_not():
    # under packet loss every answer of a round can miss the bid window: no robot said it
    # cannot do the task, so the dispatcher never gives up on it for that
    policy = RetryPolicy(base=1.0, factor=2.0, max_attempts=4, max_delay=8.0)
    task = pd("t1", "a", "b")
    now, delays = 0.0, []
    for attempt in range(1, 12):
        ini = Initiator(task, attempt, ["r1", "r2"], now, bid_window=0.5)
        ini.tick(now + 0.6)                              # nobody answered
        assert "no robot answered the cfp" in ini.no_bids_reason()
        decision = policy.after_no_bids(attempt, now + 0.6, ini)
        assert isinstance(decision, Retry), (attempt, decision)
        delays.append(decision.at - (now + 0.6))
        now = decision.at
    assert delays[:5] == pytest.approx([1.0, 2.0, 4.0, 8.0, 8.0])
    # one robot's refusal makes the round count: the fifth round gives up
    ini = Initiator(task, 4, ["r1", "r2"], now, bid_window=0.5)
    ini.on_message(Refusal("r1", "t1", 4, RefuseReason.UNREACHABLE, station="b"), now + 0.1)
    ini.tick(now + 0.6)
    decision = policy.after_no_bids(4, now + 0.6, ini)
    assert isinstance(decision, GiveUp) and "no answer from r2" in decision.reason


def test_retry_policy_caps_the_delay_and_validates():
    p = RetryPolicy(base=1.0, factor=3.0, max_attempts=10, max_delay=5.0)
    assert [p.delay(k) for k in (1, 2, 3, 4)] == [1.0, 3.0, 5.0, 5.0]
    for bad in (dict(base=0), dict(factor=0.5), dict(max_attempts=0)):
        with pytest.raises(ValueError, match="RetryPolicy"):
            RetryPolicy(**bad)
    ini = initiator()
    with pytest.raises(ContractNetError, match="needs a round that ended NO_BIDS"):
        p.after_no_bids(1, 0.0, ini)


# -- Participant: the bid is the marginal insertion cost -------------------------------------

def drive_time(position, queue, travel, profile):
    """The time to work through `queue`, stop by stop (independent of route_time)."""
    stops = [position] + [s for t in queue for s in t.stations]
    legs = sum(travel(a, b) for a, b in zip(stops, stops[1:]))
    charges = sum(t.kind == "charge" for t in queue)
    return legs + profile.dwell * (len(stops) - 1) + profile.charge_time * charges


def brute_force_best(task, state, travel, profile):
    """min over insertion positions of route time with - route time without."""
    base = drive_time(state.position, state.queue, travel, profile)
    deltas = [drive_time(state.position, state.queue[:i] + [task] + state.queue[i:], travel,
                         profile) - base for i in range(len(state.queue) + 1)]
    return min(deltas), deltas


@settings(max_examples=150, deadline=None)
@given(st.integers(0, 2**31 - 1))
def test_bid_equals_brute_force_cheapest_insertion_on_small_queues(seed):
    rng = np.random.default_rng(seed)
    names = [f"s{i}" for i in range(8)]
    pts = {s: rng.uniform(0, 50, 2) for s in names}

    def travel(u, v):
        return float(np.linalg.norm(pts[u] - pts[v]))

    def rand_task(k):
        kind = rng.choice(["pick_and_drop", "goto", "charge"])
        n = 2 if kind == "pick_and_drop" else 1
        return Task(f"q{k}", str(kind), [str(s) for s in rng.choice(names, n)])

    profile = RobotProfile(dwell=float(rng.choice([0.0, 2.5])),
                           charge_time=float(rng.choice([0.0, 30.0])))
    state = RobotState(str(rng.choice(names)),
                       [rand_task(k) for k in range(int(rng.integers(0, 5)))],
                       free_at=float(rng.uniform(0, 100)))
    task = rand_task(99)
    p = Participant("r1", travel, profile)
    bid = p.bid(task, state, round=1)
    best, deltas = brute_force_best(task, state, travel, profile)
    assert isinstance(bid, Proposal)
    assert bid.cost == pytest.approx(best, abs=1e-9)
    ins = p.on_accept_proposal(AcceptProposal("r1", task.id, 1), state)
    assert deltas[ins.position] == pytest.approx(best, abs=1e-9)
    assert state.queue[ins.position] is task
    # eta: when the task's last station is done, driving the new queue from free_at.
    done = state.free_at + drive_time(state.position, state.queue[:ins.position + 1], travel,
                                      profile)
    assert route_time(state.position, state.queue, travel, profile) == pytest.approx(
        drive_time(state.position, state.queue, travel, profile))
    assert bid.eta == pytest.approx(done)


def test_bid_on_a_task_on_the_way_costs_only_the_detour():
    # Queue: a -> d. A goto to c lies on the way: inserting it first costs 0 extra.
    state = RobotState("a", [goto("q1", "d")])
    bid = Participant("r1", tt).bid(goto("t", "c"), state)
    assert bid.cost == pytest.approx(0.0) and bid.eta == pytest.approx(20.0)
    # Appending costs the drive d -> e instead; cheaper is the detour through e first.
    bid = Participant("r1", tt).bid(goto("t2", "e"), state)
    assert bid.cost == pytest.approx(10 + math.dist((0, 10), (30, 0)) - 30)


@pytest.mark.parametrize("task, state, profile, reason, detail", [
    (goto("t", "island"), RobotState("a"), RobotProfile(), RefuseReason.UNREACHABLE,
     "cannot reach station 'island' from 'a'"),
    (pd("t", "island", "island_charger"), RobotState("a", [goto("q", "b")]), RobotProfile(),
     RefuseReason.UNREACHABLE, "cannot reach station 'island' from 'b'"),
    (pd("t", "a", "island"), RobotState("a"), RobotProfile(), RefuseReason.UNREACHABLE,
     "cannot reach station 'island' from 'a'"),
    (pd("t", "a", "b", payload_kg=60), RobotState("a"), RobotProfile(capacity_kg=50),
     RefuseReason.PAYLOAD, "payload 60 kg over capacity 50 kg"),
    (goto("t", "b"), RobotState("a", [goto("q1", "c"), goto("q2", "d")]),
     RobotProfile(max_queue=2), RefuseReason.BUSY, "queue full (2/2 tasks)"),
    (Task("t", "charge", ["charger"]), RobotState("a"),
     RobotProfile(kinds=frozenset({"goto"})), RefuseReason.UNSUPPORTED_KIND,
     "r1 does not do 'charge' tasks (does: goto)"),
    (goto("t", "far"), RobotState("a"),
     RobotProfile(drain_rate=0.01, reserve=0.2), RefuseReason.BATTERY,
     "battery would fall to 0 at station 'far', below the reserve 0.2"),
    (goto("t", "d"), RobotState("a", battery=0.5),
     RobotProfile(drain_rate=0.01, reserve=0.1, chargers=("charger",)), RefuseReason.BATTERY,
     "after station 'd' the robot would reach a charger with -0.0236, below the reserve 0.1"),
    (goto("t", "b"), RobotState("a"),
     RobotProfile(drain_rate=0.01, chargers=("island_charger",)), RefuseReason.BATTERY,
     "no charger reachable from station 'b'"),
    (goto("t", "d", deadline=25.0), RobotState("a", free_at=0.0), RobotProfile(),
     RefuseReason.DEADLINE, "task 't' would finish at 30.0 s, after its deadline 25 s"),
])
def test_refusals_name_the_reason(task, state, profile, reason, detail):
    ans = Participant("r1", tt, profile).bid(task, state, round=4)
    assert isinstance(ans, Refusal), ans
    assert (ans.robot, ans.task_id, ans.round, ans.reason) == ("r1", "t", 4, reason)
    assert ans.detail == detail
    if reason is RefuseReason.UNREACHABLE:
        assert ans.station == "island"


@pytest.mark.parametrize("bad, match", [
    (dict(capacity_kg=-1), "capacity_kg must be a number >= 0"),
    (dict(max_queue=1.5), "max_queue must be an int >= 0"),
    (dict(battery_capacity=0), "battery_capacity must be > 0"),
    (dict(drain_rate=float("nan")), "drain_rate must be a number >= 0"),
    (dict(chargers="charger"), "chargers must be a tuple of station names"),
])
def test_robot_profile_names_the_bad_setting(bad, match):
    with pytest.raises(ValueError, match=match):
        RobotProfile(**bad)


def test_unknown_station_is_refused_when_the_robot_knows_its_stations():
    p = Participant("r1", tt, stations={"a", "b"})
    ans = p.bid(goto("t", "c"), RobotState("a"))
    assert (ans.reason, ans.station, ans.detail) == (
        RefuseReason.UNKNOWN_STATION, "c", "station 'c' is not on r1's roadmap")


def test_payload_drains_the_battery_faster_on_the_loaded_leg():
    profile = RobotProfile(drain_rate=0.01, drain_per_kg=0.001, reserve=0.05)
    p = Participant("r1", tt, profile)
    light = p.bid(pd("t", "a", "d"), RobotState("a"))
    heavy = p.bid(pd("t", "a", "d", payload_kg=25), RobotState("a"))  # 30 s * 0.035
    assert isinstance(light, Proposal)
    assert isinstance(heavy, Refusal) and heavy.reason is RefuseReason.BATTERY


def test_a_charge_stop_in_the_queue_makes_a_long_task_feasible():
    profile = RobotProfile(drain_rate=0.004, reserve=0.1, chargers=("charger",),
                           charge_time=60.0)
    p = Participant("r1", tt, profile)
    low = RobotState("a", battery=0.3)
    assert p.bid(goto("t", "far"), low).reason is RefuseReason.BATTERY
    charged = RobotState("a", [Task("c", "charge", ["charger"])], battery=0.3)
    ans = p.bid(goto("t", "far"), charged, round=1)
    assert isinstance(ans, Proposal)
    p.on_accept_proposal(AcceptProposal("r1", "t", 1), charged)
    assert [q.id for q in charged.queue] == ["c", "t"]  # after the charge, not before


def test_insertion_keeps_queued_tasks_on_time():
    # q1 is due at 31 s: driving a -> d takes 30 s. Serving e first (cheaper for the
    # new task) would make q1 late, so the task goes after it.
    state = RobotState("a", [goto("q1", "d", deadline=31.0)])
    p = Participant("r1", tt)
    ans = p.bid(goto("t", "c"), state, round=1)
    assert isinstance(ans, Proposal) and ans.cost == pytest.approx(0.0)  # on the way
    ans = p.bid(goto("t2", "e"), state, round=1)
    assert ans.eta == pytest.approx(30 + math.dist((30, 0), (0, 10)))
    ins = p.on_accept_proposal(AcceptProposal("r1", "t2", 1), state)
    assert ins.position == 1 and [q.id for q in state.queue] == ["q1", "t2"]
    # A queued task that is late anyway does not block new work.
    late = RobotState("a", [goto("q1", "d", deadline=1.0)])
    assert isinstance(p.bid(goto("t3", "e"), late), Proposal)


# -- Participant: accept-proposal changes the queue --------------------------------------------

def test_accept_inserts_at_the_bid_position_and_reject_forgets_the_bid():
    p = Participant("r1", tt)
    state = RobotState("a", [goto("q1", "d"), goto("q2", "e")])
    bid = p.bid(goto("t", "b"), state, round=2)
    assert bid.cost == pytest.approx(0.0)
    ins = p.on_accept_proposal(AcceptProposal("r1", "t", 2), state)
    assert isinstance(ins, Insertion) and ins.position == 0 and ins.cost == bid.cost
    assert [q.id for q in state.queue] == ["t", "q1", "q2"]
    # A duplicated accept changes nothing.
    again = p.on_accept_proposal(AcceptProposal("r1", "t", 2), state)
    assert again.position == 0 and [q.id for q in state.queue] == ["t", "q1", "q2"]
    # reject-proposal: the bid is forgotten, a later accept fails.
    p.bid(goto("u", "c"), state, round=1)
    p.on_reject_proposal(RejectProposal("r1", "u", 1))
    fail = p.on_accept_proposal(AcceptProposal("r1", "u", 1), state)
    assert isinstance(fail, Failure) and "no open proposal for task 'u' in round 1" in fail.reason


def test_a_task_that_ended_leaves_no_open_proposal_behind():
    """A reject that never arrives (the task ended: done by another robot, cancelled,
    given up) must not keep the bid for good: forget() drops it."""
    p = Participant("r1", tt)
    state = RobotState("a")
    p.bid(goto("t", "b"), state, round=1)
    p.bid(goto("u", "c"), state, round=1)
    assert p.open_proposals() == 2
    p.forget("t")
    p.forget("never-bid")
    assert p.open_proposals() == 1
    assert isinstance(p.on_accept_proposal(AcceptProposal("r1", "t", 1), state), Failure)


def test_accept_for_another_round_fails_and_keeps_the_open_bid():
    p = Participant("r1", tt)
    state = RobotState("a")
    p.bid(goto("t", "b"), state, round=3)
    assert isinstance(p.on_accept_proposal(AcceptProposal("r1", "t", 2), state), Failure)
    assert isinstance(p.on_accept_proposal(AcceptProposal("r1", "t", 3), state), Insertion)


def test_accept_after_the_queue_changed_recomputes_the_position():
    p = Participant("r1", tt)
    state = RobotState("a", [goto("q1", "d")])
    p.bid(goto("t", "e"), state, round=1)  # cheapest now: before q1
    state.queue.insert(0, goto("q0", "e"))  # meanwhile the robot got a task at e
    ins = p.on_accept_proposal(AcceptProposal("r1", "t", 1), state)
    assert ins.cost == pytest.approx(0.0)  # e is already visited: no extra driving
    assert [q.id for q in state.queue] in (["t", "q0", "q1"], ["q0", "t", "q1"])


def test_accept_that_no_longer_fits_answers_failure():
    p = Participant("r1", tt, RobotProfile(max_queue=1))
    state = RobotState("a")
    p.bid(goto("t", "b"), state, round=1)
    state.queue.append(goto("q", "c"))  # won something else meanwhile
    fail = p.on_accept_proposal(AcceptProposal("r1", "t", 1), state)
    assert fail == Failure("r1", "t", "BUSY: queue full (1/1 tasks) (the queue changed "
                                      "since the bid)")
    assert [q.id for q in state.queue] == ["q"]


def test_failed_award_goes_back_to_the_ledger_and_is_re_announced(tmp_path):
    """The whole loop: ledger round -> cfp -> bids -> award (CAS) -> failure -> new round."""
    robots = {"r1": Participant("r1", tt), "r2": Participant("r2", tt)}
    states = {"r1": RobotState("b"), "r2": RobotState("d")}
    with TaskLedger(tmp_path / "t.db") as ledger:
        ledger.submit(goto("t", "c"), 0.0)
        rec = ledger.transition("t", TaskState.ANNOUNCED, 0.0)
        ini = Initiator(rec.task, rec.round, robots, 0.0, 1.0)
        for r, p in robots.items():
            ini.on_message(p.on_cfp(ini.cfp, states[r]), 0.1)
        accept, reject = ini.tick(0.1)
        # r1 (at b) and r2 (at d) both bid cost 10, eta 10: the name breaks the tie.
        assert (accept.robot, reject.robot) == ("r1", "r2")
        ledger.transition("t", TaskState.AWARDED, 0.1, robot=accept.robot,
                          auction_round=accept.round)
        robots["r2"].on_reject_proposal(reject)
        states["r1"].queue += [goto("x1", "a")]  # r1's plan changed; make the task not fit
        robots["r1"].profile = RobotProfile(max_queue=1)
        fail = robots["r1"].on_accept_proposal(accept, states["r1"])
        assert isinstance(fail, Failure)
        rec = ledger.transition("t", TaskState.QUEUED, 0.2, robot="r1", reason=fail.reason)
        assert rec.attempts == 1 and rec.robot is None
        rec = ledger.transition("t", TaskState.ANNOUNCED, 0.3)
        ini = Initiator(rec.task, rec.round, robots, 0.3, 1.0)
        for r, p in robots.items():
            ini.on_message(p.on_cfp(ini.cfp, states[r]), 0.4)
        accept, = ini.tick(0.4)
        assert (accept.robot, accept.round) == ("r2", 2)
        ledger.transition("t", TaskState.AWARDED, 0.4, robot="r2", auction_round=2)
        assert isinstance(robots["r2"].on_accept_proposal(accept, states["r2"]), Insertion)
        assert [q.id for q in states["r2"].queue] == ["t"]


# -- batch allocation ----------------------------------------------------------------------------

def random_instance(seed, n_robots, n_tasks):
    rng = np.random.default_rng(seed)
    pts = {f"start{i}": rng.uniform(0, 100, 2) for i in range(n_robots)}
    pts |= {f"pick{i}": rng.uniform(0, 100, 2) for i in range(n_tasks)}
    pts |= {f"drop{i}": rng.uniform(0, 100, 2) for i in range(n_tasks)}

    def travel(u, v):
        return float(np.linalg.norm(pts[u] - pts[v]))

    tasks = [pd(f"t{i}", f"pick{i}", f"drop{i}") for i in range(n_tasks)]
    robots = {f"r{i}": RobotState(f"start{i}") for i in range(n_robots)}
    return tasks, robots, travel


@pytest.mark.parametrize("seed", range(8))
def test_matching_award_is_optimal_with_one_task_per_robot(seed):
    tasks, robots, travel = random_instance(seed, 7, 7)
    names = sorted(robots)
    cost = np.array([[route_time(robots[r].position, [t], travel) for t in tasks]
                     for r in names])
    rows, cols = linear_sum_assignment(cost)
    res = sequential_auction(tasks, robots, travel, profiles=RobotProfile(max_queue=1),
                             award="matching")
    assert res.total_cost == pytest.approx(cost[rows, cols].sum())
    greedy = sequential_auction(tasks, robots, travel, profiles=RobotProfile(max_queue=1),
                                award="cheapest")
    assert greedy.total_cost >= res.total_cost - 1e-9


def reference_ssi(tasks, robots, travel):
    """Koenig's sequential single-item auction written the slow, obvious way."""
    queues = {r: [] for r in robots}
    left = list(tasks)
    while left:
        best = None
        for k, t in enumerate(left):
            for r in sorted(robots):
                base = route_time(robots[r].position, queues[r], travel)
                c, pos = min((route_time(robots[r].position,
                                         queues[r][:i] + [t] + queues[r][i:], travel) - base, i)
                             for i in range(len(queues[r]) + 1))
                if best is None or c < best[0] - 1e-9:
                    best = (c, r, k, pos)
        c, r, k, pos = best
        queues[r].insert(pos, left.pop(k))
    return {r: [t.id for t in q] for r, q in queues.items()}


@pytest.mark.parametrize("seed", range(5))
def test_cheapest_award_is_koenigs_sequential_single_item_auction(seed):
    tasks, robots, travel = random_instance(100 + seed, 3, 7)
    res = sequential_auction(tasks, robots, travel, award="cheapest", improve=False)
    assert {r: [t.id for t in q] for r, q in res.queues.items()} == \
        reference_ssi(tasks, robots, travel)


@pytest.mark.parametrize("award", ["matching", "cheapest", "assignment"])
def test_batch_assigns_every_task_once_and_accounts_its_cost(award):
    tasks, robots, travel = random_instance(7, 4, 14)
    robots["r0"].queue.append(pd("old", "pick0", "drop1"))
    before = {r: list(s.queue) for r, s in robots.items()}
    plain = sequential_auction(tasks, robots, travel, award=award, improve=False)
    res = sequential_auction(tasks, robots, travel, award=award)
    assert {r: s.queue for r, s in robots.items()} == before  # input untouched
    ids = [t.id for q in res.queues.values() for t in q]
    assert sorted(ids) == sorted([t.id for t in tasks] + ["old"])
    assert not res.unassigned and set(res.winner) == {t.id for t in tasks}
    for task_id, robot in res.winner.items():
        assert task_id in [t.id for t in res.queues[robot]]
    total = sum(route_time(robots[r].position, res.queues[r], travel)
                - route_time(robots[r].position, robots[r].queue, travel) for r in robots)
    assert res.total_cost == pytest.approx(total)
    assert res.total_cost <= plain.total_cost + 1e-9  # the improvement step never hurts
    # Deterministic, whatever the order robots are given in.
    again = sequential_auction(tasks, dict(reversed(list(robots.items()))), travel, award=award)
    assert again.queues == res.queues


def test_batch_reports_tasks_nobody_can_take_and_respects_queue_limits():
    tasks = [goto(f"t{k}", s) for k, s in enumerate(["b", "c", "d", "e", "island", "a", "b", "c"])]
    robots = {"r1": RobotState("a"), "r2": RobotState("d"), "r3": RobotState("c")}
    res = sequential_auction(tasks, robots, tt, profiles=RobotProfile(max_queue=2))
    assert res.unassigned["t4"] == "no robot can reach station 'island'"
    assert sorted(len(q) for q in res.queues.values()) == [2, 2, 2]
    (full,) = set(res.unassigned) - {"t4"}
    assert res.unassigned[full] == "every robot's task queue is full"


def test_batch_profiles_per_robot():
    tasks = [pd("heavy", "a", "b", payload_kg=80), pd("light", "a", "b", payload_kg=5)]
    robots = {"small": RobotState("a"), "big": RobotState("d")}
    profiles = {"small": RobotProfile(capacity_kg=10), "big": RobotProfile(capacity_kg=100)}
    res = sequential_auction(tasks, robots, tt, profiles=profiles)
    assert res.winner == {"heavy": "big", "light": "small"}  # small is nearer, too weak


def test_batch_rejects_duplicate_ids_and_unknown_rules():
    with pytest.raises(ValueError, match="task id 't' appears twice"):
        sequential_auction([goto("t", "a"), goto("t", "b")], {"r": RobotState("a")}, tt)
    with pytest.raises(ValueError, match="award must be"):
        sequential_auction([], {"r": RobotState("a")}, tt, award="vickrey")
    empty = sequential_auction([], {}, tt)
    assert empty.total_cost == 0 and empty.rounds == 0
    none = sequential_auction([goto("t", "a")], {}, tt)
    assert none.unassigned == {"t": "no robot to bid on task 't' (empty fleet)"}


def test_improvement_re_auctions_tasks_to_cheaper_places():
    tasks, robots, travel = random_instance(0, 3, 8)
    plain = sequential_auction(tasks, robots, travel, award="cheapest", improve=False)
    better = sequential_auction(tasks, robots, travel, award="cheapest")
    assert plain.moves == 0 and better.moves == 2
    assert better.total_cost == pytest.approx(620.950, abs=1e-3)
    assert better.total_cost < plain.total_cost == pytest.approx(660.380, abs=1e-3)
    assert sorted(t.id for q in better.queues.values() for t in q) == sorted(t.id for t in tasks)


# -- bid objectives -------------------------------------------------------------------------

def test_completion_objective_spreads_work_that_travel_piles_on_the_busy_robot():
    """A robot at b with three trips queued (a, b, a), another idle at e: a new task at c
    adds 20 s of driving to the busy one and 22.4 s to the idle one (travel: busy wins),
    but the busy one would finish it at 50 s at the earliest, or delay its queue; the idle
    one at 22.4 s (completion: idle wins)."""
    queue = [goto("q1", "a"), goto("q2", "b"), goto("q3", "a")]
    task = goto("new", "c")
    bids = {}
    for objective in ("travel", "completion"):
        prof = RobotProfile(objective=objective)
        busy = Participant("busy", tt, prof).bid(task, RobotState("b", list(queue), now=0.0))
        idle = Participant("idle", tt, prof).bid(task, RobotState("e", [], now=0.0))
        bids[objective] = (busy.cost, idle.cost)
    far = math.dist(POS["e"], POS["c"])
    assert bids["travel"] == pytest.approx((20.0, far))
    assert bids["completion"] == pytest.approx((50.0, far))


def test_completion_objective_counts_the_delay_of_the_later_tasks():
    # inserting "x" at b before q1 (at c, 20 s away) delays q1 by 0 (b is on the way)...
    prof = RobotProfile(objective="completion")
    p = Participant("r", tt, prof)
    state = RobotState("a", [goto("q1", "c")], now=0.0)
    on_the_way = p.bid(goto("x", "b"), state)
    assert on_the_way.cost == pytest.approx(10.0)        # done at 10 s, q1 not delayed
    # ... a detour to e (10 s off, 10 s back... sqrt(500) to c) delays q1
    detour = p.bid(goto("y", "e"), state)
    first = 10.0 + (10.0 + math.dist(POS["e"], POS["c"]) - 20.0)   # before q1
    last = 20.0 + math.dist(POS["c"], POS["e"])                      # after q1
    assert detour.cost == pytest.approx(min(first, last))
    # time in hand counts: the same robot still busy for 15 s bids 15 s more
    later = p.bid(goto("x", "b"), RobotState("a", [goto("q1", "c")], now=0.0, free_at=15.0))
    assert later.cost == pytest.approx(on_the_way.cost + 15.0)


def test_unknown_objective_is_rejected_with_the_choices():
    with pytest.raises(ValueError, match="objective.*travel, completion.*'fastest'"):
        RobotProfile(objective="fastest")

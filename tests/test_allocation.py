"""Batch Contract Net rounds (fleet_coord.core.allocation.Rebalancer): completion-time bids,
min-cost matching, hysteresis, withdrawals of unstarted tasks, refusals."""
import itertools
import math

import numpy as np
import pytest

from fleet_coord.core.allocation import BatchProposals, Rebalancer, Withdraw
from fleet_coord.core.contract_net import AcceptProposal, RejectProposal

INF = math.inf


def kinds(actions):
    return sorted((type(a).__name__, a.robot, a.task_id) for a in actions)


def test_a_round_awards_the_cheapest_matching_one_task_per_robot():
    rng = np.random.default_rng(5)
    for _ in range(20):
        cost = rng.uniform(1, 50, (4, 6))
        robots, tasks = [f"r{i}" for i in range(4)], [f"t{j}" for j in range(6)]
        out = Rebalancer().decide(BatchProposals(robots, tasks, cost), {})
        chosen = {r: t for t, r in out.award.items() if r is not None}
        assert sorted(chosen) == robots                      # every robot gets one task
        total = sum(cost[robots.index(r), tasks.index(t)] for r, t in chosen.items())
        best = min(sum(cost[i, j] for i, j in enumerate(p))
                   for p in itertools.permutations(range(6), 4))
        assert total == pytest.approx(best)


def test_a_task_moves_only_when_that_saves_more_than_the_keep_bonus():
    robots, tasks = ["a", "b"], ["t"]
    keep = Rebalancer(keep_bonus=2.0)
    out = keep.decide(BatchProposals(robots, tasks, [[10.0], [8.5]]), {"t": "a"})
    assert out.award == {"t": "a"} and out.moved == 0 and not any(
        isinstance(m, (Withdraw, AcceptProposal)) for m in out.actions)
    out = keep.decide(BatchProposals(robots, tasks, [[10.0], [7.0]]), {"t": "a"})
    assert out.award == {"t": "b"} and out.moved == 1
    assert ("AcceptProposal", "b", "t") in kinds(out.actions)
    assert ("Withdraw", "a", "t") in kinds(out.actions)
    withdraw = next(m for m in out.actions if isinstance(m, Withdraw))
    assert withdraw.performative == "cancel" and "b" in withdraw.reason


def test_a_robot_that_falls_behind_in_traffic_loses_its_unstarted_task():
    # Round 1: "slow" is nearest and wins. Round 2: it is stuck (its completion time grew),
    # the other robot freed up nearby: the task moves; the stuck robot gets the other one.
    r = Rebalancer(keep_bonus=2.0)
    robots, tasks = ["slow", "free"], ["near", "far"]
    first = r.decide(BatchProposals(robots, tasks, [[5, 30], [20, 40]]), {})
    assert first.award == {"near": "slow", "far": "free"}
    second = r.decide(BatchProposals(robots, tasks, [[25, 45], [6, 40]]), first.award)
    assert second.award == {"near": "free", "far": "slow"} and second.moved == 2
    assert {("Withdraw", "slow", "near"), ("AcceptProposal", "free", "near"),
            ("Withdraw", "free", "far"), ("AcceptProposal", "slow", "far")} \
        <= set(kinds(second.actions))


def test_refusals_are_never_awarded_and_a_task_nobody_can_do_stays_open():
    robots, tasks = ["a", "b"], ["x", "y", "z"]
    cost = [[INF, 3.0, INF],      # a refuses x (battery, payload, unreachable) and z
            [INF, 1.0, 9.0]]
    out = Rebalancer().decide(BatchProposals(robots, tasks, cost), {"x": "a"})
    assert out.award == {"x": None, "y": "a", "z": "b"}
    assert ("Withdraw", "a", "x") in kinds(out.actions)      # its holder can no longer do it
    everyone_refuses = Rebalancer().decide(BatchProposals(robots, ["x"], [[INF], [INF]]), {})
    assert everyone_refuses.award == {"x": None} and everyone_refuses.actions == []


def test_bidders_that_get_nothing_hear_one_reject_for_the_batch():
    out = Rebalancer().decide(BatchProposals(["a", "b", "c"], ["t"], [[1.0], [2.0], [INF]]),
                              {})
    rejects = [m for m in out.actions if isinstance(m, RejectProposal)]
    assert [(m.robot, m.task_id) for m in rejects] == [("b", "")]   # c refused: no reject


def test_bad_proposals_are_refused():
    with pytest.raises(ValueError, match="2 robots x 1 tasks"):
        BatchProposals(["a", "b"], ["t"], [[1.0, 2.0]])
    with pytest.raises(ValueError, match=">= 0"):
        BatchProposals(["a"], ["t"], [[-1.0]])
    with pytest.raises(ValueError, match="keep_bonus"):
        Rebalancer(keep_bonus=-1)


# -- the pool: one next task per robot, re-balanced ---------------------------------------

def _pool(positions, profiles=None, keep_next=False):
    from fleet_coord.core.allocation import TaskPool
    from fleet_coord.core.contract_net import Participant, RobotProfile
    # stations on a line: travel time = distance
    travel = lambda a, b: abs(int(a[1:]) - int(b[1:]))  # noqa: E731
    profiles = profiles or {}
    parts = {r: Participant(r, travel, profiles.get(r, RobotProfile(objective="completion")))
             for r in positions}
    pool = TaskPool(parts, keep_next=keep_next)
    for r, p in positions.items():
        pool.add_robot(r, p, 0.0)
    return pool


def test_the_pool_gives_each_robot_one_next_task_and_the_rest_wait():
    from fleet_coord.core.tasks import Task
    pool = _pool({"a": "s0", "b": "s50"})
    for i, (p, d) in enumerate([(1, 2), (2, 3), (49, 48), (3, 4)]):
        pool.add_task(Task(f"t{i}", "pick_and_drop", [f"s{p}", f"s{d}"]))
    out = pool.round(0.0)
    assert out.award == {"t0": "a", "t1": None, "t2": "b", "t3": None}
    assert pool.start_next("a").id == "t0" and pool.start_next("a") is None
    pool.finished("a", "s2", 2.0)
    pool.round(2.0)
    assert pool.slots["a"].next == "t1"   # the nearest of those left, once a is free


def test_an_unstarted_task_moves_when_its_robot_falls_behind():
    from fleet_coord.core.tasks import Task
    pool = _pool({"a": "s0", "b": "s100"})
    pool.add_task(Task("t", "goto", ["s90"]))
    assert pool.round(0.0).award == {"t": "b"}
    # b is held up (its started work now ends at 500 s); a has come close meanwhile
    pool.slots["b"].free_at = 500.0
    pool.slots["a"].position = "s80"
    out = pool.round(10.0)
    assert out.award == {"t": "a"} and out.moved == 1
    assert {("Withdraw", "b", "t"), ("AcceptProposal", "a", "t")} <= set(kinds(out.actions))
    assert pool.start_next("b") is None and pool.start_next("a").id == "t"


def test_with_keep_next_an_awarded_task_stays_and_its_robot_gets_no_other():
    # what the dispatcher's pool does (core.dispatch): a next task is not moved
    from fleet_coord.core.tasks import Task
    pool = _pool({"a": "s0", "b": "s100"}, keep_next=True)
    pool.add_task(Task("t", "goto", ["s90"]))
    assert pool.round(0.0).award == {"t": "b"}
    pool.slots["b"].free_at = 500.0
    pool.slots["a"].position = "s80"
    pool.add_task(Task("u", "goto", ["s95"]))
    out = pool.round(10.0)
    assert out.award == {"u": "a"} and out.moved == 0   # b holds t; u goes to a
    assert pool.slots["b"].next == "t" and pool.slots["a"].next == "u"


def test_the_pool_never_awards_what_a_robot_refuses():
    from fleet_coord.core.contract_net import RobotProfile
    from fleet_coord.core.tasks import Task
    pool = _pool({"small": "s0", "big": "s100"},
                 {"small": RobotProfile(capacity_kg=5, objective="completion"),
                  "big": RobotProfile(capacity_kg=50, objective="completion")})
    pool.add_task(Task("heavy", "pick_and_drop", ["s1", "s2"], payload_kg=20))
    assert pool.round(0.0).award == {"heavy": "big"}
    pool.add_task(Task("huge", "pick_and_drop", ["s1", "s2"], payload_kg=99))
    out = pool.round(1.0)
    assert out.award["huge"] is None
    assert "payload 99 kg is over every robot's capacity" in pool.why_unawarded("huge")

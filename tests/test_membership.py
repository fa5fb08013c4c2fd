"""Fleet membership (core): robots join by speaking, leave when removed; a removed robot's
old agent is not heard again, a new agent re-admits it; when a removal is refused."""
import math

from fleet_coord.core.liveness import LivenessTracker
from fleet_coord.core.membership import Membership, incarnation_of, removal_refusal
from fleet_coord.core.reservations import ReservationTable
from fleet_coord.core.traffic import TrafficAuthority

from test_traffic import line_exclusion

INF = math.inf


def test_robots_join_by_speaking():
    m = Membership()
    assert m.heard("a", b"gid-1") and m.heard("b", None)
    assert not m.is_removed("a") and m.incarnation == {"a": b"gid-1"}


def test_removed_robots_old_agent_is_ignored_and_a_new_agent_rejoins():
    m = Membership()
    m.heard("a", b"gid-1")
    m.remove("a")
    assert m.is_removed("a")
    assert not m.heard("a", b"gid-1")      # the old agent (missed the removal) is ignored
    assert not m.heard("a", None)          # no incarnation: cannot tell it is new
    assert m.is_removed("a")
    assert m.heard("a", b"gid-2")          # an agent started after the removal
    assert not m.is_removed("a") and m.incarnation["a"] == b"gid-2"
    # removed again: now gid-2 is the one ignored
    m.remove("a")
    assert not m.heard("a", b"gid-2") and m.heard("a", b"gid-3")


def test_robot_removed_before_it_was_ever_heard_rejoins_on_any_state():
    m = Membership()
    m.remove("ghost")                      # e.g. it only held reservations from a table log
    assert m.is_removed("ghost")
    assert m.heard("ghost", None) and not m.is_removed("ghost")


def test_removal_refusals():
    # unknown: refused, naming the robot and the known ones
    why = removal_refusal("r9", known=False, alive=False, known_robots=["r1", "r2"])
    assert "unknown robot 'r9'" in why and "r1, r2" in why
    assert "no robots" in removal_refusal("r9", known=False, alive=False)
    # alive and working: refused unless forced, naming its tasks
    why = removal_refusal("r1", known=True, alive=True, tasks=["t1", "", "t2"])
    assert "'r1'" in why and "t1, t2" in why and "force" in why
    assert removal_refusal("r1", known=True, alive=True, tasks=["t1"], force=True) is None
    # alive and idle, or lost (its tasks were re-announced when it was lost): allowed
    assert removal_refusal("r1", known=True, alive=True, tasks=["", ""]) is None
    assert removal_refusal("r1", known=True, alive=False, tasks=["t1"]) is None


def test_incarnation_of_message_info():
    assert incarnation_of({"publisher_gid": {"data": [1, 2, 3], "implementation_identifier": "x"}}) \
        == bytes([1, 2, 3])
    assert incarnation_of({"publisher_gid": None}) is None
    assert incarnation_of(None) is None


def test_removing_a_lost_robot_frees_its_blocked_spot_and_forgets_it():
    """The traffic authority's part of a removal: the spot a lost robot kept blocked
    "until it returns or is removed" is free again, and it is neither alive nor lost."""
    ta = TrafficAuthority(ReservationTable(line_exclusion(10), 10))
    lv = LivenessTracker(lost_after=1.0)
    lv.heard("a", 0.0)
    ta.reserve("a", [(3, 0, 2), (4, 2, INF)])
    assert lv.check(2.5) == ["a"]
    out = ta.robot_lost("a", 2.5, lv.last_seen["a"])
    assert out.blocked and not ta.reserve("b", [(out.blocked[0], 10, 11)]).ok
    assert ta.robot_removed("a") >= 1
    lv.forget("a")
    assert ta.table.reservations("a") == [] and "a" not in ta.lost
    assert ta.reserve("b", [(r, 10, 11) for r in out.blocked]).ok
    assert lv.check(100.0) == [] and lv.alive() == []


def test_a_replaced_incarnation_is_not_heard_again():
    m = Membership()
    assert m.heard("a", b"gid-1") and m.heard("a", b"gid-2")
    assert not m.heard("a", b"gid-1")        # a late state of the agent gid-2 replaced
    assert m.incarnation["a"] == b"gid-2" and m.heard("a", b"gid-2")
    assert m.heard("a", b"gid-3") and not m.heard("a", b"gid-2")

"""The traffic authority: lost robots keep their spot blocked, others replan around it."""
import math

import pytest

from fleet_coord.core.reservations import ReservationTable
from fleet_coord.core.traffic import RobotLostError, TrafficAuthority

INF = math.inf


def line_exclusion(n):
    """Resources 0..n-1 on a line; each is exclusive with itself only (cells of a corridor)."""
    return lambda r: (r,)


def test_lost_robot_keeps_what_it_committed_and_the_spots_since_it_was_last_heard():
    ta = TrafficAuthority(ReservationTable(line_exclusion(10), 10))
    # a: at 0 until 2, at 1 until 4, at 2 from 4 on (parked)
    assert ta.reserve("a", [(0, 0, 2), (1, 2, 4), (2, 4, INF)]).ok
    out = ta.robot_lost("a", now=3.0, last_seen=1.5)
    # it may have stopped anywhere since t=1.5 (in 0 or 1), or be driving on (cut off)
    assert out.blocked == [0, 1]
    held = {(r.resource, r.t_end) for r in ta.table.reservations("a") if r.t_end > 3.0}
    assert held == {(0, INF), (1, INF), (2, INF)}
    assert not ta.reserve("b", [(2, 5, INF)]).ok
    assert not ta.reserve("b", [(1, 100, 101)]).ok
    assert ta.reserve("b", [(3, 5, INF)]).ok


def test_located_lost_robot_frees_all_but_the_spot_it_stands_on():
    ta = TrafficAuthority(ReservationTable(line_exclusion(10), 10))
    assert ta.reserve("a", [(0, 0, 2), (1, 2, 4), (2, 4, INF)]).ok
    ta.robot_lost("a", now=3.0, last_seen=1.5)
    out = ta.robot_located("a", [0], now=3.5)        # its odometry: standing in 0
    assert out.blocked == [0]
    assert ta.reserve("b", [(2, 5, INF)]).ok          # its goal is free again
    assert ta.reserve("c", [(1, 5, 6)]).ok
    assert not ta.reserve("c", [(0, 100, 101)]).ok
    assert ta.table.holder_at(0, 1e9) == "a"
    # a robot that is not lost is not moved by a stray location
    assert ta.robot_located("b", [7], now=4.0).blocked == [7]
    assert ta.table.holder_at(7, 5.0) is None


def test_lost_robot_cannot_reserve_until_it_returns():
    ta = TrafficAuthority(ReservationTable(line_exclusion(10), 10))
    ta.reserve("a", [(0, 0, INF)])
    ta.robot_lost("a", 1.0)
    with pytest.raises(RobotLostError, match="'a'"):
        ta.reserve("a", [(3, 2, 3)])
    ta.robot_returned("a")
    assert ta.reserve("a", [(3, 2, 3)]).ok


def test_blocking_revokes_other_robots_future_passage_through_the_spot():
    ta = TrafficAuthority(ReservationTable(line_exclusion(10), 10))
    assert ta.reserve("a", [(5, 0, 3)]).ok          # a plans to leave cell 5 at t=3
    assert ta.reserve("b", [(4, 0, 3), (5, 3, 4), (6, 4, INF)]).ok  # b follows through 5
    out = ta.robot_lost("a", now=2.0)                 # a dies inside cell 5
    assert out.blocked == [5]
    assert out.revoked == {"b": 3.0}                  # b must replan from t=3
    b = [(r.resource, r.t_start, r.t_end) for r in ta.table.reservations("b")]
    assert b == [(4, 0, 3)]
    # the table is conflict-free and 5 is held by a forever
    assert ta.table.holder_at(5, 1e9) == "a"


def test_removed_robot_frees_everything():
    ta = TrafficAuthority(ReservationTable(line_exclusion(10), 10))
    ta.reserve("a", [(0, 0, INF)])
    ta.robot_lost("a", 1.0)
    assert ta.robot_removed("a") >= 1
    assert ta.reserve("b", [(0, 2, INF)]).ok

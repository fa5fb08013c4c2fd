"""The traffic authority: lost robots keep their spot blocked, others replan around it."""
import math

import pytest

from fleet_coord.core.reservations import ReservationTable
from fleet_coord.core.traffic import RobotLostError, TrafficAuthority

INF = math.inf


def line_exclusion(n):
    """Resources 0..n-1 on a line; each is exclusive with itself only (cells of a corridor)."""
    return lambda r: (r,)


def test_lost_robot_keeps_its_spot_and_loses_its_future():
    ta = TrafficAuthority(ReservationTable(line_exclusion(10), 10))
    # a: at 0 until 2, at 1 until 4, at 2 from 4 on (parked)
    assert ta.reserve("a", [(0, 0, 2), (1, 2, 4), (2, 4, INF)]).ok
    out = ta.robot_lost("a", now=3.0)
    assert out.blocked == [1]
    held = ta.table.reservations("a")
    assert [(r.resource, r.t_start, r.t_end) for r in held if r.t_end > 3.0] == [(1, 3.0, INF)]
    # its future spot is free for others, its current spot is not
    assert ta.reserve("b", [(2, 5, INF)]).ok
    assert not ta.reserve("b", [(1, 100, 101)]).ok


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

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
    # b stops in 4, where it is: 4 stays its own until it plans again
    b = [(r.resource, r.t_start, r.t_end) for r in ta.table.reservations("b")]
    assert b == [(4, 0, 2), (4, 2, INF)]
    assert not ta.reserve("c", [(4, 10, 11)]).ok
    # the table is conflict-free and 5 is held by a forever
    assert ta.table.holder_at(5, 1e9) == "a"


def neighbour_exclusion(r):
    """Cells of a corridor whose footprints reach into the next cell (real stars do)."""
    return tuple(x for x in (r - 1, r, r + 1) if 0 <= x < 10)


def test_a_block_never_takes_the_space_a_robot_is_in():
    """a (lost) held 5 and 6 since it was last heard; b entered 4 - which touches 5 -
    after a left 5 and drives away from it. 4 is where b is now: the block of 5 waits
    until b has left 4, b keeps its whole path (it was cut to nothing at `now`: b stood
    in 4 holding nothing while others could be granted it)."""
    ta = TrafficAuthority(ReservationTable(neighbour_exclusion, 10))
    assert ta.reserve("a", [(5, 0, 1), (6, 0.8, INF)]).ok
    assert ta.reserve("b", [(4, 1.5, 4), (3, 3.5, INF)]).ok
    out = ta.robot_lost("a", now=2.0, last_seen=0.5)
    assert out.blocked == [5, 6] and out.revoked == {}
    b = sorted((r.resource, r.t_start, r.t_end) for r in ta.table.reservations("b"))
    assert b == [(3, 3.5, INF), (4, 1.5, 4)]
    a5 = [(r.t_start, r.t_end) for r in ta.table.reservations("a") if r.resource == 5]
    assert a5 == [(0, 1), (4, INF)]                   # blocked once b has left 4
    assert not ta.reserve("c", [(4, 2.5, 3)]).ok
    assert not ta.reserve("c", [(5, 5, 6)]).ok


def test_a_revoked_robot_keeps_where_it_is_and_the_revocation_cascades():
    """b is revoked from the clash on (it wanted 5 after a); it keeps 4, where it is, for
    good - so c, which planned to pass 4 after b, loses that passage and keeps 2, where
    it is, in turn. Every robot holds where it stands; the table stays conflict-free."""
    ta = TrafficAuthority(ReservationTable(line_exclusion(10), 10))
    assert ta.reserve("a", [(5, 0, 3)]).ok
    assert ta.reserve("b", [(4, 0, 3), (5, 3, 4), (6, 4, INF)]).ok
    assert ta.reserve("c", [(2, 0, 5), (3, 4, 6), (4, 5.5, 7), (5, 7, INF)]).ok
    out = ta.robot_lost("a", now=2.0)
    assert out.revoked == {"b": 3.0, "c": 5.5}
    for robot, spot in (("a", 5), ("b", 4), ("c", 2)):
        assert ta.table.holder_at(spot, 1e9) == robot
    # c keeps what it held before the cut (it may be in 3 when it hears of it)
    assert ta.table.holder_at(3, 5.0) == "c" and ta.table.holder_at(3, 6.5) is None


def test_a_revoked_robot_keeps_what_it_can_brake_into():
    """a drives through 2, 3, 4 at speed when d parks in 4 (its future passage revoked
    from 3.0): hearing of it and braking take a, later than its plan, into the holds
    that begin within brake_horizon (1 s) - 2 and 3 - so it keeps both for good, each
    from when its hold begins; c, which planned to pass 2 after a, is revoked in turn."""
    def run(**kw):
        ta = TrafficAuthority(ReservationTable(line_exclusion(10), 10), **kw)
        assert ta.reserve("a", [(1, 0, 1.2), (2, 1.0, 2.2), (3, 2.0, 3.2), (4, 3.0, 4.2),
                                (5, 4.0, INF)]).ok
        assert ta.reserve("c", [(0, 0, 3.0), (1, 3.0, 4.0), (2, 4.0, 5.0), (3, 5.0, INF)]).ok
        assert ta.request("d", [(4, 1.5, INF)], replace_from=1.5).ok   # d parks in 4
        return ta
    ta = run()
    assert ta.table.holder_at(2, 1e9) == "a" and ta.table.holder_at(3, 1e9) == "a"
    assert ta.table.holder_at(4, 3.5) == "d" and ta.table.holder_at(5, 1e9) is None
    assert ta.table.holder_at(0, 1e9) == "c" and ta.table.holder_at(2, 4.5) == "a"
    assert ta.reserve("e", [(3, 1.6, 1.9)]).ok       # before a's hold of 3 begins
    # with no horizon it keeps only where it is: 3 runs out at its planned time
    ta = run(brake_horizon=0.0)
    assert ta.table.holder_at(2, 1e9) == "a" and ta.table.holder_at(3, 4.0) is None
    for bad in (-1.0, math.nan, math.inf):
        with pytest.raises(ValueError, match="brake_horizon"):
            TrafficAuthority(ReservationTable(line_exclusion(10), 10), brake_horizon=bad)
    with pytest.raises(ValueError, match="discovery_grace"):
        TrafficAuthority(ReservationTable(line_exclusion(10), 10), discovery_grace=math.nan)


def test_blocking_spares_a_robot_that_is_lost_too_its_commitment_stands():
    """When the authority's own link is cut every robot goes silent at once: b cannot hear
    a revocation and may be driving through a's spot as committed, so b keeps it and a's
    block leaves out b's time there (the table stays conflict-free)."""
    from fleet_coord.core.traffic import RobotLost
    ta = TrafficAuthority(ReservationTable(line_exclusion(10), 10), lost_after=1.0)
    for r in ("a", "b"):
        ta.on_robot_state(0.0, r)
    assert ta.reserve("a", [(5, 0, 3)]).ok
    assert ta.reserve("b", [(4, 0, 3), (5, 3, 4), (6, 4, INF)]).ok
    lost = {a.robot: a.outcome for a in ta.tick(2.0) if isinstance(a, RobotLost)}
    assert sorted(lost) == ["a", "b"]                 # both silent since 0
    assert lost["a"].revoked == {} and lost["a"].yielded == {"b"}
    b = [(r.resource, r.t_start, r.t_end) for r in ta.table.reservations("b")]
    assert (5, 3, 4) in b and (6, 4, INF) in b
    a5 = sorted((r.t_start, r.t_end) for r in ta.table.reservations("a") if r.resource == 5)
    assert a5[0][0] <= 2.0 and a5[-1] == (4, INF)     # blocked before and after b passes
    assert ta.table.holder_at(5, 3.5) == "b"


def test_a_robot_that_parks_where_it_stands_is_given_its_spot():
    """b stopped in 4 with its holds run out (its re-commit refused, or its stop point
    gone): c's passage through 4 would drive into it. b's park - holding where it stands
    for good - revokes that passage (c keeps 3, where it is) instead of being refused and
    leaving b standing unheld. Not over a hold that has begun (c is in there) nor over a
    lost robot's commitment (it cannot hear a revocation); an ordinary commit is refused."""
    ta = TrafficAuthority(ReservationTable(line_exclusion(10), 10))
    assert ta.reserve("b", [(4, 0, 3)]).ok
    assert ta.reserve("c", [(3, 0, 6), (4, 6, 7), (5, 7, INF)]).ok
    assert not ta.request("b", [(4, 5, 6), (4, 6, INF)], replace_from=5).ok   # not a park
    assert ta.request("b", [(4, 5, INF)], replace_from=5).ok
    assert ta.table.holder_at(4, 6.5) == "b" and ta.table.holder_at(3, 1e9) == "c"
    assert ta.table.holder_at(5, 1e9) is None
    # c parks in 3 - where it is - with nothing to revoke: an ordinary grant
    assert ta.request("c", [(3, 5.5, INF)], replace_from=5.5).ok
    # d is in 6 already (its hold began): refused, d keeps it
    assert ta.reserve("d", [(6, 4, 8), (7, 8, INF)]).ok
    assert not ta.request("e", [(6, 5, INF)], replace_from=5).ok
    assert ta.table.holder_at(6, 7) == "d"
    # a lost robot's commitment stands
    assert ta.reserve("f", [(8, 4, 5), (9, 9, INF)]).ok
    ta.robot_lost("f", now=5.0)
    assert not ta.request("g", [(9, 6, INF)], replace_from=6).ok
    assert ta.table.holder_at(9, 10) == "f"


def test_a_joining_robot_holds_the_spot_it_reports_from_its_first_state():
    """A robot whose agent was cut off at start-up is first heard after others planned
    through the spot it stands on: from its first state that spot is held for it (others'
    passage revoked from the clash on) until its own first commit replaces it."""
    ta = TrafficAuthority(ReservationTable(line_exclusion(10), 10))
    assert ta.reserve("b", [(4, 0, 3), (5, 3, 4), (6, 4, INF)]).ok   # through c's spot 5
    ta.on_robot_state(1.0, "c")                       # no spot known yet: nothing held
    assert ta.table.reservations("c") == []
    ta.on_robot_state(1.1, "c", resource=5)
    assert [(r.resource, r.t_start, r.t_end) for r in ta.table.reservations("c")] == \
        [(5, 1.1, INF)]
    # b, revoked from 3, keeps 4 - where it is - until it plans again
    assert [(r.resource, r.t_end) for r in ta.table.reservations("b")] == [(4, 1.1), (4, INF)]
    assert ta.reserve("c", [(5, 1.5, 2), (6, 2, INF)], replace_from=1.5).ok   # it parks on
    ta.on_robot_state(2.5, "c", resource=6)           # holding something: not blocked again
    assert ta.table.holder_at(5, 10.0) is None and ta.table.holder_at(6, 10.0) == "c"
    # a new authority recovering its table leaves the spots to the recovery
    fresh = TrafficAuthority(ReservationTable(line_exclusion(10), 10))
    fresh.start_recovery(0.0, window=5.0, listen=1.0)
    fresh.on_robot_state(0.5, "d", resource=2)
    assert fresh.table.reservations("d") == [] and not fresh.expect("d", 2, 0.5)


def test_configured_robots_hold_their_start_from_the_authoritys_start_until_they_park():
    ta = TrafficAuthority(ReservationTable(line_exclusion(10), 10))
    assert ta.expect("a", 3, 0.0) and ta.expect("b", 7, 0.0)
    assert not ta.expect("c", 3, 0.0)                  # a's: warned, not held
    assert not ta.reserve("x", [(2, 1, 2), (3, 2, 3)]).ok   # nobody drives through a
    assert ta.reserve("a", [(3, 1.0, INF)], replace_from=1.0).ok   # its park replaces it
    assert not ta.expect("a", 5, 1.0)                  # the table knows it: not moved
    # b's agent never comes: its start stays held until it is removed
    result, _ = ta.remove_robot("b")
    assert result.ok and ta.table.holder_at(7, 10.0) is None


def test_removed_robot_frees_everything():
    ta = TrafficAuthority(ReservationTable(line_exclusion(10), 10))
    ta.reserve("a", [(0, 0, INF)])
    ta.robot_lost("a", 1.0)
    assert ta.robot_removed("a") >= 1
    assert ta.reserve("b", [(0, 2, INF)]).ok


# -- the authority around the table: requests, membership, liveness, locating, history --

def grid_authority(tmp_path=None, **kw):
    """A 5 x 1 corridor with real geometry (to locate robots) and, with tmp_path, a log."""
    import numpy as np
    from fleet_coord.core.roadmap import Footprint, GridMap, Roadmap
    from fleet_coord.core.table_log import TableLog
    roadmap = Roadmap.from_grid(GridMap(width=5, height=1, free=np.ones((1, 5), bool),
                                        path="<test>"))
    ex = roadmap.exclusion(Footprint(radius=0.1))
    if tmp_path is not None:
        log = TableLog(str(tmp_path / "table.log"), "rm1", fsync=False)
        return roadmap, TrafficAuthority.recover(log, ex, roadmap.num_resources, 0.0,
                                                 roadmap_id="rm1", **kw)
    return roadmap, TrafficAuthority(ReservationTable(ex.of, roadmap.num_resources),
                                     exclusion=ex, roadmap_id="rm1", **kw)


def test_requests_are_refused_with_the_reason_and_the_conflict_named():
    from fleet_coord.core.traffic import ReserveError
    _, ta = grid_authority()
    assert ta.request("a", [(0, 0.0, INF)]).ok
    r = ta.request("b", [(1, 0.0, 1.0), (0, 1.0, 2.0)])
    assert (r.ok, r.error, r.segment_index, r.conflict.robot) == (False, ReserveError.CONFLICT,
                                                                   1, "a")
    r = ta.request("b", [(1, 0.0, 1.0)], roadmap_id="other")
    assert r.error is ReserveError.ROADMAP_MISMATCH and "'other'" in r.message
    r = ta.request("b", [(99, 0.0, 1.0)])
    assert r.error is ReserveError.INVALID and "99" in r.message
    ta.robot_lost("a", 1.0)
    r = ta.request("a", [(2, 2.0, 3.0)])
    assert r.error is ReserveError.INVALID and "lost" in r.message


def test_silence_makes_a_robot_lost_once_its_odometry_locates_it_and_speaking_returns_it():
    from fleet_coord.core.traffic import RobotLost, WatchOdometry
    roadmap, ta = grid_authority(lost_after=1.0)
    v = roadmap.vertex("1,0")
    assert ta.request("a", [(v, 0.0, 2.0), (roadmap.vertex("2,0"), 2.0, INF)]).ok
    assert ta.on_robot_state(0.0, "a", ["t1"]) == []
    assert ta.tick(0.5) == []
    out = ta.tick(1.6)
    assert [type(a) for a in out] == [RobotLost, WatchOdometry] and out[1].on
    assert ta.tick(2.0) == [] and ta.lost == {"a"}      # announced once
    # its odometry: moving, then standing at (1, 0) for long enough
    assert ta.on_lost_odometry(2.0, "a", 1.0, 0.0, moving=True) == []
    assert ta.on_lost_odometry(2.1, "a", 1.0, 0.0, moving=False) == []
    assert ta.on_lost_odometry(2.7, "a", 1.0, 0.0, moving=False) == [WatchOdometry("a", False)]
    assert {r.resource for r in ta.table.reservations("a") if r.t_end > 2.7} == {v}  # its spot
    assert ta.on_robot_state(3.0, "a") == [] and ta.lost == set()


def test_a_returning_robot_stops_the_odometry_watch():
    from fleet_coord.core.traffic import WatchOdometry
    _, ta = grid_authority(lost_after=1.0)
    ta.on_robot_state(0.0, "a")
    ta.tick(2.0)
    assert ta.on_robot_state(2.5, "a") == [WatchOdometry("a", False)]
    assert ta.locating == {}


def test_remove_robot_refuses_unknown_and_busy_robots_and_is_idempotent():
    from fleet_coord.core.traffic import RobotRemoved, WatchOdometry
    _, ta = grid_authority(lost_after=1.0)
    ok, _ = ta.remove_robot("ghost")
    assert not ok.ok and "unknown robot 'ghost'" in ok.error
    ta.on_robot_state(0.0, "a", ["t1"], incarnation=b"gid-1")
    busy, _ = ta.remove_robot("a")
    assert not busy.ok and "t1" in busy.error
    ta.request("a", [(0, 0.0, INF)])
    ta.tick(5.0)                                          # lost: may be removed
    done, actions = ta.remove_robot("a")
    assert done.ok and done.was_lost and done.released >= 1
    assert actions == [WatchOdometry("a", False), RobotRemoved("a")]
    again, actions = ta.remove_robot("a")
    assert again.ok and again.already and actions == []
    # its old agent is not heard; a new one makes it a member again
    ta.on_robot_state(6.0, "a", incarnation=b"gid-1")
    assert ta.request("a", [(0, 6.0, INF)]).error.value == "INVALID"
    ta.on_robot_state(6.1, "a", incarnation=b"gid-2")
    assert ta.request("a", [(0, 6.1, INF)]).ok


def test_snapshots_drop_the_past_and_the_log_brings_the_table_back(tmp_path):
    roadmap, ta = grid_authority(tmp_path, keep_history=10.0)
    assert ta.request("a", [(0, 0.0, 5.0), (1, 5.0, INF)]).ok
    assert ta.request("b", [(3, 0.0, INF)]).ok
    first = ta.drain()
    assert [u.version for u in first] == [1, 2] and first[0].added[0].robot == "a"
    ta.robot_lost("b", 20.0)
    *deltas, snap = ta.snapshot(20.0)
    assert snap.is_snapshot and snap.roadmap_id == "rm1"
    assert {(r.robot, r.resource) for r in snap.added} == {("a", 1), ("b", 3)}  # (a, 0) ended
    # a restart on the log: same table, same version, b still lost
    _, back = grid_authority(tmp_path, keep_history=10.0)
    assert back.table.version == ta.table.version and back.lost == {"b"}
    assert {(r.robot, r.resource) for r in back.table.reservations()} == {("a", 1), ("b", 3)}


def test_the_space_a_lost_robot_stands_in_is_blocked_once_the_follower_in_it_moves_on():
    """a's agent died in lane 5 (exclusive with vertex 15), short of its plan; b, following
    a's plan, parked on 15 before a was declared lost. Neither the loss nor the odometry
    fix can give a the lane (b's park there has begun): a holds nothing. When b plans on
    through the lane, a's spot is blocked and b's passage revoked, instead of b being
    granted a path through the robot (the soak, docs/reliability.md)."""
    pairs = {5: (5, 15), 15: (15, 5)}
    ta = TrafficAuthority(ReservationTable(lambda r: pairs.get(r, (r,)), 20))
    assert ta.reserve("a", [(15, 0, 1), (5, 1, 2), (6, 2, INF)]).ok
    assert ta.reserve("b", [(14, 0, 2), (15, 2, INF)]).ok
    ta.robot_lost("a", now=2.6, last_seen=1.2)
    ta.robot_located("a", [5], now=3.0)               # it stands in 5
    assert not [r for r in ta.table.reservations("a") if r.t_end > 3.0]
    assert ta.request("b", [(15, 4.0, 5.0), (5, 5.0, 6.0), (16, 6.0, INF)],
                      replace_from=4.0).ok             # a holds nothing there yet
    ta.tick(4.1)
    b = [(r.resource, r.t_end) for r in ta.table.reservations("b") if r.t_end > 4.1]
    assert (5, 6.0) not in b and (16, INF) not in b   # revoked: b stops before the lane
    # once b has gone back the way it came, the lane is a's for good
    assert ta.request("b", [(15, 4.5, 5.5), (14, 5.5, INF)], replace_from=4.5).ok
    ta.tick(5.6)
    assert ta.table.holder_at(5, 1e9) == "a"
    assert not ta.request("c", [(5, 50, 51)]).ok


def test_what_a_revoked_robot_keeps_to_brake_into_is_not_taken_by_the_same_block():
    """d drives L(3) -> star V(2) -> M(1) -> star W(0) (neighbours touch). e, lost, held
    W and M. Its block revokes d from M on; d keeps what it brakes into, L and V. The
    block's next round clashes with that kept V (V touches M): it must leave it to d
    (in the soak d lost V too, stopped at V's edge holding only L, and stood 0.28 m
    outside its holds for two minutes)."""
    ta = TrafficAuthority(ReservationTable(neighbour_exclusion, 10))
    assert ta.reserve("e", [(1, 0, 0.5), (0, 0.5, 0.9)]).ok
    assert ta.reserve("d", [(3, 0.2, 1.06), (2, 1.06, 2.6), (1, 2.6, 3.6), (0, 3.6, INF)]).ok
    out = ta.robot_lost("e", now=1.0, last_seen=0.4)
    assert out.revoked == {"d": 2.6}
    d = {(r.resource, r.t_end) for r in ta.table.reservations("d") if r.t_end > 1.0}
    assert (2, INF) in d and (3, INF) in d
    assert not ta.request("c", [(2, 50, 51)]).ok


def test_a_deferred_spot_is_blocked_piece_by_piece_without_rewriting_the_table_each_tick():
    """a, lost, stood in 4 and 5, where b's and c's parks had begun. c moves on: 5 becomes
    a's for good, 4 waits for b - and the ticks after that change nothing in the table (a
    retry of what a already holds would rewrite its holds, an update, ten times a
    second)."""
    ta = TrafficAuthority(ReservationTable(line_exclusion(10), 10))
    assert ta.reserve("a", [(4, 0, 2), (5, 2, 2.5), (6, 2.5, INF)]).ok
    assert ta.reserve("b", [(4, 2.2, INF)]).ok
    assert ta.reserve("c", [(5, 2.6, INF)]).ok
    ta.robot_lost("a", now=3.0, last_seen=1.0)
    assert ta.table.holder_at(5, 50.0) == "c"
    assert ta.request("c", [(5, 3.5, 4.0), (7, 4.0, INF)], replace_from=3.5).ok
    ta.tick(3.6)
    assert ta.table.holder_at(5, 50.0) == "a" and ta.table.holder_at(4, 50.0) == "b"
    version = ta.table.version
    ta.tick(3.7)
    ta.tick(3.8)
    assert ta.table.version == version


def _revoked_while_silent():
    """b drives 1 -> 2 -> 3 and parks in 4; a, standing in 3 (its agent restarted there),
    parks at t=5, which revokes b's passage from 12 (3, then 4). b was last heard at 0."""
    ta = TrafficAuthority(ReservationTable(line_exclusion(10), 10), lost_after=1.5,
                          brake_horizon=1.0)
    ta.on_robot_state(0.0, "b")
    assert ta.reserve("b", [(1, 0, 10), (2, 10, 12), (3, 12, 14), (4, 14, INF)]).ok
    ta.on_robot_state(0.0, "a")
    assert ta.request("a", [(3, 0.5, INF)], replace_from=0.5).ok
    assert ta.table.holder_at(4, 20) is None and ta.table.holder_at(3, 13) == "a"
    return ta


def test_what_is_revoked_from_a_robot_not_heard_since_is_no_one_elses_until_it_is_heard():
    """b has not been heard since its passage was revoked: it may be cut off and drive on
    (seed 651 of the property test: b drove its old plan into a robot granted that space).
    Another robot's path through what b lost is refused, naming b, until b is heard: a
    state b sent after the revocation (it can hear it now), or b's own new plan."""
    ta = _revoked_while_silent()
    r = ta.request("c", [(5, 1, 15), (4, 15, INF)], replace_from=1)
    assert not r.ok and r.conflict.robot == "b" and "not been heard since" in r.message
    # a park is where a robot stands: granted all the same (it is there)
    assert ta.request("d", [(6, 1, INF)], replace_from=1).ok
    ta.on_robot_state(1.0, "b", sent=0.4)            # sent before the revocation: no news
    assert not ta.request("c", [(5, 1, 15), (4, 15, INF)], replace_from=1).ok
    ta.on_robot_state(1.1, "b", sent=1.05)
    assert ta.request("c", [(5, 1.1, 15), (4, 15, INF)], replace_from=1.1).ok
    # b's own new plan says what it drives: what it lost before is no one's concern
    ta2 = _revoked_while_silent()
    assert ta2.request("b", [(1, 1, 10), (2, 10, INF)], replace_from=1).ok
    assert ta2.request("c", [(5, 1, 15), (4, 15, INF)], replace_from=1).ok


def test_a_robot_lost_before_it_heard_of_a_revocation_keeps_what_was_revoked_as_its_commitment():
    """Declared lost without having been heard since the revocation, b may be driving
    its old plan: what was revoked is its commitment again, in the table for everyone to
    plan around - all but 3, where a stands, which comes back once a has left it."""
    ta = _revoked_while_silent()
    ta.on_robot_state(1.4, "a")
    ta.tick(1.6)
    assert ta.lost == {"b"}
    assert ta.table.holder_at(4, 20) == "b" and ta.table.holder_at(3, 13) == "a"
    assert not ta.request("c", [(5, 2, 15), (4, 15, INF)], replace_from=2).ok
    assert ta.request("a", [(3, 2, 3), (7, 3, INF)], replace_from=2).ok   # a moves on
    ta.on_robot_state(2.5, "a")
    ta.tick(3.0)
    assert ta.table.holder_at(3, 13) == "b" and "b" not in ta.unheard
    # located standing (its odometry): it drives nothing, the rest is released
    ta2 = _revoked_while_silent()
    ta2.tick(1.6)
    ta2.robot_located("b", [1], now=2.0)
    assert "b" not in ta2.unheard and ta2.table.holder_at(4, 20) is None


def test_a_robot_heard_late_after_a_revocation_keeps_what_it_may_brake_into_from_then():
    """The revocation at 0.5 left b what it can brake into over the next second (1, where
    it is). b is heard only at 1.9: it may have driven its plan on meanwhile, into 2, and
    hears of the cut only now; it keeps what its plan covers until 1.9 + brake_horizon
    for good, where it may stop later than its plan."""
    ta = TrafficAuthority(ReservationTable(line_exclusion(10), 10), lost_after=1.5,
                          brake_horizon=1.0)
    ta.on_robot_state(0.0, "b")
    assert ta.reserve("b", [(1, 0, 1.5), (2, 1.5, 3), (3, 3, 5), (4, 5, INF)]).ok
    ta.on_robot_state(0.0, "a")
    assert ta.request("a", [(4, 0.5, INF)], replace_from=0.5).ok   # a stands in 4
    assert {r.resource for r in ta.table.reservations("b") if r.t_end == INF} == {1}
    ta.on_robot_state(1.9, "b", sent=1.9)
    assert {r.resource for r in ta.table.reservations("b") if r.t_end == INF} == {1, 2}
    assert ta.table.holder_at(4, 10) == "a"

"""Restarts of the traffic authority, in the pure cores: replicas follow the current
incarnation (epoch) with contiguous versions and are never frozen by a version; an
incarnation without its table grants only re-assertions until robots have re-asserted
(docs/core-model.md, "Authority restarts")."""
import math

from fleet_coord.core.replica import Replica, TableUpdate
from fleet_coord.core.reservations import Reservation, ReservationTable
from fleet_coord.core.traffic import ReserveError, TrafficAuthority

INF = math.inf


def ex(r):
    return (r,)   # resources on a line, each exclusive with itself only


def hold(robot, res, t0=0.0, t1=INF):
    return Reservation(robot, res, t0, t1)


def snap(epoch, version, *holds):
    return TableUpdate(version=version, is_snapshot=True, epoch=epoch, added=tuple(holds))


def delta(epoch, version, *added, robot="a"):
    return TableUpdate(version=version, robot=robot, epoch=epoch, added=tuple(added))


def held(replica):
    return sorted((r.robot, r.resource) for r in replica.table.reservations())


def test_a_new_incarnation_resynchronises_replicas_even_with_lower_versions():
    rep = Replica(ex, 10)
    assert rep.apply(snap(7, 0))
    assert rep.apply(delta(7, 1, hold("a", 1))) and rep.apply(delta(7, 2, hold("b", 2)))
    assert rep.version == 2 and not rep.stale
    # the authority restarts without its table: a new epoch, version 1, robot b re-asserted
    assert rep.apply(snap(9, 1, hold("b", 2)))
    assert rep.epoch == 9 and rep.version == 1 and held(rep) == [("b", 2)] and not rep.stale
    # a straggler of the dead incarnation changes nothing and does not mark it stale
    assert not rep.apply(delta(7, 3, hold("a", 3)))
    assert not rep.stale and held(rep) == [("b", 2)]
    assert rep.apply(delta(9, 2, hold("a", 1)))
    assert held(rep) == [("a", 1), ("b", 2)]


def test_a_delta_of_an_unknown_epoch_or_a_gap_marks_the_replica_stale_until_a_snapshot():
    rep = Replica(ex, 10)
    assert rep.apply(delta(3, 1, hold("a", 1)))     # a fresh chain from version 1
    assert rep.epoch == 3 and not rep.stale
    assert not rep.apply(delta(3, 5, hold("a", 2)))  # a gap: never applied out of order
    assert rep.stale and held(rep) == [("a", 1)]
    assert rep.apply(snap(3, 5, hold("a", 2)))
    assert not rep.stale
    assert not rep.apply(delta(4, 6, hold("a", 3)))  # another incarnation: wait for it
    assert rep.stale
    assert rep.apply(snap(4, 1, hold("a", 3))) and not rep.stale


def test_a_replica_that_finds_itself_stale_asks_for_a_snapshot_at_once_and_again_while_stale():
    """A lost delta (or a jump, or another epoch) leaves a replica blind to what changed -
    a revocation of its robot's path - until the authority's next snapshot, up to
    snapshot_period (5 s) away: its owner asks for one at once (/traffic/resync), then
    every second while it stays stale (the request or the snapshot may be lost too); the
    authority answers with a snapshot out of turn, at most one every 0.25 s."""
    from fleet_coord.core.replica import Resync
    ta = TrafficAuthority(ReservationTable(ex, 10), epoch=3)
    rep, resync = Replica(ex, 10), Resync()
    assert resync.due(0.0, rep)           # a new replica: nothing yet
    for u in ta.snapshot(0.0):
        rep.apply(u)
    assert not resync.due(0.1, rep)
    assert ta.reserve("a", [(1, 0, 5)]).ok and ta.reserve("b", [(2, 0, 5)]).ok
    first, second = ta.drain()
    assert not rep.apply(second) and rep.stale           # `first` was lost: a gap
    assert resync.due(0.2, rep)
    assert not resync.due(0.7, rep) and resync.due(1.2, rep)   # still stale: again
    assert not ta.snapshot_due(1.2)
    ta.want_snapshot()
    assert ta.snapshot_due(1.2)
    for u in ta.snapshot(1.2):
        rep.apply(u)
    assert not rep.stale and held(rep) == [("a", 1), ("b", 2)]
    assert not resync.due(1.3, rep)
    ta.want_snapshot()                   # a burst of requests: one snapshot per 0.25 s
    assert not ta.snapshot_due(1.3) and ta.snapshot_due(1.45)


def test_a_robot_heard_again_after_a_silence_gets_a_snapshot_out_of_turn():
    ta = TrafficAuthority(ReservationTable(ex, 10), lost_after=1.0, epoch=3)
    ta.snapshot(0.0)
    ta.on_robot_state(0.0, "a")
    ta.tick(1.5)
    assert ta.lost == {"a"} and not ta.snapshot_due(1.5)
    ta.on_robot_state(1.6, "a")          # back: its replica missed what was said meanwhile
    assert ta.snapshot_due(1.6)


def test_a_bogus_version_never_freezes_a_replica():
    rep = Replica(ex, 10)
    rep.apply(snap(5, 4, hold("a", 1)))
    # a forged snapshot of the current epoch with the largest version there is
    assert rep.apply(snap(5, 2**64 - 1, hold("x", 1), hold("x", 2)))
    # the authority's deltas no longer fit (a gap), and its next snapshot replaces it
    assert not rep.apply(delta(5, 5, hold("a", 2)))
    assert rep.apply(snap(5, 5, hold("a", 1), hold("a", 2)))
    assert held(rep) == [("a", 1), ("a", 2)] and rep.version == 5 and not rep.stale
    assert rep.apply(delta(5, 6, hold("b", 3)))
    # a forged delta far ahead: stale until the next snapshot, never applied
    assert not rep.apply(delta(5, 2**64 - 1, hold("x", 4)))
    assert rep.stale and ("x", 4) not in held(rep)
    # the periodic snapshot of the same version heals a stale replica too
    assert rep.apply(snap(5, 6, hold("a", 1), hold("a", 2), hold("b", 3)))
    assert not rep.stale


def _recovering(now=0.0, window=10.0, listen=1.5):
    ta = TrafficAuthority(ReservationTable(ex, 10), epoch=42)
    ta.start_recovery(now, window, listen)
    return ta


def test_without_its_table_an_incarnation_grants_only_reassertions_until_robots_did():
    ta = _recovering()
    ta.on_robot_state(0.1, "a", table_epoch=7, resource=1)
    ta.on_robot_state(0.1, "b", table_epoch=7, resource=4)
    r = ta.request("c", [(3, 1.0, INF)])
    assert not r.ok and r.error is ReserveError.RECOVERING and "re-assertion" in r.message
    assert ta.request("a", [(1, 0.2, 5.0), (2, 5.0, INF)], reassert=True).ok
    for robot in ("a", "b"):   # robots speak at 10 Hz
        ta.on_robot_state(1.9, robot, table_epoch=7, resource=1 if robot == "a" else 4)
    ta.tick(2.0)
    assert ta.recovering                                  # b has not re-asserted yet
    assert ta.request("b", [(4, 0.3, INF)], reassert=True).ok
    ta.tick(2.1)
    assert not ta.recovering
    assert ta.request("c", [(3, 2.2, INF)]).ok             # granting again
    # a re-assertion that clashes with what is held is refused like any request
    assert not ta.request("c", [(2, 6.0, INF)]).ok


def test_fresh_agents_end_the_recovery_once_heard_and_silent_ones_get_their_spot_blocked():
    ta = _recovering(window=10.0, listen=1.5)
    ta.on_robot_state(0.1, "fresh", table_epoch=0, resource=1)   # follows no older table
    ta.tick(1.0)
    assert ta.recovering                                  # still listening
    ta.tick(1.6)
    assert not ta.recovering
    ta = _recovering(window=3.0, listen=1.5)
    ta.on_robot_state(0.1, "old", table_epoch=7, resource=6)     # never re-asserts
    ta.on_robot_state(1.9, "old", table_epoch=7, resource=6)
    ta.tick(2.0)
    assert ta.recovering
    ta.on_robot_state(2.5, "old", table_epoch=7, resource=6)
    ta.tick(3.0)
    assert not ta.recovering
    assert [(r.resource, r.t_end) for r in ta.table.reservations("old")] == [(6, INF)]
    assert not ta.request("c", [(6, 4.0, 5.0)]).ok


def test_updates_carry_the_epoch_and_the_recovering_flag():
    ta = _recovering()
    ta.request("a", [(1, 0.0, INF)], reassert=True)
    ups = ta.snapshot(0.5)
    assert all(u.epoch == 42 and u.recovering for u in ups)
    ta.tick(20.0)
    assert all(u.epoch == 42 and not u.recovering for u in ta.snapshot(20.0))
    # the end of a recovery changes no reservation: a replica learns it from a snapshot
    rep = Replica(ex, 10)
    for u in ups:
        rep.apply(u)
    assert rep.recovering
    for u in ta.snapshot(20.0):
        rep.apply(u)
    assert not rep.recovering and not rep.stale


def test_the_listening_starts_with_the_first_robot_heard():
    # a new process hears nobody until discovery: that is not "every robot re-asserted"
    ta = _recovering(window=10.0, listen=1.5)
    ta.tick(5.0)
    assert ta.recovering
    ta.on_robot_state(5.0, "a", table_epoch=0, resource=1)
    ta.tick(6.4)
    assert ta.recovering
    ta.on_robot_state(6.5, "a", table_epoch=0, resource=1)
    ta.tick(6.6)
    assert not ta.recovering


def test_a_recovery_listens_until_every_robot_could_be_heard():
    # b's host is discovered after the first robot was heard and lost_after had passed:
    # the recovery waits for it instead of ending without b's holds
    ta = _recovering(window=10.0, listen=1.5)
    ta.on_robot_state(0.1, "a", table_epoch=0, resource=1)       # nothing to re-assert
    ta.on_discovery(1.0)                                         # b's host found
    ta.tick(1.6)
    assert ta.recovering
    ta.on_robot_state(1.8, "b", table_epoch=7, resource=4)
    ta.tick(2.6)
    assert ta.recovering                                         # b has not re-asserted
    assert ta.request("b", [(4, 2.6, INF)], reassert=True).ok
    ta.tick(2.7)
    assert not ta.recovering
    # discoveries postpone the end by discovery_grace at most
    ta = TrafficAuthority(ReservationTable(ex, 10), epoch=43, discovery_grace=2.0)
    ta.start_recovery(0.0, 10.0, 1.5)
    ta.on_robot_state(0.1, "a", table_epoch=0, resource=1)
    ta.on_discovery(9.0)
    ta.on_robot_state(3.0, "a", table_epoch=0, resource=1)
    ta.tick(3.5)
    assert ta.recovering
    ta.tick(3.7)                                                 # 0.1 + 2 + 1.5
    assert not ta.recovering

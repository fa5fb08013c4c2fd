"""The reservation table: every operation, atomicity, replication, and a randomized
invariant check against a brute-force model."""
from __future__ import annotations

import json
import math
import pickle
import random

import numpy as np
import pytest

from fleet_coord.core.reservations import (
    CommitResult,
    ReplicaOutOfSync,
    Reservation,
    ReservationConflict,
    ReservationTable,
)

INF = math.inf


def line(n: int):
    """Resources 0..n-1 on a line: r is exclusive with r-1, r and r+1."""
    def exclusive(r: int) -> list[int]:
        return [x for x in (r - 1, r, r + 1) if 0 <= x < n]
    return exclusive


def table(n: int = 10, **kw) -> ReservationTable:
    return ReservationTable(line(n), n, **kw)


def frozen_state(t: ReservationTable):
    return json.dumps(t.snapshot(), sort_keys=True), t.version


# ---------------------------------------------------------------- commit and conflicts

def test_commit_adds_all_segments_and_bumps_version():
    t = table()
    res = t.commit("a", [(1, 0, 1), (2, 1, 2), (3, 2, INF)])
    assert res == CommitResult(True, 1, None)
    assert t.version == 1 and len(t) == 3
    assert t.reservations("a") == [Reservation("a", 1, 0, 1), Reservation("a", 2, 1, 2),
                                   Reservation("a", 3, 2, INF)]


def test_adjacent_intervals_of_different_robots_do_not_conflict():
    t = table()
    assert t.commit("a", [(4, 0.0, 1.0)]).ok
    assert t.commit("b", [(4, 1.0, 2.0)]).ok          # same resource, touching
    assert t.commit("c", [(5, 2.0, 3.0)]).ok          # exclusive neighbour, touching
    assert t.commit("d", [(3, -1.0, 0.0)]).ok


def test_overlap_on_same_or_exclusive_resource_is_refused_but_not_on_others():
    t = table()
    assert t.commit("a", [(4, 0, 2)]).ok
    assert not t.commit("b", [(4, 1.5, 3)]).ok
    assert not t.commit("b", [(5, 1.9, 3)]).ok
    assert not t.commit("b", [(3, -1, 0.1)]).ok
    assert t.commit("b", [(6, 0, 2)]).ok              # 6 is not exclusive with 4


def test_own_reservations_never_conflict():
    t = table()
    assert t.commit("a", [(4, 0, 5)]).ok
    assert t.commit("a", [(4, 1, 3), (5, 0, 5), (3, 2, INF)]).ok   # overlaps its own
    assert t.commit("a", [(4, 1, 3)]).ok                           # even an exact duplicate
    assert len(t) == 5
    assert t.safe_intervals(4, robot="a") == [(0.0, INF)]
    assert t.safe_intervals(4, robot="b") == []       # blocked from 0 on, forever
    t.release("a", after=2)
    assert all(r.t_end <= 2 for r in t.reservations("a"))


def test_refused_multi_segment_commit_leaves_table_unchanged():
    t = table()
    t.commit("a", [(1, 0, 1), (2, 1, 2)], lease_expiry=10)
    t.commit("b", [(8, 0, INF)])
    t.drain_updates()
    before = frozen_state(t)
    res = t.commit("a", [(5, 3, 4), (6, 4, 5), (7, 5, 6), (9, 6, 7)], replace_from=0.5)
    assert not res.ok and res.version == before[1]
    assert frozen_state(t) == before                  # not even the replace_from release
    assert t.drain_updates() == []


def test_refusal_names_first_conflicting_segment_and_earliest_holder():
    t = table()
    t.commit("b", [(5, 0, 1)])
    t.commit("c", [(6, 2, 3)])
    t.commit("d", [(7, 2.5, 4)])
    res = t.commit("a", [(1, 0, 1), (6, 0.5, 5), (5, 0, 1)])
    assert not res.ok
    c = res.conflict
    assert isinstance(c, ReservationConflict)
    assert c.requested == Reservation("a", 6, 0.5, 5)        # first in requested order
    assert c.existing == Reservation("b", 5, 0, 1)           # earliest of b, c, d
    msg = str(c)
    for part in ("'a'", "resource 6", "[0.5, 5.0)", "'b'", "resource 5", "[0.0, 1.0)"):
        assert part in msg
    assert t.check("a", [(1, 0, 1), (6, 0.5, 5)]).existing == c.existing


def test_check_is_a_dry_run():
    t = table()
    t.commit("b", [(5, 0, 1)])
    before = frozen_state(t)
    assert t.check("a", [(0, 0, 1)]) is None
    assert t.check("a", [(4, 0, 1)]).existing.robot == "b"
    assert frozen_state(t) == before


def test_infinite_interval_blocks_forever_and_release_after_truncates_it():
    t = table()
    t.commit("a", [(4, 10, INF)])
    assert not t.commit("b", [(5, 1e9, 1e9 + 1)]).ok
    assert t.commit("b", [(5, 0, 10)]).ok
    assert t.safe_intervals(4, robot="c") == []
    assert t.safe_intervals(3, robot="c") == [(0.0, 10.0)]
    assert t.release("a", after=20) == 1
    assert t.reservations("a") == [Reservation("a", 4, 10, 20)]
    assert t.commit("b", [(5, 20, INF)]).ok


def test_empty_commit_is_ok_and_changes_nothing():
    t = table()
    assert t.commit("a", []) == CommitResult(True, 0, None)
    assert t.drain_updates() == []


# ---------------------------------------------------------------- replace_from / release

def test_commit_with_replace_from_truncates_straddling_and_drops_later():
    t = table()
    t.commit("a", [(1, 0, 2), (2, 2, 4), (3, 4, INF)], lease_expiry=50)
    t.drain_updates()
    res = t.commit("a", [(2, 3, 5), (1, 5, INF)], replace_from=3, lease_expiry=60)
    assert res.ok and res.version == 2
    assert t.reservations("a") == [
        Reservation("a", 1, 0, 2, 50), Reservation("a", 2, 2, 3, 50),
        Reservation("a", 2, 3, 5, 60), Reservation("a", 1, 5, INF, 60)]
    (upd,) = t.drain_updates()                         # one update, both halves
    assert upd["version"] == 2 and upd["robot"] == "a"
    assert {(d["resource"], d["t_start"]) for d in upd["removed"]} == {(2, 2), (3, 4)}
    assert len(upd["added"]) == 3


def test_replace_from_frees_own_future_for_others_only_after_commit():
    t = table()
    t.commit("a", [(4, 0, INF)])
    t.commit("a", [(0, 5, 6)], replace_from=5)
    assert t.commit("b", [(4, 5, 7)]).ok
    assert not t.commit("b", [(4, 4, 5)]).ok


def test_release_all_and_release_after():
    t = table()
    t.commit("a", [(1, 0, 2), (2, 2, 4), (3, 4, 6)])
    t.commit("b", [(8, 0, 1)])
    assert t.release("a", after=3) == 2              # (2) truncated, (3) dropped
    assert t.reservations("a") == [Reservation("a", 1, 0, 2), Reservation("a", 2, 2, 3)]
    assert t.release("a", after=2) == 1              # [2,3) starts at 2: dropped
    assert t.release("a", after=100) == 0
    assert t.release("a") == 1
    assert t.release("a") == 0 and t.release("nobody") == 0
    assert [r.robot for r in t.reservations()] == ["b"]


def test_release_before_garbage_collects_the_past():
    t = table()
    t.commit("a", [(1, 0, 1), (1, 1, 2), (1, 2, INF)])
    t.commit("b", [(5, 0, 1.5), (6, 1.5, 3)])
    t.drain_updates()
    v = t.version
    assert t.release_before(1.5) == 2                 # ended at or before 1.5
    assert sorted((r.robot, r.t_start) for r in t.reservations()) == [
        ("a", 1.0), ("a", 2.0), ("b", 1.5)]
    ups = t.drain_updates()
    assert [u["robot"] for u in ups] == ["a", "b"]    # one update per robot, in order
    assert [u["version"] for u in ups] == [v + 1, v + 2]
    assert t.release_before(1.5) == 0


# ---------------------------------------------------------------- leases

def test_expire_drops_unrenewed_leases_and_names_robots():
    t = table()
    t.commit("a", [(1, 0, 5)], lease_expiry=10)
    t.commit("b", [(5, 0, 5)], lease_expiry=12)
    t.commit("c", [(8, 0, INF)])                       # no lease: never expires
    assert t.expire(9.9) == []
    assert t.renew("a", 20) == 1
    assert t.renew("a", 20) == 0                       # unchanged lease is not a change
    assert t.expire(12) == ["b"]
    assert [r.robot for r in t.reservations()] == ["a", "c"]
    assert t.reservations("a")[0].lease_expiry == 20
    assert t.expire(1e9) == ["a"]
    assert t.expire(INF) == []
    assert [r.robot for r in t.reservations()] == ["c"]


def test_expired_reservation_frees_the_space():
    t = table()
    t.commit("a", [(4, 0, INF)], lease_expiry=3)
    assert not t.is_free(4, 0, 1, robot="b")
    t.expire(3)
    assert t.is_free(4, 0, 1, robot="b")
    assert t.commit("b", [(4, 0, INF)]).ok


def test_truncated_reservations_keep_their_lease():
    t = table()
    t.commit("a", [(1, 0, 10)], lease_expiry=7)
    t.release("a", after=5)
    assert t.reservations("a") == [Reservation("a", 1, 0, 5, 7)]
    assert t.expire(7) == ["a"]


# ---------------------------------------------------------------- queries

def test_safe_intervals_merge_blockers_clip_at_t_from_and_ignore_own():
    t = table()
    t.commit("a", [(3, 1, 2)])
    t.commit("b", [(5, 2, 3)])                   # touches a's interval on 4's neighbours
    t.commit("c", [(4, 6, 8)])
    t.commit("d", [(4, 10, INF)])
    assert t.safe_intervals(4) == [(0.0, 1.0), (3.0, 6.0), (8.0, 10.0)]
    assert t.safe_intervals(4, t_from=2.5) == [(3.0, 6.0), (8.0, 10.0)]
    assert t.safe_intervals(4, t_from=4) == [(4.0, 6.0), (8.0, 10.0)]
    assert t.safe_intervals(4, robot="c") == [(0.0, 1.0), (3.0, 10.0)]
    assert t.safe_intervals(4, robot="d", t_from=9) == [(9.0, INF)]
    assert t.safe_intervals(0) == [(0.0, INF)]
    assert t.safe_intervals(4, t_from=11) == []


def test_safe_intervals_t_to_limits_the_answer_but_keeps_true_ends():
    t = table()
    t.commit("a", [(4, 1, 2), (4, 5, 6), (4, 9, 10)])
    assert t.safe_intervals(4, t_to=3) == [(0.0, 1.0), (2.0, 5.0)]
    assert t.safe_intervals(4, t_to=2) == [(0.0, 1.0)]
    assert t.safe_intervals(4, t_to=1.5) == [(0.0, 1.0)]
    assert t.safe_intervals(4, t_from=7, t_to=8) == [(7.0, 9.0)]
    assert t.safe_intervals(4, t_from=7, t_to=7) == []


def test_safe_intervals_correct_when_blockers_overlap_each_other():
    # x=1 is exclusive with 0 and 2, which are not exclusive with each other: a robot
    # parked forever on 0 and traffic on 2 overlap in time as blockers of 1.
    excl = {0: [0, 1], 1: [0, 1, 2], 2: [1, 2]}
    t = ReservationTable(excl.__getitem__, 3)
    assert t.commit("a", [(0, 5, INF)]).ok
    for k in range(100):
        assert t.commit(f"b{k % 3}", [(2, 10 + 2 * k, 11 + 2 * k)]).ok
    assert t.safe_intervals(1) == [(0.0, 5.0)]
    assert t.first_conflict(1, 100, 101) == Reservation("a", 0, 5, INF)
    assert not t.commit("c", [(1, 4, 5.5)]).ok
    assert t.commit("c", [(1, 4, 5)]).ok
    assert t.safe_intervals(1, robot="a") == [(0.0, 4.0), (5.0, 10.0)] + [
        (11.0 + 2 * k, 12.0 + 2 * k) for k in range(99)] + [(209.0, INF)]


def test_is_free_and_first_conflict():
    t = table()
    t.commit("a", [(3, 0, 2)])
    t.commit("b", [(5, 1, 3)])
    assert t.first_conflict(4, 0, 5) == Reservation("a", 3, 0, 2)
    assert t.first_conflict(4, 0, 5, robot="a") == Reservation("b", 5, 1, 3)
    assert t.first_conflict(4, 3, 5) is None
    assert t.is_free(4, 3, 5) and not t.is_free(4, 2.5, 5)
    assert t.is_free(4, 0, 5, robot="a") is False
    assert t.is_free(7, 0, INF)
    with pytest.raises(ValueError, match="empty"):
        t.is_free(4, 2, 2)


def test_holder_at_reports_exactly_the_resource():
    t = table()
    t.commit("a", [(3, 0, 2)])
    assert t.holder_at(3, 0) == "a" and t.holder_at(3, 1.999) == "a"
    assert t.holder_at(3, 2) is None                   # half-open
    assert t.holder_at(4, 1) is None                   # exclusive neighbour, not holder
    assert t.holder_at(9, 1) is None


def test_resource_with_empty_geometry_blocks_nothing():
    excl = {0: [0], 1: []}
    t = ReservationTable(excl.__getitem__, 2)
    assert t.commit("a", [(1, 0, 5)]).ok
    assert t.commit("b", [(1, 0, 5)]).ok
    assert t.safe_intervals(1) == [(0.0, INF)]
    assert t.holder_at(1, 1) in ("a", "b")
    assert t.release("a") == 1 and t.holder_at(1, 1) == "b"


def test_own_overlapping_reservations_on_one_resource_are_kept_and_released():
    t = table()
    t.commit("a", [(4, 0, 10)])
    t.commit("a", [(4, 2, 4), (4, 3, 5)])           # three layers of a's own holds on 4
    t.commit("b", [(4, 10, 12)])
    assert len(t.reservations("a")) == 3
    assert t.holder_at(4, 3.5) == "a" and t.holder_at(4, 11) == "b"
    t.release("a", after=2.5)                        # drops [3,5), truncates the others
    assert t.reservations("a") == [Reservation("a", 4, 0, 2.5), Reservation("a", 4, 2, 2.5)]
    t.release("a", after=1)
    assert t.reservations("a") == [Reservation("a", 4, 0, 1)]
    assert t.safe_intervals(4, robot="c") == [(1.0, 10.0), (12.0, INF)]


def test_robots_lists_holders():
    t = table()
    t.commit("b", [(1, 0, 1)])
    t.commit("a", [(5, 0, 1)])
    assert t.robots() == ["a", "b"]
    t.release("a")
    assert t.robots() == ["b"]


def test_reservation_overlaps_is_half_open():
    r = Reservation("a", 1, 1.0, 2.0)
    assert r.overlaps(1.5, 3) and r.overlaps(0, 1.0001)
    assert not r.overlaps(2.0, 3) and not r.overlaps(0, 1.0)


def test_lease_bookkeeping_stays_bounded_under_frequent_renewal():
    t = table()
    t.commit("a", [(1, 0, 5)], lease_expiry=1)
    for k in range(5000):
        t.renew("a", 2 + k)
    assert len(t._lease_heap) < 2000               # stale heap entries are compacted
    assert t.expire(5000) == []
    assert t.expire(5001) == ["a"] and len(t) == 0


def test_constructor_rejects_bad_arguments():
    with pytest.raises(TypeError, match="callable"):
        ReservationTable([0, 1])
    with pytest.raises(ValueError, match="num_resources"):
        ReservationTable(line(3), -1)
    assert ReservationTable(line(3), 3).num_resources == 3


# ---------------------------------------------------------------- validation

@pytest.mark.parametrize("seg, what", [
    ((1, 2.0, 2.0), "t_end must be > t_start"),
    ((1, 3.0, 2.0), "t_end must be > t_start"),
    ((1, math.nan, 2.0), "NaN"),
    ((1, 0.0, math.nan), "NaN"),
    ((-1, 0.0, 1.0), ">= 0"),
    ((10, 0.0, 1.0), "unknown resource"),
    ((1.5, 0.0, 1.0), "integer resource"),
    ((1, -INF, 1.0), "finite"),
    ((1, 0.0), r"expected \(resource, t_start, t_end\)"),
])
def test_malformed_segment_is_rejected_naming_it_and_nothing_changes(seg, what):
    t = table()
    t.commit("a", [(0, 0, 1)])
    before = frozen_state(t)
    with pytest.raises(ValueError, match=what) as err:
        t.commit("a", [(5, 0, 1), (6, 1, 2), seg])
    assert "segment 2" in str(err.value) and repr(seg) in str(err.value)
    assert frozen_state(t) == before
    with pytest.raises(ValueError):
        t.check("a", [seg])


@pytest.mark.parametrize("robot", ["", None, 3])
def test_bad_robot_id_is_rejected(robot):
    with pytest.raises(ValueError, match="robot"):
        table().commit(robot, [(1, 0, 1)])


def test_nan_times_in_other_calls_are_rejected():
    t = table()
    for call in (lambda: t.commit("a", [(1, 0, 1)], lease_expiry=math.nan),
                 lambda: t.commit("a", [(1, 0, 1)], replace_from=math.nan),
                 lambda: t.release("a", after=math.nan),
                 lambda: t.release_before(math.nan),
                 lambda: t.expire(math.nan),
                 lambda: t.renew("a", math.nan),
                 lambda: t.safe_intervals(1, t_from=math.nan)):
        with pytest.raises(ValueError, match="NaN"):
            call()
    with pytest.raises(ValueError, match="not a resource id"):
        t.safe_intervals(10)


def test_asymmetric_exclusion_relation_is_reported():
    excl = {0: [0, 1], 1: [1]}
    t = ReservationTable(excl.__getitem__, 2)
    with pytest.raises(ValueError, match="not symmetric"):
        t.commit("a", [(0, 0, 1)])


def test_exclusion_relation_giving_bad_ids_is_reported():
    t = ReservationTable(lambda r: [r, 7], 5)
    with pytest.raises(ValueError, match=r"exclusive\(1\) contains 7"):
        t.commit("a", [(1, 0, 1)])
    t = ReservationTable(lambda r: [r, 0.5])
    with pytest.raises(ValueError, match="integer resource ids"):
        t.is_free(1, 0, 1)


def test_numpy_resource_ids_and_relation_are_accepted():
    t = ReservationTable(lambda r: np.array(line(5)(int(r)), dtype=np.int64), 5)
    assert t.commit("a", [(np.int64(2), np.float64(0.0), np.float64(1.0))]).ok
    assert not t.is_free(np.int32(3), 0.5, 0.6)
    assert type(t.reservations()[0].resource) is int
    json.dumps(t.snapshot())


# ---------------------------------------------------------------- versions, errors

def test_version_counts_updates_and_noops_do_not_count():
    t = table()
    t.commit("a", [(1, 0, 1)])
    t.commit("b", [(1, 0, 1)])                          # refused
    t.release("c")
    t.renew("a", INF)
    t.release_before(-5)
    t.expire(100)
    assert t.version == 1 and len(t.drain_updates()) == 1


def test_out_of_sync_error_pickles():
    e = ReplicaOutOfSync("gap", 3, 7)
    e2 = pickle.loads(pickle.dumps(e))
    assert (str(e2), e2.current_version, e2.update_version) == ("gap", 3, 7)


def test_conflict_is_an_exception_that_pickles():
    c = ReservationConflict(Reservation("a", 1, 0, 1), Reservation("b", 2, 0.5, INF))
    c2 = pickle.loads(pickle.dumps(c))
    assert (c2.requested, c2.existing, str(c2)) == (c.requested, c.existing, str(c))
    with pytest.raises(ReservationConflict):
        raise c


def test_update_log_can_be_turned_off():
    t = table(record_updates=False)
    t.commit("a", [(1, 0, 1)])
    assert t.drain_updates() == [] and t.version == 1


# ---------------------------------------------------------------- replication

def test_snapshot_round_trips_through_json():
    t = table()
    t.commit("a", [(1, 0, 1), (2, 1, INF)], lease_expiry=30)
    t.commit("b", [(6, 0.25, 7.5)])
    snap = json.loads(json.dumps(t.snapshot()))
    r = ReservationTable.from_snapshot(snap, line(10), 10)
    assert r.snapshot() == t.snapshot() and r.version == t.version
    assert r.reservations() == t.reservations()
    assert r.drain_updates() == []


def test_a_table_rebuilt_from_a_snapshot_can_keep_the_exclusion_cache():
    """A replica replaces its table at every snapshot; with `share_cache_with` the new
    table reuses what the old one learnt of the exclusion relation (same objects, no
    recomputation) and behaves exactly as one that built its own."""
    calls = []

    def counted(resource):
        calls.append(resource)
        return line(10)(resource)

    t = ReservationTable(counted, 10)
    t.commit("a", [(1, 0, 1), (2, 1, INF)])
    n = len(calls)
    assert n > 0
    shared = ReservationTable.from_snapshot(t.snapshot(), counted, 10, share_cache_with=t)
    assert len(calls) == n                       # nothing recomputed for known resources
    assert shared.exclusive(2) is t.exclusive(2)
    own = ReservationTable.from_snapshot(t.snapshot(), line(10), 10)
    for res in range(10):
        assert shared.is_free(res, 0.5, 3) == own.is_free(res, 0.5, 3)
    assert not shared.commit("b", [(2, 5, 6)]).ok and not own.commit("b", [(2, 5, 6)]).ok


def test_replicas_given_the_same_roadmap_id_on_different_relations_keep_their_own():
    """Replicas of one roadmap id share one exclusion cache (a process's agents); two
    relations under the same id and size (the unit tests' worlds all say "m") must not:
    the second replica read the first one's exclusions."""
    from fleet_coord.core.replica import Replica
    first = Replica(line(10), 10, "same-id")
    assert first.table.exclusive(2) == (1, 2, 3)
    alone = lambda r: (r,)  # noqa: E731
    second = Replica(alone, 10, "same-id")
    assert second.table.exclusive(2) == (2,)
    again = Replica(alone, 10, "same-id")        # the same relation: the cache is shared
    assert again.table.exclusive(2) is second.table.exclusive(2)


def test_snapshot_that_breaks_the_invariant_is_rejected():
    snap = {"version": 3, "reservations": [
        {"robot": "a", "resource": 1, "t_start": 0, "t_end": 2},
        {"robot": "b", "resource": 2, "t_start": 1, "t_end": 3}]}
    with pytest.raises(ValueError, match="invariant"):
        ReservationTable.from_snapshot(snap, line(10), 10)
    with pytest.raises(ValueError, match="malformed"):
        ReservationTable.from_snapshot({"version": 0, "reservations": [{"robot": "a"}]},
                                       line(10), 10)


def test_replica_ignores_old_updates_and_detects_gaps():
    auth = table()
    replica = ReservationTable.from_snapshot(auth.snapshot(), line(10), 10)
    auth.commit("a", [(1, 0, 1)])
    auth.commit("b", [(5, 0, 1)])
    auth.commit("c", [(8, 0, 1)])
    u1, u2, u3 = auth.drain_updates()
    replica.apply_update(u1)
    replica.apply_update(u1)                            # duplicate: ignored
    with pytest.raises(ReplicaOutOfSync, match="missing") as err:
        replica.apply_update(u3)
    assert (err.value.current_version, err.value.update_version) == (1, 3)
    replica.apply_update(u2)
    replica.apply_update(u3)
    assert replica.snapshot() == auth.snapshot()


def test_replica_rejects_a_malformed_update_without_changing():
    replica = table()
    before = frozen_state(replica)
    bad = {"version": 1, "robot": "a", "removed": [], "added": [
        {"robot": "a", "resource": 1, "t_start": 0, "t_end": 1},
        {"robot": "a", "resource": -3, "t_start": 0, "t_end": 1}]}
    with pytest.raises(ValueError, match=r"update 1 added\[1\] is malformed"):
        replica.apply_update(bad)
    assert frozen_state(replica) == before


def test_replica_refuses_an_update_that_does_not_match_its_state():
    auth = table()
    auth.commit("a", [(1, 0, 1)])
    replica = ReservationTable.from_snapshot(auth.snapshot(), line(10), 10)
    auth.drain_updates()
    auth.release("a")
    (upd,) = auth.drain_updates()
    upd["removed"][0]["t_end"] = 99.0
    before = frozen_state(replica)
    with pytest.raises(ReplicaOutOfSync, match="does not hold"):
        replica.apply_update(upd)
    assert frozen_state(replica) == before


def _random_ops(t: ReservationTable, rng: random.Random, n_ops: int, n_res: int):
    robots = ["a", "b", "c", "d"]
    for _ in range(n_ops):
        op = rng.random()
        robot = rng.choice(robots)
        if op < 0.5:
            segs = []
            for _ in range(rng.randint(1, 4)):
                s = rng.randint(0, 40) / 2
                segs.append((rng.randrange(n_res), s,
                             INF if rng.random() < 0.1 else s + rng.randint(1, 8) / 2))
            t.commit(robot, segs,
                     replace_from=rng.randint(0, 40) / 2 if rng.random() < 0.4 else None,
                     lease_expiry=rng.choice([INF, rng.randint(0, 40)]))
        elif op < 0.6:
            t.release(robot, after=rng.randint(0, 40) / 2 if rng.random() < 0.7 else None)
        elif op < 0.7:
            t.release_before(rng.randint(0, 20) / 2)
        elif op < 0.85:
            t.renew(robot, rng.choice([INF, rng.randint(0, 40)]))
        else:
            t.expire(rng.randint(0, 40))
        yield


def test_replica_follows_authority_through_random_sequences():
    for seed in range(40):
        rng = random.Random(seed)
        auth = table(8)
        auth.commit("z", [(7, 0, INF)])
        replica = ReservationTable.from_snapshot(
            json.loads(json.dumps(auth.snapshot())), line(8), 8)
        auth.drain_updates()
        for _ in _random_ops(auth, rng, 80, 8):
            for upd in json.loads(json.dumps(auth.drain_updates())):   # over the wire
                replica.apply_update(upd)
            assert replica.version == auth.version
        assert replica.snapshot() == auth.snapshot()


# ---------------------------------------------------------------- randomized invariant

class Model:
    """The brute-force reference: a plain list, checked pair by pair."""

    def __init__(self, excl: np.ndarray):
        self.excl = excl
        self.res: list[Reservation] = []

    def conflict(self, robot, segs, lease):
        for s in segs:
            hits = [r for r in self.res if r.robot != robot and self.excl[s[0], r.resource]
                    and r.t_start < s[2] and s[1] < r.t_end]
            if hits:
                return Reservation(robot, s[0], s[1], s[2], lease), min(
                    hits, key=lambda r: (r.t_start, r.t_end, r.robot, r.resource, r.lease_expiry))
        return None

    def cut(self, robot, t):
        out = []
        for r in self.res:
            if r.robot != robot or r.t_end <= t:
                out.append(r)
            elif r.t_start < t:
                out.append(Reservation(r.robot, r.resource, r.t_start, t, r.lease_expiry))
        self.res = out

    def safe(self, resource, robot, t_from):
        blockers = [r for r in self.res
                    if r.robot != robot and self.excl[resource, r.resource]]
        pts = sorted({t_from, INF} | {p for r in blockers for p in (r.t_start, r.t_end)
                                      if p > t_from})
        free = []
        for a, b in zip(pts, pts[1:]):
            if not any(r.t_start < b and a < r.t_end for r in blockers):
                if free and free[-1][1] == a:
                    free[-1] = (free[-1][0], b)
                else:
                    free.append((a, b))
        return free

    def key(self):
        return sorted((r.robot, r.resource, r.t_start, r.t_end, r.lease_expiry)
                      for r in self.res)


def random_relation(rng: random.Random, n: int) -> np.ndarray:
    excl = np.zeros((n, n), dtype=bool)
    solid = [rng.random() < 0.9 for _ in range(n)]       # the rest have empty geometry
    for i in range(n):
        excl[i, i] = solid[i]
        for j in range(i + 1, n):
            if solid[i] and solid[j] and rng.random() < 0.25:
                excl[i, j] = excl[j, i] = True
    return excl


def holds_invariant(t: ReservationTable, excl: np.ndarray) -> bool:
    rs = t.reservations()
    if len(rs) < 2:
        return True
    robot = np.array([hash(r.robot) for r in rs])
    res = np.array([r.resource for r in rs])
    t0 = np.array([r.t_start for r in rs])
    t1 = np.array([r.t_end for r in rs])
    bad = (excl[res][:, res] & (robot[:, None] != robot[None, :])
           & (t0[:, None] < t1[None, :]) & (t0[None, :] < t1[:, None]))
    return not bad.any()


@pytest.mark.parametrize("chunk", range(10))
def test_random_sequences_keep_invariant_and_agree_with_brute_force(chunk):
    """300 sequences of 100 operations over random exclusion relations: after every
    operation no two robots hold exclusive resources at overlapping times, the table's
    content equals the brute-force model's, commit accepts exactly when the model finds
    no conflict (and names the same pair), and safe_intervals / is_free agree with the
    model."""
    n_res, robots = 12, ["a", "b", "c", "d"]
    for seed in range(chunk * 30, chunk * 30 + 30):
        rng = random.Random(seed)
        excl = random_relation(rng, n_res)
        # even chunks: resource ids bounded (list storage); odd: unbounded (dict storage)
        t = ReservationTable(lambda r, excl=excl: np.flatnonzero(excl[r]),
                             n_res if chunk % 2 == 0 else None)
        m = Model(excl)
        for step in range(100):
            ctx = f"seed {seed} step {step}"
            op = rng.random()
            robot = rng.choice(robots)
            if op < 0.55:
                segs = []
                for _ in range(rng.randint(1, 4)):
                    s = rng.randint(0, 40) / 2
                    e = INF if rng.random() < 0.08 else s + rng.randint(1, 6) / 2
                    segs.append((rng.randrange(n_res), s, e))
                rf = rng.randint(0, 40) / 2 if rng.random() < 0.4 else None
                lease = rng.choice([INF, INF, rng.randint(0, 40)])
                expected = m.conflict(robot, segs, lease)
                assert (t.check(robot, segs) is None) == (expected is None), ctx
                res = t.commit(robot, segs, replace_from=rf, lease_expiry=lease)
                assert res.ok == (expected is None), ctx
                if expected is None:
                    if rf is not None:
                        m.cut(robot, rf)
                    m.res += [Reservation(robot, r, a, b, lease) for r, a, b in segs]
                else:
                    assert res.conflict.requested == expected[0], ctx
                    assert res.conflict.existing == expected[1], ctx
            elif op < 0.65:
                if rng.random() < 0.7:
                    after = rng.randint(0, 40) / 2
                    t.release(robot, after=after)
                    m.cut(robot, after)
                else:
                    t.release(robot)
                    m.res = [r for r in m.res if r.robot != robot]
            elif op < 0.72:
                tb = rng.randint(0, 20) / 2
                n = t.release_before(tb)
                assert n == sum(r.t_end <= tb for r in m.res), ctx
                m.res = [r for r in m.res if r.t_end > tb]
            elif op < 0.85:
                lease = rng.choice([INF, rng.randint(0, 40)])
                t.renew(robot, lease)
                m.res = [Reservation(r.robot, r.resource, r.t_start, r.t_end, lease)
                         if r.robot == robot else r for r in m.res]
            else:
                now = rng.randint(0, 40)
                gone = t.expire(now)
                assert gone == sorted({r.robot for r in m.res if r.lease_expiry <= now}), ctx
                m.res = [r for r in m.res if r.lease_expiry > now]
            assert holds_invariant(t, excl), ctx
            assert sorted((r.robot, r.resource, r.t_start, r.t_end, r.lease_expiry)
                          for r in t.reservations()) == m.key(), ctx
            for _ in range(2):
                x, who = rng.randrange(n_res), rng.choice(robots + [None])
                t_from = rng.randint(0, 40) / 2
                t_to = rng.choice([INF, t_from + rng.randint(1, 10) / 2])
                expected = [iv for iv in m.safe(x, who, t_from) if iv[0] < t_to]
                assert t.safe_intervals(x, robot=who, t_from=t_from, t_to=t_to) == \
                    expected, ctx
                assert t.is_free(x, t_from, t_to, robot=who) == (
                    bool(expected) and expected[0][0] == t_from and expected[0][1] >= t_to), ctx

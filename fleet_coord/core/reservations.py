"""The space-time reservation table.

A reservation is `(robot, resource, [t_start, t_end))`: the robot may occupy the resource
(a roadmap vertex or lane middle, see docs/core-model.md) during that half-open interval.
The table keeps one invariant, checked on every commit:

    no two different robots ever hold mutually exclusive resources over overlapping
    time intervals.

A robot's own reservations never conflict with each other. Commits are atomic (all
segments or none), a commit may atomically replace the robot's plan from a time on
(`replace_from`), and reservations carry a lease that the owner renews; `expire(now)`
drops what was not renewed. The planner asks `safe_intervals` (SIPP) and `is_free`.

The table is the authority's state (the `traffic` node) and, through `snapshot`,
`drain_updates` and `apply_update`, a replica's state on every agent.

How conflicts are detected
--------------------------
Per resource `y` the table keeps the reservations *on y* in one or more **tracks**: a
track holds pairwise-disjoint intervals sorted by time, as one flat array of bounds
[s0, e0, s1, e1, ...] searched with `bisect`. Because a resource with non-empty
geometry is exclusive with itself, reservations of different robots on `y` never
overlap, so nearly always `y` has exactly one track; a second track only appears when
one robot holds overlapping reservations on `y` itself (harmless, and rare) or `y` has
empty geometry. The question "is resource x free over [t0, t1) for robot R" is
answered by looking, for every `y` in `exclusive(x)`, at the entries of `y`'s tracks
that overlap [t0, t1): one bisect per track plus the hits. The cost is
O(|exclusive(x)| * log n_y + hits), independent of how many reservations the table
holds elsewhere; a commit inserts each segment once (O(log n_y) + a memmove).

Why not one list of "blocking intervals" per resource (each reservation copied into
`blocked[x]` for every x exclusive with it)? Such a list is not disjoint: a robot parked
forever at vertex u puts [t, inf) into `blocked[e]` for the lane e = u -> v, while
traffic through v keeps adding entries to the same list. Finding the overlaps of
[t0, t1) then needs an interval tree; a sorted-by-start scan with a running max end
degenerates to a linear scan behind the infinite interval. Keeping per-resource
disjoint tracks and fanning the query out over `exclusive(x)` (a handful of resources on
a roadmap) keeps every lookup a plain bisect, makes a commit insert each segment once
instead of |exclusive| times, and stays correct whatever overlaps are legal.

The rest is bookkeeping sized to what an operation touches: per robot, its
reservations sorted by end (releasing a plan from t on touches only what ends after t);
two lazy min-heaps, by end and by lease expiry, for `release_before` and `expire`.

The exclusion relation must be symmetric (y in exclusive(x) iff x in exclusive(y)) and
fixed for the lifetime of the table; the table checks symmetry for every resource it
touches and caches `exclusive(x)`.

The table is not thread-safe: its owner serialises calls (the traffic node runs its
services in one mutually exclusive callback group). Time is always a parameter.
"""
from __future__ import annotations

import heapq
import math
import operator
from array import array
from bisect import bisect_left, bisect_right
from dataclasses import dataclass, replace
from typing import Any, Callable, Iterable, NoReturn

__all__ = [
    "CommitResult",
    "ReplicaOutOfSync",
    "Reservation",
    "ReservationConflict",
    "ReservationTable",
]

Segment = tuple[int, float, float]
Exclusion = Callable[[int], Iterable[int]]


@dataclass(frozen=True, slots=True)
class Reservation:
    """`robot` holds `resource` over the half-open interval [t_start, t_end).

    `t_end` may be `math.inf` ("held until released", e.g. parked at the goal). After
    `lease_expiry` the table may drop the reservation unless the robot renewed it.
    """
    robot: str
    resource: int
    t_start: float
    t_end: float
    lease_expiry: float = math.inf

    def overlaps(self, t0: float, t1: float) -> bool:
        return self.t_start < t1 and t0 < self.t_end

    def to_dict(self) -> dict[str, Any]:
        return {"robot": self.robot, "resource": self.resource, "t_start": self.t_start,
                "t_end": self.t_end, "lease_expiry": self.lease_expiry}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Reservation:
        return cls(str(d["robot"]), operator.index(d["resource"]), float(d["t_start"]),
                   float(d["t_end"]), float(d.get("lease_expiry", math.inf)))

    def __str__(self) -> str:
        return f"{self.robot!r} on resource {self.resource} [{self.t_start!r}, {self.t_end!r})"


def _sort_key(r: Reservation) -> tuple[float, float, str, int, float]:
    return (r.t_start, r.t_end, r.robot, r.resource, r.lease_expiry)


sort_key = _sort_key   # the order of `ReservationTable.reservations`


class ReservationConflict(Exception):
    """A requested reservation collides with another robot's reservation.

    `requested` is the first requested segment (in the order given) that conflicts and
    `existing` the earliest-starting reservation it conflicts with.
    """

    def __init__(self, requested: Reservation, existing: Reservation) -> None:
        super().__init__(f"robot {requested} conflicts with robot {existing}")
        self.requested = requested
        self.existing = existing

    def __reduce__(self) -> tuple[type[ReservationConflict], tuple[Reservation, Reservation]]:
        # keep it picklable despite the two-argument constructor
        return (type(self), (self.requested, self.existing))


class ReplicaOutOfSync(Exception):
    """A replica cannot apply an update (a version gap, or an update that does not match
    its state). The replica must re-fetch a snapshot."""

    def __init__(self, message: str, current_version: int, update_version: int) -> None:
        super().__init__(message)
        self.current_version = current_version
        self.update_version = update_version

    def __reduce__(self) -> tuple[type[ReplicaOutOfSync], tuple[str, int, int]]:
        return (type(self), (str(self), self.current_version, self.update_version))


@dataclass(frozen=True)
class CommitResult:
    """Outcome of `ReservationTable.commit`: `version` is the table version after the call
    (unchanged when refused); `conflict` says why a commit was refused."""
    ok: bool
    version: int
    conflict: ReservationConflict | None = None


class _Track:
    """Pairwise-disjoint reservations on one resource, sorted by time.

    `bounds` is the flat array of their bounds [s0, e0, s1, e1, ...] (C doubles): it is
    non-decreasing because the intervals are disjoint and sorted, so one bisect over a
    contiguous buffer says where a time falls -- an odd position is inside interval
    pos // 2, an even one in the gap before it. `items[k]` is the reservation of interval
    k. `more` lists further tracks on the same resource (rarely any, see the module
    docstring).
    """
    __slots__ = ("bounds", "items", "more")

    def __init__(self) -> None:
        self.bounds = array("d")
        self.items: list[Reservation] = []
        self.more: list[_Track] | None = None

    def try_insert(self, r: Reservation) -> bool:
        b = self.bounds
        p = bisect_right(b, r.t_start)
        if p & 1 or (p < len(b) and b[p] < r.t_end):
            return False           # r.t_start is inside an interval, or r runs into the next
        b[p:p] = array("d", (r.t_start, r.t_end))
        self.items.insert(p >> 1, r)
        return True

    def index_of(self, r: Reservation) -> int:
        """Index of the interval that starts at r.t_start (starts are unique in a track;
        the previous interval may end exactly there), or -1."""
        k = (bisect_left(self.bounds, r.t_start) + 1) >> 1
        return k if k < len(self.items) and self.items[k].t_start == r.t_start else -1

    def pop(self, k: int) -> None:
        del self.bounds[2 * k:2 * k + 2]
        del self.items[k]

    def chain(self) -> tuple[_Track, ...]:
        return (self,) if self.more is None else (self, *self.more)


class _RobotIndex:
    """One robot's reservations sorted by end, so releasing its plan from t on touches
    only what ends after t, not its whole history."""
    __slots__ = ("ends", "items")

    def __init__(self) -> None:
        self.ends: list[float] = []
        self.items: list[Reservation] = []

    def add(self, r: Reservation) -> None:
        i = bisect_right(self.ends, r.t_end)
        self.ends.insert(i, r.t_end)
        self.items.insert(i, r)

    def discard(self, r: Reservation) -> None:
        i = bisect_left(self.ends, r.t_end)
        while self.items[i] is not r:
            i += 1
        del self.ends[i], self.items[i]

    def ending_after(self, t: float) -> list[Reservation]:
        return self.items[bisect_right(self.ends, t):]


class ReservationTable:
    """The space-time reservation table (see the module docstring for the invariant and
    the data structure).

    `exclusive(r)` returns the resources mutually exclusive with resource `r`, including
    `r` itself when its geometry is non-empty (the roadmap's `Exclusion.of`).
    `num_resources`, when given, bounds resource ids to `0 .. num_resources-1`.
    `record_updates=False` turns off the update log (`drain_updates`) for a table that
    is nobody's authority, so an undrained log cannot grow without bound.
    """

    def __init__(self, exclusive: Exclusion, num_resources: int | None = None, *,
                 record_updates: bool = True) -> None:
        if not callable(exclusive):
            raise TypeError(f"exclusive must be a callable resource -> resources, got {exclusive!r}")
        if num_resources is not None and num_resources < 0:
            raise ValueError(f"num_resources must be >= 0 or None, got {num_resources!r}")
        self._exclusive_fn = exclusive
        self._num_resources = num_resources
        self._record = record_updates
        self._raw_excl: dict[int, tuple[int, ...]] = {}
        self._raw_excl_set: dict[int, frozenset[int]] = {}
        self._excl: dict[int, tuple[int, ...]] = {}       # checked for symmetry
        # resource -> its first track (None: nothing held). A list when the number of
        # resources is known (an index is cheaper than a hash probe on the hot path).
        self._held: list[_Track | None] | dict[int, _Track | None] = (
            {} if num_resources is None else [None] * num_resources)
        self._head: Callable[[int], _Track | None] = (
            self._held.get if isinstance(self._held, dict) else self._held.__getitem__)
        self._by_robot: dict[str, _RobotIndex] = {}
        self._count = 0
        # Lazy-deletion heaps (entries whose reservation is gone are skipped on pop).
        self._end_heap: list[tuple[float, int, Reservation]] = []
        self._lease_heap: list[tuple[float, int, Reservation]] = []
        self._seq = 0
        self._version = 0
        self._updates: list[dict[str, Any]] = []

    # ------------------------------------------------------------------ inspection
    @property
    def version(self) -> int:
        """Increments by one with every update (every successful mutation of one robot's
        reservations)."""
        return self._version

    @property
    def num_resources(self) -> int | None:
        return self._num_resources

    def __len__(self) -> int:
        return self._count

    def built_on(self, exclusive: Exclusion) -> bool:
        """Whether this table's exclusion relation is `exclusive` (the same function, or
        a bound method of the same object)."""
        return bool(self._exclusive_fn == exclusive)

    def share_exclusion_cache(self, other: "ReservationTable") -> None:
        """Use `other`'s cache of the exclusion relation (checked tuples and sets) from
        now on. Only for tables built on the same relation: a replica that replaces its
        table at each snapshot, or the replicas of many agents in one process, would
        otherwise each rebuild it (the agents' largest Python allocation, refilled at
        every snapshot)."""
        self._raw_excl, self._raw_excl_set, self._excl = (
            other._raw_excl, other._raw_excl_set, other._excl)

    def exclusive(self, resource: int) -> tuple[int, ...]:
        """The (cached, symmetry-checked) resources exclusive with `resource`."""
        try:
            return self._excl[resource]
        except KeyError:
            pass
        resource = self._check_resource(resource, "resource")
        ex = self._raw(resource)
        for y in ex:
            if y != resource and resource not in self._raw_set(y):
                raise ValueError(
                    f"exclusion relation is not symmetric: {y} is in exclusive({resource}) "
                    f"but {resource} is not in exclusive({y})")
        self._excl[resource] = ex
        return ex

    def reservations(self, robot: str | None = None, *,
                     ordered: bool = True) -> list[Reservation]:
        """All reservations (of `robot`, if given), sorted by start time (`ordered`; a
        caller that picks a few can skip the sort: `sort_key` orders them the same)."""
        if robot is None:
            out = [r for index in self._by_robot.values() for r in index.items]
        else:
            index = self._by_robot.get(robot)
            out = [] if index is None else list(index.items)
        if ordered:
            out.sort(key=_sort_key)
        return out

    def robots(self) -> list[str]:
        """Robots holding at least one reservation, sorted."""
        return sorted(self._by_robot)

    def holder_at(self, resource: int, t: float) -> str | None:
        """The robot holding exactly `resource` at time `t` (not an exclusive neighbour),
        or None."""
        resource = self._check_resource(resource, "resource")
        t = self._check_time(t, "t")
        head = self._head(resource)
        best: Reservation | None = None
        for track in () if head is None else head.chain():
            p = bisect_right(track.bounds, t)
            if p & 1:
                r = track.items[p >> 1]
                if best is None or _sort_key(r) < _sort_key(best):
                    best = r
        return None if best is None else best.robot

    # ------------------------------------------------------------------ queries
    def _blockers(self, resource: int, t0: float, t1: float,
                  robot: str | None) -> list[Reservation]:
        """Other robots' reservations on resources exclusive with `resource` overlapping
        [t0, t1). (The hot path of every query: loops written out, no generators.)"""
        head_of = self._head
        out = []
        for y in self.exclusive(resource):
            head = head_of(y)
            if head is None:
                continue
            for track in (head,) if head.more is None else head.chain():
                items, b = track.items, track.bounds
                n = len(items)
                k = bisect_right(b, t0) >> 1        # first interval ending after t0
                while k < n and b[2 * k] < t1:
                    if items[k].robot != robot:
                        out.append(items[k])
                    k += 1
        return out

    def _blocked(self, resource: int, t0: float, t1: float, robot: str | None) -> bool:
        """`_blockers(...) != []`, stopping at the first hit."""
        head_of = self._head
        for y in self.exclusive(resource):
            head = head_of(y)
            if head is None:
                continue
            for track in (head,) if head.more is None else head.chain():
                items, b = track.items, track.bounds
                n = len(items)
                k = bisect_right(b, t0) >> 1
                while k < n and b[2 * k] < t1:
                    if items[k].robot != robot:
                        return True
                    k += 1
        return False

    def first_conflict(self, resource: int, t0: float, t1: float, *,
                       robot: str | None = None) -> Reservation | None:
        """The earliest-starting reservation of another robot (not `robot`) that blocks
        `resource` somewhere in [t0, t1), or None when it is free."""
        t0, t1 = self._check_interval(t0, t1)
        return min(self._blockers(resource, t0, t1, robot), key=_sort_key, default=None)

    def conflicts(self, resource: int, t0: float, t1: float, *,
                  robot: str | None = None) -> list[Reservation]:
        """Every reservation of another robot (not `robot`) that blocks `resource`
        somewhere in [t0, t1)."""
        t0, t1 = self._check_interval(t0, t1)
        return self._blockers(resource, t0, t1, robot)

    def is_free(self, resource: int, t0: float, t1: float, *,
                robot: str | None = None) -> bool:
        """True when no other robot blocks `resource` anywhere in [t0, t1)."""
        t0, t1 = self._check_interval(t0, t1)
        return not self._blocked(resource, t0, t1, robot)

    def safe_intervals(self, resource: int, *, robot: str | None = None,
                       t_from: float = 0.0, t_to: float = math.inf
                       ) -> list[tuple[float, float]]:
        """The safe intervals of `resource` (SIPP): maximal intervals [a, b), a >= t_from,
        during which no robot other than `robot` holds a resource exclusive with it.
        Sorted and disjoint; the first one is clipped at `t_from`, `b` may be inf.

        `t_to` (an extension for rolling horizons) limits the answer to the intervals
        that start before `t_to`; the last one still carries its true end, so the cost
        is bounded by the reservations inside [t_from, t_to).
        """
        t_from = self._check_time(t_from, "t_from")
        t_to = self._check_time(t_to, "t_to")
        if t_to <= t_from:
            return []
        # One pass per track: the blocking intervals overlapping [t_from, t_to), then on to
        # the first blocking start at or after t_to (the true end of the last interval).
        spans: list[tuple[float, float]] = []
        after = math.inf
        head_of = self._head
        for y in self.exclusive(resource):
            head = head_of(y)
            if head is None:
                continue
            for track in (head,) if head.more is None else head.chain():
                items, b = track.items, track.bounds
                n = len(items)
                k = bisect_right(b, t_from) >> 1
                while k < n:
                    s = b[2 * k]
                    if items[k].robot != robot:
                        if s >= t_to:
                            if s < after:
                                after = s
                            break
                        spans.append((s, b[2 * k + 1]))
                    k += 1
        spans.sort()
        out: list[tuple[float, float]] = []
        cur = t_from   # start of the free interval being grown
        for s, e in spans:
            if s > cur:
                out.append((cur, s))
            if e > cur:
                cur = e
        if cur < t_to:
            out.append((cur, after))
        return out

    def check(self, robot: str,
              segments: Iterable[Segment]) -> ReservationConflict | None:
        """Dry run of `commit`: the conflict that would refuse it, or None."""
        return self._find_conflict(self.validated(robot, segments))

    def _find_conflict(self, requested: list[Reservation]) -> ReservationConflict | None:
        for req in requested:
            hit = min(self._blockers(req.resource, req.t_start, req.t_end, req.robot),
                      key=_sort_key, default=None)
            if hit is not None:
                return ReservationConflict(req, hit)
        return None

    # ------------------------------------------------------------------ mutations
    def commit(self, robot: str, segments: Iterable[Segment], *,
               replace_from: float | None = None,
               lease_expiry: float = math.inf) -> CommitResult:
        """Reserve `segments` = [(resource, t_start, t_end), ...] for `robot`, atomically:
        either all are added or the table is left untouched.

        Refused (ok=False, `conflict` set) when a segment overlaps another robot's
        reservation on a mutually exclusive resource. With `replace_from=t` the robot's
        own reservations from t on are released (those straddling t truncated to end at
        t) in the same step, which is how a robot replaces its plan; own reservations
        never conflict, so the release cannot change the verdict.
        Raises ValueError on malformed input.
        """
        requested = self.validated(robot, segments, lease_expiry)
        if replace_from is not None:
            replace_from = self._check_time(replace_from, "replace_from")
        conflict = self._find_conflict(requested)
        if conflict is not None:
            return CommitResult(False, self._version, conflict)
        removed: list[Reservation] = []
        added: list[Reservation] = []
        if replace_from is not None:
            removed, added = self._cut(robot, replace_from)
        added.extend(requested)
        if removed or added:
            self._mutate(robot, removed, added)
        return CommitResult(True, self._version, None)

    def release(self, robot: str, *, after: float | None = None) -> int:
        """Release `robot`'s reservations; with `after=t` keep what lies before t
        (reservations straddling t are truncated to end at t). Returns how many
        reservations were dropped or truncated."""
        if after is None:
            index = self._by_robot.get(robot)
            removed = [] if index is None else sorted(index.items, key=_sort_key)
            added: list[Reservation] = []
        else:
            removed, added = self._cut(robot, self._check_time(after, "after"))
        if removed:
            self._mutate(robot, removed, added)
        return len(removed)

    def release_before(self, t: float) -> int:
        """Garbage-collect the past: drop every reservation that ended at or before t.
        Returns the number dropped (one update per robot affected)."""
        t = self._check_time(t, "t")
        gone = self._pop_heap(self._end_heap, t)
        self._remove_grouped(gone)
        return len(gone)

    def renew(self, robot: str, lease_expiry: float) -> int:
        """Set the lease of all of `robot`'s reservations to `lease_expiry`. Returns the
        number of reservations whose lease changed."""
        lease_expiry = self._check_lease(lease_expiry)
        index = self._by_robot.get(robot)
        removed = [] if index is None else sorted(
            (r for r in index.items if r.lease_expiry != lease_expiry), key=_sort_key)
        if removed:
            self._mutate(robot, removed, [replace(r, lease_expiry=lease_expiry) for r in removed])
        return len(removed)

    def expire(self, now: float) -> list[str]:
        """Drop reservations whose lease expired (lease_expiry <= now). Returns the robots
        that lost reservations, sorted."""
        now = self._check_time(now, "now")
        gone = self._pop_heap(self._lease_heap, now)
        return self._remove_grouped(gone)

    # ------------------------------------------------------------------ replication
    def snapshot(self) -> dict[str, Any]:
        """The whole table as a JSON-able dict (infinities are floats)."""
        return {"version": self._version,
                "reservations": [r.to_dict() for r in self._sorted_all()]}

    @classmethod
    def from_snapshot(cls, snap: dict[str, Any], exclusive: Exclusion,
                      num_resources: int | None = None, *,
                      record_updates: bool = True,
                      share_cache_with: ReservationTable | None = None) -> ReservationTable:
        """Rebuild a table from `snapshot()`. Raises ValueError when the snapshot is
        malformed or breaks the invariant. `share_cache_with`: a table on the same
        exclusion relation whose cache to use (`share_exclusion_cache`)."""
        table = cls(exclusive, num_resources, record_updates=record_updates)
        if share_cache_with is not None:
            table.share_exclusion_cache(share_cache_with)
        for i, d in enumerate(snap["reservations"]):
            r = table._parse(d, f"snapshot reservation {i}")
            conflict = table._find_conflict([r])
            if conflict is not None:
                raise ValueError(f"snapshot breaks the invariant: {conflict}")
            table._insert(r)
        table._version = int(snap["version"])
        return table

    def drain_updates(self) -> list[dict[str, Any]]:
        """Authority side: the updates produced since the last drain, oldest first. Each is
        `{"version", "robot", "removed", "added"}` (reservations as dicts); a truncation
        appears as the old reservation removed and the shortened one added."""
        out, self._updates = self._updates, []
        return out

    def apply_update(self, update: dict[str, Any]) -> None:
        """Replica side: apply one update from the authority. Updates at or below the
        current version are ignored (duplicates); a gap or an update that does not match
        this replica's state raises ReplicaOutOfSync (re-fetch a snapshot)."""
        v = int(update["version"])
        if v <= self._version:
            return
        if v != self._version + 1:
            raise ReplicaOutOfSync(
                f"replica at version {self._version} received update {v}: "
                f"updates {self._version + 1}..{v - 1} are missing", self._version, v)
        removed: list[Reservation] = []
        taken: set[int] = set()
        for i, d in enumerate(update["removed"]):
            want = self._parse(d, f"update {v} removed[{i}]")
            found = self._find(want, taken)
            if found is None:
                raise ReplicaOutOfSync(
                    f"update {v} removes {want} (lease {want.lease_expiry!r}) which this "
                    f"replica does not hold", self._version, v)
            taken.add(id(found))
            removed.append(found)
        added = [self._parse(d, f"update {v} added[{i}]") for i, d in enumerate(update["added"])]
        self._mutate(str(update["robot"]), removed, added, version=v)

    # ------------------------------------------------------------------ internals
    def _parse(self, d: Any, what: str) -> Reservation:
        """A reservation from its dict form, validated like a committed segment."""
        try:
            r = Reservation.from_dict(d)
            (r,) = self.validated(r.robot, [(r.resource, r.t_start, r.t_end)], r.lease_expiry)
        except (AttributeError, KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{what} is malformed: {d!r} ({exc})") from None
        return r

    def _mutate(self, robot: str, removed: list[Reservation], added: list[Reservation],
                version: int | None = None) -> None:
        for r in removed:
            self._remove(r)
        for r in added:
            self._insert(r)
        self._version = self._version + 1 if version is None else version
        if self._record and version is None:
            self._updates.append({"version": self._version, "robot": robot,
                                  "removed": [r.to_dict() for r in removed],
                                  "added": [r.to_dict() for r in added]})

    def _insert(self, r: Reservation) -> None:
        head = self._head(r.resource)
        if head is None:
            head = self._held[r.resource] = _Track()
            head.try_insert(r)
        elif not head.try_insert(r):
            for track in head.more or ():
                if track.try_insert(r):
                    break
            else:
                track = _Track()
                track.try_insert(r)
                if head.more is None:
                    head.more = [track]
                else:
                    head.more.append(track)
        index = self._by_robot.get(r.robot)
        if index is None:
            index = self._by_robot[r.robot] = _RobotIndex()
        index.add(r)
        self._count += 1
        if r.t_end != math.inf:
            self._push(self._end_heap, r.t_end, r)
        if r.lease_expiry != math.inf:
            self._push(self._lease_heap, r.lease_expiry, r)

    def _remove(self, r: Reservation) -> None:
        head = self._head(r.resource)
        for i, track in enumerate(() if head is None else head.chain()):
            k = track.index_of(r)
            if k >= 0 and track.items[k] is r:
                track.pop(k)
                if not track.items:
                    assert head is not None
                    if i > 0:
                        assert head.more is not None
                        del head.more[i - 1]
                        if not head.more:
                            head.more = None
                    elif head.more:                  # promote the next track
                        nxt = head.more.pop(0)
                        nxt.more = head.more or None
                        self._held[r.resource] = nxt
                    elif self._num_resources is None:
                        del self._held[r.resource]
                    else:
                        self._held[r.resource] = None
                break
        else:  # pragma: no cover - would be a bug in the table itself
            raise AssertionError(f"reservation {r} is not in the table")
        mine = self._by_robot[r.robot]
        mine.discard(r)
        if not mine.items:
            del self._by_robot[r.robot]
        self._count -= 1

    def _find(self, want: Reservation, skip: set[int]) -> Reservation | None:
        head = self._head(want.resource)
        for track in () if head is None else head.chain():
            k = track.index_of(want)
            if k >= 0 and track.items[k] == want and id(track.items[k]) not in skip:
                return track.items[k]
        return None

    def _live(self, r: Reservation) -> bool:
        """Is this very object (not just an equal one) still in the table?"""
        head = self._head(r.resource)
        for track in () if head is None else head.chain():
            k = track.index_of(r)
            if k >= 0 and track.items[k] is r:
                return True
        return False

    def _push(self, heap: list[tuple[float, int, Reservation]], key: float, r: Reservation) -> None:
        self._seq += 1
        heapq.heappush(heap, (key, self._seq, r))
        if len(heap) > 2 * self._count + 1024:   # drop entries of reservations long gone
            heap[:] = [e for e in heap if self._live(e[2])]
            heapq.heapify(heap)

    def _pop_heap(self, heap: list[tuple[float, int, Reservation]], t: float) -> list[Reservation]:
        out = []
        while heap and heap[0][0] <= t:
            r = heapq.heappop(heap)[2]
            if self._live(r):
                out.append(r)
        # A reservation replaced by renew() is a new object; the old entry is dead. An
        # object appears at most once per heap, so `out` has no duplicates.
        return out

    def _remove_grouped(self, gone: list[Reservation]) -> list[str]:
        per_robot: dict[str, list[Reservation]] = {}
        for r in gone:
            per_robot.setdefault(r.robot, []).append(r)
        for robot in sorted(per_robot):
            self._mutate(robot, sorted(per_robot[robot], key=_sort_key), [])
        return sorted(per_robot)

    def _cut(self, robot: str, t: float) -> tuple[list[Reservation], list[Reservation]]:
        """What releasing `robot`'s reservations from t on removes and adds back."""
        removed, added = [], []
        index = self._by_robot.get(robot)
        for r in (() if index is None else index.ending_after(t)):
            removed.append(r)
            if r.t_start < t:
                added.append(replace(r, t_end=t))
        removed.sort(key=_sort_key)
        added.sort(key=_sort_key)
        return removed, added

    def _sorted_all(self) -> list[Reservation]:
        out = [r for index in self._by_robot.values() for r in index.items]
        out.sort(key=lambda r: (r.robot, r.resource, r.t_start, r.t_end, r.lease_expiry))
        return out

    def _raw(self, resource: int) -> tuple[int, ...]:
        try:
            return self._raw_excl[resource]
        except KeyError:
            pass
        try:
            ex = tuple(operator.index(y) for y in self._exclusive_fn(resource))
        except TypeError as exc:
            raise ValueError(f"exclusive({resource}) must give integer resource ids ({exc})") from None
        for y in ex:
            if y < 0 or (self._num_resources is not None and y >= self._num_resources):
                bound = "" if self._num_resources is None else f" < {self._num_resources}"
                raise ValueError(f"exclusive({resource}) contains {y}, which is not a "
                                 f"resource id (expected 0 <= id{bound})")
        self._raw_excl[resource] = ex
        self._raw_excl_set[resource] = frozenset(ex)
        return ex

    def _raw_set(self, resource: int) -> frozenset[int]:
        self._raw(resource)
        return self._raw_excl_set[resource]

    def _check_resource(self, resource: Any, what: str) -> int:
        try:
            res = operator.index(resource)
        except TypeError:
            raise ValueError(f"{what} must be an integer resource id, got {resource!r}") from None
        if res < 0 or (self._num_resources is not None and res >= self._num_resources):
            bound = "" if self._num_resources is None else f" < {self._num_resources}"
            raise ValueError(f"{what} {resource!r} is not a resource id (expected 0 <= id{bound})")
        return res

    @staticmethod
    def _check_time(t: Any, what: str) -> float:
        seconds = float(t)
        if math.isnan(seconds):
            raise ValueError(f"{what} must be a time in seconds, got NaN")
        return seconds

    @staticmethod
    def _check_lease(lease: Any) -> float:
        expiry = float(lease)
        if math.isnan(expiry):
            raise ValueError("lease_expiry must be a time in seconds (or inf), got NaN")
        return expiry

    def _check_interval(self, t0: Any, t1: Any) -> tuple[float, float]:
        t0, t1 = self._check_time(t0, "t0"), self._check_time(t1, "t1")
        if not t1 > t0:
            raise ValueError(f"interval [{t0}, {t1}) is empty: t1 must be > t0")
        return t0, t1

    def validated(self, robot: Any, segments: Iterable[Segment],
                  lease_expiry: Any = math.inf) -> list[Reservation]:
        """`segments` of `robot` as reservations, checked as `commit` checks them (a
        ValueError naming the segment and what was expected)."""
        if not isinstance(robot, str) or not robot:
            raise ValueError(f"robot must be a non-empty string id, got {robot!r}")
        lease = self._check_lease(lease_expiry)
        limit = math.inf if self._num_resources is None else self._num_resources
        out = []
        for i, seg in enumerate(segments):
            try:
                resource, t_start, t_end = seg
                res = operator.index(resource)
                t0, t1 = float(t_start), float(t_end)
            except (TypeError, ValueError):
                self._segment_error(i, seg, robot)
            # One comparison chain for the common case; it is False for NaN as well.
            if not (0 <= res < limit and -math.inf < t0 < t1):
                self._segment_error(i, seg, robot)
            self.exclusive(res)   # validate the relation around it before anything changes
            out.append(Reservation(robot, res, t0, t1, lease))
        return out

    def _segment_error(self, i: int, seg: Any, robot: str) -> NoReturn:
        """Raise the ValueError that says what is wrong with segment `i`."""
        where = f"segment {i} {seg!r} of robot {robot!r}"
        try:
            resource, t_start, t_end = seg
        except (TypeError, ValueError):
            raise ValueError(f"{where}: expected (resource, t_start, t_end)") from None
        try:
            res = operator.index(resource)
            t0, t1 = float(t_start), float(t_end)
        except (TypeError, ValueError):
            raise ValueError(f"{where}: expected an integer resource and float times") from None
        if res < 0:
            raise ValueError(f"{where}: resource id must be >= 0")
        if self._num_resources is not None and res >= self._num_resources:
            raise ValueError(f"{where}: unknown resource (the roadmap has "
                             f"{self._num_resources} resources)")
        if math.isnan(t0) or math.isnan(t1):
            raise ValueError(f"{where}: times must not be NaN")
        if not math.isfinite(t0):
            raise ValueError(f"{where}: t_start must be finite")
        raise ValueError(f"{where}: t_end must be > t_start (intervals are [t_start, t_end))")

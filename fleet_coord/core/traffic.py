"""The traffic authority: the one ReservationTable every robot commits to, plus what a
fleet needs around it — refusing robots that are lost, and keeping a lost robot's spot
blocked.

A robot is declared lost when nobody has heard it for a while. The authority cannot tell
why: its agent may have crashed (the driver's watchdog then stops the robot somewhere on
the path it had committed, after it was last heard) or its host may be cut off (its
agent cannot hear anyone and drives on to the end of what it committed, where it parks).
Either way the robot is inside what it holds from the moment it was last heard on, so:

- nothing it committed is released: a cut-off robot may still be driving it;
- every resource it held since it was last heard stays blocked until it returns or is
  removed (`robot_lost`);
- once its true position is known — its odometry shows it standing still, e.g. a crashed
  agent on a live robot — the rest is released and only the spot it stands on stays
  blocked (`robot_located`).

Blocking can clash with other robots' *future* reservations of that space (they planned
to pass after the lost robot left); those robots lose their reservations from the clash
on and must replan (they see it in their replica) — safety before throughput. The space
a robot is in never goes: a hold that has begun stays (the block leaves its time out),
and a robot revoked keeps for good what it can brake into - what its holds cover over
the next `brake_horizon` s - until its agent plans again: it may have to stop there,
later than its plan (`_revoke`; others' future holds of it are revoked in turn). A robot
that is lost itself cannot hear a revocation (e.g. the authority's own link was cut and
every robot went silent at once) and may be driving what it committed: its commitment
stands and the block leaves out the time it holds.

Around the table the authority decides who is in the fleet (fleet_coord.core.membership:
robots join by speaking; `remove_robot` takes one out for good, refused for an unknown
robot and for an alive one with work unless forced), who is alive (`LivenessTracker`:
silent for `lost_after` s = lost; the one `lost` set), where a lost robot stands (its
odometry, `on_lost_odometry`), and what leaves the table: reservations that ended
`keep_history` s ago are dropped before each snapshot, expired leases at every `tick`.
With a `TableLog` every change is written ahead of the updates that announce it
(`drain`), and `recover` rebuilds the authority from the log after a restart.

Restarts (the invariant: docs/core-model.md, "Authority restarts"): every incarnation has
an `epoch` of its own, carried by every update, so each replica resynchronises on the new
incarnation's first snapshot (core.replica). A new incarnation that reloaded its table
(the table log, on in every shipped config) grants as before; the robots of its table
are judged silent only from when they could be heard (`listening_since`: DDS discovers
their hosts one by one). One that could not - no log - knows nothing of what robots
hold, so it `start_recovery`s: for `recovery_window` s it grants only re-assertions (what
a robot held under the old epoch: its path from now on and its spot), ending early once
it has listened from when every robot could be heard and every robot it has heard has
re-asserted or reports that its holds come from no earlier table (`table_epoch` 0, a
fresh agent); a robot heard that never re-asserted gets the spot it reports standing on
blocked. Robots keep to what they were granted meanwhile.

Pure: time is a parameter, outputs are `TableUpdate`s to publish and `Action`s (a robot
lost or removed, start / stop watching a lost robot's odometry); the node
(fleet_coord.traffic) translates.
"""
from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Protocol, Union

import shapely

from fleet_coord.core.liveness import LivenessTracker
from fleet_coord.core.membership import Incarnation, Membership, removal_refusal
from fleet_coord.core.replica import TableUpdate
from fleet_coord.core.reservations import (CommitResult, Reservation, ReservationConflict,
                                           ReservationTable, Segment)
from fleet_coord.core.roadmap import Exclusion
from fleet_coord.core.table_log import TableLog


@dataclass
class Unheard:
    """What was revoked from a robot that has not been heard since: it may be cut off and
    still driving it (`TrafficAuthority.unheard`). (resource, t_start, t_end, revoked at)."""
    holds: list[tuple[int, float, float, float]] = field(default_factory=list)


#: s between two snapshots asked for out of turn (a replica's resync request, a robot
#: heard again): what a burst of requests costs the authority
SNAPSHOT_MIN_INTERVAL = 0.25


@dataclass
class LossOutcome:
    blocked: list[int]                                   # resources kept blocked
    revoked: dict[str, float] = field(default_factory=dict)  # robot -> revoked from time t
    yielded: set[str] = field(default_factory=set)  # lost robots whose commitments it spared
    kept: dict[str, set[int]] = field(default_factory=dict)  # revoked robot -> what it keeps


def _without(block: list[tuple[int, float, float]], requested: Reservation,
             existing: Reservation) -> list[tuple[int, float, float]]:
    """`block` with its entries on `requested`'s resource cut around the time `existing`
    holds."""
    out = []
    for res, t0, t1 in block:
        if res != requested.resource or t1 <= existing.t_start or existing.t_end <= t0:
            out.append((res, t0, t1))
            continue
        if t0 < existing.t_start:
            out.append((res, t0, min(t1, existing.t_start)))
        if existing.t_end < t1:
            out.append((res, max(t0, existing.t_end), t1))
    return out


class RobotLostError(RuntimeError):
    pass


class Log(Protocol):
    def info(self, msg: str) -> object: ...
    def warning(self, msg: str) -> object: ...


class ReserveError(str, Enum):
    """Why a reserve call was refused (the codes of srv/Reserve's `error`)."""
    NONE = "NONE"
    CONFLICT = "CONFLICT"                  # another robot holds an exclusive resource
    INVALID = "INVALID"                    # bad segments, a lost or removed robot
    ROADMAP_MISMATCH = "ROADMAP_MISMATCH"  # planned on another roadmap
    RECOVERING = "RECOVERING"              # a new incarnation grants re-assertions only


@dataclass
class Recovery:
    """A new incarnation re-learning what robots hold (`start_recovery`)."""
    started: float
    until: float                           # ends at the latest then
    listen: float                          # ... and not before `listen` s after every robot
                                           # could be heard (`listening_since`)
    reasserted: set[str] = field(default_factory=set)
    settled: set[str] = field(default_factory=set)      # nothing to re-assert
    spots: dict[str, int] = field(default_factory=dict)  # robot -> resource it reports


@dataclass(frozen=True)
class ReserveResult:
    ok: bool
    version: int                           # the table's version after the call
    error: ReserveError = ReserveError.NONE
    message: str = ""
    conflict: Reservation | None = None    # the other robot's reservation in the way
    segment_index: int = 0                 # the requested segment that conflicts


@dataclass(frozen=True)
class RemoveResult:
    ok: bool
    error: str = ""
    released: int = 0                      # reservations freed
    was_lost: bool = False
    already: bool = False                  # removed before (a client retrying)


@dataclass(frozen=True)
class RobotLost:
    """Announce: `robot` is lost (what it committed stays, `outcome.blocked` is kept)."""
    robot: str
    outcome: LossOutcome
    reason: str = ""


@dataclass(frozen=True)
class RobotRemoved:
    """Announce: `robot` was taken out of the fleet."""
    robot: str
    reason: str = ""


@dataclass(frozen=True)
class WatchOdometry:
    """Start (`on`) or stop listening to a lost robot's odometry (`on_lost_odometry`)."""
    robot: str
    on: bool


Action = Union[RobotLost, RobotRemoved, WatchOdometry]


@dataclass
class Locating:
    """A lost robot whose odometry is watched: standing still at `at` since `still_since`."""
    still_since: float | None = None
    at: tuple[float, float] | None = None


#: how long a lost robot's odometry must show it standing still before it is located (s)
STILL_FOR = 0.5


class TrafficAuthority:
    """The reservation table plus the fleet around it (module doc). Constructed with just
    a table it is the table-level authority the unit tests drive; the node gives it the
    exclusion (to locate lost robots), the liveness timeout, the history to keep and the
    table log."""

    def __init__(self, table: ReservationTable, *, exclusion: Exclusion | None = None,
                 roadmap_id: str = "", lost_after: float = 1.5, keep_history: float = 60.0,
                 table_log: TableLog | None = None, log: Log | None = None,
                 epoch: int = 0, discovery_grace: float = 5.0,
                 brake_horizon: float = 1.0) -> None:
        for name, value in (("discovery_grace", discovery_grace),
                            ("brake_horizon", brake_horizon)):
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise ValueError(f"{name}: expected a finite number of seconds >= 0, "
                                 f"got {value!r}")
        self.table = table
        self.epoch = epoch                            # this incarnation (never 0 in a node)
        self.recovery: Recovery | None = None
        self.exclusion = exclusion
        self.roadmap_id = roadmap_id
        self.liveness = LivenessTracker(lost_after)
        self._unheard: set[str] = set()               # taken over from the table log
        self._reloaded_at = 0.0                       # ... at this time
        self.discovery_grace = discovery_grace
        self._first_heard: float | None = None        # the first robot state heard
        self._discovered: float | None = None         # the last robot-state writer found
        self.brake_horizon = brake_horizon
        self.keep_history = keep_history
        self.membership = Membership()
        self.work: dict[str, list[str]] = {}          # robot -> its current and queued tasks
        self.locating: dict[str, Locating] = {}
        # robot -> resources of its spot it stands in but could not be given: another
        # robot's hold there had begun (`_defer`)
        self.deferred: dict[str, set[int]] = {}
        self.table_log = table_log
        self._logged_lost: set[str] = set()           # the lost set the table log has
        self._logged_unheard: dict[str, list[tuple[int, float, float, float]]] = {}  # ... unheard
        # robot -> what was revoked from it that it cannot have heard yet (not heard since):
        # no one else is granted it meanwhile, and it is its commitment if it is declared
        # lost (`_revoke`, docs/core-model.md "Lost robots and revocation")
        self.unheard: dict[str, Unheard] = {}
        # a snapshot out of turn: asked for by a stale replica (`want_snapshot`) or due to a
        # robot heard again, published at most every SNAPSHOT_MIN_INTERVAL s
        self._snapshot_wanted = False
        self._last_snapshot = -math.inf
        self.log: Log = log if log is not None else logging.getLogger("fleet_coord.traffic")

    @property
    def lost(self) -> set[str]:
        """Robots declared lost and not heard since (the liveness tracker's set)."""
        return self.liveness.lost

    @classmethod
    def recover(cls, table_log: TableLog, exclusion: Exclusion, num_resources: int,
                now: float, *, roadmap_id: str = "", lost_after: float = 1.5,
                keep_history: float = 60.0, log: Log | None = None,
                epoch: int = 0, discovery_grace: float = 5.0,
                brake_horizon: float = 1.0) -> TrafficAuthority:
        """The authority a table log records (a new one when there is no log yet). A robot
        found in the table is judged silent only from when it could have been heard
        (`listening_since`: a new process hears a robot only once DDS has discovered its
        host, seconds on a loaded machine); one still unheard `lost_after` s after that is
        lost as usual, having been silent since `now`. From here on every change is
        written to the log ahead of its update."""
        rec = table_log.load(exclusion.of, num_resources)
        table = rec.table if rec is not None else ReservationTable(exclusion.of, num_resources)
        if rec is not None and table_log.epoch is not None:
            epoch = table_log.epoch   # the same table goes on: replicas need not resync
        table_log.epoch = epoch
        ta = cls(table, exclusion=exclusion, roadmap_id=roadmap_id, lost_after=lost_after,
                 keep_history=keep_history, table_log=table_log, log=log, epoch=epoch,
                 discovery_grace=discovery_grace, brake_horizon=brake_horizon)
        if rec is not None:
            ta.liveness.lost.update(rec.lost)
            ta.unheard = {robot: Unheard(list(holds)) for robot, holds in rec.unheard.items()}
            ta._unheard.update(set(rec.table.robots()) - ta.lost)
            ta._reloaded_at = now
            ta.log.info(f"recovered the table from {table_log.path}: {len(rec.table)} "
                        f"reservations of {len(rec.table.robots())} robots at version "
                        f"{rec.table.version} ({rec.updates} updates replayed), lost: "
                        f"{sorted(rec.lost) or 'none'}, revoked and not heard: "
                        f"{sorted(rec.unheard) or 'none'}")
        ta._logged_unheard = ta._unheard_holds()
        table_log.start(ta.table, ta.lost, ta._logged_unheard)
        ta._logged_lost = set(ta.lost)
        return ta

    # -- restarts -----------------------------------------------------------------------------

    def start_recovery(self, now: float, window: float, listen: float) -> None:
        """This incarnation started without the table its predecessor granted: grant only
        re-assertions until `now + window`, or earlier once it has listened `listen` s from
        when every robot could be heard (`listening_since`) and every robot heard has
        re-asserted or has nothing to re-assert (module doc)."""
        self.recovery = Recovery(started=now, until=now + window, listen=listen)
        self.log.warning(f"traffic authority epoch {self.epoch} started without a table: "
                         f"granting only re-assertions of robots' holds for up to {window:g} s")

    @property
    def recovering(self) -> bool:
        return self.recovery is not None

    def on_discovery(self, now: float) -> None:
        """A writer of robot states was discovered (the node's DDS match): the robots it
        speaks for can be heard from `now` on."""
        self._discovered = now if self._discovered is None else max(self._discovered, now)

    def listening_since(self) -> float | None:
        """From when this incarnation could hear every robot: the later of the first robot
        state it heard (a new process hears nobody before DDS has discovered it) and the
        last robot-state writer discovered since (hosts are discovered one by one), but
        no later than `discovery_grace` s after that first state, so that a robot that
        never speaks is still judged in bounded time. None before any robot was heard."""
        first = self._first_heard
        if first is None:
            return None
        last = first if self._discovered is None else max(first, self._discovered)
        return min(last, first + self.discovery_grace)

    def _judge_unheard(self, now: float) -> None:
        """Robots reloaded from the table log and still unheard `lost_after` s after every
        robot could be heard have been silent since the reload: the liveness check below
        declares them lost."""
        since = self.listening_since()
        if not self._unheard or since is None or now - since <= self.liveness.lost_after:
            return
        for robot in self._unheard:
            self.liveness.last_seen.setdefault(robot, self._reloaded_at)
        self._unheard.clear()

    def _check_recovery(self, now: float) -> None:
        rec = self.recovery
        if rec is None:
            return
        heard = set(self.liveness.last_seen) - self.lost
        done = rec.reasserted | rec.settled
        # a new process hears nobody until discovery: the listening starts once every robot
        # could be heard (without any heard, the whole window), then every robot heard
        # must be done
        since = self.listening_since()
        if now < rec.until and (since is None or now < since + rec.listen
                                or not heard <= done):
            return
        missing = sorted(heard - done)
        for robot in missing:
            spot = rec.spots.get(robot)
            if spot is None:
                continue
            try:
                result = self.table.commit(robot, [(spot, now, math.inf)], replace_from=now)
            except ValueError as e:   # a spot it cannot hold must not keep it recovering
                self.log.warning(f"robot {robot} did not re-assert its holds; its spot: {e}")
                continue
            self.log.warning(
                f"robot {robot} did not re-assert its holds: the spot it reports, resource "
                f"{spot}, {'is blocked for it' if result.ok else 'clashes: ' + str(result.conflict)}")
        self.recovery = None
        self.log.info(f"traffic authority epoch {self.epoch}: recovery ended after "
                      f"{now - rec.started:.1f} s ({len(rec.reasserted)} robots re-asserted, "
                      f"{len(rec.settled)} had nothing to, {len(missing)} did not)")

    def expect(self, robot: str, spot: int, now: float) -> bool:
        """`robot` is configured to stand on `spot` when the fleet starts: held for it from
        `now` on until its agent parks, so that no path is granted through a robot whose
        agent is late or cut off at start-up (docs/core-model.md, "Joining"). Not while
        recovering (robots may have moved since they started: the recovery learns where
        they stand) and not for a robot the table already knows. Returns whether it is
        held; a spot another robot holds is not (warned)."""
        if self.recovery is not None or self.table.reservations(robot, ordered=False):
            return False
        result = self.table.commit(robot, [(spot, now, math.inf)], replace_from=now)
        if not result.ok:
            self.log.warning(f"robot {robot} is configured to start on resource {spot}, "
                             f"which is not free: {result.conflict}")
        return result.ok

    def reserve(self, robot: str, segments: Iterable[tuple[int, float, float]], *,
                replace_from: float | None = None,
                lease_expiry: float = math.inf) -> CommitResult:
        """Atomic commit on behalf of `robot`. A lost robot cannot reserve until it returns."""
        if robot in self.lost:
            raise RobotLostError(f"robot {robot!r} is declared lost; it must rejoin before reserving")
        return self.table.commit(robot, list(segments), replace_from=replace_from,
                                 lease_expiry=lease_expiry)

    def release(self, robot: str, after: float | None = None) -> int:
        return self.table.release(robot, after=after)

    def held_at(self, robot: str, t: float) -> list[Reservation]:
        return [r for r in self.table.reservations(robot) if r.t_start <= t < r.t_end]

    def robot_lost(self, robot: str, now: float, last_seen: float | None = None) -> LossOutcome:
        """Declare `robot` lost at `now` (last heard at `last_seen`, default `now`): keep
        what it committed, block what it held since it was last heard, indefinitely."""
        self.lost.add(robot)
        spot = self._held_since(robot, now, last_seen)
        outcome = LossOutcome(blocked=spot)
        self._block_for_good(robot, spot, now, outcome, replace=False)
        self._restore_unheard(robot, now)
        return outcome

    def _held_since(self, robot: str, now: float, last_seen: float | None) -> list[int]:
        """The resources `robot` held between `last_seen` (default `now`) and `now`: where
        it may stand if it was stopped somewhere after it was last heard."""
        since = now if last_seen is None else min(last_seen, now)
        mine = self.table.reservations(robot)
        held = [r for r in mine if r.t_start <= now and r.t_end > since]
        if not held:
            # Nothing covers that time (e.g. a lease ran out): it is where its last hold ended.
            past = [r for r in mine if r.t_end <= now]
            held = [max(past, key=lambda r: r.t_end)] if past else []
        return sorted({r.resource for r in held})

    def robot_located(self, robot: str, spot: Iterable[int], now: float) -> LossOutcome:
        """A lost robot is known to stand still inside `spot` (resources): release the rest
        of what it holds from `now` on, keep `spot` blocked indefinitely."""
        spot = sorted(set(int(r) for r in spot))
        outcome = LossOutcome(blocked=spot)
        if robot not in self.lost or not spot:
            return outcome
        self.unheard.pop(robot, None)   # it stands: it drives no plan
        self._block_for_good(robot, spot, now, outcome, replace=True)
        return outcome

    def _block(self, robot: str, spot: list[int], now: float, outcome: LossOutcome, *,
               replace: bool, since: dict[int, float] | None = None) -> None:
        """Hold `spot` for `robot` for good: from `now`, or per resource from `since`."""
        since = since or {}
        block = [(res, since.get(res, now), math.inf) for res in spot]
        if not replace:
            # Its own holds of these resources would clash with the block: cut them at
            # `now` only where the block extends them (its future elsewhere stays).
            keep = [r for r in self.table.reservations(robot)
                    if not (r.resource in spot and r.t_end > now)]
            block = [(r.resource, max(r.t_start, now), r.t_end) for r in keep if r.t_end > now] + block
        # Others whose future reservations clash with the block lose them from the clash on;
        # repeat until the block commits (each round removes a clash or a hold that has not
        # begun).
        for _ in range(10_000):
            result = self.table.commit(robot, block, replace_from=now)
            if result.ok:
                return
            assert result.conflict is not None   # a refused commit names its conflict
            other = result.conflict.existing
            if other.robot in self.lost:
                # it cannot hear a revocation and may be driving what it committed: its
                # commitment stands, the block leaves that time out
                block = _without(block, result.conflict.requested, other)
                outcome.yielded.add(other.robot)
                continue
            if other.t_start <= now or (other.t_end == math.inf
                                        and other.resource in outcome.kept.get(other.robot, ())):
                # a hold that has begun is the space the robot is in (or entering) now, and
                # what a revocation of this round let a robot keep is the space it brakes
                # into: taking it would leave the robot standing there unheld while others
                # are granted it, so the block leaves that time out
                block = _without(block, result.conflict.requested, other)
                continue
            self._revoke(other.robot, other.t_start, now, outcome)
        raise RuntimeError(f"could not block the spot of lost robot {robot!r}")  # pragma: no cover

    def _revoke(self, robot: str, cut: float, now: float, outcome: LossOutcome) -> None:
        """`robot` loses its reservations from `cut` (> `now`) on and must stop before it
        (it sees the cut in its replica). What it can brake into - the resources its
        holds cover from `now` over the next `brake_horizon` s (before the cut), where it
        is now included - it keeps for good, each from when its hold of it begins, until
        its agent plans again (its re-commit replaces them): when no stop point lies
        within what it still holds it stops where hearing of the cut and braking leave it,
        later than its plan passes there, and that space must not be granted to others
        (their future holds that clash are revoked in turn; each round removes a hold
        that has not begun, so it ends)."""
        reach = min(cut, now + self.brake_horizon)
        since: dict[int, float] = {}
        gone = []
        for r in self.table.reservations(robot):
            if r.t_end > now and r.t_start < reach:
                since[r.resource] = min(since.get(r.resource, math.inf), max(r.t_start, now))
            if r.t_end > cut:
                gone.append((r.resource, max(r.t_start, cut), r.t_end, now))
        self.table.release(robot, after=cut)
        if gone:   # it hears of it only once it is heard again (`_heard_since_revoked`)
            self.unheard.setdefault(robot, Unheard()).holds.extend(gone)
        outcome.revoked[robot] = min(outcome.revoked.get(robot, math.inf), cut)
        if since:
            outcome.kept.setdefault(robot, set()).update(since)
            self._block(robot, sorted(since), now, outcome, replace=False, since=since)

    def _block_for_good(self, robot: str, spot: list[int], now: float,
                        outcome: LossOutcome, *, replace: bool) -> None:
        """`_block`, then remember what of `spot` it could not give `robot` for good
        (`_defer`). `replace`: `spot` is all the robot stands in now (what it was deferred
        before is forgotten)."""
        self._block(robot, spot, now, outcome, replace=replace)
        self._defer(robot, spot, replace=replace)

    def _defer(self, robot: str, spot: Iterable[int], *, replace: bool) -> None:
        """Note what of `spot` (with what was deferred before, unless `replace`) `robot`
        does not hold for good: another robot's hold there had begun (two robots in one
        space - a follower entered where a robot whose agent died stopped short of its
        plan). It is blocked for `robot` as soon as that hold ends or is replaced
        (`_retry_deferred`): else the space a robot stands in stays unheld and the next
        plan through it is granted."""
        mine = {r.resource for r in self.table.reservations(robot) if r.t_end == math.inf}
        before = set() if replace else self.deferred.get(robot, set())
        missing = ({int(r) for r in spot} | before) - mine
        if not missing:
            self.deferred.pop(robot, None)
            return
        if missing - before:
            self.log.warning(f"robot {robot} stands in {sorted(missing - before)}, where "
                             "another robot's hold has begun: blocked for it once that "
                             "hold ends")
        self.deferred[robot] = missing

    def _retry_deferred(self, now: float) -> None:
        """Block each deferred spot as soon as it can be held for good: the others' holds
        there that a block leaves out (begun ones) end, and their later passage through it
        is revoked (a cheap check first: a retry that still cannot block would rewrite the
        robot's holds for nothing)."""
        if self.recovery is not None:
            return   # a recovering authority grants and blocks nothing new
        for robot, spot in list(self.deferred.items()):
            if self.membership.is_removed(robot):
                self.deferred.pop(robot, None)
                continue
            # blockable for good: no hold there that the block must leave out (begun, or a
            # lost robot's commitment) lasts for good
            free = [res for res in spot if not any(
                o.t_end == math.inf and (o.t_start <= now or o.robot in self.lost)
                for o in self.table.conflicts(res, now, math.inf, robot=robot))]
            if not free:
                continue
            outcome = LossOutcome(blocked=sorted(free))
            self._block_for_good(robot, sorted(free), now, outcome, replace=False)
            self.log.warning(f"robot {robot}: {sorted(free)}, where it stands, is blocked for it "
                             "now" + (f"; reservations revoked for {sorted(outcome.revoked)}"
                                      if outcome.revoked else ""))

    def robot_returned(self, robot: str) -> None:
        """The robot speaks again: it may reserve again (its block stays until it replans)."""
        self.lost.discard(robot)

    def robot_removed(self, robot: str) -> int:
        """The robot was taken out of the fleet on purpose: everything it held is freed."""
        self.lost.discard(robot)
        self.deferred.pop(robot, None)
        self.unheard.pop(robot, None)
        return self.table.release(robot)

    # -- requests ---------------------------------------------------------------------------

    def request(self, robot: str, segments: Sequence[Segment], *,
                replace_from: float | None = None, lease_expiry: float = math.inf,
                roadmap_id: str = "", reassert: bool = False) -> ReserveResult:
        """A reserve call: refused for another roadmap, a removed or lost robot, bad
        segments, anything but a re-assertion while recovering; else the atomic commit
        (`reserve`)."""
        version = self.table.version
        if self.recovery is not None and not reassert:
            return ReserveResult(False, version, ReserveError.RECOVERING,
                                 f"traffic authority epoch {self.epoch} is recovering the "
                                 "table after a restart: only re-assertions are granted; "
                                 "ask again shortly")
        if roadmap_id and self.roadmap_id and roadmap_id != self.roadmap_id:
            return ReserveResult(False, version, ReserveError.ROADMAP_MISMATCH,
                                 f"roadmap_id {roadmap_id!r} is not this fleet's "
                                 f"{self.roadmap_id!r}")
        if self.membership.is_removed(robot):
            return ReserveResult(False, version, ReserveError.INVALID,
                                 f"robot {robot!r} was removed from the fleet; start a new "
                                 "agent for it to rejoin (fleet-coord add-robot)")
        # a park: the spot the robot stands on, held for good from now
        park = replace_from is not None and not reassert and bool(segments) and all(
            b == math.inf and a <= replace_from for _, a, b in segments)
        try:
            # what was revoked from a robot not heard since is no one else's yet: it may
            # still be driving it (a robot standing there parks all the same: it is there)
            clash = None if park or reassert or robot in self.lost else \
                self._unheard_clash(robot, segments)
            if clash is not None:
                i, other = clash
                return ReserveResult(
                    False, version, ReserveError.CONFLICT,
                    f"segment {i}: resource {segments[i][0]} clashes with {other}, revoked "
                    f"from robot {other.robot}, which has not been heard since: it may still "
                    "be driving it", other, i)
            result = self.reserve(robot, segments, replace_from=replace_from,
                                  lease_expiry=lease_expiry)
            if not result.ok and park:
                assert replace_from is not None
                result = self._stand(robot, list(segments), replace_from, lease_expiry)
        except (ValueError, RobotLostError) as e:
            return ReserveResult(False, version, ReserveError.INVALID, str(e))
        if result.ok:
            if self.recovery is not None:
                self.recovery.reasserted.add(robot)
            self.deferred.pop(robot, None)   # its agent holds what it planned from where it is
            u = self.unheard.get(robot)
            if u is not None and replace_from is not None:
                # it holds what it asked for from replace_from on, and drives that
                u.holds = [h for h in u.holds if h[1] < replace_from]
                if not u.holds:
                    del self.unheard[robot]
            return ReserveResult(True, result.version)
        c = result.conflict
        assert c is not None   # a refused commit names its conflict
        return ReserveResult(False, result.version, ReserveError.CONFLICT, str(c), c.existing,
                             _index_of(segments, c))

    def _stand(self, robot: str, segments: list[Segment], now: float,
               lease_expiry: float) -> CommitResult:
        """`robot` asks to hold, for good from `now`, the spot it stands on (a park: an
        agent parks only on what its pose covers - after a stop where no stop point was
        left, a restart, a join). Others' holds there that have not begun are plans that
        drive into it: they are revoked from the clash on, as for a lost robot's block, and
        the spot is granted. Refused as before when the space is in use now or a lost
        robot's commitment crosses it."""
        outcome = LossOutcome(blocked=sorted({int(r) for r, _, _ in segments}))
        for _ in range(10_000):
            result = self.table.commit(robot, segments, replace_from=now,
                                       lease_expiry=lease_expiry)
            other = None if result.conflict is None else result.conflict.existing
            if other is None or other.robot in self.lost or other.t_start <= now:
                if outcome.revoked:
                    self.log.warning(f"robot {robot} holds where it stands, {outcome.blocked}"
                                     f"{'' if result.ok else ' (refused: ' + str(result.conflict) + ')'}"
                                     f": reservations through it revoked for "
                                     f"{sorted(outcome.revoked)}")
                return result
            self._revoke(other.robot, other.t_start, now, outcome)
        raise RuntimeError(f"could not hold the spot of robot {robot!r}")  # pragma: no cover

    def remove_robot(self, robot: str, *, force: bool = False,
                     reason: str = "") -> tuple[RemoveResult, list[Action]]:
        """Take `robot` out of the fleet for good: release everything it holds (a lost
        robot's blocked spot too) and stop hearing its current agent. Idempotent."""
        if self.membership.is_removed(robot) and not self.table.reservations(robot):
            return RemoveResult(True, already=True), []
        seen = self.liveness.last_seen
        known = robot in seen or robot in self.lost or bool(self.table.reservations(robot))
        alive = (robot in seen or robot in self._unheard) and robot not in self.lost
        refusal = removal_refusal(robot, known=known, alive=alive,
                                  tasks=self.work.get(robot, ()), force=force,
                                  known_robots=set(seen) | set(self.table.robots()) | self.lost)
        if refusal is not None:
            return RemoveResult(False, refusal), []
        was_lost = robot in self.lost
        released = self.robot_removed(robot)
        self.liveness.forget(robot)
        self._unheard.discard(robot)
        self.membership.remove(robot)
        self.work.pop(robot, None)
        return (RemoveResult(True, released=released, was_lost=was_lost),
                self._stop_locating(robot) + [RobotRemoved(robot, reason)])

    # -- what the authority hears -------------------------------------------------------------

    def on_robot_state(self, now: float, robot: str, task_ids: Sequence[str] = (),
                       incarnation: Incarnation = None, *, table_epoch: int | None = None,
                       resource: int | None = None, sent: float | None = None) -> list[Action]:
        """A RobotState: `robot` is alive and holds `task_ids` (current, then queued); its
        holds come from the table of `table_epoch` and it stands on `resource` (both used
        while recovering). `sent`: when the robot sent it (its stamp; default `now`): a
        state sent after a revocation shows the robot can hear it."""
        before = self.membership.incarnation.get(robot)
        if not self.membership.heard(robot, incarnation):
            return []   # the old agent of a removed robot
        last_seen = self.liveness.last_seen.get(robot)
        self.work[robot] = list(task_ids)
        if self._first_heard is None:
            self._first_heard = now
        if robot in self._unheard:   # reloaded from the log: not new, not returning
            self._unheard.discard(robot)
            self.liveness.last_seen.setdefault(robot, now)
        rec = self.recovery
        if rec is not None:
            n = self.table.num_resources
            if resource is not None and 0 <= resource and (n is None or resource < n):
                rec.spots[robot] = resource
            if table_epoch is not None and table_epoch in (0, self.epoch):
                rec.settled.add(robot)
        was_lost = robot in self.lost
        returned = self.liveness.heard(robot, now)
        restarted = before is not None and incarnation is not None and incarnation != before
        if returned:
            self.robot_returned(robot)
            # silent for long: its replica may lack much, and a gap shows only with the
            # next delta
            self._snapshot_wanted = self._snapshot_wanted or was_lost
        elif restarted:
            self._hold_restarted(robot, last_seen, now)
        if robot in self.unheard:
            if restarted:   # its old agent's plan is not driven: the robot stands
                self.unheard.pop(robot)
            else:
                self._heard_since_revoked(robot, now, now if sent is None else sent)
        self._hold_joining(robot, resource, now)
        return self._stop_locating(robot) if returned else []

    def _heard_since_revoked(self, robot: str, now: float, sent: float) -> None:
        """`robot` spoke (at `sent`) after some of its holds were revoked: it can hear the
        revocation now (its replica resynchronises: the authority publishes a snapshot) and
        brake. It may have driven its old plan on meanwhile, later than the revocation
        allowed for: what the plan covers from the revocation's `brake_horizon` up to
        `now + brake_horizon` it keeps for good as well (before the cut, or after it: that
        space was given to no one meanwhile, unless a robot stands there)."""
        u = self.unheard[robot]
        heard = [h for h in u.holds if h[3] < sent]
        if not heard:
            return
        rest = [h for h in u.holds if h[3] >= sent]
        if rest:
            u.holds = rest
        else:
            del self.unheard[robot]
        self._snapshot_wanted = True
        lo, hi = min(h[3] for h in heard) + self.brake_horizon, now + self.brake_horizon
        if hi <= lo:
            return
        # its plan: what it still holds (not what it holds for good already) and what it lost
        plan = [(r.resource, r.t_start, r.t_end) for r in self.table.reservations(robot)
                if r.t_end != math.inf] + [(res, t0, t1) for res, t0, t1, _ in heard]
        since: dict[int, float] = {}
        for res, t0, t1 in plan:
            if t1 > max(lo, now) and t0 < hi:
                since[res] = min(since.get(res, math.inf), max(t0, now))
        if not since:
            return
        outcome = LossOutcome(blocked=sorted(since))
        outcome.kept.setdefault(robot, set()).update(since)
        self._block(robot, sorted(since), now, outcome, replace=False, since=since)
        self.log.warning(f"robot {robot} heard {now - (lo - self.brake_horizon):.2f} s after "
                         f"its holds were revoked: it keeps what it may brake into, "
                         f"{sorted(since)}" + (f"; reservations revoked for "
                                               f"{sorted(outcome.revoked)}"
                                               if outcome.revoked else ""))

    def _unheard_clash(self, robot: str, segments: Sequence[Segment]
                       ) -> tuple[int, Reservation] | None:
        """The first of `segments` that clashes with what was revoked from another robot
        that has not been heard since (it may still drive it), with that hold."""
        if not self.unheard:
            return None
        requested = self.table.validated(robot, segments)   # ValueError: bad input
        held: dict[int, list[Reservation]] = {}
        for other, u in self.unheard.items():
            if other != robot:
                for res, t0, t1, _ in u.holds:
                    held.setdefault(res, []).append(Reservation(other, res, t0, t1))
        if not held:
            return None
        for i, req in enumerate(requested):
            for x in self.table.exclusive(req.resource):
                for h in held.get(x, ()):
                    if h.overlaps(req.t_start, req.t_end):
                        return i, h
        return None

    def _restore_unheard(self, robot: str, now: float) -> None:
        """`robot`, lost, did not hear what was revoked from it: it may be driving it, so
        it is its commitment again (each piece that clashes with nothing; the rest - a
        robot stands there - once it is free)."""
        u = self.unheard.get(robot)
        if u is None:
            return
        left, restored = [], []
        for res, t0, t1, at in u.holds:
            if t1 <= now:
                continue
            if self.table.commit(robot, [(res, max(t0, now), t1)]).ok:
                restored.append(res)
            else:
                left.append((res, t0, t1, at))
        if left:
            u.holds = left
        else:
            del self.unheard[robot]
        if restored:
            self.log.warning(f"robot {robot} is lost and did not hear that {sorted(set(restored))} "
                             "were revoked: they are its commitment again" +
                             (f" ({len(left)} held by others meanwhile: later)" if left else ""))

    def _hold_restarted(self, robot: str, last_seen: float | None, now: float) -> None:
        """A new agent speaks for `robot` before the robot was declared lost (its agent
        died and a new one started within `lost_after`): the robot stands where its
        driver stopped it, inside what it held since it was last heard, while those holds
        run out. They are kept for it as a lost robot's are until its new agent's park
        replaces them (others' future reservations that clash are revoked)."""
        spot = self._held_since(robot, now, last_seen)
        if not spot or self.recovery is not None:
            return
        outcome = LossOutcome(blocked=spot)
        self._block_for_good(robot, spot, now, outcome, replace=False)
        self.log.warning(f"robot {robot} speaks through a new agent: what it held since it "
                         f"was last heard, {spot}, stays held for it until the new agent "
                         "parks" + (f"; reservations revoked for {sorted(outcome.revoked)}"
                                    if outcome.revoked else ""))

    def _hold_joining(self, robot: str, resource: int | None, now: float) -> None:
        """A robot heard while it holds nothing — joining: a new agent, a robot put back
        after its removal — stands on `resource` (its state's) unheld until its agent's
        first commit is granted, which may be late (its reserve calls lost or cut off). Its
        spot is blocked for it from `now` on, as a lost robot's is (others' future
        reservations that clash are revoked from the clash on), and its first commit
        replaces the block: at real speed a path granted through the spot would reach it
        before the robot holds it or moves (docs/core-model.md, "Joining"). While
        recovering the recovery decides the spots (`_check_recovery`)."""
        if resource is None or self.recovery is not None or robot in self.lost \
                or self.table.reservations(robot, ordered=False):
            return
        n = self.table.num_resources
        if resource < 0 or (n is not None and resource >= n):
            return
        outcome = LossOutcome(blocked=[resource])
        self._block_for_good(robot, [resource], now, outcome, replace=True)
        self.log.info(f"robot {robot} joins holding nothing: the spot it reports, resource "
                      f"{resource}, is held for it until its own commit"
                      + (f"; reservations revoked for {sorted(outcome.revoked)}"
                         if outcome.revoked else ""))

    def tick(self, now: float) -> list[Action]:
        """Declare robots silent for `lost_after` s lost (and watch their odometry), drop
        expired leases, end a recovery that is done."""
        self._check_recovery(now)
        self._judge_unheard(now)
        self._retry_deferred(now)
        for robot in [r for r in self.unheard if r in self.lost]:
            self._restore_unheard(robot, now)
        out: list[Action] = []
        for robot in self.liveness.check(now):
            outcome = self.robot_lost(robot, now, self.liveness.last_seen.get(robot))
            spared = f"; spared (lost too): {sorted(outcome.yielded)}" if outcome.yielded else ""
            self.log.warning(f"robot {robot} lost (silent > {self.liveness.lost_after:.1f} s); "
                             f"what it committed stays, spot {outcome.blocked} stays blocked; "
                             f"reservations revoked for {sorted(outcome.revoked)}{spared}")
            out.append(RobotLost(robot, outcome, f"silent > {self.liveness.lost_after:.1f} s"))
            if robot not in self.locating:
                self.locating[robot] = Locating()
                out.append(WatchOdometry(robot, True))
        expired = self.table.expire(now)
        if expired:
            self.log.info(f"leases expired for {expired}")
        return out

    def on_lost_odometry(self, now: float, robot: str, x: float, y: float,
                         moving: bool) -> list[Action]:
        """Odometry of a lost robot: once it stood still for STILL_FOR s, only the spot it
        stands on stays blocked (`robot_located`) and its odometry is no longer needed.
        A non-finite position is refused (ValueError): it would locate the robot nowhere
        and release what it holds."""
        if not (math.isfinite(x) and math.isfinite(y)):
            raise ValueError(f"odometry of lost robot {robot}: x = {x!r}, y = {y!r}, "
                             "expected finite numbers")
        entry = self.locating.get(robot)
        if entry is None or robot not in self.lost:
            return []
        if moving or entry.at is None or math.hypot(x - entry.at[0], y - entry.at[1]) > 0.01:
            entry.still_since, entry.at = now, (x, y)
            return []
        if entry.still_since is None or now - entry.still_since < STILL_FOR:
            return []
        spot = self._resources_under(robot, x, y)
        if not spot:
            self.log.warning(f"lost robot {robot} stands at ({x:.2f}, {y:.2f}), outside "
                             "everything it holds; keeping all of it blocked")
        else:
            outcome = self.robot_located(robot, spot, now)
            self.log.info(f"lost robot {robot} located at ({x:.2f}, {y:.2f}) by its odometry: "
                          f"spot {outcome.blocked} stays blocked, the rest is released; "
                          f"reservations revoked for {sorted(outcome.revoked)}")
        return self._stop_locating(robot)

    def _stop_locating(self, robot: str) -> list[Action]:
        return [WatchOdometry(robot, False)] if self.locating.pop(robot, None) else []

    def _resources_under(self, robot: str, x: float, y: float) -> list[int]:
        """The robot's held resources whose geometry its footprint touches."""
        if self.exclusion is None:
            return []
        ex = self.exclusion
        disc = shapely.Point(x, y).buffer(ex.footprint.bounding_radius, quad_segs=8)
        held = {r.resource for r in self.table.reservations(robot)}
        return sorted(res for res in held if not ex.geometry(res).is_empty
                      and ex.geometry(res).intersection(disc).area > 1e-9)

    # -- what leaves the authority ------------------------------------------------------------

    def drain(self) -> list[TableUpdate]:
        """The table's changes since the last call, oldest first, written to the table log
        (when there is one) before they are returned: nothing is announced that a restart
        would forget."""
        updates = self.table.drain_updates()
        log = self.table_log
        if log is not None:
            lost, unheard = self.lost, self._unheard_holds()
            log.append(updates, set(lost) if lost != self._logged_lost else None,
                       unheard if unheard != self._logged_unheard else None)
            self._logged_lost, self._logged_unheard = set(lost), unheard
            if log.should_compact():
                log.compact(self.table, lost, unheard)
        return [TableUpdate(version=u["version"], robot=u.get("robot", ""),
                            roadmap_id=self.roadmap_id,
                            added=tuple(Reservation.from_dict(d) for d in u["added"]),
                            removed=tuple(Reservation.from_dict(d) for d in u["removed"]),
                            epoch=self.epoch, recovering=self.recovering)
                for u in updates]

    def _unheard_holds(self) -> dict[str, list[tuple[int, float, float, float]]]:
        return {robot: list(u.holds) for robot, u in self.unheard.items() if u.holds}

    def want_snapshot(self) -> None:
        """A replica found itself stale (a gap, a jump, another epoch) and asks for the
        table: a snapshot out of turn, as soon as `snapshot_due`."""
        self._snapshot_wanted = True

    def snapshot_due(self, now: float) -> bool:
        """A snapshot was asked for (`want_snapshot`, or a robot heard again that may have
        missed updates) and the last one is SNAPSHOT_MIN_INTERVAL s old: publish
        `snapshot(now)`. Bounds what requests cost (anyone may ask: a snapshot is only the
        authority's own word, signed)."""
        return self._snapshot_wanted and now - self._last_snapshot >= SNAPSHOT_MIN_INTERVAL

    def snapshot(self, now: float) -> list[TableUpdate]:
        """The periodic snapshot: drop what ended `keep_history` s ago (0: keep all), then
        the pending updates and the whole table, in that order."""
        self._snapshot_wanted, self._last_snapshot = False, now
        if self.keep_history > 0:
            # the past is no one's to plan against; without this every replica grows by
            # every segment ever driven
            self.table.release_before(now - self.keep_history)
        out = self.drain()
        snap = self.table.snapshot()
        out.append(TableUpdate(version=snap["version"], is_snapshot=True,
                               roadmap_id=self.roadmap_id,
                               added=tuple(Reservation.from_dict(d)
                                           for d in snap["reservations"]),
                               epoch=self.epoch, recovering=self.recovering))
        return out


def _index_of(segments: Sequence[Segment], conflict: ReservationConflict) -> int:
    """Index of the requested segment a conflict names (0 when it cannot be told)."""
    r = conflict.requested
    key = (r.resource, r.t_start, r.t_end)
    for i, (res, a, b) in enumerate(segments):
        if (res, a, b) == key:
            return i
    return 0

"""The robot's execution core (fleet_coord.core.execution) without ROS: Execution cores
on a virtual clock, the real core traffic authority (core.traffic) answering their reserve
calls and feeding their replicas, ideal unicycle robots (core.kinematics) following their
velocity commands. The test decides what is delivered, lost or late."""
from __future__ import annotations

import dataclasses
import math
import random

import numpy as np
import pytest

from fleet_coord.core import contract_net as cn
from fleet_coord.core.execution import (LIST_RETRY_S, Abandon, Activity, CallKind, Execution,
                                        ExecutionConfig, ListOpenTasks, Odometry, Phase,
                                        Reserve, ReserveAnswer, StatusReport, Velocity)
from fleet_coord.core.kinematics import Limits, UnicycleState, step
from fleet_coord.core.replica import Replica, TableUpdate
from fleet_coord.core.reservations import Reservation, ReservationTable
from fleet_coord.core.roadmap import Footprint, GridMap, Roadmap
from fleet_coord.core.tasks import Task, TaskState
from fleet_coord.core.time_model import RUN_ON_SLACK
from fleet_coord.core.tracking import containment_error, stop_time
from fleet_coord.core.traffic import TrafficAuthority
from fleet_coord.core.yielding import YieldMemo

INF = math.inf
DT = 0.05
LIMITS = Limits(max_v=3.0, max_w=20.0, max_acc=40.0, max_alpha=400.0)
CONFIG = ExecutionConfig(limits=LIMITS, turn_margin=0.2, control_latency=DT)


def grid(rows: list[str]) -> Roadmap:
    """'.' free, '#' blocked; row 0 first."""
    free = np.array([[c == "." for c in r] for r in rows], dtype=bool)
    return Roadmap.from_grid(GridMap(width=free.shape[1], height=free.shape[0], free=free,
                                     path="<test>"))


class World:
    """Execution cores + the core authority + ideal robots, on a virtual clock. Reserve
    requests reach the authority at once; `answer` decides which responses come back,
    `updates` whether table updates reach the replicas (and a snapshot every 5 s, as the
    traffic node sends). The dispatcher's task list (ListOpenTasks) lists the tasks
    awarded and not ended; `list_answer` decides which answers come back."""

    def __init__(self, rows: list[str], robots: dict[str, tuple[int, int]],
                 config: ExecutionConfig = CONFIG,
                 configs: dict[str, ExecutionConfig] | None = None) -> None:
        self.roadmap = grid(rows)
        self.ex = self.roadmap.exclusion(Footprint(radius=0.15))
        self.authority = TrafficAuthority(ReservationTable(self.ex.of, self.roadmap.num_resources))
        self.t = 0.0
        self.memo = YieldMemo()
        self.cores: dict[str, Execution] = {}
        self.bodies: dict[str, UnicycleState] = {}
        self.cmd: dict[str, tuple[float, float]] = {}
        for name, (x, y) in robots.items():
            self.cores[name] = Execution(
                name, self.roadmap, self.ex,
                Replica(self.ex.of, self.roadmap.num_resources, "m"),
                (configs or {}).get(name, config), rng=random.Random(name), memo=self.memo)
            self.bodies[name] = UnicycleState(float(x), float(y), 0.0)
            self.cmd[name] = (0.0, 0.0)
        self.answer = lambda robot, req: True     # deliver this response?
        self.list_answer = lambda robot, req: True
        self.tasks: dict[str, Task] = {}
        self.updates = True
        self.actions: list[tuple[str, object]] = []   # every action, in order
        self.statuses: list[StatusReport] = []
        self.unanswered: list[tuple[str, ReserveAnswer]] = []   # responses held back
        self._snapshot_at = 0.0
        self._publish(snapshot=True)

    def v(self, name: str) -> int:
        return self.roadmap.vertex(name)

    # -- the authority side -------------------------------------------------------------

    def _publish(self, snapshot: bool = False) -> None:
        table = self.authority.table
        if snapshot:
            ups = [TableUpdate(table.version, is_snapshot=True, roadmap_id="m",
                               added=tuple(table.reservations()), epoch=self.authority.epoch,
                               recovering=self.authority.recovering)]
            table.drain_updates()
        else:
            ups = [TableUpdate(u["version"], u["robot"], False, "m",
                               tuple(Reservation.from_dict(d) for d in u["added"]),
                               tuple(Reservation.from_dict(d) for d in u["removed"]),
                               self.authority.epoch, self.authority.recovering)
                   for u in table.drain_updates()]
        if not self.updates:
            return
        for up in ups:
            for name, core in self.cores.items():
                self._do(name, core.on_table_update(self.t, up))

    def restart_authority(self) -> None:
        """A new incarnation without the table: it recovers what robots re-assert; the
        robots report their state (table_epoch, spot) to it at every step."""
        self.authority = TrafficAuthority(
            ReservationTable(self.ex.of, self.roadmap.num_resources),
            epoch=self.authority.epoch + 1)
        self.authority.start_recovery(self.t, window=10.0, listen=1.5)
        self._publish(snapshot=True)

    def _reserve(self, name: str, r: Reserve) -> None:
        result = self.authority.request(name, r.segments, replace_from=r.replace_from,
                                        reassert=r.reassert)
        answer = ReserveAnswer(r.seq, result.ok, result.version, result.message,
                               self.authority.epoch)
        if self.answer(name, r):
            self._do(name, self.cores[name].on_reserve_answer(self.t, answer))
        else:
            self.unanswered.append((name, answer))

    def _do(self, name: str, actions: list) -> None:
        for a in actions:
            self.actions.append((name, a))
            if isinstance(a, Reserve):
                self._reserve(name, a)
            elif isinstance(a, Velocity):
                self.cmd[name] = (a.v, a.w)
            elif isinstance(a, ListOpenTasks):
                if self.list_answer(name, a):
                    listed = [t for tid, t in self.tasks.items() if self.final(tid) is None]
                    self._do(name, self.cores[name].on_task_list(self.t, a.seq, listed))
            elif isinstance(a, StatusReport):
                self.statuses.append(a)
                for other, core in self.cores.items():
                    if other != name:
                        self._do(other, core.on_task_status(self.t, a))

    # -- time ---------------------------------------------------------------------------

    def step(self) -> None:
        self.t = round(self.t + DT, 9)
        for name, core in self.cores.items():
            b = self.bodies[name] = step(self.bodies[name], *self.cmd[name], DT, LIMITS)
            core.on_odometry(self.t, Odometry(b.x, b.y, b.theta, b.v, b.w, self.t))
        self._publish()
        if self.t - self._snapshot_at >= 5.0:
            self._snapshot_at = self.t
            self._publish(snapshot=True)
        for name, core in self.cores.items():
            self._do(name, core.tick(self.t))
            report = core.state_report(self.t)
            if report is not None:
                self.authority.on_robot_state(self.t, name, table_epoch=report.table_epoch,
                                              resource=report.vertex)
        recovering = self.authority.recovering
        self.authority.tick(self.t)
        self._publish(snapshot=recovering and not self.authority.recovering)

    def run_until(self, cond, limit: float = 30.0) -> bool:
        end = self.t + limit
        while self.t < end:
            if cond():
                return True
            self.step()
        return cond()

    # -- tasks --------------------------------------------------------------------------

    def award(self, robot: str, task_id: str, stations: list[str], rnd: int = 1) -> None:
        task = self.tasks[task_id] = Task(task_id, "goto" if len(stations) == 1
                                          else "pick_and_drop", stations)
        for name, core in self.cores.items():
            answers = core.on_cfp(self.t, task, rnd)
            if name == robot:
                assert isinstance(answers[0], cn.Proposal), answers
        self._do(robot, self.cores[robot].on_award(self.t, robot, task_id, rnd))

    def lose_first(self, kind: CallKind) -> list[Reserve]:
        """From now on the response to the next call of `kind` is lost; returns the list
        that will hold that call."""
        lost: list[Reserve] = []

        def answer(robot: str, req: Reserve) -> bool:
            if req.kind is kind and not lost:
                lost.append(req)
                return False
            return True
        self.answer = answer
        return lost

    def final(self, task_id: str) -> StatusReport | None:
        return next((s for s in self.statuses if s.task_id == task_id
                     and s.state in (TaskState.DONE, TaskState.FAILED)), None)

    def sent(self, robot: str, kind: type) -> list:
        return [a for r, a in self.actions if r == robot and isinstance(a, kind)]

    def holds(self, robot: str) -> set[tuple[int, float]]:
        return {(r.resource, r.t_end) for r in self.authority.table.reservations(robot)
                if r.t_end > self.t}

    def at(self, robot: str) -> tuple[float, float]:
        b = self.bodies[robot]
        return round(b.x, 1), round(b.y, 1)


def up(rows=(".....",), **robots) -> World:
    w = World(list(rows), robots)
    assert w.run_until(lambda: all(c.parked for c in w.cores.values()), 2.0)
    return w


# -- park ---------------------------------------------------------------------------------


def test_a_robot_parks_on_its_vertex_once_it_knows_where_it_is_and_the_authority_is_there():
    w = World(["....."], {"a": (1, 0)})
    core = w.cores["a"]
    assert core.tick(0.0) == [] and not core.parked          # no pose yet: nothing
    core.on_odometry(0.0, Odometry(1.0, 0.0, 0.0))
    assert core.tick(0.01, authority_ready=False) == [Velocity(0.0, 0.0)]   # idle, no call
    w.run_until(lambda: core.parked, 1.0)
    assert core.parked and core.activity is Activity.IDLE
    assert w.holds("a") == {(w.v("1,0"), INF)}
    (park,) = w.sent("a", Reserve)
    assert park.kind is CallKind.PARK and park.segments == ((w.v("1,0"), park.replace_from, INF),)


def test_a_robot_standing_on_a_lane_parks_on_what_it_stands_on_then_drives_onto_its_vertex():
    """Its driver stopped it mid-lane (its agent died): the new agent holds the lane and
    the nearest vertex, drives onto the vertex inside those holds, then holds the vertex
    alone - not the vertex alone from the start, 0.3 m outside it."""
    w = World(["....."], {"a": (1.45, 0.0)})
    core = w.cores["a"]
    assert w.run_until(lambda: core.parked, 1.0)
    (park,) = w.sent("a", Reserve)
    lane = {w.roadmap.resource_name(r) for r, _, _ in park.segments}
    assert {"1,0", "1,0->2,0"} <= lane, lane
    worst = 0.0
    while core.spot != (w.v("1,0"),) and w.t < 5.0:
        w.step()
        b = w.bodies["a"]
        holds = [(r.resource, r.t_start, r.t_end) for r in w.authority.table.reservations("a")]
        worst = max(worst, containment_error(w.ex, holds, b.x, b.y, w.t))
    assert core.parked and w.holds("a") == {(w.v("1,0"), INF)}
    assert w.at("a") == (1.0, 0.0) and worst < 0.01


def test_a_refused_park_is_asked_again():
    w = World(["....."], {"a": (1, 0)})
    w.authority.reserve("ghost", [(w.v("1,0"), 0.0, 0.3)])
    w._publish()
    assert w.run_until(lambda: w.cores["a"].parked, 2.0)
    parks = [r for r in w.sent("a", Reserve) if r.kind is CallKind.PARK]
    assert len(parks) >= 2, "the refused park was not asked again"


# -- plan, commit, trim, drive --------------------------------------------------------------


def test_a_task_is_planned_committed_with_an_anchor_trimmed_driven_and_reported_done():
    w = up(a=(0, 0))
    w.award("a", "t1", ["4,0"])
    core = w.cores["a"]
    assert w.run_until(lambda: core.phase is Phase.DRIVE and CallKind.TRIM not in core.calls,
                       2.0)
    assert (w.v("0,0"), INF) not in w.holds("a"), "the trim left the anchor"
    assert w.run_until(lambda: w.final("t1") is not None, 20.0)
    assert w.final("t1").state is TaskState.DONE and w.final("t1").progress == 1.0
    assert w.at("a") == (4.0, 0.0)
    commit, trim = [r for r in w.sent("a", Reserve) if r.kind in (CallKind.COMMIT,
                                                                  CallKind.TRIM)][:2]
    assert commit.kind is CallKind.COMMIT and trim.kind is CallKind.TRIM
    # the commit holds its start vertex until further notice (the anchor); the trim the
    # path alone
    assert (w.v("0,0"), commit.replace_from, INF) in commit.segments
    assert not any(t1 == INF for _, _, t1 in trim.segments[:-1])
    assert trim.segments[-1][0] == w.v("4,0") and trim.segments[-1][2] == INF
    # parked at the station, holding exactly it for good
    assert {(r, t) for r, t in w.holds("a") if t == INF} == {(w.v("4,0"), INF)}
    states = [s.state for s in w.statuses if s.task_id == "t1"]
    assert states[0] is TaskState.ACTIVE and states[-1] is TaskState.DONE


def test_a_pick_and_drop_visits_both_stations_and_says_where_it_heads_next():
    w = up(a=(0, 0))
    w.award("a", "t1", ["2,0", "4,0"])
    assert w.run_until(lambda: w.final("t1") is not None, 20.0)
    assert w.final("t1").state is TaskState.DONE
    progress = [s.progress for s in w.statuses if s.task_id == "t1"
                and s.state is TaskState.ACTIVE]
    assert 0.5 in progress and progress == sorted(progress)


def test_a_refused_commit_is_planned_again_after_a_back_off_and_succeeds():
    w = up(rows=[".....", "....."], a=(0, 0))
    # a hold the replica does not show yet: the first plan runs into it
    w.updates = False
    w.authority.reserve("ghost", [(w.v("2,0"), 0.0, 12.0)])
    w._publish()
    w.updates = True
    w.award("a", "t1", ["4,0"])
    core = w.cores["a"]
    assert w.run_until(lambda: core.job is not None and core.job.attempts == 1, 5.0), \
        "the refused commit counted no attempt"
    assert core.job.phase is Phase.PLAN and core.job.retry_at > w.t
    near_ghost = []
    while w.final("t1") is None and w.t < 30.0:
        w.step()
        b = w.bodies["a"]
        if w.t < 12.0 and math.hypot(b.x - 2, b.y) < 0.5:
            near_ghost.append(w.t)
    assert w.final("t1").state is TaskState.DONE
    assert near_ghost == [], "entered the ghost's hold"


def test_a_task_whose_station_an_idle_robot_never_leaves_fails_after_yield_wait():
    cfg = dataclasses.replace(CONFIG, yield_wait=3.0)
    w = World(["....."], {"a": (0, 0)}, cfg)
    w.run_until(lambda: w.cores["a"].parked, 2.0)
    w.authority.reserve("ghost", [(w.v("2,0"), 0.0, INF)])   # parked there for good...
    w.authority.robot_lost("ghost", 0.0)                     # ...and lost: nobody yields
    w._publish(snapshot=True)
    w.award("a", "t1", ["2,0"])
    t0 = w.t
    assert w.run_until(lambda: w.final("t1") is not None, 10.0)
    final = w.final("t1")
    assert final.state is TaskState.FAILED and "held by ghost" in final.reason
    assert w.t - t0 >= 3.0 and "3 s while it was idle" in final.reason


def test_no_path_fails_the_task_after_max_plan_attempts():
    cfg = dataclasses.replace(CONFIG, max_plan_attempts=3)
    w = World([".#..."], {"a": (0, 0)}, cfg)
    w.run_until(lambda: w.cores["a"].parked, 2.0)
    w.award("a", "t1", ["0,0"])   # at its station already: done at once
    assert w.run_until(lambda: w.final("t1") is not None, 5.0)
    assert w.final("t1").state is TaskState.DONE
    core = w.cores["a"]
    core.queue.append(Task("t2", "goto", ["3,0"]))   # no lane leads there
    assert w.run_until(lambda: w.final("t2") is not None, 30.0)
    final = w.final("t2")
    assert final.state is TaskState.FAILED
    assert "no conflict-free path" in final.reason and "gave up after 3 attempts" in final.reason


# -- authority restarts ------------------------------------------------------------------------


def test_after_an_authority_restart_robots_reassert_their_holds_and_nothing_new_is_granted_before():
    w = up((".....", "....."), a=(0, 0), b=(2, 1))
    a = w.cores["a"]
    w.award("a", "t1", ["4,0"])
    assert w.run_until(lambda: a.phase is Phase.DRIVE and w.at("a")[0] >= 1.0, 10.0)
    held = {"a": w.holds("a"), "b": w.holds("b")}
    assert held["b"] == {(w.v("2,1"), INF)}
    w.restart_authority()        # an empty table, recovering; its snapshot reaches the robots
    assert w.authority.recovering
    # each re-asserted what it held (a: its path from now on, b: its spot), nothing else
    assert {r: w.holds(r) for r in held} == held
    assert [r.reassert for r in w.sent("a", Reserve)][-1] and w.sent("b", Reserve)[-1].reassert
    assert a.phase is Phase.DRIVE                 # it drives on through the restart
    w.award("b", "t2", ["0,1"])                   # asks nothing new while recovering
    assert w.run_until(lambda: not w.authority.recovering, 3.0)
    assert not [r for r in w.sent("b", Reserve) if not r.reassert and r.kind is not CallKind.PARK]
    assert w.run_until(lambda: w.final("t1") and w.final("t2"), 20.0)
    assert w.final("t1").state is TaskState.DONE and w.final("t2").state is TaskState.DONE
    assert not w.authority.request("c", [(w.v("0,1"), w.t, INF)]).ok   # b's spot is held


def test_a_robot_that_drove_since_it_parked_reasserts_where_it_stands_not_where_it_parked():
    w = up((".....",), a=(0, 0))
    a = w.cores["a"]
    w.award("a", "t1", ["3,0"])
    assert w.run_until(lambda: w.final("t1") is not None and a.job is None, 15.0)
    assert w.at("a") == (3.0, 0.0)
    w.restart_authority()
    assert w.run_until(lambda: not w.authority.recovering, 3.0)
    assert w.holds("a") == {(w.v("3,0"), INF)}       # not 0,0, where it first parked


# -- lost answers -----------------------------------------------------------------------------


def test_a_lost_commit_answer_is_given_up_and_sent_again_and_its_late_answer_is_ignored():
    w = up(a=(0, 0))
    core = w.cores["a"]
    w.answer = lambda robot, req: req.kind is not CallKind.COMMIT   # both commits held back
    w.updates = False   # and their grants are not seen in updates either
    w.award("a", "t1", ["4,0"])
    assert w.run_until(lambda: w.unanswered, 2.0)
    assert core.phase is Phase.COMMIT
    (_, first), = w.unanswered
    sent_at = w.t
    assert w.run_until(lambda: Abandon(first.seq) in w.sent("a", Abandon), 5.0)
    assert w.t - sent_at >= CONFIG.reserve_timeout - DT
    assert w.run_until(lambda: len(w.unanswered) == 2, 1.0), "the commit was not sent again"
    (_, second) = w.unanswered[1]
    assert core.phase is Phase.COMMIT and core.job.attempts == 0   # no attempt counted
    # the late answer of the given-up call, here a refusal, is not taken for the pending one
    before = (core.phase, core.job.attempts, dict(core.calls))
    assert core.on_reserve_answer(w.t, dataclasses.replace(first, ok=False)) == []
    assert (core.phase, core.job.attempts, dict(core.calls)) == before
    w._do("a", core.on_reserve_answer(w.t, second))
    assert core.phase is Phase.DRIVE
    w.answer, w.updates = (lambda robot, req: True), True
    assert w.run_until(lambda: w.final("t1") is not None, 20.0)
    assert w.final("t1").state is TaskState.DONE


def test_an_update_naming_the_robot_is_not_taken_for_the_answer_to_its_request():
    # anyone can publish on /traffic/updates: only the authority's response grants a path
    w = up(a=(0, 0))
    core = w.cores["a"]
    w.answer = lambda robot, req: req.kind is not CallKind.COMMIT
    w.award("a", "t1", ["4,0"])
    assert w.run_until(lambda: w.unanswered, 1.0)
    (commit,) = [r for r in w.sent("a", Reserve) if r.kind is CallKind.COMMIT]
    shown = {(r.resource, r.t_start, r.t_end) for r in core.replica.table.reservations()
             if r.robot == "a"}
    assert set(commit.segments) <= shown     # the update with the grant did arrive
    w.step()
    assert core.phase is Phase.COMMIT, "an update was taken as the grant"
    (_, answer), = w.unanswered
    w._do("a", core.on_reserve_answer(w.t, answer))
    assert core.phase is Phase.DRIVE


def test_a_commit_granted_after_its_planned_departure_is_planned_again_not_driven():
    w = up(a=(0, 0))
    core = w.cores["a"]
    w.answer = lambda robot, req: req.kind is not CallKind.COMMIT
    w.updates = False
    w.award("a", "t1", ["4,0"])
    assert w.run_until(lambda: w.unanswered, 1.0)
    (commit,) = [r for r in w.sent("a", Reserve) if r.kind is CallKind.COMMIT]
    departure = commit.replace_from + CONFIG.start_margin
    w.run_until(lambda: w.t > departure + 0.2, 2.0)
    (_, late), = w.unanswered
    assert late.ok and late.seq in [c.seq for c in core.calls.values()]
    w._do("a", core.on_reserve_answer(w.t, late))
    assert core.phase is Phase.PLAN and core.drive is None
    assert core.job.attempts == 0          # not a refusal
    w.answer, w.updates = (lambda robot, req: True), True
    assert w.run_until(lambda: w.final("t1") is not None, 20.0)
    assert w.final("t1").state is TaskState.DONE


def test_a_lost_park_answer_is_asked_again():
    w = World(["....."], {"a": (1, 0)})
    w.answer = lambda robot, req: len(w.sent("a", Reserve)) > 1
    w.updates = False
    assert w.run_until(lambda: w.cores["a"].parked, 5.0)
    assert len(w.sent("a", Reserve)) == 2 and len(w.sent("a", Abandon)) == 1


# -- revocation, re-commit ----------------------------------------------------------------------


def test_revoked_reservations_make_the_robot_stop_before_the_cut_and_re_commit():
    rows = [".......", ".......", "......."]
    w = up(rows=rows, a=(0, 1))
    core = w.cores["a"]
    w.award("a", "t1", ["6,1"])
    assert w.run_until(lambda: core.phase is Phase.DRIVE, 2.0)
    # a ghost that parked at (4, 1) early and is now declared lost: its spot is blocked
    # for good, which cuts a's later pass there
    ghost_v = w.v("4,1")
    assert w.authority.reserve("ghost", [(ghost_v, w.t, w.t + 0.1)]).ok
    outcome = w.authority.robot_lost("ghost", w.t)
    assert "a" in outcome.revoked
    w._publish()
    assert w.run_until(lambda: w.sent("a", Reserve)[-1].kind is CallKind.RECOMMIT, 1.0)
    on_ghost = []
    while w.final("t1") is None and w.t < 30.0:
        w.step()
        b = w.bodies["a"]
        if math.hypot(b.x - 4, b.y - 1) < 0.5:
            on_ghost.append(w.t)
    assert on_ghost == [], "drove onto the blocked vertex"
    assert w.final("t1").state is TaskState.DONE   # around it
    assert w.at("a") == (6.0, 1.0)


def test_a_cut_just_ahead_of_a_robot_at_speed_stops_it_at_the_end_of_its_lane():
    """The real model passes vertices at speed; a cut right ahead leaves no stop point
    further on. A robot that can still brake stops at the end of the lane it drives
    (instead of parking where it left, behind it, outside every hold)."""
    w, core = revoked_at_speed("2,1")
    assert w.bodies["a"].v > 1.0   # on its first lane, at speed
    w._publish()
    assert w.run_until(lambda: any(r.kind is CallKind.RECOMMIT for r in w.sent("a", Reserve)),
                       0.5)
    assert not any(r.kind is CallKind.PARK for r in w.sent("a", Reserve)[-2:])
    # it still drives (no stop where it stands), braking into (1, 1)
    assert core.drive is not None and (w.v("1,1"), ) == tuple(
        v for v, _ in core.drive.path if v == w.v("1,1"))[:1]
    assert drive_around(w, (2, 1), lambda: w.final("t1") is None and w.t < 30.0) < 0.05
    assert w.final("t1").state is TaskState.DONE   # around it


def revoked_at_speed(ghost: str):
    """Robot a driving 0,1 -> 8,1 at real speed when a lost ghost's block at `ghost` cuts
    its path (the revocation not published yet)."""
    rows = [".........", ".........", "........."]
    w = World(rows, {"a": (0, 1)}, dataclasses.replace(CONFIG, time_model="real"))
    core = w.cores["a"]
    assert w.run_until(lambda: core.parked, 2.0)
    w.award("a", "t1", ["8,1"])
    assert w.run_until(lambda: core.drive is not None and w.bodies["a"].x > 0.1, 3.0)
    assert w.authority.reserve("ghost", [(w.v(ghost), w.t, w.t + 0.1)]).ok
    assert "a" in w.authority.robot_lost("ghost", w.t).revoked
    return w, core


def drive_around(w, blocked, going) -> float:
    """Step while `going()`; a never comes within 0.5 m of `blocked`; returns how far it
    was outside its holds at worst."""
    worst = 0.0
    while going():
        w.step()
        b = w.bodies["a"]
        assert math.hypot(b.x - blocked[0], b.y - blocked[1]) > 0.5, "drove onto the blocked vertex"
        holds = [(r.resource, r.t_start, r.t_end) for r in w.authority.table.reservations("a")]
        worst = max(worst, containment_error(w.ex, holds, b.x, b.y, w.t))
    return worst


def test_a_robot_whose_replica_went_stale_right_after_a_revocation_still_stops_for_it():
    """The delta after the revocation was lost (a gap: the replica is stale until the next
    snapshot, up to 5 s). What the replica did apply is still the authority's word at its
    version: the robot brakes for the cut it shows instead of driving on into the holds it
    lost until the snapshot comes."""
    w, core = revoked_at_speed("4,1")
    w._publish()                                  # the revocation arrives ...
    table = w.authority.table
    core.on_table_update(w.t, TableUpdate(table.version + 2, "b", False, "m", (), (),
                                          w.authority.epoch, False))
    assert core.replica.stale                     # ... and a gap right behind it
    w._snapshot_at = w.t                          # the next snapshot in 5 s
    assert drive_around(w, (4, 1), lambda: w.t < w._snapshot_at + 4.5) < 0.05


def test_a_robot_stopped_where_it_stands_plans_again_only_once_it_holds_its_spot():
    """Stopped where it stood (a cut with no stop point left), a robot holds that spot
    again before anything else: it plans no new leg while its park is unanswered. A
    commit granted meanwhile was replaced by the park granted after it, and the robot
    drove on a plan it no longer held (property test: 0.68 m outside, seed 602)."""
    w = up(rows=[".......", ".......", "......."], a=(0, 1))
    core = w.cores["a"]
    w.award("a", "t1", ["6,1"])
    assert w.run_until(lambda: core.phase is Phase.DRIVE, 2.0)
    w.answer = lambda robot, req: req.kind is not CallKind.PARK   # parks go unanswered
    core._stop_here(core.job, w.t)
    sent = len(w.sent("a", Reserve))
    w.run_until(lambda: False, 2.0)
    later = [r.kind for r in w.sent("a", Reserve)[sent:]]
    assert CallKind.PARK in later and CallKind.COMMIT not in later, later
    w.answer = lambda robot, req: True
    assert w.run_until(lambda: w.final("t1") is not None, 30.0)
    assert w.final("t1").state is TaskState.DONE and w.at("a") == (6.0, 1.0)


def test_a_lost_re_commit_answer_is_sent_again():
    rows = [".......", ".......", "......."]
    w = World(rows, {"a": (0, 1)}, dataclasses.replace(CONFIG, reserve_timeout=0.3))
    core = w.cores["a"]
    assert w.run_until(lambda: core.parked, 2.0)
    w.award("a", "t1", ["6,1"])
    assert w.run_until(lambda: core.phase is Phase.DRIVE, 2.0)
    lost = w.lose_first(CallKind.RECOMMIT)
    ghost_v = w.v("4,1")
    assert w.authority.reserve("ghost", [(ghost_v, w.t, w.t + 0.1)]).ok
    assert "a" in w.authority.robot_lost("ghost", w.t).revoked
    w._publish()
    w.updates = False   # its grant is not seen in an update either
    assert w.run_until(lambda: lost, 1.0)
    assert w.run_until(lambda: len([r for r in w.sent("a", Reserve)
                                    if r.kind is CallKind.RECOMMIT]) == 2, 1.0)
    assert Abandon(lost[0].seq) in w.sent("a", Abandon)
    w.updates = True
    assert w.run_until(lambda: w.final("t1") is not None, 30.0)
    assert w.final("t1").state is TaskState.DONE


# -- yielding -----------------------------------------------------------------------------------


def test_a_parked_robot_yields_its_spot_to_a_task_that_ends_there():
    w = up(rows=[".....", "....."], a=(2, 0), b=(4, 0))
    w.award("b", "t1", ["2,0"])
    assert w.run_until(lambda: w.final("t1") is not None, 30.0)
    assert w.final("t1").state is TaskState.DONE
    assert w.at("b") == (2.0, 0.0) and w.at("a") != (2.0, 0.0)
    assert w.cores["a"].parked and w.cores["a"].job is None


def test_a_robot_driving_a_detour_takes_the_short_way_once_it_is_free():
    """b is parked on 2,0, the short way from 0,0 to 4,0, so a plans the long way round
    the shelf (down the left column, along the bottom, up the right one); once b has
    moved into the pocket at 2,1, a takes the short way back instead of driving the whole
    detour (before, it drove it: seed 3437 of the property test)."""
    rows = [".....", ".#.#.", ".###.", ".###.", ".###.", "....."]
    w = up(rows=rows, a=(0, 0), b=(2, 0))
    a = w.cores["a"]
    w.award("a", "t1", ["4,0"])
    assert w.run_until(lambda: a.drive is not None, 5.0)
    planned = a.drive.path[-1][1]
    assert max(w.roadmap.pos[v][1] for v, _ in a.drive.path) == 5.0, "not the way round"
    assert w.run_until(lambda: w.at("a")[1] >= 1.0, 10.0)   # on its way down
    w.award("b", "t2", ["2,1"])                              # the short way opens
    lowest = [0.0]

    def done():
        lowest[0] = max(lowest[0], w.at("a")[1])
        return w.final("t1") is not None
    assert w.run_until(done, 60.0)
    assert w.final("t1").state is TaskState.DONE
    assert w.at("a") == (4.0, 0.0) and lowest[0] < 5.0, "a drove the whole detour"
    assert w.final("t1").stamp < planned - 5.0


def test_a_working_robot_waits_for_the_holder_of_its_station_without_losing_attempts():
    w = up(rows=[".....", "....."], a=(2, 0), b=(4, 0))
    a = w.cores["a"]
    a.on_task_status = lambda now, s: []   # a never hears of b's task: cannot yield,
    a.on_cfp = lambda now, task, rnd, excluded=(): []   # nor learns 2,0 is a station
    w.award("b", "t1", ["2,0"])
    b = w.cores["b"]
    assert w.run_until(lambda: b.job is not None and b.job.blocked is not None, 5.0)
    w.run_until(lambda: False, 3.0)
    assert b.job.attempts == 0 and w.final("t1") is None


def test_a_robot_waits_for_a_holder_whose_task_progresses_beyond_yield_wait_busy():
    w = World([".........", "........."], {"a": (0, 0), "b": (8, 1)},
              dataclasses.replace(CONFIG, yield_wait_busy=1.0))
    assert w.run_until(lambda: all(c.parked for c in w.cores.values()), 2.0)
    a, b = w.cores["a"], w.cores["b"]
    w.award("a", "ta", ["8,0"])            # a drives across: it holds 8,0 for good on arrival
    assert w.run_until(lambda: a.phase is Phase.DRIVE, 2.0)
    w.award("b", "tb", ["8,0"])
    assert w.run_until(lambda: b.job is not None and b.job.blocked is not None, 2.0)
    blocked_at = w.t
    assert w.run_until(lambda: w.final("tb") is not None, 40.0)
    assert w.final("ta").state is TaskState.DONE and w.final("tb").state is TaskState.DONE
    assert w.final("tb").stamp - blocked_at > 2 * 1.0, "waited no longer than yield_wait_busy"
    assert not [s for s in w.statuses if s.task_id == "tb" and s.state is TaskState.FAILED]


def test_a_holder_whose_task_stops_progressing_fails_the_waiting_task_after_yield_wait_busy():
    w = World(["....."], {"b": (0, 0)}, dataclasses.replace(CONFIG, yield_wait_busy=2.0))
    assert w.run_until(lambda: w.cores["b"].parked, 2.0)
    b = w.cores["b"]
    w.authority.reserve("ghost", [(w.v("3,0"), 0.0, INF)])
    w._publish()
    b.on_cfp(w.t, Task("tg", "goto", ["3,0"]), 1)
    w.award("b", "tb", ["3,0"])
    while w.final("tb") is None and w.t < 10.0:   # the ghost works on, never further along
        b.on_task_status(w.t, StatusReport("tg", "ghost", TaskState.ACTIVE, 1, 0.5))
        w.step()
    final = w.final("tb")
    assert final.state is TaskState.FAILED and "its task stuck" in final.reason


def test_a_holder_that_missed_the_task_learns_it_from_the_repeated_status():
    """a misses b's statuses until b waits for a's spot; b, standing still, repeats its
    ACTIVE every `status_period` s, so a learns of the task and yields well before b's
    `yield_wait` would fail it."""
    w = up(rows=[".....", "....."], a=(2, 0), b=(4, 0))
    a, b = w.cores["a"], w.cores["b"]
    a.on_task_status = lambda now, s: []            # deaf
    w.award("b", "tb", ["2,0"])
    assert w.run_until(lambda: b.job is not None and b.job.blocked is not None, 5.0)
    assert not a.active
    waited_from = w.t
    del a.on_task_status                            # hears again: only repeats tell it now
    assert w.run_until(lambda: w.final("tb") is not None, 20.0)
    assert w.final("tb").state is TaskState.DONE
    assert w.t - waited_from < CONFIG.yield_wait and w.at("a") != (2.0, 0.0)


def test_a_holder_that_missed_the_call_for_proposals_asks_the_dispatcher_and_yields():
    """a missed the cfp of b's task (it started, restarted or was cut off after it): b's
    ACTIVE names a task whose stations a does not know. a asks the dispatcher for its open
    tasks (the first answer is lost: asked again), learns that b heads for its spot and
    yields it well before b's `yield_wait` would fail the task."""
    w = up(rows=[".....", "....."], a=(2, 0), b=(4, 0))
    a = w.cores["a"]
    a.on_cfp = lambda now, task, rnd, excluded=(): []   # missed
    w.list_answer = lambda robot, req: req.seq > 1
    w.award("b", "tb", ["2,0"])
    del a.on_cfp
    assert w.run_until(lambda: w.final("tb") is not None, 20.0)
    assert w.final("tb").state is TaskState.DONE and w.at("a") != (2.0, 0.0)
    assert [q.seq for q in w.sent("a", ListOpenTasks)] == [1, 2]
    assert not w.sent("b", ListOpenTasks), "b knew the task: nothing to ask"


def test_a_task_the_dispatcher_does_not_list_is_not_asked_for_again():
    w = up(a=(0, 0))
    a = w.cores["a"]
    active = StatusReport("tx", "c", TaskState.ACTIVE, 1, 0.5)
    w._do("a", a.on_task_status(w.t, active))
    w.step()
    (ask,) = w.sent("a", ListOpenTasks)                # answered at once: tx is not listed
    assert not a.active and not a.unknown_active
    for _ in range(int(2 * LIST_RETRY_S / DT)):        # c's repeats, late or out of order
        w._do("a", a.on_task_status(w.t, active))
        w.step()
    assert w.sent("a", ListOpenTasks) == [ask]


def test_two_robots_waiting_for_each_others_spot_one_yields_and_both_finish():
    w = up(rows=[".....", "....."], a=(1, 0), b=(3, 0))
    w.award("a", "ta", ["3,0"])
    w.award("b", "tb", ["1,0"])
    assert w.run_until(lambda: w.cores["a"].suspended or w.cores["b"].suspended, 10.0), \
        "neither set its task aside to yield"
    # the one yielding still reports its task (the dispatcher would take it for lost)
    yielder = "a" if w.cores["a"].suspended else "b"
    assert w.cores[yielder].state_report(w.t).task_id == {"a": "ta", "b": "tb"}[yielder]
    assert w.run_until(lambda: w.final("ta") and w.final("tb"), 40.0)
    assert w.final("ta").state is TaskState.DONE and w.final("tb").state is TaskState.DONE
    # (each was at its station when it said DONE; idle, it leaves the station afterwards)


# -- contact with the fleet ----------------------------------------------------------------------


def test_results_of_a_cut_off_are_sent_again_when_the_fleet_is_heard_again():
    w = up(a=(0, 0))
    w.updates = False                         # cut off: no table updates...
    w.award("a", "t1", ["2,0"])               # ...while it does a task (answers still come)
    assert w.run_until(lambda: w.final("t1") is not None, 20.0)
    done = w.final("t1")
    w.run_until(lambda: False, CONFIG.silence + 1.0)
    n = len(w.statuses)
    w.updates = True   # heard again at the next snapshot (<= 5 s), re-sent 0.5, 2, 5 s on
    w.run_until(lambda: False, 11.0)
    again = [s for s in w.statuses[n:] if s.task_id == "t1"]
    assert again and all(s == done for s in again)   # the same report, same lamport
    assert len(again) == 3


def test_no_results_are_re_sent_without_a_cut_off():
    w = up(a=(0, 0))
    w.award("a", "t1", ["2,0"])
    assert w.run_until(lambda: w.final("t1") is not None, 20.0)
    n = len(w.statuses)
    w.run_until(lambda: False, 8.0)
    assert not [s for s in w.statuses[n:] if s.task_id == "t1"]


# -- withdrawal, rejection, removal -------------------------------------------------------------


def test_a_queued_task_another_robot_did_is_dropped():
    w = up(a=(0, 0))
    a = w.cores["a"]
    a.queue.append(Task("q1", "goto", ["3,0"]))
    a.on_task_status(w.t, StatusReport("q1", "b", TaskState.DONE))
    assert a.queue == []


def test_a_task_withdrawn_while_driving_finishes_the_leg_without_reporting_it():
    w = up(a=(0, 0))
    a = w.cores["a"]
    w.award("a", "t1", ["4,0"])
    assert w.run_until(lambda: a.phase is Phase.DRIVE, 2.0)
    a.on_rejection(w.t, "a", "t1", 1, "b finished it")    # same round as the award
    assert a.job is not None and a.job.task is None and a.phase is Phase.DRIVE
    assert w.run_until(lambda: a.job is None, 20.0)
    assert w.at("a") == (4.0, 0.0) and a.parked
    assert w.final("t1") is None


def test_a_rejection_of_another_round_does_not_withdraw():
    w = up(a=(0, 0))
    a = w.cores["a"]
    w.award("a", "t1", ["4,0"], rnd=2)
    a.on_rejection(w.t, "a", "t1", 1, "old round")
    assert w.run_until(lambda: w.final("t1") is not None, 20.0)
    assert w.final("t1").state is TaskState.DONE


def test_a_late_withdrawal_of_an_earlier_round_does_not_drop_a_task_won_again():
    # Under loss the award of round 1 arrived late: the dispatcher re-auctioned the task,
    # the robot doing it won round 2, then round 1's withdrawal arrived.
    w = up(a=(0, 0))
    a = w.cores["a"]
    w.award("a", "t1", ["4,0"], rnd=1)
    assert w.run_until(lambda: a.phase is Phase.DRIVE, 2.0)
    assert isinstance(a.on_cfp(w.t, Task("t1", "goto", ["4,0"]), 2)[0], cn.Proposal)
    w._do("a", a.on_award(w.t, "a", "t1", 2))
    a.on_rejection(w.t, "a", "t1", 1, "withdrawn: its robot did not confirm it")
    assert a.job is not None and a.job.task is not None
    assert w.run_until(lambda: w.final("t1") is not None, 20.0)
    assert (w.final("t1").state, w.final("t1").round) == (TaskState.DONE, 2)
    # and the withdrawal of the round it holds still withdraws
    w.award("a", "t2", ["0,0"], rnd=3)
    w._do("a", a.on_award(w.t, "a", "t2", 3))        # a duplicate changes nothing
    a.on_rejection(w.t, "a", "t2", 3, "b finished it")
    assert a.job is None or a.job.task is None


def test_a_removed_robot_stops_drops_its_work_and_stands_down():
    w = up(a=(0, 0))
    a = w.cores["a"]
    w.award("a", "t1", ["4,0"])
    a.queue.append(Task("q1", "goto", ["3,0"]))
    assert w.run_until(lambda: a.phase is Phase.DRIVE, 2.0)
    pending = [c.seq for c in a.calls.values()]
    out = a.on_robot_removed(w.t, "a")
    assert Velocity(0.0, 0.0) in out
    assert all(Abandon(s) in out for s in pending)
    assert a.job is None and a.queue == [] and a.removed and a.calls == {}
    assert a.state_report(w.t) is None
    assert a.tick(w.t + 1.0) == []
    assert a.on_cfp(w.t, Task("t9", "goto", ["3,0"]), 1) == []
    assert a.on_award(w.t, "a", "t9", 1) == []


def test_another_robots_removal_ends_what_is_known_of_its_tasks():
    w = up(a=(0, 0))
    a = w.cores["a"]
    a.on_cfp(w.t, Task("tb", "goto", ["3,0"]), 1)
    a.on_task_status(w.t, StatusReport("tb", "b", TaskState.ACTIVE, 1, 0.0))
    assert [t.robot for t in a.open_tasks()] == ["b"]
    a.on_robot_removed(w.t, "b")
    assert a.open_tasks() == [] and not a.removed


def test_a_waiting_robot_repeats_its_active_status_and_stops_with_the_task():
    w = up(rows=[".....", "....."], a=(2, 0), b=(4, 0))
    w.cores["a"].on_task_status = lambda now, s: []   # a cannot yield: b waits
    w.award("b", "tb", ["2,0"])
    w.run_until(lambda: False, 5 * CONFIG.status_period)
    stamps = [s.stamp for s in w.statuses if s.task_id == "tb" and s.state is TaskState.ACTIVE]
    gaps = [b - a for a, b in zip(stamps, stamps[1:])]
    assert len(stamps) >= 4 and max(gaps) < CONFIG.status_period + 2 * DT, gaps
    del w.cores["a"].on_task_status
    assert w.run_until(lambda: w.final("tb") is not None, 20.0)
    n = len(w.statuses)
    w.run_until(lambda: False, 2 * CONFIG.status_period)
    assert not [s for s in w.statuses[n:] if s.task_id == "tb"], "repeats went on after DONE"


def test_an_open_task_not_heard_again_is_forgotten_after_active_expiry():
    w = up(a=(0, 0))
    a = w.cores["a"]
    a.on_cfp(w.t, Task("tb", "goto", ["3,0"]), 1)
    a.on_task_status(w.t, StatusReport("tb", "b", TaskState.ACTIVE, 1, 0.0))
    heard = w.t
    assert w.run_until(lambda: not a.active, CONFIG.active_expiry + 1.0)
    assert w.t - heard > CONFIG.active_expiry - DT


# -- footprint ------------------------------------------------------------------------------------


def test_an_idle_robot_holding_more_than_its_spot_for_good_parks_again():
    w = up(a=(0, 0))
    extra = w.v("3,0")
    w.authority.reserve("a", [(extra, w.t, INF)])    # what a loss would leave behind
    w._publish()
    assert (extra, INF) in w.holds("a")
    assert w.run_until(lambda: (extra, INF) not in w.holds("a"), 5.0)
    assert w.holds("a") == {(w.v("0,0"), INF)}


# -- bids and configuration --------------------------------------------------------------------


def test_bids_refuse_before_odometry_and_for_unknown_stations():
    w = World(["....."], {"a": (0, 0)})
    a = w.cores["a"]
    (r,) = a.on_cfp(0.0, Task("t1", "goto", ["3,0"]), 1)
    assert isinstance(r, cn.Refusal) and r.reason is cn.RefuseReason.NOT_READY
    w.run_until(lambda: a.parked, 2.0)
    (r,) = a.on_cfp(w.t, Task("t2", "goto", ["9,9"]), 1)
    assert r.reason is cn.RefuseReason.UNKNOWN_STATION and "9,9" in r.detail
    (p,) = a.on_cfp(w.t, Task("t3", "goto", ["3,0"]), 1)
    assert isinstance(p, cn.Proposal) and p.cost > 0
    assert a.on_cfp(w.t, Task("t4", "goto", ["3,0"]), 1, excluded=["a"]) == []


@pytest.mark.parametrize("field,value", [("reserve_timeout", 0.0), ("silence", -1.0),
                                         ("dwell", -0.5), ("bid_objective", "speed"),
                                         ("max_plan_attempts", 0), ("yield_wait", math.nan)])
def test_a_bad_setting_is_refused_naming_it(field, value):
    with pytest.raises(ValueError, match=field):
        dataclasses.replace(CONFIG, **{field: value})


# -- stations are shared resources ---------------------------------------------------------


def test_a_robot_done_at_a_station_leaves_it_for_the_next_one():
    """a ends its task on station 2,0 and has nothing more to do there: it parks on a
    vertex that is no station at once, so b's task to the same station never waits for
    an idle holder."""
    w = World([".....", "....."], {"a": (0, 0), "b": (4, 1)},
              dataclasses.replace(CONFIG, leave_stations=True))
    a, b = w.cores["a"], w.cores["b"]
    assert w.run_until(lambda: a.parked and b.parked, 2.0)
    w.award("a", "ta", ["2,0"])
    assert w.run_until(lambda: w.final("ta") is not None, 20.0)
    done_at = w.t
    assert w.run_until(lambda: a.job is None and a.here != w.v("2,0") and a.parked, 10.0)
    assert w.t - done_at < 5.0
    assert a.here not in a.stations
    assert {r for r, t in w.holds("a") if t == INF} == {a.here}
    w.award("b", "tb", ["2,0"])
    waited = []

    def done() -> bool:
        if b.job is not None and b.job.blocked is not None:
            waited.append(w.t)
        return w.final("tb") is not None
    assert w.run_until(done, 20.0)
    assert w.final("tb").state is TaskState.DONE and waited == []


def test_an_idle_robot_on_a_station_with_no_other_station_free_spot_still_yields():
    """Every vertex is some task's station, so a, idle on 2,0, finds no station-free spot
    to leave for; b's task needs 2,0. It must still yield (to a spot off b's task): the
    leave-station check stood in for the yield check, and a stayed until b's task failed
    (the 20-robot soak: a robot kept a station 42 s)."""
    w = World([".....", "....."], {"a": (2, 0), "b": (4, 1)},
              dataclasses.replace(CONFIG, leave_stations=True))
    a, b = w.cores["a"], w.cores["b"]
    assert w.run_until(lambda: a.parked and b.parked, 2.0)
    a.stations.update(range(len(w.roadmap.names)))
    w.award("b", "tb", ["2,0"])
    assert w.run_until(lambda: w.final("tb") is not None, 30.0)
    assert w.final("tb").state is TaskState.DONE and a.here != w.v("2,0")


def test_an_idle_robot_with_a_queued_task_goes_on_instead_of_parking_aside():
    w = up(rows=["......"], a=(0, 0))
    a = w.cores["a"]
    w.award("a", "t1", ["2,0"])
    w.award("a", "t2", ["5,0"])
    assert w.run_until(lambda: w.final("t2") is not None, 30.0)
    moves = [x for r, x in w.actions if r == "a" and isinstance(x, Reserve)
             and x.kind is CallKind.COMMIT]
    assert len(moves) == 2, "it made a move between its two tasks"
    assert a.here == w.v("5,0")


# -- the time model -------------------------------------------------------------------------


@pytest.mark.parametrize("model", ["real", "stop_and_turn"])
def test_the_robot_drives_at_the_speed_its_time_model_plans(model):
    """real: a straight 8 m run after a quarter turn is planned at what the robot needs
    (the turn only where it turns, the vertices on the way passed at speed); the
    stop-and-turn model plans every lane slowly. Both arrive within their margin of the
    plan (the world's robot follows the commands exactly)."""
    cfg = dataclasses.replace(CONFIG, time_model=model)
    w = World([".........", "........."], {"a": (0, 1)}, cfg)
    core = w.cores["a"]
    assert w.run_until(lambda: core.parked, 2.0)
    w.bodies["a"] = UnicycleState(0.0, 1.0, math.pi / 2)   # facing +y: turn first
    w.step()
    w.award("a", "t1", ["8,1"])
    t0 = w.t
    assert w.run_until(lambda: core.drive is not None, 2.0)
    planned = core.drive.path[-1][1] - t0
    assert w.run_until(lambda: w.final("t1") is not None, 60.0)
    took = w.t - t0
    acc = 0.7 * LIMITS.max_acc
    if model == "real":
        def need(v):
            # accelerate to v, cruise, and brake so that it may run on from any point
            # (run_on s, then braking at acc) and stop within the slack
            brake_d, brake_t = run_on_braking(v, acc, cfg.run_on, RUN_ON_SLACK)
            return v / (2 * acc) + (8.0 - v * v / (2 * acc) - brake_d) / v + brake_t + \
                core.model.turn(math.pi / 2)
        # it passes each vertex no faster than it can stop from within the next 1 m lane
        # (where its run may end): between that speed and its top speed
        v_pass = next(v for v in np.linspace(LIMITS.max_v, 0.1, 291)
                      if run_on_braking(v, acc, cfg.run_on, RUN_ON_SLACK, 2)[0] <= 1.0)
        assert need(LIMITS.max_v) <= planned < need(v_pass) + cfg.start_margin + 0.1
        late = 0.0
    else:
        assert planned > 8.0 / core.model.max_v > 3 * 8.0 / LIMITS.max_v
        # it stands at the goal star's wall until the star opens: from there it may
        # need longer than the plan's L / speed (its approach is one it may run on from)
        late = max(0.0, stop_time(w.ex.clearance, LIMITS, run_on=cfg.run_on)
                   - w.ex.clearance / core.model.max_v)
    assert took <= planned + core.model.margin + late + 2 * DT


def run_on_braking(v, acc, run_on, slack, steps=20000):
    """(distance, time) to brake from `v` to a stop so that from any point a run-on of
    `run_on` s at the speed there and braking at `acc` ends within `slack` of the stop:
    the speed at distance d before it solves v T + v^2 / 2a = d + slack (plain braking
    where that is below sqrt(2 a d)); the time integrated numerically."""
    def speed(d):
        return min(math.sqrt(2 * acc * d),
                   math.sqrt((acc * run_on) ** 2 + 2 * acc * (d + slack)) - acc * run_on)
    lo, hi = 0.0, v * run_on + v * v / (2 * acc)
    for _ in range(100):          # where the curve reaches v
        lo, hi = (lo, (lo + hi) / 2) if speed((lo + hi) / 2) >= v else ((lo + hi) / 2, hi)
    dd = hi / steps
    return hi, sum(dd / speed((k + 0.5) * dd) for k in range(steps))


# -- a stalled control loop ------------------------------------------------------------------


class StallingWorld(World):
    """`World` whose robot "a"'s control loop stalls over `stalls` = [(from, until)]: no
    odometry read, no tick, no command; its driver runs the last command until its
    watchdog (`cmd_timeout`) stops the robot, as the ideal driver and the simulator do."""

    def __init__(self, *args, cmd_timeout: float = 0.5, **kw) -> None:
        super().__init__(*args, **kw)
        self.stalls: list[tuple[float, float]] = []
        self.cmd_timeout = cmd_timeout
        self.cmd_at = 0.0

    def _do(self, name: str, actions: list) -> None:
        if name == "a" and any(isinstance(a, Velocity) for a in actions):
            self.cmd_at = self.t
        super()._do(name, actions)

    def stalled(self) -> bool:
        return any(t0 <= self.t < t1 for t0, t1 in self.stalls)

    def step(self) -> None:
        self.t = round(self.t + DT, 9)
        core = self.cores["a"]
        v, w = self.cmd["a"] if self.t - self.cmd_at <= self.cmd_timeout else (0.0, 0.0)
        b = self.bodies["a"] = step(self.bodies["a"], v, w, DT, LIMITS)
        self._publish()
        if self.stalled():
            return
        core.on_odometry(self.t, Odometry(b.x, b.y, b.theta, b.v, b.w, self.t))
        self._do("a", core.tick(self.t))
        self.authority.tick(self.t)


def _drive_with_a_stall_at_a_stop(config: ExecutionConfig, stall: float,
                                  earlier_stall: bool) -> tuple[float, int]:
    """Robot "a" (stop-and-turn: it stops at every vertex) drives around a corner; its
    loop stalls `stall` s the moment it stands at the corner. Returns how far (m) it was
    ever outside what the authority's table says it holds, and how many paths it
    committed for the task (more than one: it stopped and planned again)."""
    w = StallingWorld(["....", "....", "...."], {"a": (0, 0)}, config=config)
    assert w.run_until(lambda: w.cores["a"].parked, 2.0)
    core = w.cores["a"]
    if earlier_stall:   # the host starved the loop once before, while the robot was idle
        w.stalls.append((w.t, w.t + stall))
        w.run_until(lambda: not w.stalled(), 2.0)
        w.run_until(lambda: False, 1.0)
    w.award("a", "t1", ["3,2"])
    sent = len(w.sent("a", Reserve))
    worst, stalled = 0.0, False
    corner = w.v("3,0")
    end = w.t + 30.0
    while w.t < end and w.final("t1") is None:
        drive = core.drive
        if not stalled and drive is not None and drive.tracker is not None \
                and not drive.tracker.driving and drive.tracker.vertex == corner:
            w.stalls.append((w.t, w.t + stall))
            stalled = True
        w.step()
        b = w.bodies["a"]
        holds = [(r.resource, r.t_start, r.t_end) for r in w.authority.table.reservations("a")]
        worst = max(worst, containment_error(w.ex, holds, b.x, b.y, w.t))
    assert stalled and w.final("t1") is not None and w.final("t1").state is TaskState.DONE
    return worst, sum(r.kind is CallKind.COMMIT for r in w.sent("a", Reserve)[sent:])


def test_a_robot_whose_loop_stalled_before_plans_with_holds_that_cover_the_next_stall():
    """A stalled control loop sends no commands: the driver's watchdog stops the robot and
    it stands, late, at a stop whose hold ends. Having seen a stall of its loop, the agent
    widens its new paths' holds by it (`stall_margin`): a second stall as long, at the worst
    moment (standing at a corner, about to turn and leave), keeps it inside its holds and
    on its path. Without the margin (`stall_margin_max` 0) it is overdue there: it stops
    and plans again from the corner (`PathTracker.overdue`; without that, it drove on late,
    0.3 m outside its holds)."""
    off = dataclasses.replace(CONFIG, stall_margin_max=0.0)
    worst, paths = _drive_with_a_stall_at_a_stop(off, 0.8, earlier_stall=True)
    assert worst <= 0.1 and paths == 2
    worst, paths = _drive_with_a_stall_at_a_stop(CONFIG, 0.8, earlier_stall=True)
    assert worst <= 0.1 and paths == 1


def test_the_stall_margin_covers_the_longest_recent_stall_bounded_and_decays():
    w = World(["....."], {"a": (0, 0)})
    core = w.cores["a"]
    assert w.run_until(lambda: core.parked, 2.0)
    assert core.stall_margin(w.t) == 0.0 and core.plan_model(w.t) is core.model
    t = w.t
    core.tick(t + 0.05)
    core.tick(t + 0.33)        # 0.28 s since the last tick: 0.23 s late; the last command
    # ran on meanwhile (a turn past its heading, to be undone): twice that, rounded up
    assert core.stall_margin(t + 1.0) == pytest.approx(0.5)
    assert core.plan_model(t + 1.0).margin == pytest.approx(core.model.margin + 0.5)
    core.tick(t + 0.38)
    core.tick(t + 3.38)        # a 3 s stall: capped at stall_margin_max
    assert core.stall_margin(t + 4.0) == CONFIG.stall_margin_max == 1.0
    # quiet for stall_memory: back to the model's own margin
    assert core.stall_margin(t + 3.38 + CONFIG.stall_memory + 0.1) == 0.0
    off = Execution("b", w.roadmap, w.ex, Replica(w.ex.of, w.roadmap.num_resources, "m"),
                    dataclasses.replace(CONFIG, stall_margin_max=0.0))
    off.tick(0.0)
    off.tick(1.0)
    assert off.stall_margin(1.0) == 0.0


def test_a_path_keeps_the_margin_it_was_planned_with_when_the_loop_stalls_while_it_drives():
    """The tracker, a cut's stop point and the re-commit all derive holds from the path:
    they must use the model it was planned (and granted) with, not a margin widened since."""
    w = World(["....."], {"a": (0, 0)})
    core = w.cores["a"]
    assert w.run_until(lambda: core.parked, 2.0)
    w.award("a", "t1", ["4,0"])
    assert w.run_until(lambda: core.phase is Phase.DRIVE, 2.0)
    planned = core.drive.model
    assert planned is not None and planned.margin == core.model.margin
    core.tick(w.t + 0.8)       # a stall while driving: new paths would be wider
    assert core.plan_model(w.t + 0.8).margin > planned.margin
    assert core.drive.model is planned and core.drive.tracker.model is planned


@pytest.mark.parametrize("field,value", [("stall_margin_max", -0.1), ("stall_margin_max", 11.0),
                                         ("stall_memory", 0.0), ("control_period", math.nan)])
def test_a_bad_stall_setting_is_refused_naming_it(field, value):
    with pytest.raises(ValueError, match=field):
        dataclasses.replace(CONFIG, **{field: value})

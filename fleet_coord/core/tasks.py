"""Tasks: the task model, its life cycle, and the durable task ledger.

A `Task` is what a user asks the fleet to do (pick something up and drop it somewhere,
go somewhere, go charge). Its life cycle::

    QUEUED -> ANNOUNCED -> AWARDED -> ACTIVE -> DONE
       |          |  ^         |         |
       |          |  '-- re-announce (new auction round)
       |          '-> QUEUED  (no bids: wait for the retry back-off)
       |                       '---------+-> QUEUED   (robot lost / robot failure: attempts + 1)
       '----------+------------+---------+-> FAILED | CANCELLED

`TaskLedger` keeps tasks and their history in SQLite so the dispatcher can crash and
restart without losing any accepted task, executing one twice, or reviving a finished
one. See the class docstring for the guarantees and why each holds.

Pure core: no rclpy, time is always a parameter (`now`, seconds of ROS time).
"""
from __future__ import annotations

import json
import math
import sqlite3
import threading
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from types import TracebackType
from typing import Any, List  # List: TaskLedger.list shadows the builtin in the class

__all__ = [
    "KINDS", "LEGAL_TRANSITIONS", "TERMINAL_STATES",
    "Task", "TaskState", "TaskRecord", "TaskEvent", "TaskLedger",
    "TaskError", "LedgerError", "DuplicateTask", "UnknownTask", "IllegalTransition",
    "StaleAward",
]

#: Task kinds and how many stations each visits, in order.
KINDS: dict[str, tuple[int, str]] = {
    "pick_and_drop": (2, "[pick, drop]"),
    "goto": (1, "[goal]"),
    "charge": (1, "[charger]"),
}


class TaskError(ValueError):
    """A task (or a task dict) is malformed; the message names the field."""


class LedgerError(RuntimeError):
    """Base class of the ledger's refusals."""


class DuplicateTask(LedgerError):
    """A task with this id was submitted before (possibly before a restart)."""


class UnknownTask(LedgerError, KeyError):
    """No task with this id in the ledger."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""


class IllegalTransition(LedgerError):
    """The requested state change is not allowed from the task's current state."""


class StaleAward(IllegalTransition):
    """An award for an auction round that is no longer the task's current round."""


# ---------------------------------------------------------------------------------------
# The task model
# ---------------------------------------------------------------------------------------

_FIELDS = ("id", "kind", "stations", "priority", "deadline", "payload_kg", "submitted_at")
_REQUIRED = ("id", "kind", "stations")


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _is_finite(x: Any) -> bool:
    """A number that is a finite float; an int too large for a float is not (math.isfinite
    would raise OverflowError on it)."""
    try:
        return _is_number(x) and math.isfinite(x)
    except OverflowError:
        return False


def _show(x: Any) -> str:
    """repr() for an error message: Python refuses to print ints of more than 4300 digits."""
    try:
        return repr(x)
    except ValueError:
        return f"an int of {x.bit_length()} bits"


# A task travels in fleet_coord_msgs/Task, where rclpy does not range-check: an int32 field
# wraps silently when serialized (a larger one raises OverflowError).
#: `priority` is an int32 (and a SQLite INTEGER).
PRIORITY_RANGE = (-2**31, 2**31 - 1)
#: `deadline` and `submitted_at` are builtin_interfaces/Time: int32 seconds.
TIME_LIMIT_S = float(2**31)


@dataclass
class Task:
    """One job for one robot.

    `stations` are the roadmap station names the robot visits in order: `[pick, drop]`
    for `pick_and_drop`, `[goal]` for `goto`, `[charger]` for `charge`. `deadline` is an
    absolute time (s) by which the task should be done, or None. `submitted_at` is when
    the request was made (s).
    """

    id: str
    kind: str
    stations: list[str]
    priority: int = 0
    deadline: float | None = None
    payload_kg: float = 0.0
    submitted_at: float = 0.0

    def validate(self, known_stations: Collection[str] | None = None) -> None:
        """Raise `TaskError` naming the first bad field and what was expected.

        With `known_stations`, every station must be one of them; with None only the
        task's own consistency is checked (the ledger does that: it has no map).
        """
        if not isinstance(self.id, str) or not self.id.strip():
            raise TaskError(f"task id must be a non-empty string, got {self.id!r}")
        # A ROS string ends at a NUL: robots would hear of another task (another station).
        if "\x00" in self.id:
            raise TaskError(f"task id must not contain NUL characters, got {self.id!r}")
        who = f"task {self.id!r}"
        if not isinstance(self.kind, str) or self.kind not in KINDS:
            raise TaskError(f"{who}: unknown kind {self.kind!r}; expected one of "
                            f"{', '.join(repr(k) for k in KINDS)}")
        if not isinstance(self.stations, (list, tuple)):
            raise TaskError(f"{who}: stations must be a list of station names, "
                            f"got {type(self.stations).__name__}")
        count, shape = KINDS[self.kind]
        if len(self.stations) != count:
            raise TaskError(f"{who}: kind {self.kind!r} takes {count} station"
                            f"{'s' if count > 1 else ''} {shape}, got {len(self.stations)}: "
                            f"{list(self.stations)!r}")
        for i, s in enumerate(self.stations):
            if not isinstance(s, str) or not s or "\x00" in s:
                raise TaskError(f"{who}: stations[{i}] must be a non-empty station name "
                                f"without NUL characters, got {s!r}")
            if known_stations is not None and s not in known_stations:
                known = sorted(known_stations)
                shown = ", ".join(known[:12]) + (f", ... ({len(known) - 12} more)"
                                                 if len(known) > 12 else "")
                raise TaskError(f"{who}: unknown station {s!r} in stations[{i}]; "
                                f"known stations: {shown or '(none)'}")
        if not isinstance(self.priority, int) or isinstance(self.priority, bool):
            raise TaskError(f"{who}: priority must be an int, got {self.priority!r}")
        if not PRIORITY_RANGE[0] <= self.priority <= PRIORITY_RANGE[1]:
            raise TaskError(f"{who}: priority must be in {PRIORITY_RANGE[0]}..{PRIORITY_RANGE[1]} "
                            f"(int32), got {_show(self.priority)}")
        if self.deadline is not None:
            if not _is_finite(self.deadline):
                raise TaskError(f"{who}: deadline must be a finite number of seconds or "
                                f"None, got {_show(self.deadline)}")
            if self.deadline <= 0:
                raise TaskError(f"{who}: deadline must be > 0 (absolute seconds), "
                                f"got {self.deadline!r}")
            if self.deadline >= TIME_LIMIT_S:
                raise TaskError(f"{who}: deadline must be before 2**31 s (a ROS time), "
                                f"got {self.deadline!r}")
        if not _is_finite(self.payload_kg):
            raise TaskError(f"{who}: payload_kg must be a finite number, "
                            f"got {_show(self.payload_kg)}")
        if self.payload_kg < 0:
            raise TaskError(f"{who}: payload_kg must be >= 0, got {self.payload_kg!r}")
        if not _is_finite(self.submitted_at):
            raise TaskError(f"{who}: submitted_at must be a finite number of seconds, "
                            f"got {_show(self.submitted_at)}")
        if self.submitted_at >= TIME_LIMIT_S:
            raise TaskError(f"{who}: submitted_at must be before 2**31 s (a ROS time), "
                            f"got {self.submitted_at!r}")

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "kind": self.kind, "stations": list(self.stations),
                "priority": self.priority, "deadline": self.deadline,
                "payload_kg": self.payload_kg, "submitted_at": self.submitted_at}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Task:
        """Build and validate a task from a dict (JSON, YAML, a ROS request).

        Raises `TaskError` naming the missing, unknown or mistyped key. Station names are
        not checked against a map here; call `validate(known_stations)` for that.
        """
        if not isinstance(d, Mapping):
            raise TaskError(f"task must be a mapping, got {type(d).__name__}")
        ident = d.get("id")
        who = f"task {ident!r}" if isinstance(ident, str) else "task"
        for key in _REQUIRED:
            if key not in d:
                raise TaskError(f"{who}: missing key {key!r}")
        unknown = sorted(str(k) for k in d if k not in _FIELDS)
        if unknown:
            raise TaskError(f"{who}: unknown key {unknown[0]!r}; expected keys: "
                            f"{', '.join(_FIELDS)}")

        def need(key: str, ok: bool, expected: str) -> None:
            if not ok:
                v = d[key]
                raise TaskError(f"{who}: key {key!r} must be {expected}, got "
                                f"{type(v).__name__} {_show(v)}")

        need("id", isinstance(d["id"], str), "a string")
        need("kind", isinstance(d["kind"], str), "a string")
        need("stations", isinstance(d["stations"], (list, tuple))
             and all(isinstance(s, str) for s in d["stations"]), "a list of strings")
        if "priority" in d:
            need("priority", isinstance(d["priority"], int)
                 and not isinstance(d["priority"], bool), "an int")
        # a float (NaN and inf too: validate() names those); an int only if a float holds it
        if d.get("deadline") is not None:
            need("deadline", isinstance(d["deadline"], float) or _is_finite(d["deadline"]),
                 "a number or null (within a float's range)")
        for key in ("payload_kg", "submitted_at"):
            if key in d:
                need(key, isinstance(d[key], float) or _is_finite(d[key]),
                     "a number (within a float's range)")
        task = cls(id=d["id"], kind=d["kind"], stations=list(d["stations"]),
                   priority=d.get("priority", 0),
                   deadline=None if d.get("deadline") is None else float(d["deadline"]),
                   payload_kg=float(d.get("payload_kg", 0.0)),
                   submitted_at=float(d.get("submitted_at", 0.0)))
        task.validate()
        return task


# ---------------------------------------------------------------------------------------
# Life cycle
# ---------------------------------------------------------------------------------------

class TaskState(str, Enum):
    QUEUED = "QUEUED"        # accepted, waiting to be announced (or for a retry)
    ANNOUNCED = "ANNOUNCED"  # a cfp is out; `round` names the auction round
    AWARDED = "AWARDED"      # accept-proposal sent to `robot`; not started yet
    ACTIVE = "ACTIVE"        # `robot` is executing it
    DONE = "DONE"            # inform-done received
    FAILED = "FAILED"        # given up (no robot could do it, too many attempts, ...)
    CANCELLED = "CANCELLED"  # withdrawn by the user

    def __str__(self) -> str:
        return self.value


S = TaskState
TERMINAL_STATES = frozenset({S.DONE, S.FAILED, S.CANCELLED})
LEGAL_TRANSITIONS: dict[TaskState, frozenset[TaskState]] = {
    S.QUEUED: frozenset({S.ANNOUNCED, S.FAILED, S.CANCELLED}),
    # ANNOUNCED -> ANNOUNCED is a re-announcement: a new auction round (e.g. after a
    # dispatcher restart lost the initiator of the previous round).
    S.ANNOUNCED: frozenset({S.ANNOUNCED, S.AWARDED, S.QUEUED, S.FAILED, S.CANCELLED}),
    S.AWARDED: frozenset({S.ACTIVE, S.QUEUED, S.FAILED, S.CANCELLED}),
    S.ACTIVE: frozenset({S.DONE, S.QUEUED, S.FAILED, S.CANCELLED}),
    S.DONE: frozenset(),
    S.FAILED: frozenset(),
    S.CANCELLED: frozenset(),
}


@dataclass(frozen=True)
class TaskRecord:
    """A task as the ledger holds it now."""

    task: Task
    state: TaskState
    robot: str | None
    attempts: int       # times the task came back from a robot (lost / failure)
    round: int          # current (latest) auction round; 0 = never announced
    updated_at: float
    reason: str


@dataclass(frozen=True)
class TaskEvent:
    seq: int
    task_id: str
    event: str          # "submit" or the new state in lower case ("awarded", ...)
    robot: str | None
    t: float
    lamport: int
    detail: dict[str, Any] = field(default_factory=dict)


# ---------------------------------------------------------------------------------------
# The ledger
# ---------------------------------------------------------------------------------------

_SCHEMA_VERSION = 1
_SCHEMA = """
CREATE TABLE IF NOT EXISTS tasks (
    id         TEXT PRIMARY KEY,
    json       TEXT NOT NULL,
    state      TEXT NOT NULL,
    robot      TEXT,
    attempts   INTEGER NOT NULL DEFAULT 0,
    round      INTEGER NOT NULL DEFAULT 0,
    priority   INTEGER NOT NULL DEFAULT 0,
    updated_at REAL NOT NULL,
    reason     TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS tasks_state ON tasks(state);
CREATE TABLE IF NOT EXISTS events (
    seq     INTEGER PRIMARY KEY AUTOINCREMENT,
    task_id TEXT NOT NULL,
    event   TEXT NOT NULL,
    robot   TEXT,
    t       REAL NOT NULL,
    lamport INTEGER NOT NULL,
    detail  TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS events_task ON events(task_id, seq);
CREATE INDEX IF NOT EXISTS events_lamport ON events(lamport);
"""


class TaskLedger:
    """The durable record of every accepted task (SQLite, one file).

    Guarantees, each across a crash of the dispatcher process at any instant:

    * **No accepted task is lost.** `submit()` returns only after its transaction has
      committed to the write-ahead log and the log has been fsync'ed
      (`journal_mode=WAL` + `synchronous=FULL`). WAL alone already survives a *process*
      crash (the log is replayed on the next open); `synchronous=FULL` adds survival of
      an OS crash or power cut, which `NORMAL` does not give in WAL mode (there a commit
      may sit in the page cache and be rolled back on power loss). A dispatcher that has
      told a user "accepted" must not forget it, so we pay one fsync per commit.
    * **Duplicate ids are refused forever**: ids are the primary key and finished tasks
      are kept, so a resubmission after a restart raises `DuplicateTask`.
    * **Every state change is atomic and legal**: one `BEGIN IMMEDIATE` transaction reads
      the current state, checks `LEGAL_TRANSITIONS`, updates the row and appends the
      event; a crash leaves either all of it or none. Terminal states have no way out,
      so a DONE task never goes back.
    * **Never assigned to two robots at once**: AWARDED is reachable only from ANNOUNCED,
      as a compare-and-set on the auction `round` (every announcement starts a new
      round). An award computed by a round that was superseded -- e.g. by the
      re-announcement after a restart -- raises `StaleAward`; a second award of the same
      round finds the task already AWARDED and raises `IllegalTransition`. Reports from
      a robot that no longer holds the task (`ACTIVE`/`DONE` naming another robot) are
      refused too.

    Events carry a Lamport clock that survives restarts and advances past the stamps of
    incoming messages (`remote_lamport`), so the ledger's history can be merged with the
    robots' logs in causal order.

    Thread-safe (one connection, one lock); several ledgers (processes) may open one file:
    the write lock of `BEGIN IMMEDIATE` serialises them.
    """

    def __init__(self, path: str, *, busy_timeout_s: float = 5.0) -> None:
        self.path = str(path)
        self._lock = threading.Lock()
        # isolation_level=None: we issue BEGIN/COMMIT ourselves (the sqlite3 module's
        # implicit transactions would not take the write lock before our reads).
        self._db = sqlite3.connect(self.path, isolation_level=None,
                                   check_same_thread=False, timeout=busy_timeout_s)
        mode = self._db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise LedgerError(f"task ledger {self.path!r}: could not enable WAL journal "
                              f"mode (got {mode!r}); is the file on a filesystem without "
                              "shared-memory support?")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("PRAGMA foreign_keys=ON")
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        if version not in (0, _SCHEMA_VERSION):
            raise LedgerError(f"task ledger {self.path!r} has schema version {version}, "
                              f"this code reads version {_SCHEMA_VERSION}")
        with self._tx():
            for stmt in _SCHEMA.split(";"):
                if stmt.strip():
                    self._db.execute(stmt)
            self._db.execute(f"PRAGMA user_version={_SCHEMA_VERSION}")

    # -- plumbing ---------------------------------------------------------------------

    class _Tx:
        def __init__(self, ledger: TaskLedger) -> None:
            self.ledger = ledger

        def __enter__(self) -> sqlite3.Connection:
            self.ledger._lock.acquire()
            try:
                self.ledger._db.execute("BEGIN IMMEDIATE")
            except BaseException:
                self.ledger._lock.release()
                raise
            return self.ledger._db

        def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                     tb: TracebackType | None) -> None:
            try:
                self.ledger._db.execute("COMMIT" if exc_type is None else "ROLLBACK")
            finally:
                self.ledger._lock.release()

    def _tx(self) -> TaskLedger._Tx:
        return TaskLedger._Tx(self)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> TaskLedger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @staticmethod
    def _append_event(db: sqlite3.Connection, task_id: str, event: str, robot: str | None,
                      now: float, detail: dict[str, Any], remote_lamport: int | None) -> None:
        last = db.execute("SELECT COALESCE(MAX(lamport), 0) FROM events").fetchone()[0]
        lamport = max(last, remote_lamport or 0) + 1
        db.execute("INSERT INTO events(task_id, event, robot, t, lamport, detail) "
                   "VALUES (?, ?, ?, ?, ?, ?)",
                   (task_id, event, robot, now, lamport, json.dumps(detail, sort_keys=True)))

    @staticmethod
    def _record(row: tuple[Any, ...]) -> TaskRecord:
        json_text, state, robot, attempts, rnd, updated_at, reason = row
        return TaskRecord(task=Task.from_dict(json.loads(json_text)), state=TaskState(state),
                          robot=robot, attempts=attempts, round=rnd,
                          updated_at=updated_at, reason=reason)

    _COLS = "json, state, robot, attempts, round, updated_at, reason"

    @staticmethod
    def _check_now(now: float) -> None:
        if not _is_number(now) or not math.isfinite(now):
            raise ValueError(f"now must be a finite time in seconds, got {now!r}")

    # -- API --------------------------------------------------------------------------

    def submit(self, task: Task, now: float) -> None:
        """Accept `task` (state QUEUED). When this returns the task is on disk.

        Raises `TaskError` for a malformed task, `DuplicateTask` when the id was ever
        submitted before.
        """
        task.validate()
        self._check_now(now)
        with self._tx() as db:
            if db.execute("SELECT 1 FROM tasks WHERE id = ?", (task.id,)).fetchone():
                raise DuplicateTask(f"task {task.id!r} was already submitted; "
                                    "task ids must be unique")
            db.execute("INSERT INTO tasks(id, json, state, priority, updated_at) "
                       "VALUES (?, ?, ?, ?, ?)",
                       (task.id, json.dumps(task.to_dict(), sort_keys=True),
                        S.QUEUED.value, task.priority, now))
            self._append_event(db, task.id, "submit", None, now,
                               {"to": S.QUEUED.value}, None)

    def transition(self, task_id: str, new_state: TaskState | str, now: float,
                   robot: str | None = None, reason: str = "", *,
                   auction_round: int | None = None,
                   remote_lamport: int | None = None,
                   lost: bool = False) -> TaskRecord:
        """Move `task_id` to `new_state` atomically and append the event.

        - to ANNOUNCED: starts a new auction round (`round` + 1; read it from the
          returned record and put it in the cfp).
        - to AWARDED: `robot` and `auction_round` are required; succeeds only if the
          task is ANNOUNCED *in that round* (compare-and-set), else `StaleAward`.
        - to ACTIVE / DONE: if `robot` is given it must be the robot holding the task.
        - to QUEUED from AWARDED / ACTIVE (robot lost or failed): `attempts` + 1 and the
          robot is released; the event names it (`given_back_by`, and `lost` when it was
          declared lost), so a restarted dispatcher knows whom not to ask again and whose
          late DONE still counts (`given_back`).

        Returns the updated record. Raises `UnknownTask`, `IllegalTransition`
        (incl. `StaleAward`).
        """
        try:
            new = TaskState(new_state)
        except ValueError:
            raise ValueError(f"unknown task state {new_state!r}; expected one of "
                             f"{', '.join(s.value for s in TaskState)}") from None
        self._check_now(now)
        if new is S.AWARDED and (robot is None or auction_round is None):
            raise ValueError(f"task {task_id!r}: an award needs the winning robot and the "
                             f"auction_round it was won in (got robot={robot!r}, "
                             f"auction_round={auction_round!r})")
        with self._tx() as db:
            row = db.execute(f"SELECT {self._COLS} FROM tasks WHERE id = ?",
                             (task_id,)).fetchone()
            if row is None:
                raise UnknownTask(f"no task {task_id!r} in the ledger")
            cur = self._record(row)
            old = cur.state
            if new not in LEGAL_TRANSITIONS[old]:
                allowed = ", ".join(sorted(s.value for s in LEGAL_TRANSITIONS[old]))
                raise IllegalTransition(
                    f"task {task_id!r}: illegal transition {old} -> {new}; from {old} "
                    f"allowed: {allowed or 'nothing (final state)'}")
            holder, attempts, rnd = cur.robot, cur.attempts, cur.round
            if new is S.ANNOUNCED:
                rnd += 1
                holder = None
            elif new is S.AWARDED:
                if auction_round != cur.round:
                    raise StaleAward(f"task {task_id!r}: award to {robot!r} for auction "
                                     f"round {auction_round} refused; the current round "
                                     f"is {cur.round}")
                holder = robot
            elif new in (S.ACTIVE, S.DONE) or (new is S.FAILED and old in (S.AWARDED, S.ACTIVE)):
                if robot is not None and robot != cur.robot:
                    raise IllegalTransition(f"task {task_id!r}: {robot!r} reported {new} but "
                                            f"the task is held by {cur.robot!r}")
            elif new is S.QUEUED:
                if old in (S.AWARDED, S.ACTIVE):
                    if robot is not None and robot != cur.robot:
                        raise IllegalTransition(
                            f"task {task_id!r}: {robot!r} gave the task back but it is "
                            f"held by {cur.robot!r}")
                    attempts += 1
                holder = None
            db.execute("UPDATE tasks SET state = ?, robot = ?, attempts = ?, round = ?, "
                       "updated_at = ?, reason = ? WHERE id = ?",
                       (new.value, holder, attempts, rnd, now, reason, task_id))
            detail: dict[str, Any] = {"from": old.value, "to": new.value, "round": rnd}
            if reason:
                detail["reason"] = reason
            if new is S.QUEUED and old in (S.AWARDED, S.ACTIVE) and robot is not None:
                detail["given_back_by"] = robot
                if lost:
                    detail["lost"] = True
            self._append_event(db, task_id, new.value.lower(), robot or holder or cur.robot,
                               now, detail, remote_lamport)
        return TaskRecord(task=cur.task, state=new, robot=holder, attempts=attempts,
                          round=rnd, updated_at=now, reason=reason)

    def complete_late(self, task_id: str, robot: str, now: float, *,
                      remote_lamport: int | None = None) -> TaskRecord:
        """A robot the task was taken from (it was declared lost and the task went back
        to auction) reports it done after all: the task is DONE, credited to `robot`,
        from whatever non-final state it is in now (QUEUED, ANNOUNCED, or AWARDED /
        ACTIVE with another robot). The event is "done" with `late` and, if another
        robot held it, `withdrawn_from` in its detail. The caller checks that `robot`
        did hold the task; this is outside `LEGAL_TRANSITIONS` on purpose.

        Raises `UnknownTask`, `IllegalTransition` when the task already ended."""
        self._check_now(now)
        with self._tx() as db:
            row = db.execute(f"SELECT {self._COLS} FROM tasks WHERE id = ?",
                             (task_id,)).fetchone()
            if row is None:
                raise UnknownTask(f"no task {task_id!r} in the ledger")
            cur = self._record(row)
            if cur.state in TERMINAL_STATES:
                raise IllegalTransition(f"task {task_id!r}: {robot!r} reported it done late "
                                        f"but it already ended ({cur.state})")
            db.execute("UPDATE tasks SET state = ?, robot = ?, updated_at = ?, reason = ? "
                       "WHERE id = ?", (S.DONE.value, robot, now, "", task_id))
            detail: dict[str, Any] = {"from": cur.state.value, "to": S.DONE.value,
                                      "round": cur.round, "late": True}
            if cur.robot and cur.robot != robot:
                detail["withdrawn_from"] = cur.robot
            self._append_event(db, task_id, S.DONE.value.lower(), robot, now, detail,
                               remote_lamport)
        return TaskRecord(task=cur.task, state=S.DONE, robot=robot, attempts=cur.attempts,
                          round=cur.round, updated_at=now, reason="")

    def get(self, task_id: str) -> TaskRecord | None:
        with self._lock:
            row = self._db.execute(f"SELECT {self._COLS} FROM tasks WHERE id = ?",
                                   (task_id,)).fetchone()
        return None if row is None else self._record(row)

    def list(self, states: Iterable[TaskState | str] | None = None) -> list[TaskRecord]:
        """Tasks in submission order, optionally only those in `states`."""
        return self._select(states, "rowid")

    def pending(self) -> List[TaskRecord]:
        """Tasks to (re)announce, e.g. after a restart: QUEUED and ANNOUNCED, highest
        priority first, then in submission order. (An ANNOUNCED task's auction died with
        the previous dispatcher: announce it again, which starts a new round.)"""
        return self._select((S.QUEUED, S.ANNOUNCED), "priority DESC, rowid")

    def in_flight(self) -> List[TaskRecord]:
        """AWARDED and ACTIVE tasks: after a restart, confirm each with its robot (and
        re-queue the ones the robot does not know)."""
        return self._select((S.AWARDED, S.ACTIVE), "rowid")

    def _select(self, states: Iterable[TaskState | str] | None, order: str) -> List[TaskRecord]:
        sql = f"SELECT {self._COLS} FROM tasks"
        args: tuple[str, ...] = ()
        if states is not None:
            vals = tuple(TaskState(s).value for s in states)
            if not vals:
                return []
            sql += f" WHERE state IN ({', '.join('?' * len(vals))})"
            args = vals
        with self._lock:
            rows = self._db.execute(f"{sql} ORDER BY {order}", args).fetchall()
        return [self._record(r) for r in rows]

    def given_back(self, task_id: str) -> tuple[set[str], set[str]]:
        """The robots that gave `task_id` back (failed it, were removed or lost while they
        held it), and those of them that were declared lost (from the event history)."""
        gave, lost = set(), set()
        for ev in self.events(task_id):
            robot = ev.detail.get("given_back_by")
            if ev.event == S.QUEUED.value.lower() and robot:
                gave.add(robot)
                if ev.detail.get("lost"):
                    lost.add(robot)
        return gave, lost

    def events(self, task_id: str | None = None) -> List[TaskEvent]:
        """The history, oldest first (all tasks, or one)."""
        sql = "SELECT seq, task_id, event, robot, t, lamport, detail FROM events"
        args: tuple[str, ...] = ()
        if task_id is not None:
            sql += " WHERE task_id = ?"
            args = (task_id,)
        with self._lock:
            rows = self._db.execute(sql + " ORDER BY seq", args).fetchall()
        return [TaskEvent(seq=r[0], task_id=r[1], event=r[2], robot=r[3], t=r[4],
                          lamport=r[5], detail=json.loads(r[6])) for r in rows]

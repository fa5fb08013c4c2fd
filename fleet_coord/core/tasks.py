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

import contextlib
import json
import math
import os
import pathlib
import sqlite3
import struct
import threading
import time
import uuid
import zlib
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from types import TracebackType
from typing import Any, List  # List: TaskLedger.list shadows the builtin in the class

from fleet_coord.core.errors import CannotStart
from fleet_coord.core.names import id_problem, robot_name_problem, short_repr

__all__ = [
    "KINDS", "LEGAL_TRANSITIONS", "TERMINAL_STATES",
    "Task", "TaskState", "TaskRecord", "TaskEvent", "TaskLedger",
    "TaskError", "LedgerError", "DuplicateTask", "UnknownTask", "IllegalTransition",
    "StaleAward", "InvalidValue", "InvalidRecord", "LedgerFull", "LedgerUnusable",
    "LAMPORT_MAX", "set_aside", "accept_as_is",
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


class InvalidValue(LedgerError, ValueError):
    """A value the ledger will not write (not finite, out of range, not a valid name);
    nothing was written. The message names the argument."""


class InvalidRecord(LedgerError):
    """A stored task record that does not read back as a valid task (reported at open,
    kept as it is; the ledger works on around it)."""


class LedgerFull(LedgerError):
    """The filesystem holding the ledger is full: nothing was written. New work is refused
    until space is freed; what is stored is intact."""


class LedgerUnusable(LedgerError, CannotStart):
    """The ledger file cannot be trusted or read (corrupted, truncated, missing
    acknowledged changes, unreadable, not a ledger). The message names the file, what is
    wrong and what to do; a dispatcher must not start on it (see `TaskLedger`)."""


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
        problem = id_problem(self.id, "task id")
        if problem:
            raise TaskError(problem)
        who = f"task {self.id!r}"
        if not isinstance(self.kind, str) or self.kind not in KINDS:
            raise TaskError(f"{who}: unknown kind {short_repr(self.kind)}; expected one of "
                            f"{', '.join(repr(k) for k in KINDS)}")
        if not isinstance(self.stations, (list, tuple)):
            raise TaskError(f"{who}: stations must be a list of station names, "
                            f"got {type(self.stations).__name__}")
        count, shape = KINDS[self.kind]
        if len(self.stations) != count:
            raise TaskError(f"{who}: kind {self.kind!r} takes {count} station"
                            f"{'s' if count > 1 else ''} {shape}, got {len(self.stations)}: "
                            f"{short_repr(list(self.stations)[:4])}")
        for i, s in enumerate(self.stations):
            problem = id_problem(s, f"stations[{i}]", "station name")
            if problem:
                raise TaskError(f"{who}: {problem}")
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

_SCHEMA_VERSION = 2
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
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"""
_TABLES = ("tasks", "events", "meta")

#: Largest Lamport stamp the ledger takes from a message. SQLite integers are int64: a
#: stamp near 2**63 would make the next event's stamp overflow on every later write, so
#: anything above this is refused, and the ledger's own clock keeps 2**62 steps of room.
LAMPORT_MAX = 2**62
#: Longest reason stored (characters); a longer one is cut (it is free text from messages).
REASON_MAX = 1000
_ROUND_MAX = 2**32 - 1            # TaskStatus.round / Award.round are uint32
_SQLITE_FULL = 13                 # sqlite3 result code "database or disk is full"


def _write_schema(db: sqlite3.Connection) -> None:
    """Tables, indexes, a new ledger id (if it has none) and the schema version, inside
    the caller's transaction."""
    for stmt in _SCHEMA.split(";"):
        if stmt.strip():
            db.execute(stmt)
    db.execute("INSERT OR IGNORE INTO meta(key, value) VALUES ('ledger_id', ?)",
               (uuid.uuid4().hex,))
    db.execute(f"PRAGMA user_version={_SCHEMA_VERSION}")


def _todo(path: str) -> str:
    return (f"The dispatcher does not start on it. Restore {path} (with its -wal file, if "
            f"any) from a backup, or set the broken files aside and start with an empty "
            f"ledger: `fleet-coord ledger reset {path}` (the old files are kept; tasks in "
            "them are not run).")


class _AckMark:
    """The sequence number of the last event whose commit the ledger acknowledged, kept
    next to the ledger (`<ledger>-ack`), outside SQLite.

    SQLite ends its write-ahead log at the first frame whose checksum fails and treats
    everything after it as never written: random bytes in the middle of the WAL make it
    open, without a word, the ledger as it was before that frame (measured: 24 of 50
    acknowledged tasks). The mark says how far the ledger must reach, so a ledger that
    opens short is refused instead. It is written after the commit (so it never runs
    ahead of what is durable; a crash between the two only leaves it behind) and not
    fsync'ed: after a power cut it may be behind too, which is safe. Two 32-byte slots
    (magic, ledger id, seq, crc32), written alternately, so a torn write leaves the other.
    """

    _MAGIC = b"FCL1"
    _SLOT = struct.Struct("<4s16sQ")

    def __init__(self, ledger_path: str) -> None:
        self.path = ledger_path + "-ack"

    def read(self) -> tuple[bytes, int] | None:
        """(ledger id, seq) of the newest valid slot; None if there is no mark file."""
        try:
            with open(self.path, "rb") as f:
                data = f.read(64)
        except FileNotFoundError:
            return None
        best: tuple[bytes, int] | None = None
        for off in (0, 32):
            raw = data[off:off + 32]
            if len(raw) < 32 or zlib.crc32(raw[:28]) != struct.unpack("<I", raw[28:])[0]:
                continue
            magic, lid, seq = self._SLOT.unpack(raw[:28])
            if magic == self._MAGIC and (best is None or seq > best[1]):
                best = (lid, seq)
        if best is None:
            raise OSError(f"{self.path} holds no valid mark")
        return best

    def write(self, ledger_id: bytes, seq: int) -> None:
        raw = self._SLOT.pack(self._MAGIC, ledger_id, seq)
        raw += struct.pack("<I", zlib.crc32(raw))
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o644)
        try:
            os.pwrite(fd, raw, 32 * (seq % 2))
        finally:
            os.close(fd)


def set_aside(path: str, stamp: str | None = None) -> list[str]:
    """Move a ledger's files (the db, its -wal, -shm and -ack) to `<name>.broken-<stamp>`
    so the next dispatcher start creates an empty ledger. Nothing is deleted. Returns the
    new paths. (`fleet-coord ledger reset`.)"""
    stamp = stamp or time.strftime("%Y%m%d-%H%M%S")
    moved = []
    for suffix in ("", "-wal", "-shm", "-ack"):
        src = path + suffix
        if os.path.lexists(src):
            dst = f"{path}.broken-{stamp}{suffix}"
            os.replace(src, dst)
            moved.append(dst)
    return moved


def accept_as_is(path: str) -> int:
    """Take the ledger as it is now (e.g. a copy restored from a backup, older than the
    last acknowledged change): reset its acknowledgement mark to what it holds. Returns
    that event count. (`fleet-coord ledger accept`.)"""
    mark = _AckMark(path)
    if os.path.exists(mark.path):
        os.replace(mark.path, mark.path + ".old")
    with TaskLedger(path) as led:
        return led.last_seq


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
    * **No loss goes unnoticed.** A ledger that cannot be trusted is refused at open with
      `LedgerUnusable` (the file named, what is wrong, what to do): unreadable, not a
      ledger, failing `PRAGMA integrity_check`, zero bytes long, missing while its WAL or
      acknowledgement mark exists, or holding fewer changes than were acknowledged
      (`_AckMark`: a corrupted WAL). A new ledger is created under a temporary name and
      renamed into place, so the dispatcher never leaves an empty file behind itself.
      A stored record that does not read back as a valid task is reported in `problems`
      and skipped (kept as it is, its id stays taken); it never stops a start.
    * **Nothing invalid is written**: times must be finite, robots valid robot names,
      Lamport stamps and rounds within their ranges (`InvalidValue`, nothing written);
      a full disk raises `LedgerFull` and leaves the ledger as it was.
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
    incoming messages (`remote_lamport`, at most `LAMPORT_MAX`), so the ledger's history
    can be merged with the robots' logs in causal order.

    Thread-safe (one connection, one lock); several ledgers (processes) may open one file:
    the write lock of `BEGIN IMMEDIATE` serialises them.
    """

    def __init__(self, path: str, *, busy_timeout_s: float = 5.0) -> None:
        self.path = str(path)
        self._lock = threading.Lock()
        #: stored records / events that are not valid, found at open (reported, kept)
        self.problems: list[str] = []
        self._invalid: dict[str, str] = {}       # task id -> why its record is invalid
        self._mark = _AckMark(self.path)
        self._seq = 0                             # seq of the last event written here
        self._id = b""                            # the ledger's id (meta), for the mark
        if not os.path.lexists(self.path):
            self._create(busy_timeout_s)
        # Checked over a read-only connection first: closing a read-write one merges the
        # WAL into the file and deletes it, which would destroy what is left of a
        # corrupted WAL (frames after the damage can still be recovered by hand).
        version = self._check(busy_timeout_s)
        try:
            self._db = self._open(busy_timeout_s)
        except sqlite3.Error as e:
            raise self._unusable(f"cannot be opened for writing ({e})") from None
        try:
            self._prepare(version)
        except BaseException:
            self._db.close()
            raise

    def _unusable(self, what: str, todo: str | None = None) -> LedgerUnusable:
        return LedgerUnusable(f"task ledger {self.path}: {what}. {todo or _todo(self.path)}")

    def _open(self, busy_timeout_s: float) -> sqlite3.Connection:
        # isolation_level=None: we issue BEGIN/COMMIT ourselves (the sqlite3 module's
        # implicit transactions would not take the write lock before our reads).
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False,
                             timeout=busy_timeout_s)
        try:
            mode = db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise LedgerError(f"task ledger {self.path!r}: could not enable WAL journal "
                                  f"mode (got {mode!r}); is the file on a filesystem without "
                                  "shared-memory support?")
            db.execute("PRAGMA synchronous=FULL")
            db.execute("PRAGMA foreign_keys=ON")
        except BaseException:
            db.close()
            raise
        return db

    def _create(self, busy_timeout_s: float) -> None:
        """A new, empty ledger at `path`, built under a temporary name and linked into
        place (never a half-made file at `path`; two processes creating it at once: one
        wins, the other opens the winner's)."""
        for what in (self.path + "-wal", self._mark.path):
            if os.path.exists(what):
                raise self._unusable(
                    f"the file is missing but {what} exists: the ledger was deleted or "
                    "moved")
        folder = os.path.dirname(os.path.abspath(self.path))
        tmp = os.path.join(folder, f".{os.path.basename(self.path)}.new-{os.getpid()}-"
                                   f"{uuid.uuid4().hex[:8]}")
        try:
            db = sqlite3.connect(tmp, isolation_level=None, timeout=busy_timeout_s)
            try:
                db.execute("PRAGMA journal_mode=WAL")
                db.execute("BEGIN IMMEDIATE")
                _write_schema(db)
                db.execute("COMMIT")
            finally:
                db.close()   # the last connection: the WAL is merged into the file
            fd = os.open(tmp, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
            try:
                os.link(tmp, self.path)
            except FileExistsError:
                return       # another process created it first
            dfd = os.open(folder, os.O_RDONLY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)
        except sqlite3.Error as e:
            raise self._unusable(f"cannot create a new ledger here ({e})",
                                 "Check that the folder is writable and has space.") from None
        finally:
            for suffix in ("", "-wal", "-shm"):
                with contextlib.suppress(FileNotFoundError):
                    os.remove(tmp + suffix)

    def _check(self, busy_timeout_s: float) -> int:
        """The checks at open that only read (see the class docstring); returns the
        schema version."""
        if os.path.getsize(self.path) == 0 and not os.path.exists(self.path + "-wal"):
            raise self._unusable("the file is empty (0 bytes): it was truncated or replaced")
        try:
            uri = pathlib.Path(os.path.abspath(self.path)).as_uri() + "?mode=ro"
            ro = sqlite3.connect(uri, uri=True, timeout=busy_timeout_s)
        except sqlite3.Error as e:
            raise self._unusable(f"cannot be opened ({e})") from None
        try:
            try:
                version = int(ro.execute("PRAGMA user_version").fetchone()[0])
                found = {r[0] for r in ro.execute(
                    "SELECT name FROM sqlite_master WHERE type = 'table'")}
                result = [r[0] for r in ro.execute("PRAGMA integrity_check(20)")]
            except sqlite3.Error as e:
                raise self._unusable(f"cannot be read as a task ledger ({e})") from None
            if result != ["ok"]:
                raise self._unusable("is corrupted (SQLite integrity check: "
                                     f"{'; '.join(result[:5])})")
            if version not in (1, _SCHEMA_VERSION):
                if version == 0 and not found:
                    raise self._unusable("holds no ledger (an empty SQLite database)")
                if version == 0:
                    raise self._unusable(
                        f"is not a task ledger (tables: {', '.join(sorted(found))})",
                        "Point the dispatcher's `ledger` at another file.")
                raise self._unusable(f"has schema version {version}, this code reads "
                                     f"versions 1 and {_SCHEMA_VERSION}",
                                     "Run the fleet_coord version that wrote it.")
            missing = [t for t in _TABLES[:version] if t not in found]
            if missing:
                raise self._unusable(f"is damaged: table(s) {', '.join(missing)} missing")
            try:
                mark = self._mark.read()
            except OSError as e:
                raise self._unusable(f"its acknowledgement mark cannot be read ({e})") from None
            if mark is None:
                return version
            if version == 1:
                raise self._unusable(f"is an older ledger than its acknowledgement mark "
                                     f"{self._mark.path} (a copy from before the upgrade?)")
            self._id = self._ledger_id(ro)
            mark_id, acked = mark
            if mark_id != self._id:
                raise self._unusable(f"{self._mark.path} belongs to another ledger: the "
                                     "ledger file was replaced")
            held = self._last_seq(ro)
            if acked > held:
                raise self._unusable(
                    f"holds {held} changes but {acked} were acknowledged: the last "
                    f"{acked - held} are lost (a corrupted or deleted -wal file, or an "
                    "older copy of the ledger)",
                    _todo(self.path) + " If this is a backup you restored on purpose, take "
                    f"it as it is: `fleet-coord ledger accept {self.path}`.")
            return version
        finally:
            ro.close()

    def _ledger_id(self, db: sqlite3.Connection) -> bytes:
        row = db.execute("SELECT value FROM meta WHERE key = 'ledger_id'").fetchone()
        try:
            lid = bytes.fromhex(row[0]) if row else b""
        except (TypeError, ValueError):
            lid = b""
        if len(lid) != 16:
            raise self._unusable("is damaged: its ledger id is missing or invalid")
        return lid

    @staticmethod
    def _last_seq(db: sqlite3.Connection) -> int:
        row = db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'events'").fetchone()
        return int(row[0]) if row else 0

    def _prepare(self, version: int) -> None:
        """After the checks, on the read-write connection: migrate a version-1 ledger,
        write a missing mark, report invalid rows."""
        if version == 1:     # before the meta table and the acknowledgement mark
            with self._tx() as tx:
                _write_schema(tx)
        self._id = self._ledger_id(self._db)
        self._seq = self.last_seq
        if self._mark.read() is None:
            self._mark.write(self._id, self._seq)
        self._scan()

    def _scan(self) -> None:
        """Report stored rows that do not read back as valid (`problems`), and skip them."""
        rows = self._db.execute(f"SELECT rowid, id, {self._COLS} FROM tasks").fetchall()
        for rowid, task_id, *cols in rows:
            try:
                rec = self._record(tuple(cols), check=True)
                if rec.task.id != task_id:
                    raise InvalidRecord(f"its id column {short_repr(task_id)} differs from the "
                                        f"task's id {rec.task.id!r}")
            except InvalidRecord as e:
                self._invalid[task_id] = str(e)
                self.problems.append(f"task {short_repr(task_id)} (row {rowid}): {e}")
        bad = self._db.execute(
            "SELECT seq, task_id, lamport, t FROM events WHERE typeof(lamport) != 'integer' "
            "OR lamport < 0 OR lamport > ? OR typeof(t) NOT IN ('integer', 'real') "
            "OR abs(t) > 1e308 OR NOT json_valid(detail) ORDER BY seq LIMIT 100",
            (LAMPORT_MAX + 1,)).fetchall()
        for seq, task_id, lamport, t in bad:
            self.problems.append(f"event {seq} of task {short_repr(task_id)}: lamport "
                                 f"{short_repr(lamport)}, t {short_repr(t)} or its detail is "
                                 "out of range (ignored)")

    @property
    def last_seq(self) -> int:
        """The sequence number of the newest event (every change appends one)."""
        with self._lock:
            return self._last_seq(self._db)

    # -- plumbing ---------------------------------------------------------------------

    class _Tx:
        def __init__(self, ledger: TaskLedger) -> None:
            self.ledger = ledger

        def __enter__(self) -> sqlite3.Connection:
            self.ledger._lock.acquire()
            try:
                self.ledger._db.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as e:
                self.ledger._lock.release()
                raise self.ledger._write_error(e) from None
            except BaseException:
                self.ledger._lock.release()
                raise
            return self.ledger._db

        def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                     tb: TracebackType | None) -> None:
            led = self.ledger
            try:
                if exc_type is None:
                    try:
                        led._db.execute("COMMIT")
                    except sqlite3.Error as e:
                        led._rollback()
                        raise led._write_error(e) from None
                    if led._id:
                        led._mark.write(led._id, led._seq)
                else:
                    led._rollback()
                    if isinstance(exc, sqlite3.Error):
                        raise led._write_error(exc) from None
            finally:
                led._lock.release()

    def _tx(self) -> TaskLedger._Tx:
        return TaskLedger._Tx(self)

    def _rollback(self) -> None:
        if self._db.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                self._db.execute("ROLLBACK")
        self._seq = self._last_seq(self._db)   # (the caller holds the lock)

    def _write_error(self, e: sqlite3.Error) -> LedgerError:
        if getattr(e, "sqlite_errorcode", None) == _SQLITE_FULL:
            return LedgerFull(f"task ledger {self.path}: the disk is full ({e}); nothing was "
                              "written. Free space on its filesystem: new tasks are refused "
                              "until then")
        return LedgerError(f"task ledger {self.path}: write failed ({e}); nothing was written")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> TaskLedger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _append_event(self, db: sqlite3.Connection, task_id: str, event: str,
                      robot: str | None, now: float, detail: dict[str, Any],
                      remote_lamport: int | None) -> None:
        # stamps above LAMPORT_MAX (a row written before the bound existed) are skipped
        last = db.execute("SELECT COALESCE(MAX(lamport), 0) FROM events WHERE lamport <= ?",
                          (LAMPORT_MAX + 1,)).fetchone()[0]
        lamport = max(last, remote_lamport or 0) + 1
        cur = db.execute("INSERT INTO events(task_id, event, robot, t, lamport, detail) "
                         "VALUES (?, ?, ?, ?, ?, ?)",
                         (task_id, event, robot, now, lamport,
                          json.dumps(detail, sort_keys=True, allow_nan=False)))
        self._seq = int(cur.lastrowid or 0)

    _COLS = "json, state, robot, attempts, round, updated_at, reason"

    def _record(self, row: tuple[Any, ...], check: bool = False) -> TaskRecord:
        """The record of a row; `InvalidRecord` naming what is wrong if it is not valid."""
        json_text, state, robot, attempts, rnd, updated_at, reason = row
        try:
            task = Task.from_dict(json.loads(json_text))
            problem = None if robot is None else robot_name_problem(robot)
            if problem:
                raise TaskError(f"robot: {problem}")
            for name, value in (("attempts", attempts), ("round", rnd)):
                if not isinstance(value, int) or not 0 <= value <= _ROUND_MAX:
                    raise TaskError(f"{name} must be an int in 0..{_ROUND_MAX}, got "
                                    f"{short_repr(value)}")
            if not _is_finite(updated_at):
                raise TaskError(f"updated_at must be a finite time, got {short_repr(updated_at)}")
            if not isinstance(reason, str):
                raise TaskError(f"reason must be text, got {short_repr(reason)}")
            return TaskRecord(task=task, state=TaskState(state), robot=robot,
                              attempts=attempts, round=rnd, updated_at=float(updated_at),
                              reason=reason)
        except (TaskError, ValueError, TypeError) as e:
            # json.JSONDecodeError and an unknown state are ValueErrors
            if check:
                raise InvalidRecord(str(e)) from None
            ident = ""
            with contextlib.suppress(Exception):
                ident = f" {short_repr(json.loads(json_text).get('id'))}"
            raise InvalidRecord(f"task ledger {self.path}: the record of task{ident} is "
                                f"invalid ({e}); it is kept as it is and left alone") from None

    @staticmethod
    def _check_now(now: float) -> None:
        if not _is_finite(now):
            raise InvalidValue(f"now must be a finite time in seconds, got {_show(now)}")

    @staticmethod
    def _check_robot(robot: str | None, what: str = "robot") -> None:
        problem = None if robot is None else robot_name_problem(robot)
        if problem:
            raise InvalidValue(f"{what}: {problem}")

    @staticmethod
    def _check_lamport(remote_lamport: int | None) -> None:
        if remote_lamport is None:
            return
        if not isinstance(remote_lamport, int) or isinstance(remote_lamport, bool) \
                or not 0 <= remote_lamport <= LAMPORT_MAX:
            raise InvalidValue(f"remote_lamport must be an int in 0..2**62, got "
                               f"{_show(remote_lamport)}")

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
                   lost: bool = False, attempt: bool = True,
                   refund: bool = False) -> TaskRecord:
        """Move `task_id` to `new_state` atomically and append the event.

        - to ANNOUNCED: starts a new auction round (`round` + 1; read it from the
          returned record and put it in the cfp).
        - to AWARDED: `robot` and `auction_round` are required; succeeds only if the
          task is ANNOUNCED *in that round* (compare-and-set), else `StaleAward`.
          `refund=True`: the task goes back to the robot it came back from by a loss
          that was a false one (it drove on): the attempt that loss counted is taken
          back (`attempts` - 1, not below 0).
        - to ACTIVE / DONE: if `robot` is given it must be the robot holding the task.
        - to QUEUED from AWARDED / ACTIVE (robot lost or failed): `attempts` + 1 and the
          robot is released; the event names it (`given_back_by`, and `lost` when it was
          declared lost), so a restarted dispatcher knows whom not to ask again (and whom
          only once it is back without the task) and whose late DONE still counts
          (`given_back`). `attempt=False`: the task came back
          without any robot failing it (its award went unconfirmed: messages lost), not
          counted.

        Returns the updated record. Raises `UnknownTask`, `IllegalTransition`
        (incl. `StaleAward`), `InvalidValue` (nothing written).
        """
        try:
            new = TaskState(new_state)
        except ValueError:
            raise InvalidValue(f"unknown task state {short_repr(new_state)}; expected one of "
                               f"{', '.join(s.value for s in TaskState)}") from None
        self._check_now(now)
        self._check_robot(robot)
        self._check_lamport(remote_lamport)
        reason = self._clip(reason)
        if auction_round is not None and (
                not isinstance(auction_round, int) or not 0 <= auction_round <= _ROUND_MAX):
            raise InvalidValue(f"auction_round must be an int in 0..{_ROUND_MAX}, got "
                               f"{short_repr(auction_round)}")
        if new is S.AWARDED and (robot is None or auction_round is None):
            raise InvalidValue(f"task {short_repr(task_id)}: an award needs the winning robot "
                               f"and the auction_round it was won in (got robot={robot!r}, "
                               f"auction_round={auction_round!r})")
        with self._tx() as db:
            cur = self._current(db, task_id)
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
                    raise StaleAward(f"task {short_repr(task_id)}: award to {robot!r} for auction "
                                     f"round {auction_round} refused; the current round "
                                     f"is {cur.round}")
                holder = robot
                if refund:
                    attempts = max(0, attempts - 1)
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
                    attempts += 1 if attempt else 0
                holder = None
            db.execute("UPDATE tasks SET state = ?, robot = ?, attempts = ?, round = ?, "
                       "updated_at = ?, reason = ? WHERE id = ?",
                       (new.value, holder, attempts, rnd, now, reason, task_id))
            detail: dict[str, Any] = {"from": old.value, "to": new.value, "round": rnd}
            if reason:
                detail["reason"] = reason
            if new is S.AWARDED and refund:
                detail["refund"] = True
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

        Raises `UnknownTask`, `IllegalTransition` when the task already ended,
        `InvalidValue` (nothing written)."""
        self._check_now(now)
        self._check_robot(robot)
        if robot is None:
            raise InvalidValue("complete_late needs the robot that did the task")
        self._check_lamport(remote_lamport)
        with self._tx() as db:
            cur = self._current(db, task_id)
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

    def _current(self, db: sqlite3.Connection, task_id: str) -> TaskRecord:
        row = db.execute(f"SELECT {self._COLS} FROM tasks WHERE id = ?",
                         (task_id,)).fetchone()
        if row is None:
            raise UnknownTask(f"no task {short_repr(task_id)} in the ledger")
        return self._record(row)

    @staticmethod
    def _clip(reason: str) -> str:
        """Free text from messages: no NULs (SQLite would keep them, a ROS string not),
        at most REASON_MAX characters."""
        if not isinstance(reason, str):
            raise InvalidValue(f"reason must be a string, got {type(reason).__name__}")
        reason = reason.replace("\x00", "")
        return reason if len(reason) <= REASON_MAX else reason[:REASON_MAX - 1] + "\u2026"

    def get(self, task_id: str) -> TaskRecord | None:
        """The task's record; None for an unknown id. Raises `InvalidRecord` for a stored
        record that is not valid (see `problems`)."""
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
        records = []
        for r in rows:
            try:
                records.append(self._record(r))
            except InvalidRecord:
                continue   # reported in `problems` at open
        return records

    def note(self, task_id: str, event: str, now: float, robot: str | None = None,
             detail: dict[str, Any] | None = None) -> None:
        """Append an event to `task_id`'s history without changing its state (a repair the
        dispatcher made: an award sent again, a task withdrawn from a robot). Raises
        `UnknownTask`, `InvalidValue` (nothing written)."""
        self._check_now(now)
        self._check_robot(robot)
        if not (isinstance(event, str) and event.isidentifier() and len(event) <= 40):
            raise InvalidValue(f"event must be a short name, got {short_repr(event)}")
        with self._tx() as db:
            self._current(db, task_id)
            self._append_event(db, task_id, event, robot, now, dict(detail or {}), None)

    def last_award(self, task_id: str, robot: str) -> int | None:
        """The round `task_id` was last awarded to `robot` in (None: never)."""
        rounds = [ev.detail.get("round") for ev in self.events(task_id)
                  if ev.event == S.AWARDED.value.lower() and ev.robot == robot]
        return rounds[-1] if rounds and isinstance(rounds[-1], int) else None

    def given_back(self, task_id: str) -> tuple[set[str], set[str], set[str]]:
        """The robots that gave `task_id` back (failed it, were removed or lost while they
        held it, never acknowledged its award), those of them that were declared lost
        while holding it, and those that gave it back otherwise at least once (from the
        event history)."""
        gave: set[str] = set()
        lost: set[str] = set()
        other: set[str] = set()
        for ev in self.events(task_id):
            robot = ev.detail.get("given_back_by")
            if ev.event == S.QUEUED.value.lower() and robot:
                gave.add(robot)
                (lost if ev.detail.get("lost") else other).add(robot)
        return gave, lost, other

    def events(self, task_id: str | None = None) -> List[TaskEvent]:
        """The history, oldest first (all tasks, or one)."""
        sql = "SELECT seq, task_id, event, robot, t, lamport, detail FROM events"
        args: tuple[str, ...] = ()
        if task_id is not None:
            sql += " WHERE task_id = ?"
            args = (task_id,)
        with self._lock:
            rows = self._db.execute(sql + " ORDER BY seq", args).fetchall()
        events = []
        for r in rows:
            try:
                detail = json.loads(r[6])
            except ValueError:
                continue   # reported in `problems` at open
            events.append(TaskEvent(seq=r[0], task_id=r[1], event=r[2], robot=r[3], t=r[4],
                                    lamport=r[5], detail=detail if isinstance(detail, dict)
                                    else {}))
        return events

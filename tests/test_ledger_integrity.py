"""The task ledger never loses an acknowledged task silently (fleet_coord.core.tasks):
on real files, a corrupted WAL, a truncated or deleted ledger, an unreadable file, an
invalid stored row, values that cannot be stored and a full disk each end in a clear
refusal (naming the file and what to do) or a clear report, never in a silent empty or
short start."""
import json
import math
import os
import random
import shutil
import sqlite3
import subprocess
import sys
import textwrap

import pytest

from fleet_coord.core.tasks import (LAMPORT_MAX, DuplicateTask, InvalidRecord, InvalidValue,
                                    LedgerFull, LedgerUnusable, Task, TaskLedger, TaskState,
                                    accept_as_is, set_aside)

S = TaskState

# A dispatcher stand-in: submits tasks and prints each id once the ledger acknowledged it.
CHILD = textwrap.dedent("""
    import sys
    from fleet_coord.core.tasks import Task, TaskLedger
    led = TaskLedger(sys.argv[1])
    for i in range(int(sys.argv[2])):
        led.submit(Task(f"t{i}", "goto", ["a"]), 1.0)
        print(f"t{i}", flush=True)
    sys.stdin.read()   # stay up (ledger open, WAL not merged) until killed
""")


def goto(tid):
    return Task(tid, "goto", ["a"])


def killed_after(path, n):
    """A process that acknowledged `n` submissions and was then killed with SIGKILL:
    the ledger's WAL still holds them (never merged into the file). Returns the ids."""
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(path), str(n)],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        acked = [child.stdout.readline().strip() for _ in range(n)]
    finally:
        child.kill()
        child.wait()
    assert acked == [f"t{i}" for i in range(n)]
    return acked


def assert_refused(path, *words):
    with pytest.raises(LedgerUnusable) as e:
        TaskLedger(path)
    msg = str(e.value)
    assert str(path) in msg and "fleet-coord ledger reset" in msg, msg
    for w in words:
        assert w in msg, msg
    return msg


def test_a_corrupted_wal_is_refused_and_kept_not_opened_short(tmp_path):
    path = tmp_path / "ledger.db"
    acked = killed_after(path, 50)
    wal = path.with_name("ledger.db-wal")
    data = bytearray(wal.read_bytes())
    assert len(data) > 100_000
    mid = len(data) // 2
    data[mid:mid + 64] = random.Random(7).randbytes(64)
    wal.write_bytes(data)
    # SQLite alone opens this ledger with only the tasks before the damaged frame:
    plain = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True)
    short = plain.execute("SELECT COUNT(*) FROM tasks").fetchone()[0]
    plain.close()
    assert 0 < short < len(acked)
    msg = assert_refused(path, "acknowledged", "lost", "fleet-coord ledger accept")
    assert f"holds {short} changes but {len(acked)} were acknowledged" in msg
    # refused without touching anything: the rest of the WAL is still there to recover
    assert wal.read_bytes() == bytes(data)
    assert_refused(path)   # and again on the next start: a stop, not a silent second try
    # starting fresh is explicit, and keeps the broken files
    moved = set_aside(str(path), "test")
    assert {os.path.basename(m) for m in moved} >= {"ledger.db.broken-test",
                                                    "ledger.db.broken-test-wal",
                                                    "ledger.db.broken-test-ack"}
    with TaskLedger(path) as led:
        assert led.list() == [] and led.problems == []


def test_a_wal_without_corruption_opens_complete_after_kill_9(tmp_path):
    path = tmp_path / "ledger.db"
    acked = killed_after(path, 30)
    with TaskLedger(path) as led:
        assert [r.task.id for r in led.list()] == acked
        assert led.problems == []


def test_a_zero_length_or_deleted_ledger_is_refused(tmp_path):
    path = tmp_path / "ledger.db"
    with TaskLedger(path) as led:
        led.submit(goto("a"), 1.0)
    path.write_bytes(b"")
    assert_refused(path, "empty (0 bytes)")
    # a zero-length file nobody created as a ledger: the dispatcher never leaves one (it
    # creates a ledger under another name and renames it), so it is refused too
    other = tmp_path / "touched.db"
    other.touch()
    assert_refused(other, "empty (0 bytes)")
    # the ledger deleted, its acknowledgement mark left: expected, so refused
    path.unlink()
    assert_refused(path, "missing", "ledger.db-ack")


def test_an_unreadable_or_foreign_file_is_refused(tmp_path):
    junk = tmp_path / "junk.db"
    junk.write_bytes(random.Random(1).randbytes(8192))
    assert_refused(junk, "cannot be")
    foreign = tmp_path / "foreign.db"
    db = sqlite3.connect(foreign)
    db.execute("CREATE TABLE shelves(x)")
    db.commit()
    db.close()
    with pytest.raises(LedgerUnusable, match="is not a task ledger"):
        TaskLedger(foreign)
    folder = tmp_path / "a_folder.db"
    folder.mkdir()
    with pytest.raises(LedgerUnusable, match="a_folder.db"):
        TaskLedger(folder)


def test_damaged_pages_fail_the_integrity_check(tmp_path):
    path = tmp_path / "ledger.db"
    with TaskLedger(path) as led:
        for i in range(300):
            led.submit(goto(f"task-{i:04d}"), 1.0)
    size = path.stat().st_size
    assert size > 20 * 4096
    data = bytearray(path.read_bytes())
    rng = random.Random(3)
    for page in range(8, size // 4096, 3):   # keep the header and schema pages
        off = page * 4096 + rng.randrange(100, 4000)
        data[off:off + 16] = rng.randbytes(16)
    path.write_bytes(data)
    assert_refused(path)


def test_an_invalid_row_is_reported_and_skipped_not_a_crash_loop(tmp_path):
    path = tmp_path / "ledger.db"
    with TaskLedger(path) as led:
        for tid in ("good1", "bad", "good2"):
            led.submit(goto(tid), 1.0)
    db = sqlite3.connect(path)
    db.execute("UPDATE tasks SET json = ? WHERE id = 'bad'",
               (json.dumps({"id": "bad", "kind": "teleport", "stations": ["a"]}),))
    # a Lamport stamp at int64's end: the next stamp (+1) would not fit in SQLite
    db.execute("UPDATE events SET lamport = ? WHERE seq = 2", (2**63 - 1,))
    db.commit()
    db.close()
    for _ in range(2):   # every start: the same report, and it starts
        with TaskLedger(path) as led:
            assert len(led.problems) == 2, led.problems
            assert "task 'bad'" in led.problems[0] and "teleport" in led.problems[0]
            assert "lamport" in led.problems[1]
            assert [r.task.id for r in led.pending()] == ["good1", "good2"]
            with pytest.raises(InvalidRecord, match="'bad'"):
                led.get("bad")
            with pytest.raises(DuplicateTask):   # its id stays taken
                led.submit(goto("bad"), 2.0)
            led.transition("good1", S.ANNOUNCED, 2.0)   # writes go on past the stamp
    with TaskLedger(path) as led:
        assert led.get("good1").state is S.ANNOUNCED


@pytest.mark.parametrize("call, match", [
    (lambda led: led.transition("t", S.ANNOUNCED, 2.0, remote_lamport=2**63 - 2),
     "remote_lamport"),
    (lambda led: led.transition("t", S.ANNOUNCED, 2.0, remote_lamport=-1), "remote_lamport"),
    (lambda led: led.transition("t", S.ANNOUNCED, math.nan), "now"),
    (lambda led: led.transition("t", S.ANNOUNCED, math.inf), "now"),
    (lambda led: led.transition("t", S.ANNOUNCED, 2.0, robot="r1\x00"), "robot"),
    (lambda led: led.transition("t", S.ANNOUNCED, 2.0, robot="r" * 5000), "robot"),
    (lambda led: led.transition("t", S.AWARDED, 2.0, robot="r1", auction_round=2**40),
     "auction_round"),
    (lambda led: led.complete_late("t", "r1", 2.0, remote_lamport=2**64), "remote_lamport"),
    (lambda led: led.submit(goto("u"), math.nan), "now"),
])
def test_values_that_cannot_be_stored_never_reach_sqlite(ledger_dir, call, match):
    path = ledger_dir / "ledger.db"
    with TaskLedger(path) as led:
        led.submit(goto("t"), 1.0)
        before = led.last_seq
        with pytest.raises(InvalidValue, match=match):
            call(led)
        assert led.last_seq == before and led.get("t").state is S.QUEUED
        # the largest stamp allowed still leaves room for the ledger's own clock
        led.transition("t", S.ANNOUNCED, 2.0, remote_lamport=LAMPORT_MAX)
        led.transition("t", S.QUEUED, 3.0)
        assert led.events("t")[-1].lamport == LAMPORT_MAX + 2


def test_a_long_reason_is_cut_not_stored_whole(ledger_dir):
    with TaskLedger(ledger_dir / "ledger.db") as led:
        led.submit(goto("t"), 1.0)
        rec = led.transition("t", S.FAILED, 2.0, reason="x" * 1_000_000 + "\x00")
        assert len(rec.reason) == 1000 and led.get("t").reason == rec.reason


def test_a_restored_older_copy_is_refused_until_accepted(tmp_path):
    path = tmp_path / "ledger.db"
    with TaskLedger(path) as led:
        led.submit(goto("a"), 1.0)
    backup = tmp_path / "backup.db"
    shutil.copy(path, backup)
    with TaskLedger(path) as led:
        led.submit(goto("b"), 2.0)
    shutil.copy(backup, path)       # "restored" without its newer changes
    assert_refused(path, "2 changes were acknowledged" if False else "acknowledged")
    assert accept_as_is(str(path)) == 1
    with TaskLedger(path) as led:
        assert [r.task.id for r in led.list()] == ["a"]


def test_a_version_1_ledger_is_upgraded_in_place(tmp_path):
    path = tmp_path / "old.db"
    db = sqlite3.connect(path)
    db.executescript("""
        PRAGMA journal_mode=WAL;
        CREATE TABLE tasks (id TEXT PRIMARY KEY, json TEXT NOT NULL, state TEXT NOT NULL,
            robot TEXT, attempts INTEGER NOT NULL DEFAULT 0, round INTEGER NOT NULL DEFAULT 0,
            priority INTEGER NOT NULL DEFAULT 0, updated_at REAL NOT NULL,
            reason TEXT NOT NULL DEFAULT '');
        CREATE TABLE events (seq INTEGER PRIMARY KEY AUTOINCREMENT, task_id TEXT NOT NULL,
            event TEXT NOT NULL, robot TEXT, t REAL NOT NULL, lamport INTEGER NOT NULL,
            detail TEXT NOT NULL DEFAULT '{}');
        PRAGMA user_version=1;
    """)
    db.execute("INSERT INTO tasks(id, json, state, updated_at) VALUES ('old', ?, 'QUEUED', 1)",
               (json.dumps(goto("old").to_dict()),))
    db.execute("INSERT INTO events(task_id, event, t, lamport) VALUES ('old', 'submit', 1, 1)")
    db.commit()
    db.close()
    with TaskLedger(path) as led:
        assert [r.task.id for r in led.pending()] == ["old"]
        led.submit(goto("new"), 2.0)
    with TaskLedger(path) as led:
        assert len(led.list()) == 2 and led.problems == []


# A full disk: the ledger on a 1 MB tmpfs of its own (a mount namespace), filled up.
FULL_CHILD = textwrap.dedent("""
    import json, os, sys
    from fleet_coord.core.tasks import LedgerFull, Task, TaskLedger, TaskState
    d = sys.argv[1]
    led = TaskLedger(os.path.join(d, "ledger.db"))
    filler = os.path.join(d, "filler")     # leave ~192 KB, to be given back later
    st = os.statvfs(d)
    with open(filler, "wb") as f:
        f.write(b"x" * (st.f_bavail * st.f_frsize - 192 * 1024))
    acked, full = [], None
    for i in range(100000):
        try:
            led.submit(Task(f"t{i}", "goto", ["a"]), 1.0)
        except LedgerFull as e:
            full = str(e)
            break
        acked.append(f"t{i}")
    still = [r.task.id for r in led.list()]
    try:
        led.transition(acked[0], TaskState.ANNOUNCED, 2.0)
        moved = "written"
    except LedgerFull:
        moved = "refused"
    os.remove(filler)                      # space comes back
    led.submit(Task("after", "goto", ["a"]), 3.0)
    led.transition(acked[0], TaskState.ANNOUNCED, 4.0)
    led.close()
    with TaskLedger(os.path.join(d, "ledger.db")) as again:
        reopened = [r.task.id for r in again.list()]
        problems = again.problems
    print(json.dumps(dict(acked=acked, full=full, still=still, moved=moved,
                          reopened=reopened, problems=problems)))
""")


def test_disk_full_refuses_new_tasks_keeps_the_rest_and_recovers(tmp_path):
    mnt = tmp_path / "small"
    mnt.mkdir()
    if shutil.which("unshare") is None or subprocess.run(
            ["unshare", "-m", "true"], capture_output=True).returncode != 0:
        pytest.skip("no mount namespace here (unshare -m): cannot make a small filesystem; "
                    "test_disk_full_at_the_sqlite_boundary covers the ledger's side")
    script = (f"mount -t tmpfs -o size=1m fleetledger {mnt} && "
              f"exec {sys.executable} -c \"$0\" {mnt}")
    proc = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c", script,
                           FULL_CHILD], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    r = json.loads(proc.stdout)
    assert r["full"] and "disk is full" in r["full"] and "ledger.db" in r["full"], r["full"]
    assert len(r["acked"]) > 0
    assert r["still"] == r["acked"]                 # nothing acknowledged is lost
    assert r["moved"] == "refused"                  # (a full disk refuses every write)
    assert r["reopened"] == r["acked"] + ["after"]  # space back: it works again
    assert r["problems"] == []


def test_disk_full_at_the_sqlite_boundary(ledger_dir):
    """The same refusal where no filesystem can be made: SQLite's own page limit raises
    the error a full disk raises (SQLITE_FULL)."""
    path = ledger_dir / "ledger.db"
    with TaskLedger(path) as led:
        pages = led._db.execute("PRAGMA page_count").fetchone()[0]
        led._db.execute(f"PRAGMA max_page_count={pages + 2}")
        acked = []
        with pytest.raises(LedgerFull, match="disk is full"):
            for i in range(10_000):
                led.submit(goto(f"t{i}"), 1.0)
                acked.append(f"t{i}")
        assert [r.task.id for r in led.list()] == acked
        led._db.execute("PRAGMA max_page_count=1073741823")
        led.submit(goto("after"), 2.0)
    with TaskLedger(path) as led:
        assert [r.task.id for r in led.list()] == acked + ["after"]


@pytest.fixture
def ledger_dir(tmp_path):
    return tmp_path


def test_a_dispatcher_on_an_unusable_ledger_stops_once_with_the_message(tmp_path):
    """Not a crash loop: the dispatcher exits with 78 and the launcher does not restart it."""
    import io

    from fleet_coord.core.errors import EXIT_CANNOT_START
    from fleet_coord.fleet_config import load_fleet_config
    from fleet_coord.launcher import FleetLauncher
    from fleet_coord.node_set import fleet_nodes

    bad = tmp_path / "ledger.db"
    bad.write_bytes(b"")
    (tmp_path / "room.map").write_text("type octile\nheight 3\nwidth 4\nmap\n@@@@\n@..@\n@@@@\n")
    (tmp_path / "fleet.yaml").write_text(
        "fleet: {map: room.map, ledger: ledger.db}\nrobots:\n  - {name: r0, start: [1, 1]}\n")
    cfg = load_fleet_config(str(tmp_path / "fleet.yaml"))
    specs = [s for s in fleet_nodes(cfg) if s.executable == "dispatcher"]
    out = io.StringIO()
    launcher = FleetLauncher(cfg, specs, out=out, grace_s=3.0,
                             extra_env={"ROS_DOMAIN_ID": os.environ["ROS_DOMAIN_ID"]})
    launcher.start()
    try:
        child = launcher.children[0]
        proc = child.proc
        proc.wait(timeout=120)
        launcher.poll()
        assert child.proc is None and child.restarts == 0   # stopped for good
        launcher.poll()
        assert child.proc is None and child.restarts == 0
    finally:
        launcher.shutdown()
    log = out.getvalue()
    assert proc.returncode == EXIT_CANNOT_START, log
    assert f"cannot start: task ledger {bad}" in log and "empty (0 bytes)" in log, log
    assert f"fleet-coord ledger reset {bad}" in log and "not restarting" in log, log
    assert "Traceback" not in log, log
    assert bad.read_bytes() == b""   # untouched

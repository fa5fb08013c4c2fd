"""Starting a fleet's node set as processes, on a machine without `ros2 launch`.

`FleetLauncher` runs each NodeSpec (fleet_coord.node_set) as a child process
`python -m <module> --ros-args ...` with its parameters in a params file, prefixes every
line a child prints with its node name, restarts crashed children per the config's
policy (never / on-failure / always, with back-off; never a child that refused to start
because its input is unusable, exit status 78, fleet_coord.core.errors; the back-off and
`max_restarts` count restarts in a row: a child that ran `stable_s` before it exited is
restarted at once again, so a long-running fleet survives a crash now and then), and
shuts down cleanly: SIGINT to every child, then SIGTERM, then SIGKILL after a grace
period. Children die with the launcher even when it is killed (PR_SET_PDEATHSIG), and
Fast DDS shared-memory files the fleet left in /dev/shm are removed once their owner is
gone (clean_shm).
"""
from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, TextIO

import yaml

from fleet_coord.core.errors import EXIT_CANNOT_START
from fleet_coord.fleet_config import FleetConfig
from fleet_coord.node_set import NodeSpec, environment, fleet_nodes, params_yaml, ros_arguments

_PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """`preexec_fn` of a child that must not outlive its parent, even a parent killed
    with SIGKILL: it gets SIGTERM when the parent dies (PR_SET_PDEATHSIG)."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except OSError:
        pass


def shm_files() -> set[str]:
    try:
        return {n for n in os.listdir("/dev/shm") if "fastdds" in n or "fastrtps" in n}
    except FileNotFoundError:
        return set()


def mapped_shm(pids=None) -> set[str]:
    """/dev/shm files that live processes (all, or those in `pids`) map or hold open."""
    used: set[str] = set()
    for pid in (os.listdir("/proc") if pids is None else [str(p) for p in pids]):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/maps") as f:
                for line in f:
                    if "/dev/shm/" in line:
                        used.add(line.rsplit("/dev/shm/", 1)[1].split()[0])
            for fd in os.listdir(f"/proc/{pid}/fd"):
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
                if target.startswith("/dev/shm/"):
                    used.add(target[len("/dev/shm/"):])
        except OSError:
            continue
    return used


_LOCK_SUFFIXES = ("_el", "_sl")


def _shm_group(name: str) -> str:
    """The Fast DDS object a /dev/shm file belongs to: a segment or port `fastdds_x` comes
    with its owner's lock file `fastdds_x_el` (`_sl` for a shared port) and, for a port, the
    named semaphore `sem.fastdds_x_mutex`."""
    if name.startswith("sem.") and name.endswith("_mutex"):
        return name[len("sem."):-len("_mutex")]
    for suffix in _LOCK_SUFFIXES:
        if name.endswith(suffix):
            return name[:-len(suffix)]
    return name


def _held_flocks() -> set[tuple[int, int, int]] | None:
    """(major, minor, inode) of every file someone holds a flock on, from /proc/locks:
    read, never probed by locking (a probe could make a starting process's own lock fail)."""
    held = set()
    try:
        with open("/proc/locks") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    for line in lines:
        fields = line.split()
        if "FLOCK" not in fields or "->" in fields:   # a waiter holds nothing
            continue
        for token in fields:
            if token.count(":") == 2:
                major, minor, inode = token.split(":")
                held.add((int(major, 16), int(minor, 16), int(inode)))
                break
    return held


def _owner_gone(group: str, files: set[str], held: set[tuple[int, int, int]] | None) -> bool | None:
    """Whether the process that created segment `group` (or listens on port `group`) is
    gone: Fast DDS's owner holds a flock on the group's lock file for its whole life and the
    kernel drops it when the owner dies, also by SIGKILL. None: there is no lock to tell."""
    locks = [group + s for s in _LOCK_SUFFIXES if group + s in files]
    if not locks or held is None:
        return None
    for name in locks:
        try:
            st = os.stat(os.path.join("/dev/shm", name))
        except OSError:
            continue
        if (os.major(st.st_dev), os.minor(st.st_dev), st.st_ino) in held:
            return False
    return True


def clean_shm(before: set[str], used: set[str] = frozenset()) -> list[str]:
    """Remove the Fast DDS shm files the fleet created (not in `before`) or `used` (mapped by
    its processes; a port file may predate the fleet, left by an earlier crash) once their
    owner is gone. Files of other ROS programs on the machine are never touched.

    A segment or port whose owner's lock is free is removed with its lock file and
    semaphore even while a live process still maps it: a reader keeps the segment of a
    writer that died (a `ros2 topic echo`, a test's probe node) until its own participant
    goes, and nobody else would ever remove it then (unlinking leaves existing mappings
    valid). Files with no lock to tell are removed once nobody maps them."""
    files = shm_files()
    mapped = mapped_shm()
    held = _held_flocks()
    groups: dict[str, list[str]] = {}
    for name in files - (before - set(used)):
        groups.setdefault(_shm_group(name), []).append(name)
    stale = []
    for group, names in groups.items():
        gone = _owner_gone(group, files, held)
        if gone is None:
            stale += [n for n in names if n not in mapped]
        elif gone:
            stale += names
    for name in sorted(stale):
        try:
            os.unlink(os.path.join("/dev/shm", name))
        except OSError:
            pass
    return sorted(stale)


@dataclass
class Child:
    spec: NodeSpec
    argv: list[str]
    proc: subprocess.Popen | None = None
    restarts: int = 0          # in all
    in_row: int = 0            # since it last ran `stable_s`: the back-off and the limit
    started: float = 0.0
    next_start: float = 0.0
    exit_codes: list[int] = field(default_factory=list)


class FleetLauncher:
    def __init__(self, config: FleetConfig, specs: list[NodeSpec] | None = None, *,
                 out: TextIO | None = None, grace_s: float = 5.0, max_restarts: int = 5,
                 extra_env: dict[str, str] | None = None, stable_s: float = 30.0) -> None:
        self.config = config
        self.specs = specs if specs is not None else fleet_nodes(config)
        self.out = out or sys.stdout
        self.grace_s = grace_s
        self.max_restarts = max_restarts
        self.stable_s = stable_s
        self.env = {**os.environ, **environment(config), **(extra_env or {})}
        self.env.setdefault("PYTHONUNBUFFERED", "1")
        self.rundir = tempfile.mkdtemp(prefix="fleet-coord-launch-")
        self.children: list[Child] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._shm_before = shm_files()
        width = max(len(s.process_name) for s in self.specs)
        self._width = min(width, 24)

    # -- starting --------------------------------------------------------------------------
    def _argv(self, spec: NodeSpec) -> list[str]:
        pfile = os.path.join(self.rundir, f"{spec.namespace or 'root'}__{spec.process_name}.yaml")
        with open(pfile, "w") as f:
            yaml.safe_dump(params_yaml(spec), f)
        return [sys.executable, "-m", spec.module, *spec.arguments,
                *ros_arguments(spec, pfile, sros2=self.config.auth.sros2)]

    def _say(self, name: str, line: str) -> None:
        with self._lock:
            self.out.write(f"[{name:<{self._width}}] {line}\n")
            self.out.flush()

    def _pump(self, child: Child, stream) -> None:
        for raw in iter(stream.readline, b""):
            self._say(child.spec.process_name, raw.decode(errors="replace").rstrip("\n"))
        stream.close()

    def _start(self, child: Child) -> None:
        child.proc = subprocess.Popen(child.argv, env=self.env, stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                      start_new_session=True, preexec_fn=die_with_parent)
        child.started = time.monotonic()
        threading.Thread(target=self._pump, args=(child, child.proc.stdout), daemon=True).start()

    def start(self) -> None:
        # a missing or bad key file stops the launch before any process runs
        from fleet_coord.keys import check_fleet
        check_fleet(self.config, self.specs)
        for spec in self.specs:
            child = Child(spec, self._argv(spec))
            self.children.append(child)
            self._start(child)
        self._say("launch", f"started {len(self.children)} processes "
                            f"(discovery {self.env['ROS_AUTOMATIC_DISCOVERY_RANGE']}, "
                            f"domain {self.env.get('ROS_DOMAIN_ID', '0')})")

    # -- supervising -----------------------------------------------------------------------
    def poll(self) -> None:
        """Restart children that exited, per the restart policy."""
        policy = self.config.restart
        now = time.monotonic()
        for c in self.children:
            if c.proc is None or self._stopping.is_set():
                continue
            code = c.proc.poll()
            if code is None:
                continue
            if not c.exit_codes or c.next_start == 0.0:
                c.exit_codes.append(code)
                if now - c.started >= self.stable_s:
                    # it ran: a crash now and then is restarted every time, quickly; only
                    # a crash loop backs off and, after max_restarts in a row, is given up
                    c.in_row = 0
                wants = policy == "always" or (policy == "on-failure" and code != 0)
                if code == EXIT_CANNOT_START:   # its input is unusable: a restart cannot help
                    self._say("launch", f"{c.spec.process_name} refused to start (exit "
                                        f"{code}: see its message above); not restarting it")
                    c.proc = None
                    continue
                if not wants or c.in_row >= self.max_restarts:
                    self._say("launch", f"{c.spec.process_name} exited with {code}; not restarting "
                                        f"(policy {policy}, restarts {c.restarts}, {c.in_row} in a row)")
                    c.proc = None
                    continue
                c.next_start = now + min(10.0, 0.5 * 2 ** c.in_row)
                self._say("launch", f"{c.spec.process_name} exited with {code}; restarting in "
                                    f"{c.next_start - now:.1f} s")
            if now >= c.next_start:
                c.restarts += 1
                c.in_row += 1
                c.next_start = 0.0
                self._start(c)

    def pids(self) -> dict[str, int]:
        return {c.spec.process_name: c.proc.pid for c in self.children if c.proc and c.proc.poll() is None}

    def run(self, until: Callable[[], bool] | None = None, period: float = 0.2) -> None:
        """Supervise until `until()` is true, all children ended, or a signal arrives."""
        while not self._stopping.is_set():
            self.poll()
            if until is not None and until():
                break
            if all(c.proc is None for c in self.children):
                break
            self._stopping.wait(period)

    # -- stopping --------------------------------------------------------------------------
    def request_stop(self, *_args) -> None:
        self._stopping.set()

    def shutdown(self) -> None:
        """SIGINT every child, then SIGTERM, then SIGKILL; remove stale shm files."""
        self._stopping.set()
        live = [c for c in self.children if c.proc and c.proc.poll() is None]
        used = mapped_shm([c.proc.pid for c in live])
        for sig, wait in ((signal.SIGINT, self.grace_s), (signal.SIGTERM, 2.0), (signal.SIGKILL, 2.0)):
            for c in live:
                try:
                    os.killpg(c.proc.pid, sig)
                except ProcessLookupError:
                    pass
            deadline = time.monotonic() + wait
            while time.monotonic() < deadline and any(c.proc.poll() is None for c in live):
                time.sleep(0.05)
            live = [c for c in live if c.proc.poll() is None]
            if not live:
                break
        removed = clean_shm(self._shm_before, used)
        self._say("launch", f"all {len(self.children)} processes stopped"
                            + (f"; removed {len(removed)} stale /dev/shm files" if removed else ""))

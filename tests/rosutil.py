"""Helpers for tests that run real rclpy nodes over real DDS (in-process)."""
from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from typing import Callable

import rclpy
from rclpy.executors import SingleThreadedExecutor


@contextlib.contextmanager
def ros_context(args: list[str] | None = None):
    """A fresh rclpy context and a single-threaded executor; everything is torn down after.

    Not the MultiThreadedExecutor: in rclpy 9 (Kilted) its spin_once() re-yields tasks the
    pool has not started yet, so a ready timer (the sim's period-0 step timer) floods the pool
    with duplicates and each spin_once() walks thousands of futures: the nodes under test
    starve. Our nodes never block in a callback, so one thread serves them all."""
    ctx = rclpy.Context()
    rclpy.init(context=ctx, args=args)
    ex = SingleThreadedExecutor(context=ctx)
    try:
        yield ctx, ex
    finally:
        ex.shutdown()
        for node in list(ex.get_nodes()):
            node.destroy_node()
        rclpy.shutdown(context=ctx)


def spin_until(ex, cond: Callable[[], bool], timeout: float, step: float = 0.02) -> bool:
    """Spin `ex` until cond() is true or `timeout` wall seconds pass; returns cond()."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        ex.spin_once(timeout_sec=step)
    return cond()


def descendants(pid: int) -> set[int]:
    """Live (non-zombie) descendant pids of `pid`, from /proc."""
    kids, frontier = set(), {pid}
    while frontier:
        nxt = set()
        for p in os.listdir("/proc"):
            if not p.isdigit():
                continue
            try:
                with open(f"/proc/{p}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) in frontier and fields[0] != "Z":
                nxt.add(int(p))
        kids |= nxt
        frontier = nxt
    return kids


class Processes:
    """The processes a test starts (the `processes` fixture): each leads a process group of
    its own, and whatever of it still runs when the test ends, passed or failed, is
    stopped together with everything it started (SIGTERM, then SIGKILL after `grace` s).
    A test that fails half-way therefore never leaves a CLI, an agent or a fleet behind
    to load the machine and confuse the next test."""

    def __init__(self, grace: float = 5.0) -> None:
        self.grace = grace
        self.started: list[subprocess.Popen] = []

    def popen(self, argv: list[str], **kwargs) -> subprocess.Popen:
        kwargs.setdefault("start_new_session", True)
        proc = subprocess.Popen(argv, **kwargs)
        self.started.append(proc)
        return proc

    def stop(self) -> list[int]:
        """Stop what still runs; returns the pids that had to be stopped."""
        alive = [p for p in self.started if p.poll() is None]
        # a child that left the group (or was re-parented) is found through /proc first
        pids = {pid for p in alive for pid in {p.pid} | descendants(p.pid)}
        for sig in (signal.SIGTERM, signal.SIGKILL):
            for p in alive:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(p.pid, sig)
            for pid in pids:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, sig)
            deadline = time.monotonic() + self.grace
            while time.monotonic() < deadline and any(_running(pid) for pid in pids):
                time.sleep(0.05)
            if not any(_running(pid) for pid in pids):
                break
        for p in self.started:
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(timeout=self.grace)
        return sorted(pids)


def _running(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False

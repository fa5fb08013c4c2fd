"""Helpers for tests that run real rclpy nodes over real DDS (in-process)."""
from __future__ import annotations

import contextlib
import os
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

"""Helpers for tests that run real rclpy nodes over real DDS (in-process)."""
from __future__ import annotations

import contextlib
import time
from typing import Callable

import rclpy
from rclpy.executors import MultiThreadedExecutor


@contextlib.contextmanager
def ros_context(args: list[str] | None = None):
    """A fresh rclpy context and a multi-threaded executor; everything is torn down after."""
    ctx = rclpy.Context()
    rclpy.init(context=ctx, args=args)
    ex = MultiThreadedExecutor(num_threads=4, context=ctx)
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

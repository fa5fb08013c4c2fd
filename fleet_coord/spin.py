"""One way every fleet_coord node process runs: init, build the node(s), spin, tear down.

Executor choice (measured, docs/benchmarks.md "Executor experiment"): a
``SingleThreadedExecutor``. Our callbacks never block for long (service calls are async,
serial acks are bounded by the link's request timeout), and under the GIL a thread pool adds
no parallelism, only overhead: rclpy 9's ``MultiThreadedExecutor.spin_once()`` re-yields
tasks the pool has not started yet, so a busy node queues duplicates and every iteration
walks them. 50 agents in 5 processes: auction p99 271-335 ms single-threaded against
897-912 ms multi-threaded, at two-thirds of the CPU.
"""
from __future__ import annotations

import sys
from typing import Callable, Iterable

import rclpy
from rclpy._rclpy_pybind11 import RCLError
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node

from fleet_coord import memtrace


def run_nodes(make_nodes: Callable[[list[str]], Iterable[Node]], args=None) -> None:
    """`rclpy.init(args)`, `make_nodes(argv)`, spin them all on one executor until Ctrl-C
    or SIGTERM (rclpy's signal handlers turn both into a clean shutdown), then destroy the
    nodes and shut the context down. `argv` is the argument list without ROS arguments
    already consumed by rclpy, for nodes that take their own options."""
    argv = list(sys.argv if args is None else args)
    rclpy.init(args=argv)
    nodes: list[Node] = []
    try:
        nodes = list(make_nodes(argv))
        if nodes:   # opt-in allocation tracing of a long run (FLEET_COORD_TRACEMALLOC)
            memtrace.start(nodes[0].get_name())
        executor = SingleThreadedExecutor()
        for n in nodes:
            executor.add_node(n)
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except RCLError:
        # rclpy 9: a signal that shuts the context down while the executor builds its wait
        # set raises "failed to initialize wait set: the given context is not valid" (seen
        # when a loaded fleet is stopped): that is the shutdown asked for, not an error
        if rclpy.ok():
            raise
    finally:
        for n in nodes:
            try:
                n.destroy_node()
            except Exception:  # noqa: BLE001 - the context may already be gone on a signal
                pass
        rclpy.try_shutdown()

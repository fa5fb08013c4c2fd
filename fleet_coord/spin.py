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

import os
import signal
import sys
import threading
from typing import Callable, Iterable

import rclpy
from rclpy._rclpy_pybind11 import RCLError
from rclpy.clock import Clock, ClockType
from rclpy.logging import get_logger
from rclpy.executors import Executor, ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.signals import SignalHandlerOptions

from fleet_coord import memtrace
from fleet_coord.core.errors import EXIT_CANNOT_START, CannotStart
from fleet_coord.guard import Guard

#: A node on sim time that has not received /clock after this many wall seconds says so.
CLOCK_WARN_AFTER_S = 5.0


def warn_without_clock(node: Node, after_s: float = CLOCK_WARN_AFTER_S) -> None:
    """If `node` runs on sim time (use_sim_time: true), warn — every `after_s` wall
    seconds until it arrives — when no /clock has been received: every timer of the node
    is stalled until then and nothing else would tell. Names what is missing."""
    if not node.get_parameter("use_sim_time").value:
        return
    wall = Clock(clock_type=ClockType.STEADY_TIME)

    def check() -> None:
        if node.get_clock().now().nanoseconds > 0:
            node.destroy_timer(timer)
            return
        clock = node.resolve_topic_name("/clock")   # remapped under a fleet's namespace
        n = node.count_publishers(clock)
        node.get_logger().warning(
            f"use_sim_time is true but no {clock} received after {after_s:g} s "
            f"({n} publisher{'s' if n != 1 else ''} of {clock}): this node's timers wait "
            "for a clock source (the sim, or the ideal driver with publish_clock: true)")
    timer = node.create_timer(after_s, check, clock=wall)


def run_nodes(make_nodes: Callable[[list[str]], Iterable[Node]], args=None,
              executor_factory: Callable[[], Executor] = SingleThreadedExecutor) -> None:
    """`rclpy.init(args)`, `make_nodes(argv)`, spin them all on one executor until Ctrl-C
    or SIGTERM, then destroy the nodes and shut the context down. `argv` is the argument
    list without ROS arguments already consumed by rclpy, for nodes that take their own
    options. `executor_factory`: the sim node spins on the events executor.

    Signals: in the main thread the process's own SIGINT/SIGTERM handlers only note the
    signal, and the spin loop ends at its next turn (<= 0.1 s). rclpy's handlers would
    shut the context down under the executor, and Python's default SIGINT handler raises
    KeyboardInterrupt wherever the main thread is: inside pybind11's conversion of a taken
    message that comes out as "RuntimeError: Unable to convert call argument '0' to
    Python object".

    A `CannotStart` raised while the nodes are built (a corrupted ledger, a parameter
    out of range) is printed and the process exits with `EXIT_CANNOT_START`: launchers
    do not restart it (fleet_coord.core.errors). Once running, an exception out of a
    callback is logged (fleet_coord.guard, rate-limited) and the spin goes on: no message
    ends a fleet process."""
    argv = list(sys.argv if args is None else args)
    own_signals = threading.current_thread() is threading.main_thread()
    rclpy.init(args=argv, signal_handler_options=SignalHandlerOptions.NO if own_signals
               else None)
    stop: list[int] = []
    previous = {}
    if own_signals:
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, lambda signum, _frame: stop.append(signum))
    nodes: list[Node] = []
    refused: CannotStart | None = None
    try:
        try:
            nodes = list(make_nodes(argv))
        except CannotStart as e:   # a crash loop would not change it: say why and stop
            refused = e
            return
        for n in nodes:
            warn_without_clock(n)
        if nodes:   # opt-in allocation tracing of a long run (FLEET_COORD_TRACEMALLOC)
            memtrace.start(nodes[0].get_name())
        executor = executor_factory()
        for n in nodes:
            executor.add_node(n)
        guard = Guard(get_logger(nodes[0].get_name() if nodes else "spin"))
        while not stop and rclpy.ok():
            try:
                executor.spin_once(timeout_sec=0.1)
            except (KeyboardInterrupt, ExternalShutdownException, RCLError):
                raise   # rcl itself failing is no callback's error: handled below
            except Exception as e:  # noqa: BLE001 - the last resort (fleet_coord.guard)
                if not rclpy.ok():
                    raise
                guard.drop("callback", "?", e)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except RCLError:
        # rclpy 9: a context shut down while the executor builds its wait set raises
        # "failed to initialize wait set: the given context is not valid" (seen when a
        # loaded fleet was stopped by rclpy's own signal handlers): that is the shutdown
        # asked for, not an error
        if rclpy.ok():
            raise
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        for n in nodes:
            try:
                n.destroy_node()
            except Exception:  # noqa: BLE001 - the context may already be gone on a signal
                pass
        rclpy.try_shutdown()
        if refused is not None:
            print(f"{os.path.basename(argv[0]) if argv else 'fleet_coord'}: cannot start: "
                  f"{refused}", file=sys.stderr, flush=True)
            sys.exit(EXIT_CANNOT_START)

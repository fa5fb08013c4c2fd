"""Where does a long-running fleet process's memory go? An opt-in tracemalloc report.

Set ``FLEET_COORD_TRACEMALLOC=<folder>`` in a fleet process's environment (bench/load.py
``--tracemalloc`` does it for every process of its fleet) and ``start()``, called by
``spin.run_nodes``, traces Python allocations from then on. A daemon thread writes
``<folder>/<name>-<pid>.txt`` every ``FLEET_COORD_TRACEMALLOC_PERIOD`` s (default 60):
the traced total over time, and the allocation sites that grew most since the baseline
snapshot (taken one period after the start, when the process has settled), by
``<file>:<line>`` with their size and count. ``FLEET_COORD_TRACEMALLOC_ONLY=a,b`` limits
it to the processes whose first node is named ``a`` or ``b`` (tracing every process of
a 50-robot fleet overloads 2 cores).

RSS that grows while the traced total stays flat is memory outside the Python heap
(the DDS middleware, C extensions, or the allocator keeping freed pages).

Tracing costs CPU (every allocation records a frame): use it to find a leak, not in
measurements of speed.
"""
from __future__ import annotations

import os
import threading
import time
import tracemalloc

ENV = "FLEET_COORD_TRACEMALLOC"
ENV_PERIOD = "FLEET_COORD_TRACEMALLOC_PERIOD"
ENV_ONLY = "FLEET_COORD_TRACEMALLOC_ONLY"
TOP = 25


def _rss_kb() -> int:
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def report(baseline: tracemalloc.Snapshot, now: tracemalloc.Snapshot, top: int = TOP) -> list[str]:
    """The `top` allocation sites (file:line) that grew most from `baseline` to `now`."""
    filters = [tracemalloc.Filter(False, tracemalloc.__file__),
               tracemalloc.Filter(False, "<frozen importlib._bootstrap*>")]
    diff = now.filter_traces(filters).compare_to(baseline.filter_traces(filters), "lineno")
    return [f"{d.size_diff / 1024:+10.1f} KiB {d.count_diff:+8d} blocks  "
            f"{d.traceback[0].filename}:{d.traceback[0].lineno}  (now {d.size / 1024:.1f} KiB)"
            for d in diff[:top]]


def start(name: str) -> threading.Thread | None:
    """Trace this process when FLEET_COORD_TRACEMALLOC names a folder; else do nothing."""
    folder = os.environ.get(ENV, "")
    if not folder:
        return None
    only = [n.strip() for n in os.environ.get(ENV_ONLY, "").split(",") if n.strip()]
    if only and name not in only:
        return None
    try:
        period = float(os.environ.get(ENV_PERIOD, "60") or 60)
    except ValueError:
        raise ValueError(f"{ENV_PERIOD} must be a number of seconds, got "
                         f"{os.environ[ENV_PERIOD]!r}") from None
    if not period > 0:
        raise ValueError(f"{ENV_PERIOD} must be > 0 s, got {period!r}")
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, f"{name}-{os.getpid()}.txt")
    tracemalloc.start(1)
    t0 = time.monotonic()

    def loop() -> None:
        history: list[str] = []
        time.sleep(period)
        baseline = tracemalloc.take_snapshot()
        base_t = time.monotonic() - t0
        while True:
            time.sleep(period)
            snap = tracemalloc.take_snapshot()
            traced, _ = tracemalloc.get_traced_memory()
            t = time.monotonic() - t0
            history.append(f"t {t:8.0f} s  traced {traced / 2**20:8.2f} MiB  "
                           f"rss {_rss_kb() / 1024:8.1f} MiB")
            lines = [f"# {name} (pid {os.getpid()}): tracemalloc every {period:g} s",
                     *history, "",
                     f"# grew most since the baseline at t {base_t:.0f} s (file:line)",
                     *report(baseline, snap)]
            tmp = path + ".tmp"
            with open(tmp, "w", encoding="utf-8") as f:
                f.write("\n".join(lines) + "\n")
            os.replace(tmp, path)

    thread = threading.Thread(target=loop, name="memtrace", daemon=True)
    thread.start()
    return thread

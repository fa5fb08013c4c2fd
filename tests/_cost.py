"""What each test costs, measured so that the machine's load does not change the figure.

Opt-in (tests/conftest.py registers it when asked):

    FLEET_COORD_COST=/tmp/cost.txt make test PYTEST_ARGS="tests/test_fleet_run.py"
    .venv/bin/python -m pytest --cost=/tmp/cost.txt ...

Per test (setup + call + teardown, so a fixture's work counts where it runs) it records
  - cpu_self: CPU seconds (user + system) of the test process, every thread of it: the
    nodes a test spins in-process;
  - cpu_children: CPU seconds of the processes the test started and every process those
    started, counted once they are reaped (RUSAGE_CHILDREN): the fleet, colcon, a browser.
    A process that is never reaped, or whose parent dies before it, is not counted;
  - wall: monotonic seconds.
On a loaded machine wall time measures the load; CPU seconds barely move with it. On an
idle 2-core machine a CPU-bound test (a fleet in sim time, stepping as fast as the CPU
allows) takes about its CPU seconds over the cores it keeps busy, and wall minus CPU is
what the test spends waiting (sleeps, timeouts, discovery), if the machine was idle.

It writes FILE (a table: the files by cost, then the costliest tests) and FILE.json (every
test). Under pytest-xdist each worker measures its own tests and the controller writes
the summary."""
from __future__ import annotations

import json
import os
import resource
import time
from collections import defaultdict
from dataclasses import dataclass

import pytest

ENV = "FLEET_COORD_COST"
_KEY = "fleet_coord_cost"


@dataclass
class Sample:
    cpu_self: float
    cpu_children: float
    wall: float

    @staticmethod
    def now() -> "Sample":
        s = resource.getrusage(resource.RUSAGE_SELF)
        c = resource.getrusage(resource.RUSAGE_CHILDREN)
        return Sample(s.ru_utime + s.ru_stime, c.ru_utime + c.ru_stime, time.monotonic())

    def __sub__(self, other: "Sample") -> "Sample":
        return Sample(self.cpu_self - other.cpu_self, self.cpu_children - other.cpu_children,
                      self.wall - other.wall)


def addoption(parser: pytest.Parser) -> None:
    parser.addoption("--cost", metavar="FILE", default=os.environ.get(ENV) or None,
                     help="write what each test costs (CPU seconds of the test process and "
                          f"of the processes it started, wall seconds) to FILE (+ FILE.json); "
                          f"also ${ENV}=FILE")


def configure(config: pytest.Config) -> None:
    path = config.getoption("--cost")
    if path:
        config.pluginmanager.register(CostPlugin(os.path.abspath(path), config), "fleet_coord_cost")


class CostPlugin:
    def __init__(self, path: str, config: pytest.Config) -> None:
        self.path = path
        self.worker = getattr(config, "workerinput", {}).get("workerid", "")
        self.mark: Sample | None = None
        self.records: dict[str, dict] = {}
        self.start = Sample.now()

    # --- measuring (in the process that runs the test: pytest, or an xdist worker)
    @pytest.hookimpl(hookwrapper=True, tryfirst=True)
    def pytest_runtest_protocol(self, item, nextitem):
        self.mark = Sample.now()
        yield
        self.mark = None

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_makereport(self, item, call):
        outcome = yield
        report = outcome.get_result()
        if self.mark is None:
            return
        now = Sample.now()
        d = now - self.mark
        self.mark = now
        # user_properties travel with the report to the xdist controller
        report.user_properties = list(report.user_properties) + [
            (_KEY, {"cpu_self": d.cpu_self, "cpu_children": d.cpu_children, "wall": d.wall,
                    "worker": self.worker})]

    # --- collecting (in the controller, or the only process)
    def pytest_runtest_logreport(self, report):
        for key, value in report.user_properties:
            if key != _KEY:
                continue
            rec = self.records.setdefault(report.nodeid, {
                "test": report.nodeid, "file": report.nodeid.split("::")[0],
                "cpu_self": 0.0, "cpu_children": 0.0, "wall": 0.0, "outcome": "passed",
                "worker": value["worker"]})
            for k in ("cpu_self", "cpu_children", "wall"):
                rec[k] += value[k]
            if report.outcome != "passed" and rec["outcome"] == "passed":
                rec["outcome"] = report.outcome

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session):
        if self.worker:
            return          # the controller writes the summary
        total = Sample.now() - self.start
        tests = sorted(self.records.values(), key=lambda r: -cpu(r))
        with open(self.path + ".json", "w") as f:
            json.dump({"session": {"cpu_self": total.cpu_self,
                                   "cpu_children": total.cpu_children, "wall": total.wall,
                                   "load_avg": os.getloadavg()},
                       "tests": tests}, f, indent=1)
        with open(self.path, "w") as f:
            f.write(summary(tests, total))


def cpu(rec: dict) -> float:
    return rec["cpu_self"] + rec["cpu_children"]


def summary(tests: list[dict], total: Sample | None = None, top: int = 40) -> str:
    files: dict[str, dict] = defaultdict(lambda: {"n": 0, "cpu_self": 0.0, "cpu_children": 0.0,
                                                  "wall": 0.0})
    for r in tests:
        f = files[r["file"]]
        f["n"] += 1
        for k in ("cpu_self", "cpu_children", "wall"):
            f[k] += r[k]
    head = f"{'cpu':>8} {'self':>8} {'child':>8} {'wall':>8} {'wall-cpu':>8}"
    lines = [f"load average at the end: {' '.join(f'{x:.1f}' for x in os.getloadavg())}"]
    if total is not None:
        lines.append(f"session (this process, incl. collection): cpu self {total.cpu_self:.1f} s, "
                     f"children {total.cpu_children:.1f} s, wall {total.wall:.1f} s")
    t_cpu = sum(cpu(r) for r in tests)
    t_wall = sum(r["wall"] for r in tests)
    lines += [f"{len(tests)} tests: cpu {t_cpu:.1f} s, wall {t_wall:.1f} s (sum over tests)", "",
              f"per file, by cpu (s)\n{head} {'tests':>5}  file"]
    for name, f in sorted(files.items(), key=lambda kv: -cpu(kv[1])):
        lines.append(f"{cpu(f):8.1f} {f['cpu_self']:8.1f} {f['cpu_children']:8.1f} "
                     f"{f['wall']:8.1f} {f['wall'] - cpu(f):8.1f} {f['n']:5d}  {name}")
    lines += ["", f"costliest {min(top, len(tests))} tests, by cpu (s)\n{head}  test"]
    for r in tests[:top]:
        mark = "" if r["outcome"] == "passed" else f"  [{r['outcome']}]"
        lines.append(f"{cpu(r):8.1f} {r['cpu_self']:8.1f} {r['cpu_children']:8.1f} "
                     f"{r['wall']:8.1f} {r['wall'] - cpu(r):8.1f}  {r['test']}{mark}")
    return "\n".join(lines) + "\n"

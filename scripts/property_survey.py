"""Run the in-process fleet's property test (tests/test_in_process.py,
`test_no_fault_schedule_makes_the_fleet_unsafe_or_loses_a_task`) over many fault
schedules and record EVERY failing schedule, where pytest stops at the first and shrinks
it. The schedules are the ones the test itself runs with the same
FLEET_COORD_PROPERTY_EXAMPLES (its derandomized seed), explicit examples first.

    FLEET_COORD_PROPERTY_EXAMPLES=300 nice -n 10 .venv/bin/python scripts/property_survey.py \
        --out /tmp/survey.jsonl

One JSON line per schedule (schedule, error or null, wall s); a summary by kind at the end.
Pure Python, no ROS: ~2-4 s of one core per schedule.
"""
from __future__ import annotations

import argparse
import collections
import json
import os
import sys
import time
from typing import Any

REPO = os.path.dirname(os.path.dirname(os.path.realpath(__file__)))


def kind(error: str) -> str:
    """A failure's kind, from the assertion that failed (the property test's messages)."""
    if "Excursion(robot='" in error:
        robot = error.split("Excursion(robot='", 1)[1].split("'", 1)[0]
        return f"excursion (robot {robot})"
    if "Conflict(" in error:
        return "conflict"
    if ").contacts" in error:
        return "contact"
    if "dict_values" in error:
        return "task not ended"
    if "TaskEvent(" in error:
        return "ledger: a task ended more than once"
    return "other: " + error.split("\n", 1)[0][:80]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, help="JSON lines file (appended to)")
    args = ap.parse_args(argv)
    sys.path.insert(0, REPO)   # this checkout's fleet_coord, whatever the venv installed
    import pytest

    name = "test_no_fault_schedule_makes_the_fleet_unsafe_or_loses_a_task"
    counts: collections.Counter[str] = collections.Counter()
    n = [0]
    t0 = time.time()
    # progress past pytest's capture of the test's output
    progress = os.fdopen(os.dup(sys.stderr.fileno()), "w", buffering=1)

    def survey(test: Any) -> None:
        """Make the collected test record each schedule instead of failing on it."""
        inner = test.hypothesis.inner_test
        try:   # the seed `derandomize` gives the test itself (a hypothesis internal)
            from hypothesis.internal.compat import int_from_bytes
            from hypothesis.internal.reflection import function_digest
            test._hypothesis_internal_use_seed = int_from_bytes(function_digest(inner))
        except ImportError:
            print("hypothesis moved its internals: another sample of the same schedules",
                  file=sys.stderr)

        def recording(tmp_path_factory: Any, schedule: Any) -> None:
            start = time.time()
            try:
                inner(tmp_path_factory, schedule)
                error = None
            except AssertionError as e:
                error = str(e)[:2000]
                counts[kind(error)] += 1
            with open(args.out, "a") as f:
                f.write(json.dumps({"schedule": repr(schedule), "error": error,
                                    "wall_s": round(time.time() - start, 2)}) + "\n")
            n[0] += 1
            if n[0] % 10 == 0:
                print(f"{n[0]} schedules, {sum(counts.values())} failed, "
                      f"{time.time() - t0:.0f} s", file=progress)

        test.hypothesis.inner_test = recording

    class Plugin:
        @staticmethod
        def pytest_collection_modifyitems(items: list[Any]) -> None:
            items[:] = [i for i in items if i.name == name]
            for item in items:
                survey(item.obj)

    code = pytest.main(["-q", "-p", "no:cacheprovider", "-p", "no:randomly",
                        os.path.join(REPO, "tests", "test_in_process.py")], plugins=[Plugin()])
    print(f"{n[0]} schedules, {sum(counts.values())} failed: "
          + (", ".join(f"{k} {v}" for k, v in counts.most_common()) or "none"))
    return int(code) or (1 if counts else 0)


if __name__ == "__main__":
    sys.exit(main())

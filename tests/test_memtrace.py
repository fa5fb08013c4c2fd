"""fleet_coord.memtrace: the opt-in allocation report of a long-running fleet process
names the line that keeps allocating, and stays off unless asked for."""
import os
import subprocess
import sys
import textwrap

import pytest

from fleet_coord import memtrace

LEAKY = textwrap.dedent("""
    import time
    from fleet_coord import memtrace
    memtrace.start("leaky")
    kept = []
    end = time.monotonic() + 1.6
    while time.monotonic() < end:
        kept.append(bytearray(4096))   # LEAK
        time.sleep(0.001)
""")


def test_the_report_names_the_line_that_keeps_allocating(tmp_path):
    script = tmp_path / "leaky.py"
    script.write_text(LEAKY)
    leak_line = LEAKY.splitlines().index("    kept.append(bytearray(4096))   # LEAK") + 1
    env = {**os.environ, memtrace.ENV: str(tmp_path / "trace"), memtrace.ENV_PERIOD: "0.4"}
    subprocess.run([sys.executable, str(script)], env=env, check=True, timeout=60)
    [name] = os.listdir(tmp_path / "trace")
    assert name.startswith("leaky-") and name.endswith(".txt")
    text = (tmp_path / "trace" / name).read_text()
    history = [ln for ln in text.splitlines() if ln.startswith("t ")]
    assert len(history) >= 2, text
    traced = [float(ln.split("traced")[1].split()[0]) for ln in history]
    assert traced[-1] > traced[0], text          # it grew between two reports
    top = text.split("grew most")[1].splitlines()[1]
    assert f"leaky.py:{leak_line}" in top, text  # and the top site is the leaking line


def test_off_unless_the_environment_asks(monkeypatch):
    monkeypatch.delenv(memtrace.ENV, raising=False)
    assert memtrace.start("quiet") is None


def test_a_bad_period_is_named(monkeypatch, tmp_path):
    monkeypatch.setenv(memtrace.ENV, str(tmp_path))
    monkeypatch.setenv(memtrace.ENV_PERIOD, "soon")
    with pytest.raises(ValueError, match="FLEET_COORD_TRACEMALLOC_PERIOD must be a number"):
        memtrace.start("bad")


def test_only_the_named_processes_are_traced(monkeypatch, tmp_path):
    monkeypatch.setenv(memtrace.ENV, str(tmp_path))
    monkeypatch.setenv(memtrace.ENV_ONLY, "traffic, dispatcher")
    assert memtrace.start("robot_agents_robot_1") is None
    assert not list(tmp_path.iterdir())

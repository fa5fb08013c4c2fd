"""A fleet on sim time: with no clock source a node says so within seconds."""
import os
import subprocess
import sys
import time

import pytest

pytest.importorskip("rclpy", reason="rclpy is installed by `make setup`")
from fleet_coord.spin import CLOCK_WARN_AFTER_S  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_a_node_on_sim_time_without_clock_warns_within_seconds(tmp_path):
    log = open(tmp_path / "monitor.log", "w+")
    proc = subprocess.Popen([sys.executable, "-m", "fleet_coord.fleet_monitor", "--ros-args",
                             "-p", "use_sim_time:=true"], stdout=log, stderr=subprocess.STDOUT,
                            cwd=REPO, start_new_session=True)
    try:
        deadline = time.monotonic() + CLOCK_WARN_AFTER_S + 25   # + start-up on a busy machine
        text = ""
        while time.monotonic() < deadline and "no /clock received" not in text:
            time.sleep(0.5)
            log.seek(0)
            text = log.read()
        assert "use_sim_time is true but no /clock received" in text, text
        assert "0 publishers of /clock" in text
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()

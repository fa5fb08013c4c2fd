"""fleet_coord.spin.run_nodes: how every fleet process spins and stops."""
import signal
import subprocess
import sys

import pytest
import rclpy
from rclpy._rclpy_pybind11 import RCLError
from rclpy.executors import SingleThreadedExecutor

from fleet_coord import spin


def _spin_that_fails(shut_down_first: bool):
    def spin_(self, timeout_sec=None):
        if shut_down_first:        # what a SIGINT does to the default context
            rclpy.try_shutdown()
        raise RCLError("failed to initialize wait set: the given context is not valid")
    return spin_


def test_the_wait_set_error_of_a_signal_during_spin_is_a_clean_stop(monkeypatch):
    """rclpy 9 raises RCLError from spin_once() when the context was shut down while the
    executor built its wait set; run_nodes takes that as the shutdown it was (nodes
    destroyed, no traceback), but any other RCLError still propagates."""
    made = []

    def make(_argv):
        made.append(rclpy.create_node("spin_test"))
        return made[-1:]
    monkeypatch.setattr(SingleThreadedExecutor, "spin_once", _spin_that_fails(True))
    spin.run_nodes(make, ["spin_test"])
    assert len(made) == 1 and not rclpy.ok()   # built, spun, shut down: no traceback
    monkeypatch.setattr(SingleThreadedExecutor, "spin_once", _spin_that_fails(False))
    with pytest.raises(RCLError, match="wait set"):
        spin.run_nodes(make, ["spin_test"])
    assert not rclpy.ok()   # shut down on the way out all the same


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_fleet_process_stops_on_a_signal_without_a_traceback(sig):
    """The process's own handlers note the signal and the spin loop ends: exit 0, nodes
    destroyed, no KeyboardInterrupt raised inside rclpy (which pybind11 turned into
    "RuntimeError: Unable to convert call argument" now and then)."""
    proc = subprocess.Popen([sys.executable, "-m", "fleet_coord.ideal_driver",
                             "--ros-args", "-p", "robots:=[r1]", "-p", "start_poses:=[2.0, 1.0, 0.0]"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = []
    try:
        for line in proc.stdout:   # signal it once it spins (not while it still imports)
            lines.append(line)
            if "ideal driver ready" in line:
                break
        proc.send_signal(sig)
        out, _ = proc.communicate(timeout=60)
        out = "".join(lines) + out
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, out[-2000:]
    assert "Traceback" not in out, out[-2000:]

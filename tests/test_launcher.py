"""fleet-coord's own launcher: real processes, per-node log prefixes, restart of a crashed
node, clean shutdown with no process and no /dev/shm file left behind."""
import io
import os
import signal
import time

import pytest

rclpy = pytest.importorskip("rclpy", reason="rclpy is installed by `make setup`")
from nav_msgs.msg import Odometry  # noqa: E402

from fleet_coord import qos  # noqa: E402
from fleet_coord.fleet_config import load_fleet_config  # noqa: E402
from fleet_coord.launcher import FleetLauncher, mapped_shm, shm_files  # noqa: E402
from fleet_coord.node_set import fleet_nodes  # noqa: E402
from rosutil import ros_context, spin_until  # noqa: E402


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as f:
        return f.read().split()[2] != "Z"


def test_world_nodes_start_restart_after_kill_and_stop_cleanly():
    cfg = load_fleet_config("config/fleet_demo.yaml")
    specs = [s for s in fleet_nodes(cfg, robot_count=2)
             if s.executable in ("traffic", "fleet_monitor", "ideal_driver")]
    out = io.StringIO()
    launcher = FleetLauncher(cfg, specs, out=out, grace_s=3.0,
                             extra_env={"ROS_DOMAIN_ID": os.environ["ROS_DOMAIN_ID"]})
    launcher.start()
    try:
        with ros_context() as (ctx, ex):
            node = rclpy.create_node("launch_probe", context=ctx)
            odom = {}
            node.create_subscription(Odometry, "/robot_2/odom",
                                     lambda m: odom.__setitem__("r2", m), qos.ODOM)
            ex.add_node(node)
            assert spin_until(ex, lambda: "r2" in odom, 20), out.getvalue()
            assert odom["r2"].pose.pose.position.x == 6.0  # its start in the config
            pids = launcher.pids()
            assert set(pids) == {"traffic", "fleet_monitor", "ideal_driver"}
            # a crash (kill -9) is restarted (policy on-failure) and serves again
            os.kill(pids["ideal_driver"], signal.SIGKILL)
            odom.clear()

            def restarted():
                launcher.poll()
                new = launcher.pids().get("ideal_driver")
                return new is not None and new != pids["ideal_driver"] and "r2" in odom
            assert spin_until(ex, restarted, 30), out.getvalue()
        ours = mapped_shm(launcher.pids().values())  # Fast DDS files the fleet uses
    finally:
        launcher.shutdown()
    log = out.getvalue()
    assert "[traffic" in log and "restarting" in log
    for c in launcher.children:
        assert c.proc.poll() is not None
        assert not _alive(c.proc.pid)
    time.sleep(0.2)
    # /dev/shm is shared with every other process on the machine: count only files nobody maps
    assert (ours & shm_files()) - mapped_shm() == set(), "Fast DDS shared-memory files left behind"

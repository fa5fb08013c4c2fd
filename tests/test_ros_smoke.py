"""Real rclpy over real Fast DDS works in the venv: a message crosses between two nodes,
and between two processes."""
import os
import subprocess
import sys
import time

import pytest

rclpy = pytest.importorskip("rclpy", reason="rclpy is installed by `make setup`; run via `make test`")
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from std_msgs.msg import String  # noqa: E402


def test_discovery_is_localhost_only():
    assert os.environ.get("ROS_AUTOMATIC_DISCOVERY_RANGE") == "LOCALHOST"


def test_message_crosses_between_two_nodes():
    ctx = rclpy.Context()
    rclpy.init(context=ctx)
    try:
        pub_node = rclpy.create_node("smoke_pub", context=ctx)
        sub_node = rclpy.create_node("smoke_sub", context=ctx)
        got = []
        sub_node.create_subscription(String, "smoke", lambda m: got.append(m.data), 10)
        pub = pub_node.create_publisher(String, "smoke", 10)
        ex = SingleThreadedExecutor(context=ctx)
        ex.add_node(pub_node)
        ex.add_node(sub_node)
        deadline = time.monotonic() + 10.0
        while not got and time.monotonic() < deadline:
            pub.publish(String(data="hello fleet"))
            ex.spin_once(timeout_sec=0.05)
        assert got and got[0] == "hello fleet"
        ex.shutdown()
    finally:
        rclpy.shutdown(context=ctx)


def test_message_crosses_between_two_processes():
    listener = r'''
import rclpy, sys
from std_msgs.msg import String
rclpy.init()
n = rclpy.create_node("smoke_listener")
got = []
n.create_subscription(String, "smoke_xproc", lambda m: got.append(m.data), 10)
while not got:
    rclpy.spin_once(n, timeout_sec=0.1)
print("GOT", got[0], flush=True)
rclpy.shutdown()
'''
    proc = subprocess.Popen([sys.executable, "-c", listener], stdout=subprocess.PIPE, text=True)
    ctx = rclpy.Context()
    rclpy.init(context=ctx)
    try:
        node = rclpy.create_node("smoke_talker", context=ctx)
        pub = node.create_publisher(String, "smoke_xproc", 10)
        deadline = time.monotonic() + 20.0
        while proc.poll() is None and time.monotonic() < deadline:
            pub.publish(String(data="across processes"))
            time.sleep(0.05)
        out, _ = proc.communicate(timeout=5)
        assert "GOT across processes" in out
    finally:
        if proc.poll() is None:
            proc.kill()
        rclpy.shutdown(context=ctx)

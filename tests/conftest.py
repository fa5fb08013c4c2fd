"""Suite-wide guards: every ROS 2 process we start stays on loopback and writes its logs
to a temporary folder."""
import os
import tempfile

import pytest

import _cost

os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
os.environ.setdefault("ROS_LOG_DIR", tempfile.mkdtemp(prefix="fleet-coord-roslog-"))

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MAPF_BENCH = os.environ.get(
    "FLEET_COORD_MAPF_BENCH", os.path.join(os.path.dirname(REPO), "shared", "mapf-bench"))


def pytest_addoption(parser):
    _cost.addoption(parser)


def pytest_configure(config):
    _cost.configure(config)   # --cost FILE / $FLEET_COORD_COST: what each test costs


@pytest.fixture
def mapf_bench():
    """Path to the MovingAI benchmark folder (../shared/mapf-bench or $FLEET_COORD_MAPF_BENCH)."""
    if not os.path.isdir(MAPF_BENCH):
        pytest.skip(f"MovingAI benchmark folder not found at {MAPF_BENCH} "
                    "(set FLEET_COORD_MAPF_BENCH)")
    return MAPF_BENCH


LORR = os.environ.get("FLEET_COORD_LORR", os.path.join(os.path.dirname(REPO), "shared", "lorr"))


@pytest.fixture
def lorr_examples():
    """Path to the League of Robot Runners example instances (../shared/lorr or
    $FLEET_COORD_LORR)."""
    if not os.path.isdir(LORR):
        pytest.skip(f"LoRR example instances not found at {LORR} (set FLEET_COORD_LORR)")
    return LORR


_DOMAIN = [0]


@pytest.fixture(autouse=True)
def _ros_domain_per_test():
    """Each test runs on its own ROS_DOMAIN_ID (inherited by the processes it starts), so a
    participant a previous test left behind, or its late DDS traffic (a transient-local
    table update, a straggling proposal), cannot reach this test's nodes. Domains 1..200
    keep every Fast DDS port below 65535 (7400 + 250 * domain + offsets)."""
    _DOMAIN[0] = _DOMAIN[0] % 200 + 1
    old = os.environ.get("ROS_DOMAIN_ID")
    os.environ["ROS_DOMAIN_ID"] = str(_DOMAIN[0])
    yield
    if old is None:
        os.environ.pop("ROS_DOMAIN_ID", None)
    else:
        os.environ["ROS_DOMAIN_ID"] = old


@pytest.fixture
def processes():
    """`processes.popen(argv, ...)` starts a process the test owns: when the test ends
    (also on a failed assertion) it is stopped with everything it started
    (rosutil.Processes)."""
    from rosutil import Processes
    procs = Processes()
    try:
        yield procs
    finally:
        procs.stop()

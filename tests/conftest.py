"""Suite-wide guards: every ROS 2 process we start stays on loopback and writes its logs
to a temporary folder."""
import os
import tempfile

import pytest

os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
os.environ.setdefault("ROS_LOG_DIR", tempfile.mkdtemp(prefix="fleet-coord-roslog-"))

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MAPF_BENCH = os.environ.get(
    "FLEET_COORD_MAPF_BENCH", os.path.join(os.path.dirname(REPO), "shared", "mapf-bench"))


@pytest.fixture
def mapf_bench():
    """Path to the MovingAI benchmark folder (../shared/mapf-bench or $FLEET_COORD_MAPF_BENCH)."""
    if not os.path.isdir(MAPF_BENCH):
        pytest.skip(f"MovingAI benchmark folder not found at {MAPF_BENCH} "
                    "(set FLEET_COORD_MAPF_BENCH)")
    return MAPF_BENCH


_DOMAIN = [0]


@pytest.fixture(autouse=True, scope="module")
def _ros_domain_per_module():
    """Each test module runs on its own ROS_DOMAIN_ID (inherited by the processes it
    starts), so a process a previous module left behind, or its late DDS traffic, cannot
    answer this module's auctions or services."""
    _DOMAIN[0] = _DOMAIN[0] % 200 + 1
    old = os.environ.get("ROS_DOMAIN_ID")
    os.environ["ROS_DOMAIN_ID"] = str(_DOMAIN[0])
    yield
    if old is None:
        os.environ.pop("ROS_DOMAIN_ID", None)
    else:
        os.environ["ROS_DOMAIN_ID"] = old

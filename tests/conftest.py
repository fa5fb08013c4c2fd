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

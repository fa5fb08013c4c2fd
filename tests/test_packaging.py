"""The package as a ROS 2 package: what package.xml declares covers what the code imports,
and the simulator and serial bridge install under names that cannot collide."""
import ast
import importlib.util
import os
import re
import xml.etree.ElementTree as ET

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SOURCES = ("fleet_coord", "sim", "firmware_bridge")
#: non-ROS Python modules the package imports -> their rosdep key
THIRD_PARTY = {"numpy": "python3-numpy", "scipy": "python3-scipy",
               "shapely": "python3-shapely", "yaml": "python3-yaml",
               "serial": "python3-serial", "tqdm": "python3-tqdm",
               "matplotlib": "python3-matplotlib", "pybullet": "python3-pybullet-pip",
               "aiohttp": "python3-aiohttp", "mcap": "mcap-ros2-support"}


def _imports(folder: str) -> set[str]:
    """Top-level module names imported anywhere under `folder` (absolute imports only)."""
    names = set()
    for dirpath, _, files in os.walk(os.path.join(REPO, folder)):
        for f in files:
            if not f.endswith(".py"):
                continue
            tree = ast.parse(open(os.path.join(dirpath, f), encoding="utf-8").read())
            for node in ast.walk(tree):
                if isinstance(node, ast.Import):
                    names.update(a.name.split(".")[0] for a in node.names)
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names.add(node.module.split(".")[0])
    return names


def _exec_depends() -> set[str]:
    root = ET.parse(os.path.join(REPO, "package.xml")).getroot()
    return {e.text for tag in ("depend", "exec_depend") for e in root.iter(tag)}


def _is_ros_package(module: str) -> bool:
    return bool(re.search(r"_(msgs|srvs|interfaces)$", module)) or module in (
        "rclpy", "ament_index_python", "launch", "launch_ros")


def test_package_xml_declares_every_ros_and_third_party_import():
    imported = set().union(*(_imports(f) for f in SOURCES))
    ours = {"fleet_coord", "fleet_coord_sim", "fleet_coord_bridge"}
    deps = _exec_depends()
    missing = sorted(m for m in imported - ours if _is_ros_package(m) and m not in deps)
    assert not missing, f"package.xml lacks <exec_depend> for ROS packages {missing}"
    keys = sorted(THIRD_PARTY[m] for m in imported if m in THIRD_PARTY
                  and THIRD_PARTY[m] not in deps)
    assert not keys, f"package.xml lacks <exec_depend> for rosdep keys {keys}"


def test_sim_and_bridge_install_under_their_own_names():
    for name, folder in (("fleet_coord_sim", "sim"), ("fleet_coord_bridge", "firmware_bridge")):
        spec = importlib.util.find_spec(name)
        assert spec is not None, f"{name} is not installed (make setup)"
        assert os.path.dirname(spec.origin) == os.path.join(REPO, folder), spec.origin


def test_no_code_imports_the_folder_names():
    """`import sim` works from the repo root by accident (cwd on sys.path) but not from
    an install: the package's own code uses only the installed names."""
    for folder in SOURCES + ("tests", "bench"):
        bad = _imports(folder) & {"sim", "firmware_bridge"}
        assert not bad, f"{folder}/ imports {sorted(bad)}; use fleet_coord_sim / fleet_coord_bridge"


def test_rviz_config_shows_the_fleets_topics_in_the_map_frame():
    import yaml
    cfg = yaml.safe_load(open(os.path.join(REPO, "rviz", "fleet.rviz")))["Visualization Manager"]
    assert cfg["Global Options"]["Fixed Frame"] == "map"
    topics = {d["Topic"]["Value"]: d["Topic"] for d in cfg["Displays"] if "Topic" in d}
    # /fleet/roadmap is published once, latched: the display must ask for transient-local
    assert topics["/fleet/roadmap"]["Durability Policy"] == "Transient Local"
    assert "/fleet/markers" in topics
    assert any(d["Class"] == "rviz_default_plugins/TF" for d in cfg["Displays"])
    monitor = open(os.path.join(REPO, "fleet_coord", "fleet_monitor.py")).read()
    assert '"/fleet/roadmap"' in monitor and '"/fleet/markers"' in monitor

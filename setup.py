"""fleet_coord: multi-robot fleet coordination on ROS 2 (ament_python; pip-installable)."""
from glob import glob

from setuptools import find_packages, setup

package_name = "fleet_coord"

setup(
    name=package_name,
    version="0.1.0",
    # The simulator and the serial bridge keep their folders (sim/, firmware_bridge/) but
    # install under names of their own: a top-level `sim` module collides too easily.
    packages=find_packages(include=["fleet_coord", "fleet_coord.*"])
    + ["fleet_coord_sim", "fleet_coord_bridge"],
    package_dir={"fleet_coord_sim": "sim", "fleet_coord_bridge": "firmware_bridge"},
    data_files=[
        ("share/ament_index/resource_index/packages", ["resource/" + package_name]),
        ("share/" + package_name, ["package.xml"]),
        ("share/" + package_name + "/launch", glob("launch/*.py")),
        ("share/" + package_name + "/config", glob("config/*.yaml")),
        ("share/" + package_name + "/config/maps", glob("config/maps/*")),
        ("share/" + package_name + "/urdf", glob("urdf/*.urdf")),
        ("share/" + package_name + "/rviz", glob("rviz/*.rviz")),
    ],
    package_data={"fleet_coord": ["py.typed"], "fleet_coord.vda5050": ["schemas/*"],
                  "fleet_coord.web": ["static/*"],
                  "fleet_coord_bridge": ["test_vectors.txt"]},
    # ROS 2 packages (rclpy, messages) come from the ROS install or, here, from the
    # PyPI wheels listed in requirements.txt; they are not pip requirements of the package.
    install_requires=["numpy", "scipy", "shapely", "pyyaml", "pyserial", "tqdm", "paho-mqtt",
                      "jsonschema", "cryptography", "aiohttp", "mcap"],
    zip_safe=True,
    maintainer="fleet_coord developers",
    maintainer_email="dev@fleet-coord.invalid",
    description="Multi-robot fleet coordination: Contract Net auctions, conflict-free "
                "space-time reservations, PyBullet and serial robot backends.",
    license="Apache-2.0",
    tests_require=["pytest"],
    entry_points={
        "console_scripts": [
            "fleet-coord = fleet_coord.cli:main",
            "traffic = fleet_coord.traffic:main",
            "ideal_driver = fleet_coord.ideal_driver:main",
            "robot_agent = fleet_coord.robot_agent:main",
            "dispatcher = fleet_coord.dispatcher:main",
            "fleet_monitor = fleet_coord.fleet_monitor:main",
            "serial_bridge = fleet_coord_bridge.bridge_node:main",
            "sim = fleet_coord_sim.sim_node:main",
            "vda5050_emulator = fleet_coord.vda5050.emulator:main",
            "vda5050_master = fleet_coord.vda5050.master:main",
            "operator_view = fleet_coord.web.operator_node:main",
            "recorder = fleet_coord.recorder:main",
        ],
    },
)

"""Launch a simulated fleet in PyBullet on sim time.

    ros2 launch fleet_coord sim.launch.py [config:=FILE] [robot_count:=N] [use_sim_time:=true|false]
        [domain:=ID] [agents_per_process:=N] [namespace:=NS] [operator_view:=true|false]
        [operator_port:=PORT] [record:=FILE.mcap]

The node set comes from fleet_coord.node_set.fleet_nodes, the function `fleet-coord launch`
uses too; default config: share/fleet_coord/config/fleet_sim.yaml.
"""
from fleet_coord.launch_support import generate_launch_description as _generate


def generate_launch_description():
    return _generate("fleet_sim.yaml")

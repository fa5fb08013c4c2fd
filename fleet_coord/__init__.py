"""fleet_coord: multi-robot fleet coordination on ROS 2.

`fleet_coord.core` is the pure algorithmic core (no rclpy); the node modules wrap it.
"""
__version__ = "0.1.0"

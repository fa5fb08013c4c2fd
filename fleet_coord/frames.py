"""The fleet's coordinate frames (REP-105) and their transforms on /tf.

    map ──(static, identity)──> <robot>/odom ──(odometry)──> <robot>/base_link

- `map`: the roadmap's frame (the fleet config's metres, x right, y up).
- `<robot>/odom`: where the robot's odometry integrates. Every backend starts a robot
  localized at its configured start pose and integrates from there, so its odom frame
  coincides with `map` and `map -> <robot>/odom` is the identity, published once on
  /tf_static by the robot's driver. (A localization node correcting drift would publish a
  non-identity `map -> <robot>/odom` instead, on /tf; nothing here does.)
- `<robot>/base_link`: the robot; `odom -> base_link` is the odometry pose, published on
  /tf by the driver with the odometry's stamp.

Odometry covariances say how far the pose can be trusted: the ideal driver and the
PyBullet sim integrate exactly (`EXACT_COVARIANCE`); wheel odometry from a serial robot
drifts with distance and turning (`wheel_odometry_covariance`).
"""
from __future__ import annotations

from typing import Iterable

from geometry_msgs.msg import TransformStamped
from rclpy.node import Node
from tf2_msgs.msg import TFMessage

from fleet_coord import qos
from fleet_coord.convert import set_yaw
from fleet_coord.namespace import names_of

MAP = "map"

def odom_frame(robot: str) -> str:
    return f"{robot}/odom"


def base_frame(robot: str) -> str:
    return f"{robot}/base_link"


def _diagonal(*variances: float) -> list[float]:
    cov = [0.0] * 36
    for i, v in enumerate(variances):
        cov[7 * i] = v
    return cov


#: A planar robot integrated exactly (ideal driver, PyBullet): 1 mm / 1 mrad standard
#: deviation, which is float and step-size round-off; z, roll and pitch are exactly 0.
EXACT_COVARIANCE = _diagonal(1e-6, 1e-6, 1e-9, 1e-9, 1e-9, 1e-6)

#: Wheel odometry error model: per metre driven, per radian turned, and the floor.
WHEEL_DRIFT_PER_M = 0.02          # m of position error per m driven (2 %, encoders)
WHEEL_YAW_DRIFT_PER_RAD = 0.05    # rad of heading error per rad turned (wheel slip)
WHEEL_YAW_DRIFT_PER_M = 0.01      # rad of heading error per m driven (wheel radii)
WHEEL_TWIST_STD = (0.02, 0.05)    # m/s, rad/s: encoder quantisation at 50 Hz


def wheel_odometry_covariance(distance_m: float, rotation_rad: float
                              ) -> tuple[list[float], list[float]]:
    """(pose covariance, twist covariance) of wheel odometry after driving `distance_m`
    and turning `rotation_rad` (absolute sums) since the odometry was anchored: the
    standard deviation grows linearly with both, from a 1 cm / 0.01 rad floor."""
    pos = 0.01 + WHEEL_DRIFT_PER_M * distance_m
    yaw = 0.01 + WHEEL_YAW_DRIFT_PER_RAD * rotation_rad + WHEEL_YAW_DRIFT_PER_M * distance_m
    v, w = WHEEL_TWIST_STD
    return (_diagonal(pos * pos, pos * pos, 1e-9, 1e-9, 1e-9, yaw * yaw),
            _diagonal(v * v, 1e-9, 1e-9, 1e-9, 1e-9, w * w))


def transform(parent: str, child: str, x: float, y: float, yaw: float,
              stamp) -> TransformStamped:
    t = TransformStamped()
    t.header.stamp = stamp
    t.header.frame_id = parent
    t.child_frame_id = child
    t.transform.translation.x = float(x)
    t.transform.translation.y = float(y)
    set_yaw(t.transform.rotation, yaw)
    return t


class TfBroadcaster:
    """The transforms of the robots a driver serves: `map -> <robot>/odom` on /tf_static
    (all of them in one latched message, as tf2's static broadcaster does; sent again
    when a robot joins or leaves) and `<robot>/odom -> <robot>/base_link` on /tf."""

    def __init__(self, node: Node) -> None:
        self.node = node
        names = names_of(node)   # a fleet's frames under its namespace (REP-105 multi-robot)
        self._tf = node.create_publisher(TFMessage, names("/tf"), qos.TF)
        self._static = node.create_publisher(TFMessage, names("/tf_static"), qos.LATCHED)
        self._robots: list[str] = []

    def set_robots(self, robots: Iterable[str]) -> None:
        robots = list(robots)
        if robots == self._robots:
            return
        self._robots = robots
        stamp = self.node.get_clock().now().to_msg()
        self._static.publish(TFMessage(transforms=[
            transform(MAP, odom_frame(r), 0.0, 0.0, 0.0, stamp) for r in robots]))

    def publish(self, stamp, poses: Iterable[tuple[str, float, float, float]]) -> None:
        """`poses`: (robot, x, y, yaw) in the robot's odom frame, measured at `stamp`."""
        msg = TFMessage(transforms=[transform(odom_frame(r), base_frame(r), x, y, yaw, stamp)
                                    for r, x, y, yaw in poses])
        if msg.transforms:
            self._tf.publish(msg)

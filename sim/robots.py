"""Differential-drive robots in a PyBullet world, in two modes.

* :class:`KinematicRobots` — every robot is its footprint (a disc of the fleet's
  ``footprint_radius``). Commanded twists are integrated as an ideal unicycle with the
  fleet's limits (the same model as ``fleet_coord.core.kinematics.step``, vectorised over
  the fleet) and the bodies are placed with ``resetBasePositionAndOrientation``; only
  collision detection runs, never dynamics. Fast: this is the mode for large fleets.
* :class:`PhysicsRobots` — every robot is ``urdf/diff_drive.urdf``: two driven wheels
  under ``VELOCITY_CONTROL`` motors and two ball casters, on a floor with friction and
  gravity. The commanded twist (clipped and ramped by the same limits) becomes wheel
  speeds; the motion, slip and contacts are Bullet's.

Both keep the fleet's state in one array ``state[N, 5] = (x, y, theta, v, w)`` and the
commands in ``cmd[N, 2] = (v, w)``, so the world and the sim node never loop over
robots in Python for what numpy can do.
"""
from __future__ import annotations

import math

import numpy as np
import pybullet as p

from fleet_coord.core.kinematics import Limits
from fleet_coord.share import share_path

URDF_PATH = share_path("urdf", "diff_drive.urdf")   # share/fleet_coord/urdf when installed
#: Geometry of diff_drive.urdf at scale 1 (m). Other radii load it scaled.
BASE_RADIUS = 0.15
WHEEL_RADIUS = 0.05
WHEEL_SEPARATION = 0.18
#: Height of the kinematic robots' visual cylinder (m).
KINEMATIC_HEIGHT = 0.3

X, Y, THETA, V, W = range(5)


def unicycle_step_many(state: np.ndarray, cmd: np.ndarray, dt: float,
                       limits: Limits) -> np.ndarray:
    """``fleet_coord.core.kinematics.step`` for a whole fleet at once.

    ``state`` is ``[N, 5]`` (x, y, theta, v, w), ``cmd`` is ``[N, 2]`` (v, w); returns the
    new ``[N, 5]`` state. Same model (tests pin it to the scalar version to 1e-9):
    commands clipped to the limits, non-finite commands mean stop, velocities ramp at the
    acceleration limits, exact integration along the arc. The arc is written as its chord
    (length ``v dt sinc(w dt / 2)`` at heading ``theta + w dt / 2``), which needs no
    straight-line special case: fewer numpy passes, and this runs every step.
    """
    if not (dt >= 0 and math.isfinite(dt)):
        raise ValueError(f"dt must be a finite non-negative number of seconds, got {dt!r}")
    if not np.isfinite(cmd).all():
        cmd = np.where(np.isfinite(cmd).all(axis=1, keepdims=True), cmd, 0.0)
    v = _approach(state[:, V], np.clip(cmd[:, 0], -limits.max_v, limits.max_v),
                  limits.max_acc * dt)
    w = _approach(state[:, W], np.clip(cmd[:, 1], -limits.max_w, limits.max_w),
                  limits.max_alpha * dt)
    half_turn = w * (0.5 * dt)
    chord = v * dt * np.sinc(half_turn * (1.0 / math.pi))  # np.sinc(x) = sin(pi x)/(pi x)
    mid = state[:, THETA] + half_turn
    new = np.empty_like(state)
    new[:, X] = state[:, X] + chord * np.cos(mid)
    new[:, Y] = state[:, Y] + chord * np.sin(mid)
    th = mid + half_turn
    new[:, THETA] = np.arctan2(np.sin(th), np.cos(th))
    new[:, V] = v
    new[:, W] = w
    return new


def _approach(current: np.ndarray, target: np.ndarray, max_step: float) -> np.ndarray:
    return np.where(target > current, np.minimum(target, current + max_step),
                    np.maximum(target, current - max_step))


class _Robots:
    """What both modes share: the arrays, adding robots, reading poses."""

    def __init__(self, client: int, radius: float, limits: Limits) -> None:
        if not (math.isfinite(radius) and radius > 0):
            raise ValueError(f"robot radius must be a positive number of metres, got {radius!r}")
        self.client = client
        self.radius = float(radius)
        self.limits = limits
        self.bodies: list[int] = []
        self.state = np.zeros((0, 5))
        self.cmd = np.zeros((0, 2))

    def __len__(self) -> int:
        return len(self.bodies)

    def _append(self, body: int, x: float, y: float, theta: float) -> int:
        self.bodies.append(body)
        self.state = np.vstack([self.state, [[x, y, theta, 0.0, 0.0]]])
        self.cmd = np.vstack([self.cmd, [[0.0, 0.0]]])
        return len(self.bodies) - 1

    def sync(self) -> None:
        """Bring ``state`` up to date with the simulation (a no-op when it already is)."""


class KinematicRobots(_Robots):
    """Footprint cylinders moved along ideal unicycle paths (see the module docstring)."""

    mode = "kinematic"

    def __init__(self, client: int, radius: float, limits: Limits,
                 obstacle_height: float = 1.0) -> None:
        super().__init__(client, radius, limits)
        z = min(self.radius, obstacle_height / 2)  # sphere centre height
        # The footprint disc, for contacts, as a sphere of the same radius: with every
        # centre at the same height, sphere-sphere and sphere-(tall box) contacts are
        # exactly disc-disc and disc-rectangle contacts on the floor, and Bullet tests
        # spheres much faster than cylinders (measured: half the collision-detection time).
        self._shape = p.createCollisionShape(p.GEOM_SPHERE, radius=self.radius,
                                             physicsClientId=client)
        self._visual = p.createVisualShape(p.GEOM_CYLINDER, radius=self.radius,
                                           length=KINEMATIC_HEIGHT,
                                           rgbaColor=[0.15, 0.45, 0.85, 1.0],
                                           visualFramePosition=[0, 0, KINEMATIC_HEIGHT / 2 - z],
                                           physicsClientId=client)
        self._z = z
        self._body_array = np.zeros(0, dtype=np.int64)

    def add(self, x: float, y: float, theta: float) -> int:
        # A mass > 0: Bullet never tests two static (mass 0) bodies against each other,
        # and robots must hit robots. Dynamics never run in this mode, so the mass is moot.
        body = p.createMultiBody(baseMass=1.0, baseCollisionShapeIndex=self._shape,
                                 baseVisualShapeIndex=self._visual,
                                 basePosition=[x, y, self._z],
                                 baseOrientation=_yaw_quaternion(theta),
                                 physicsClientId=self.client)
        p.changeDynamics(body, -1, activationState=p.ACTIVATION_STATE_DISABLE_SLEEPING,
                         physicsClientId=self.client)
        self._body_array = np.append(self._body_array, body)
        return self._append(body, x, y, theta)

    def step(self, dt: float) -> None:
        old = self.state
        new = self.state = unicycle_step_many(old, self.cmd, dt, self.limits)
        # Only robots that moved are placed again: a parked fleet costs nothing.
        moved = np.flatnonzero((new[:, V:] != 0.0).any(axis=1) | (old[:, V:] != 0.0).any(axis=1))
        if len(moved):
            s = new[moved]
            half = s[:, THETA] * 0.5
            reset, client, z = p.resetBasePositionAndOrientation, self.client, self._z
            for body, x, y, qz, qw in zip(self._body_array[moved].tolist(), s[:, X].tolist(),
                                          s[:, Y].tolist(), np.sin(half).tolist(),
                                          np.cos(half).tolist()):
                # physicsClientId passed by position: keyword parsing costs a third of
                # this call (measured), and this loop is the hot path of kinematic mode.
                reset(body, (x, y, z), (0.0, 0.0, qz, qw), client)
        p.performCollisionDetection(self.client)


class PhysicsRobots(_Robots):
    """``diff_drive.urdf`` robots driven through wheel velocity motors (see the module
    docstring). ``wheel_torque`` is each motor's maximum torque (N m, at radius 0.15)."""

    mode = "physics"

    def __init__(self, client: int, radius: float, limits: Limits,
                 wheel_torque: float = 2.0) -> None:
        super().__init__(client, radius, limits)
        self.scale = self.radius / BASE_RADIUS
        self.wheel_radius = WHEEL_RADIUS * self.scale
        self.wheel_separation = WHEEL_SEPARATION * self.scale
        self.wheel_torque = float(wheel_torque) * self.scale
        self._ref = np.zeros((0, 2))  # the ramped (v, w) the wheels are asked to follow
        self._wheel_targets: list[tuple[float, float] | None] = []
        self._joints: tuple[int, int] | None = None
        self._stale = False

    def add(self, x: float, y: float, theta: float) -> int:
        c = self.client
        body = p.loadURDF(URDF_PATH, basePosition=[x, y, self.wheel_radius],
                          baseOrientation=_yaw_quaternion(theta), globalScaling=self.scale,
                          physicsClientId=c)
        links = {p.getJointInfo(body, j, physicsClientId=c)[12].decode(): j
                 for j in range(p.getNumJoints(body, physicsClientId=c))}
        self._joints = (links["left_wheel"], links["right_wheel"])
        for wheel in self._joints:
            p.changeDynamics(body, wheel, lateralFriction=1.0, rollingFriction=0.0,
                             spinningFriction=0.0, physicsClientId=c)
        for caster in ("front_caster", "rear_caster"):
            # Ball casters roll every way: no friction, they only carry weight.
            p.changeDynamics(body, links[caster], lateralFriction=0.0, rollingFriction=0.0,
                             spinningFriction=0.0, physicsClientId=c)
        p.changeDynamics(body, -1, activationState=p.ACTIVATION_STATE_DISABLE_SLEEPING,
                         physicsClientId=c)
        self._ref = np.vstack([self._ref, [[0.0, 0.0]]])
        self._wheel_targets.append(None)
        return self._append(body, x, y, theta)

    def step(self, dt: float) -> None:
        lim = self.limits
        cmd = np.where(np.isfinite(self.cmd).all(axis=1, keepdims=True), self.cmd, 0.0)
        target_v = np.clip(cmd[:, 0], -lim.max_v, lim.max_v)
        target_w = np.clip(cmd[:, 1], -lim.max_w, lim.max_w)
        self._ref[:, 0] = _approach(self._ref[:, 0], target_v, lim.max_acc * dt)
        self._ref[:, 1] = _approach(self._ref[:, 1], target_w, lim.max_alpha * dt)
        half_track = self.wheel_separation / 2
        left = (self._ref[:, 0] - self._ref[:, 1] * half_track) / self.wheel_radius
        right = (self._ref[:, 0] + self._ref[:, 1] * half_track) / self.wheel_radius
        c, joints, force = self.client, self._joints, (self.wheel_torque, self.wheel_torque)
        targets = self._wheel_targets
        for i, wl, wr in zip(range(len(self.bodies)), left.tolist(), right.tolist()):
            if targets[i] != (wl, wr):  # the motors keep their target between calls
                p.setJointMotorControlArray(self.bodies[i], joints, p.VELOCITY_CONTROL,
                                            targetVelocities=(wl, wr), forces=force,
                                            physicsClientId=c)
                targets[i] = (wl, wr)
        p.stepSimulation(physicsClientId=c)
        self._stale = True

    def sync(self) -> None:
        if not self._stale:
            return
        c = self.client
        get_pose, get_vel = p.getBasePositionAndOrientation, p.getBaseVelocity
        rows = []
        for body in self.bodies:
            (x, y, _), (qx, qy, qz, qw) = get_pose(body, physicsClientId=c)
            (vx, vy, _), (_, _, wz) = get_vel(body, physicsClientId=c)
            th = math.atan2(2.0 * (qw * qz + qx * qy), 1.0 - 2.0 * (qy * qy + qz * qz))
            rows.append((x, y, th, vx * math.cos(th) + vy * math.sin(th), wz))
        if rows:
            self.state = np.array(rows, dtype=float)
        self._stale = False


def _yaw_quaternion(theta: float) -> tuple[float, float, float, float]:
    return (0.0, 0.0, math.sin(theta / 2.0), math.cos(theta / 2.0))

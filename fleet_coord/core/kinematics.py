"""Differential-drive (unicycle) kinematics: the ideal robot.

The ideal driver integrates commanded twists exactly (no slip, no latency beyond the
command period) with velocity and acceleration limits. It is the fast backend for tests;
the PyBullet and serial backends stand behind the same driver interface.
"""
from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass
class Limits:
    max_v: float = 1.0        # m/s
    max_w: float = 2.0        # rad/s
    max_acc: float = math.inf  # m/s^2
    max_alpha: float = math.inf  # rad/s^2

    def __post_init__(self) -> None:
        for name in ("max_v", "max_w", "max_acc", "max_alpha"):
            value = getattr(self, name)
            if not (value > 0):
                raise ValueError(f"Limits.{name} must be > 0, got {value!r}")


@dataclass
class UnicycleState:
    x: float = 0.0
    y: float = 0.0
    theta: float = 0.0
    v: float = 0.0
    w: float = 0.0


def _approach(current: float, target: float, max_step: float) -> float:
    if target > current:
        return min(target, current + max_step)
    return max(target, current - max_step)


def step(state: UnicycleState, cmd_v: float, cmd_w: float, dt: float,
         limits: Limits) -> UnicycleState:
    """Advance `state` by `dt` seconds towards the commanded (v, w); returns the new state.

    Commands are clipped to the limits, velocities ramp at the acceleration limits, and the
    pose is integrated exactly along the arc (not Euler), so long steps stay accurate.
    """
    if dt < 0 or not math.isfinite(dt):
        raise ValueError(f"dt must be a finite non-negative number of seconds, got {dt!r}")
    if not (math.isfinite(cmd_v) and math.isfinite(cmd_w)):
        cmd_v, cmd_w = 0.0, 0.0  # a non-finite command is treated as stop, never integrated
    cmd_v = max(-limits.max_v, min(limits.max_v, cmd_v))
    cmd_w = max(-limits.max_w, min(limits.max_w, cmd_w))
    v = _approach(state.v, cmd_v, limits.max_acc * dt)
    w = _approach(state.w, cmd_w, limits.max_alpha * dt)
    th = state.theta
    if abs(w) < 1e-9:
        x = state.x + v * dt * math.cos(th)
        y = state.y + v * dt * math.sin(th)
    else:
        th2 = th + w * dt
        x = state.x + v / w * (math.sin(th2) - math.sin(th))
        y = state.y - v / w * (math.cos(th2) - math.cos(th))
        th = th2
    th = math.atan2(math.sin(th), math.cos(th))
    return UnicycleState(x, y, th, v, w)

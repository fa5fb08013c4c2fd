"""The PyBullet world: a map's floor, obstacles and stations, the robots, contacts.

Usable without ROS::

    from fleet_coord_sim import SimWorld
    with SimWorld("config/maps/warehouse.map", mode="kinematic", dt=0.02) as world:
        world.add_robot("r1", 1.0, 1.0, 0.0)
        world.set_cmd("r1", 0.5, 0.0)
        for _ in range(100):
            world.step()
        print(world.pose("r1"), world.contacts.robot_robot, world.contacts.robot_obstacle)

Maps (metres, x east, y north, z up):

* MovingAI ``.map`` grids: cell ``(col, row)`` is the square of side 1 centred on pose
  ``(x=col, y=row)``, as in ``fleet_coord.core.roadmap``. Blocked cells become static
  boxes of ``obstacle_height``; runs of blocked cells are merged into rectangles first
  (row runs, then identical runs stacked over rows), so a 256 x 256 city map is a few
  thousand bodies, not tens of thousands.
* YAML roadmaps: no obstacles; every station is marked (visual only, coloured by kind).

Contacts are looked for after every step among robots and between robots and obstacles
(never the floor); a pair entering contact is one event (:mod:`fleet_coord_sim.contacts`).
"""
from __future__ import annotations

import math
import os
from typing import Iterable

import numpy as np
import pybullet as p

from fleet_coord.core.kinematics import Limits
from fleet_coord.core.roadmap import STATION_KINDS, GridMap, Roadmap, load_movingai_map
from fleet_coord.fleet_config import resolve_map
from fleet_coord_sim.contacts import OBSTACLES, ContactCounter, ContactEvent
from fleet_coord_sim.robots import KinematicRobots, PhysicsRobots

MODES = ("kinematic", "physics")

STATION_COLOURS = {
    "pick": (0.95, 0.6, 0.1, 1.0),
    "drop": (0.2, 0.75, 0.3, 1.0),
    "charger": (0.95, 0.9, 0.1, 1.0),
    "parking": (0.6, 0.6, 0.6, 1.0),
    "waypoint": (0.8, 0.8, 0.85, 1.0),
}


def merge_blocked_cells(blocked: np.ndarray) -> list[tuple[int, int, int, int]]:
    """Cover the True cells of ``blocked[row, col]`` exactly with disjoint rectangles.

    Returns ``(col0, row0, col1, row1)`` half-open cell ranges, sorted. Each row's runs of
    blocked cells are found, and a run that repeats unchanged on the rows below is
    extended downwards instead of starting a new rectangle.
    """
    blocked = np.asarray(blocked, dtype=bool)
    if blocked.ndim != 2:
        raise ValueError(f"blocked must be a 2-D [rows, cols] array, got shape {blocked.shape}")
    rows = blocked.shape[0]
    boxes: list[tuple[int, int, int, int]] = []
    open_runs: dict[tuple[int, int], int] = {}  # (col0, col1) -> first row
    for r in range(rows + 1):
        if r < rows:
            edges = np.diff(np.concatenate(([0], blocked[r].view(np.int8), [0])))
            runs = set(zip(np.flatnonzero(edges == 1).tolist(),
                           np.flatnonzero(edges == -1).tolist()))
        else:
            runs = set()
        for run in [run for run in open_runs if run not in runs]:
            boxes.append((run[0], open_runs.pop(run), run[1], r))
        for run in runs:
            open_runs.setdefault(run, r)
    return sorted(boxes)


class SimWorld:
    """A PyBullet world with a fleet of differential-drive robots.

    ``map_path``: a MovingAI ``.map`` or a YAML roadmap; ``""``/None is the bundled
    warehouse map (``fleet_coord.fleet_config.resolve_map``). ``mode``: "kinematic" or
    "physics". ``dt``: seconds of sim time per :meth:`step`. ``robot_radius``: the
    fleet's footprint radius (m). ``limits``: velocity/acceleration limits, as the ideal
    driver's. ``physics_dt``: Bullet's internal step in physics mode (``dt`` is split into
    ``round(dt / physics_dt)`` substeps). ``contact_margin``: a pair counts as touching
    when its shapes are closer than this (m). ``contact_release``: seconds a pair must be
    apart before touching again is a new event. ``stations``: extra ``(name, x, y, kind)``
    markers. ``gui``: open the PyBullet GUI instead of headless ``DIRECT``.
    """

    def __init__(self, map_path: str | os.PathLike | None = None, mode: str = "kinematic",
                 dt: float = 0.02, *, robot_radius: float = 0.15,
                 limits: Limits | None = None, physics_dt: float = 0.005,
                 wheel_torque: float = 2.0, contact_margin: float = 0.001,
                 contact_release: float = 0.1, obstacle_height: float = 1.0,
                 stations: Iterable[tuple[str, float, float, str]] = (),
                 gui: bool = False) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if not (isinstance(dt, (int, float)) and math.isfinite(dt) and dt > 0):
            raise ValueError(f"dt must be a positive number of seconds, got {dt!r}")
        if not (math.isfinite(physics_dt) and 0 < physics_dt):
            raise ValueError(f"physics_dt must be a positive number of seconds, got {physics_dt!r}")
        self.mode = mode
        self.dt = float(dt)
        self.limits = limits if limits is not None else Limits(max_v=1.0, max_w=2.0,
                                                               max_acc=2.0, max_alpha=6.0)
        self.contact_margin = float(contact_margin)
        self.obstacle_height = float(obstacle_height)
        self.map_path = resolve_map(os.fspath(map_path) if map_path else "")
        self.grid: GridMap | None = None
        self.roadmap: Roadmap | None = None
        if self.map_path.endswith((".yaml", ".yml")):
            self.roadmap = Roadmap.from_yaml(self.map_path)
        else:
            self.grid = load_movingai_map(self.map_path)

        self._closed = True  # until connected: close() and __del__ have nothing to do
        self.client = p.connect(p.GUI if gui else p.DIRECT)
        if self.client < 0:
            raise RuntimeError("could not connect to PyBullet "
                               + ("(GUI needs a display)" if gui else "(DIRECT)"))
        self._closed = False
        self.names: list[str] = []
        self._index: dict[str, int] = {}
        self._body_robot: dict[int, int] = {}
        self.stations: dict[str, tuple[float, float, str]] = {}
        self._steps = 0
        try:
            self._build_scene(gui)
            if mode == "kinematic":
                self.robots = KinematicRobots(self.client, robot_radius, self.limits,
                                              obstacle_height=self.obstacle_height)
            else:
                substeps = max(1, round(self.dt / physics_dt))
                p.setGravity(0, 0, -9.81, physicsClientId=self.client)
                p.setPhysicsEngineParameter(fixedTimeStep=self.dt, numSubSteps=substeps,
                                            physicsClientId=self.client)
                self.robots = PhysicsRobots(self.client, robot_radius, self.limits,
                                            wheel_torque=wheel_torque)
            if self.roadmap is not None:
                for v, (name, kind) in enumerate(zip(self.roadmap.names, self.roadmap.kinds)):
                    self.add_station(name, *self.roadmap.pos[v], kind)
            for name, x, y, kind in stations:
                self.add_station(name, x, y, kind)
        except BaseException:
            self.close()
            raise
        self.contacts = ContactCounter(
            release_steps=max(1, math.ceil(contact_release / self.dt - 1e-9)))

    # ----- scene

    def _build_scene(self, gui: bool) -> None:
        c = self.client
        if gui:
            p.configureDebugVisualizer(p.COV_ENABLE_GUI, 0, physicsClientId=c)
        plane = p.createCollisionShape(p.GEOM_PLANE, physicsClientId=c)
        cx, cy, extent = self._centre_and_extent()
        # A plane has no visual in PyBullet: the floor is seen as a thin slab under the map.
        floor_vis = p.createVisualShape(p.GEOM_BOX, halfExtents=[extent / 2 + 1, extent / 2 + 1,
                                                                  0.001],
                                        visualFramePosition=[cx, cy, -0.001],
                                        rgbaColor=[0.93, 0.93, 0.9, 1], physicsClientId=c)
        self.floor = p.createMultiBody(0, plane, floor_vis, physicsClientId=c)
        if self.mode == "kinematic":
            # No dynamics, nothing rests on the floor: keep it out of collision detection.
            p.setCollisionFilterGroupMask(self.floor, -1, 0, 0, physicsClientId=c)
        else:
            p.changeDynamics(self.floor, -1, lateralFriction=1.0, physicsClientId=c)

        boxes = (merge_blocked_cells(~self.grid.free) if self.grid is not None else [])
        #: Obstacles as [K, 4] rectangles (xmin, ymin, xmax, ymax) in metres.
        self.obstacle_boxes = np.array([(c0 - 0.5, r0 - 0.5, c1 - 0.5, r1 - 0.5)
                                        for c0, r0, c1, r1 in boxes],
                                       dtype=float).reshape(-1, 4)
        shapes: dict[tuple[float, float], tuple[int, int]] = {}  # one shape per box size
        h = self.obstacle_height
        self.obstacle_bodies: list[int] = []
        for x0, y0, x1, y1 in self.obstacle_boxes.tolist():
            size = (x1 - x0, y1 - y0)
            if size not in shapes:
                half = [size[0] / 2, size[1] / 2, h / 2]
                shapes[size] = (
                    p.createCollisionShape(p.GEOM_BOX, halfExtents=half, physicsClientId=c),
                    p.createVisualShape(p.GEOM_BOX, halfExtents=half,
                                        rgbaColor=[0.45, 0.35, 0.25, 1], physicsClientId=c))
            col, vis = shapes[size]
            self.obstacle_bodies.append(p.createMultiBody(
                0, col, vis, basePosition=[(x0 + x1) / 2, (y0 + y1) / 2, h / 2],
                physicsClientId=c))
        self._obstacle_set = frozenset(self.obstacle_bodies)
        self._station_visuals: dict[str, int] = {}
        if gui:
            p.resetDebugVisualizerCamera(cameraDistance=max(5.0, extent), cameraYaw=0,
                                         cameraPitch=-70, cameraTargetPosition=[cx, cy, 0],
                                         physicsClientId=c)

    def _centre_and_extent(self) -> tuple[float, float, float]:
        if self.grid is not None:
            return (self.grid.width - 1) / 2, (self.grid.height - 1) / 2, max(
                self.grid.width, self.grid.height)
        pos = self.roadmap.pos
        lo, hi = pos.min(axis=0), pos.max(axis=0)
        return (lo[0] + hi[0]) / 2, (lo[1] + hi[1]) / 2, float(max(hi - lo)) + 2.0

    @property
    def blocked_area(self) -> float:
        """Floor area (m^2) under static obstacles."""
        b = self.obstacle_boxes
        return float(((b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])).sum())

    def add_station(self, name: str, x: float, y: float, kind: str = "waypoint") -> None:
        """Mark a station on the floor (visual only: robots drive over it)."""
        if kind not in STATION_KINDS:
            raise ValueError(f"station {name!r}: kind must be one of {STATION_KINDS}, got {kind!r}")
        if name in self.stations:
            raise ValueError(f"station {name!r} is already marked")
        c = self.client
        if kind not in self._station_visuals:
            self._station_visuals[kind] = p.createVisualShape(
                p.GEOM_CYLINDER, radius=0.2 if kind != "waypoint" else 0.08, length=0.004,
                rgbaColor=STATION_COLOURS[kind], physicsClientId=c)
        p.createMultiBody(0, -1, self._station_visuals[kind],
                          basePosition=[float(x), float(y), 0.002], physicsClientId=c)
        self.stations[name] = (float(x), float(y), kind)

    # ----- robots

    def add_robot(self, name: str, x: float, y: float, theta: float = 0.0) -> int:
        """Spawn a robot at rest; returns its index. Refuses a duplicate name, a pose
        off a grid map, or a footprint overlapping an obstacle or another robot."""
        if not isinstance(name, str) or not name:
            raise ValueError(f"robot name must be a non-empty string, got {name!r}")
        if name in self._index:
            raise ValueError(f"robot {name!r} already exists")
        x, y, theta = float(x), float(y), float(theta)
        if not all(math.isfinite(v) for v in (x, y, theta)):
            raise ValueError(f"robot {name!r}: pose must be finite, got ({x}, {y}, {theta})")
        r = self.robots.radius
        if self.grid is not None and not (-0.5 <= x <= self.grid.width - 0.5
                                          and -0.5 <= y <= self.grid.height - 0.5):
            raise ValueError(f"robot {name!r} at ({x}, {y}) is off the map "
                             f"({self.grid.width} x {self.grid.height} cells)")
        hit = self._obstacle_overlap(x, y, r)
        if hit is not None:
            raise ValueError(f"robot {name!r} at ({x}, {y}) overlaps the obstacle "
                             f"x {hit[0]}..{hit[2]}, y {hit[1]}..{hit[3]} (radius {r} m)")
        self.robots.sync()
        if len(self.robots):
            d = np.hypot(self.robots.state[:, 0] - x, self.robots.state[:, 1] - y)
            j = int(np.argmin(d))
            if d[j] < 2 * r:
                raise ValueError(f"robot {name!r} at ({x}, {y}) overlaps robot "
                                 f"{self.names[j]!r} (centres {d[j]:.3f} m apart, "
                                 f"footprints need {2 * r} m)")
        i = self.robots.add(x, y, theta)
        self.names.append(name)
        self._index[name] = i
        self._body_robot = {b: k for k, b in enumerate(self.robots.bodies)}
        return i

    def _obstacle_overlap(self, x: float, y: float, r: float):
        b = self.obstacle_boxes
        if not len(b):
            return None
        dx = np.maximum(np.maximum(b[:, 0] - x, x - b[:, 2]), 0.0)
        dy = np.maximum(np.maximum(b[:, 1] - y, y - b[:, 3]), 0.0)
        inside = np.flatnonzero(np.hypot(dx, dy) < r)
        return tuple(b[inside[0]].tolist()) if len(inside) else None

    def index(self, name: str) -> int:
        """The index of robot ``name`` (rows of :meth:`states`)."""
        try:
            return self._index[name]
        except KeyError:
            raise KeyError(f"unknown robot {name!r}; robots: {self.names}") from None

    def set_cmd(self, name: str, v: float, w: float) -> None:
        """Command robot ``name`` to drive at ``v`` m/s and turn at ``w`` rad/s until told
        otherwise (clipped to the limits; a non-finite command stops it)."""
        self.robots.cmd[self.index(name)] = (v, w)

    def set_cmds(self, cmds: np.ndarray) -> None:
        """Command every robot at once: ``cmds[N, 2]`` = (v, w) by robot index."""
        cmds = np.asarray(cmds, dtype=float)
        if cmds.shape != self.robots.cmd.shape:
            raise ValueError(f"cmds must have shape {self.robots.cmd.shape}, got {cmds.shape}")
        self.robots.cmd[:] = cmds

    def pose(self, name: str) -> tuple[float, float, float]:
        """(x, y, theta) of robot ``name``."""
        i = self.index(name)
        self.robots.sync()
        x, y, th = self.robots.state[i, :3].tolist()
        return x, y, th

    def velocity(self, name: str) -> tuple[float, float]:
        """(v, w): forward speed (m/s) and turn rate (rad/s) of robot ``name``."""
        i = self.index(name)
        self.robots.sync()
        v, w = self.robots.state[i, 3:].tolist()
        return v, w

    def states(self) -> np.ndarray:
        """A copy of every robot's (x, y, theta, v, w), ``[N, 5]`` by robot index."""
        self.robots.sync()
        return self.robots.state.copy()

    # ----- time

    @property
    def time(self) -> float:
        """Sim time (s) since the world was built."""
        return self._steps * self.dt

    @property
    def steps(self) -> int:
        return self._steps

    def step(self) -> list[ContactEvent]:
        """Advance by ``dt``; returns the contact events that began in this step."""
        self.robots.step(self.dt)
        self._steps += 1
        return self.contacts.update(self._touching(), self.time, self.names)

    def _touching(self) -> set[tuple[int, int]]:
        body_robot, obstacles, margin = self._body_robot, self._obstacle_set, self.contact_margin
        pairs = set()
        for c in p.getContactPoints(physicsClientId=self.client):
            if c[8] > margin:
                continue
            a, b = body_robot.get(c[1]), body_robot.get(c[2])
            if a is not None and b is not None:
                if a != b:
                    pairs.add((a, b) if a < b else (b, a))
            elif a is not None and c[2] in obstacles:
                pairs.add((a, OBSTACLES))
            elif b is not None and c[1] in obstacles:
                pairs.add((b, OBSTACLES))
        return pairs

    # ----- lifetime

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            if p.isConnected(physicsClientId=self.client):
                p.disconnect(physicsClientId=self.client)

    def __enter__(self) -> "SimWorld":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001 - interpreter shutdown: pybullet may already be gone
            pass

"""The workspace as a graph of lanes, and which parts of it two robots may not share.

A :class:`Roadmap` is a directed graph: vertices are poses ``(x, y)`` in metres, edges are
drivable lanes ``u -> v`` with a length (Euclidean) and a speed limit (m/s, ``inf`` when
none). Everything a robot can hold is a *resource*: vertex ``v`` is resource ``v``, edge
``e`` is resource ``V + e`` (see ``docs/core-model.md``, the contract this module
implements). :meth:`Roadmap.exclusion` precomputes, for one robot footprint, which
resources are mutually exclusive.

Two sources of roadmaps:

* MovingAI ``.map`` grids (:func:`load_movingai_map`, :meth:`Roadmap.from_grid`): every
  free cell ``(col, row)`` is the vertex at pose ``(col, row)`` named ``"col,row"``;
  4-connected unit lanes both ways, no speed limit. Scenarios (``.scen``) load with
  :func:`load_scenario`.
* YAML waypoint graphs (:meth:`Roadmap.from_yaml`)::

      name: warehouse_small          # optional, free text
      description: ...               # optional, free text
      stations:                      # named vertices, in metres
        dock_1: {x: 0.0, y: 0.0}
        aisle_a1: {x: 2.0, y: 0.0, kind: pick}
        # kind is optional: pick | drop | charger | parking | waypoint (the default)
      lanes:
        - [dock_1, aisle_a1]                      # two-way, no speed limit
        - {from: aisle_a1, to: aisle_a2, one_way: true, speed: 0.5}
        # mapping form: from, to (required); one_way (bool, default false);
        # speed (m/s, > 0, default: no limit)

  Stations are numbered in file order, lanes become directed edges in file order (a
  two-way lane is ``from -> to`` then ``to -> from``). Unknown keys, duplicate
  stations, duplicate lanes, lanes to unknown stations or to themselves, zero-length
  lanes and non-numeric coordinates are refused with a :class:`MapError` naming the
  file and line.
"""
from __future__ import annotations

import difflib
import math
import os
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import shapely
import shapely.affinity
import yaml
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import dijkstra

from fleet_coord.core.yaml_reader import (FileFormatError, YamlReader, compose_yaml, describe,
                                          line_of)

__all__ = [
    "MapError", "UnknownVertexError", "Footprint", "GridMap", "Roadmap", "Exclusion",
    "load_movingai_map", "load_scenario", "FREE_CELLS", "BLOCKED_CELLS", "STATION_KINDS",
]

FREE_CELLS = frozenset(".GS")
BLOCKED_CELLS = frozenset("@OTW")
STATION_KINDS = ("pick", "drop", "charger", "parking", "waypoint")

# Shapes closer than this (m) or overlapping by less than this area (m^2) only touch:
# they are not exclusive. It absorbs float rounding at exact tangency, e.g. the stars
# of neighbouring cells for a robot of radius exactly 1/6 on a unit grid.
_DISTANCE_EPS = 1e-9
_AREA_EPS = 1e-9
# Circle resolution of the polygons handed out for display (Footprint.geometry,
# Exclusion.geometry). Exclusion itself is computed exactly, not from these polygons.
_QUAD_SEGS = 16
# Budget for Roadmap.shortest_times' cache: distance tables are V floats each.
_TIMES_CACHE_BYTES = 256 * 2**20


class MapError(FileFormatError):
    """A map, scenario or roadmap file that cannot be used.

    ``str(err)`` reads ``"<path>:<line>[:<column>]: <what was expected, got what>"``;
    the parts are also kept as ``path``, ``line`` (1-based), ``column`` and ``reason``.
    """


class UnknownVertexError(KeyError):
    """A station name or cell that is not a vertex of the roadmap."""

    def __str__(self) -> str:  # KeyError would print the message in quotes
        return str(self.args[0])


# --------------------------------------------------------------------------- footprint

@dataclass(frozen=True)
class Footprint:
    """The ground shape of a robot, in its own frame (metres, reference point at the
    origin, heading along +x): a disc of ``radius`` or a simple ``polygon``."""

    radius: float | None = None
    polygon: tuple[tuple[float, float], ...] | None = None

    def __post_init__(self) -> None:
        if (self.radius is None) == (self.polygon is None):
            raise ValueError("Footprint takes exactly one of radius= or polygon=, got "
                             f"radius={self.radius!r}, polygon={self.polygon!r}")
        if self.radius is not None:
            radius = float(self.radius)
            if not (math.isfinite(radius) and radius > 0):
                raise ValueError(f"Footprint radius must be a positive number of metres, "
                                 f"got {self.radius!r}")
            object.__setattr__(self, "radius", radius)
            return
        assert self.polygon is not None
        points = tuple((float(x), float(y)) for x, y in self.polygon)
        shape = shapely.Polygon(points) if len(points) >= 3 else None
        if shape is None or not shape.is_valid or shape.area <= 0:
            raise ValueError("Footprint polygon must be a simple polygon of >= 3 points "
                             f"with positive area, got {self.polygon!r}")
        object.__setattr__(self, "polygon", points)  # hashable, so usable as a cache key

    @property
    def bounding_radius(self) -> float:
        """Radius (m) of the smallest origin-centred disc holding the footprint at any
        heading."""
        if self.radius is not None:
            return self.radius
        assert self.polygon is not None
        return max(math.hypot(x, y) for x, y in self.polygon)

    def geometry(self, heading: float = 0.0) -> shapely.Geometry:
        """The footprint placed at the origin with the given heading (radians).

        A disc is returned as a polygon with vertices on the circle (for display; the
        exclusion relation uses the exact disc).
        """
        if self.radius is not None:
            return shapely.Point(0.0, 0.0).buffer(self.radius, quad_segs=_QUAD_SEGS)
        return shapely.affinity.rotate(shapely.Polygon(self.polygon), heading,
                                       origin=(0.0, 0.0), use_radians=True)

    def _contains_reference_point(self) -> bool:
        return self.radius is not None or shapely.Polygon(self.polygon).contains(
            shapely.Point(0.0, 0.0))


# --------------------------------------------------------------------------- grid maps

@dataclass
class GridMap:
    """A MovingAI grid: ``free[y, x]`` is True for a drivable cell (column x, row y)."""

    width: int
    height: int
    free: np.ndarray
    path: str

    def is_free(self, x: int, y: int) -> bool:
        """True when (x, y) is inside the grid and drivable."""
        return 0 <= x < self.width and 0 <= y < self.height and bool(self.free[y, x])


def _read_lines(path: str | os.PathLike[str]) -> list[str]:
    # latin-1 decodes every byte, so a stray byte is reported as an unknown character
    # with its position instead of as a UnicodeDecodeError.
    with open(path, encoding="latin-1", newline="") as f:
        text = f.read()
    return [line.rstrip("\r") for line in text.split("\n")]


def load_movingai_map(path: str | os.PathLike[str], *, extra_free: str = "") -> GridMap:
    """Read a MovingAI ``.map`` file (``type``, ``height``, ``width``, ``map`` header,
    then ``height`` rows of ``width`` characters; ``. G S`` free, ``@ O T W`` blocked,
    and the characters of ``extra_free`` free too, e.g. the League of Robot Runners'
    ``E`` emitter cells).

    Returns the :class:`GridMap`; raises :class:`MapError` naming line and column of the
    first problem.
    """
    path = os.fspath(path)
    lines = _read_lines(path)
    while len(lines) > 1 and not lines[-1].strip():  # trailing newline(s)
        lines.pop()

    def header(index: int, keyword: str, expected: str) -> str | None:
        got = lines[index] if index < len(lines) else None
        words = got.split() if got is not None else []
        arity = 1 if keyword == "map" else 2
        if len(words) != arity or words[0] != keyword:
            raise MapError(f"expected {expected!r}, got "
                           + ("end of file" if got is None else repr(got)), path, index + 1)
        return words[1] if arity == 2 else None

    header(0, "type", "type <name>")
    dims = {}
    for index, keyword in ((1, "height"), (2, "width")):
        word = header(index, keyword, f"{keyword} <int>")
        assert word is not None   # a two-word header line
        if not word.isdigit() or int(word) == 0:
            raise MapError(f"expected '{keyword} <positive int>', got {lines[index]!r}",
                           path, index + 1)
        dims[keyword] = int(word)
    header(3, "map", "map")
    height, width = dims["height"], dims["width"]

    rows = lines[4:4 + height]
    for y, row in enumerate(rows):
        if len(row) != width:
            raise MapError(f"expected a row of {width} characters, got {len(row)}",
                           path, 5 + y)
    if len(rows) < height:
        raise MapError(f"expected {height} map rows, got {len(rows)} before end of file",
                       path, 5 + len(rows))
    if len(lines) > 4 + height:
        raise MapError(f"expected end of file after {height} map rows, got "
                       f"{lines[4 + height]!r}", path, 5 + height)

    cells = np.frombuffer("".join(rows).encode("latin-1"), dtype=np.uint8)
    cells = cells.reshape(height, width)
    free_chars = "".join(sorted(FREE_CELLS | frozenset(extra_free)))
    free = np.isin(cells, np.frombuffer(free_chars.encode("latin-1"), np.uint8))
    known = free | np.isin(cells, np.frombuffer("".join(sorted(BLOCKED_CELLS)).encode(),
                                                np.uint8))
    if not known.all():
        y, x = np.argwhere(~known)[0]
        raise MapError(f"unknown cell character {rows[y][x]!r} (expected one of "
                       f"{', '.join(repr(c) for c in free_chars)} free or "
                       "'@', 'O', 'T', 'W' blocked)",
                       path, 5 + int(y), int(x) + 1)
    return GridMap(width=width, height=height, free=free, path=path)


def load_scenario(path: str | os.PathLike[str], n: int | None = None, *,
                  grid: GridMap | None = None) -> list[tuple[tuple[int, int], tuple[int, int]]]:
    """Read a MovingAI ``.scen`` file and return the first ``n`` (default all) rows as
    ``[((start_x, start_y), (goal_x, goal_y)), ...]``.

    Every row is validated (9 fields: bucket, map, width, height, sx, sy, gx, gy,
    optimal length). With ``grid`` the width/height columns must match it and starts
    and goals must be free cells. Raises :class:`MapError` on a malformed row or when
    the file has fewer than ``n`` rows.
    """
    path = os.fspath(path)
    if n is not None and n < 0:
        raise ValueError(f"number of agents must be >= 0, got {n}")
    lines = _read_lines(path)
    first = lines[0].split() if lines else []
    if len(first) != 2 or first[0] != "version":
        raise MapError("expected 'version <number>', got "
                       + (repr(lines[0]) if lines else "empty file"), path, 1)

    rows: list[tuple[tuple[int, int], tuple[int, int]]] = []
    for index, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        # Tab-separated in the benchmark; split on tabs when that gives 9 fields so a
        # map name with spaces still parses.
        fields = line.split("\t") if line.count("\t") == 8 else line.split()
        if len(fields) != 9:
            raise MapError("expected 9 fields 'bucket map width height start_x start_y "
                           f"goal_x goal_y optimal_length', got {len(fields)}: {line!r}",
                           path, index)
        try:
            _bucket, width, height, sx, sy, gx, gy = (int(fields[i]) for i in
                                                       (0, 2, 3, 4, 5, 6, 7))
            float(fields[8])
        except ValueError:
            raise MapError("expected integers in the bucket, width, height, start and goal "
                           f"columns and a number in the last, got {line!r}",
                           path, index) from None
        if grid is not None:
            if (width, height) != (grid.width, grid.height):
                raise MapError(f"scenario is for a {width}x{height} map, but "
                               f"{grid.path} is {grid.width}x{grid.height}", path, index)
            for what, (x, y) in (("start", (sx, sy)), ("goal", (gx, gy))):
                if not grid.is_free(x, y):
                    raise MapError(f"{what} ({x}, {y}) is not a free cell of {grid.path}",
                                   path, index)
        rows.append(((sx, sy), (gx, gy)))
    if n is None:
        return rows
    if n > len(rows):
        raise MapError(f"asked for {n} agents, but the scenario has only {len(rows)} rows",
                       path)
    return rows[:n]


# --------------------------------------------------------------------------- YAML graphs

def _parse_roadmap_yaml(path: str) -> dict[str, Any]:
    """Validate a YAML roadmap and return the keyword arguments of :class:`Roadmap`."""
    root = compose_yaml(path, MapError)
    if root is None:
        raise MapError("expected a mapping with 'stations' and 'lanes', got an empty file",
                       path, 1)
    reader = YamlReader(path, MapError)
    top = reader.mapping(root, "the roadmap", ("stations", "lanes"), ("name", "description"))

    stations_node = top["stations"][1]
    if not isinstance(stations_node, yaml.MappingNode) or not stations_node.value:
        raise reader.error(stations_node, "expected 'stations' as a non-empty mapping "
                                          f"name: {{x: .., y: ..}}, got {describe(stations_node)}")
    names: list[str] = []
    index: dict[str, int] = {}
    pos: list[tuple[float, float]] = []
    kinds: list[str] = []
    for key, value in stations_node.value:
        name = reader.name(key, "a station name")
        if name in index:
            raise reader.error(key, f"duplicate station {name!r} (first defined on line "
                                    f"{line_of(stations_node.value[index[name]][0])})")
        fields = reader.mapping(value, f"station {name!r}", ("x", "y"), ("kind",))
        x = reader.number(fields["x"][1], f"x of station {name!r}")
        y = reader.number(fields["y"][1], f"y of station {name!r}")
        kind = "waypoint"
        if "kind" in fields:
            kind_node = fields["kind"][1]
            kind = str(kind_node.value) if isinstance(kind_node, yaml.ScalarNode) else ""
            if kind not in STATION_KINDS:
                raise reader.error(kind_node, f"expected kind of station {name!r} to be one "
                                              f"of {' | '.join(STATION_KINDS)}, got "
                                              f"{describe(kind_node)}")
        index[name] = len(names)
        names.append(name)
        pos.append((x, y))
        kinds.append(kind)

    lanes_node = top["lanes"][1]
    if not isinstance(lanes_node, yaml.SequenceNode):
        raise reader.error(lanes_node, f"expected 'lanes' as a list, got {describe(lanes_node)}")
    edge_from: list[int] = []
    edge_to: list[int] = []
    edge_speed: list[float] = []
    declared: dict[tuple[int, int], int] = {}  # directed edge -> line that declared it

    def station(node: yaml.Node) -> int:
        name = reader.name(node, "a station name")
        if name not in index:
            close = difflib.get_close_matches(name, names, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise reader.error(node, f"lane refers to unknown station {name!r}{hint}")
        return index[name]

    for lane in lanes_node.value:
        if isinstance(lane, yaml.SequenceNode):
            if len(lane.value) != 2:
                raise reader.error(lane, "expected a lane as [from, to], got a list of "
                                         f"{len(lane.value)}")
            u, v = station(lane.value[0]), station(lane.value[1])
            one_way, speed = False, math.inf
        elif isinstance(lane, yaml.MappingNode):
            fields = reader.mapping(lane, "a lane", ("from", "to"), ("one_way", "speed"))
            u, v = station(fields["from"][1]), station(fields["to"][1])
            one_way = ("one_way" in fields
                       and reader.boolean(fields["one_way"][1], "one_way"))
            speed = math.inf
            if "speed" in fields:
                speed = reader.number(fields["speed"][1], "speed (m/s)", allow_inf=True)
                if speed <= 0:
                    raise reader.error(fields["speed"][1],
                                       f"expected speed > 0 m/s, got {speed}")
        else:
            raise reader.error(lane, "expected a lane as [from, to] or {from: .., to: ..}, "
                                     f"got {describe(lane)}")
        if u == v:
            raise reader.error(lane, f"lane from station {names[u]!r} to itself")
        if pos[u] == pos[v]:
            raise reader.error(lane, f"lane {names[u]!r} -> {names[v]!r} has zero length "
                                     f"(both stations at {pos[u]})")
        for a, b in ((u, v),) if one_way else ((u, v), (v, u)):
            if (a, b) in declared:
                raise reader.error(lane, f"duplicate lane {names[a]!r} -> {names[b]!r} "
                                         f"(already declared on line {declared[(a, b)]})")
            declared[(a, b)] = line_of(lane)
            edge_from.append(a)
            edge_to.append(b)
            edge_speed.append(speed)

    title = reader.name(top["name"][1], "a roadmap name") if "name" in top else None
    return dict(pos=np.array(pos, dtype=float).reshape(-1, 2), edge_from=edge_from,
                edge_to=edge_to, edge_speed=edge_speed, names=names, kinds=kinds,
                source=path, title=title)


# --------------------------------------------------------------------------- roadmap

class Roadmap:
    """A directed graph of poses and lanes, with resources numbered vertex-then-edge.

    Build one with :meth:`from_grid`, :meth:`from_yaml`, or directly from arrays.
    Treat it as immutable: the caches (distance tables, exclusion relations) assume so.
    """

    num_vertices: int
    num_edges: int
    num_resources: int
    pos: np.ndarray
    names: list[str]
    kinds: list[str]
    edge_from: np.ndarray
    edge_to: np.ndarray
    edge_length: np.ndarray
    edge_speed: np.ndarray
    out_edges: list[np.ndarray]
    in_edges: list[np.ndarray]
    grid: GridMap | None
    source: str | None
    title: str | None

    def __init__(self, pos: np.ndarray, edge_from: Sequence[int] | np.ndarray,
                 edge_to: Sequence[int] | np.ndarray,
                 edge_speed: Sequence[float] | None = None, names: Sequence[str] | None = None,
                 kinds: Sequence[str] | None = None, grid: GridMap | None = None,
                 source: str | None = None, title: str | None = None):
        """``pos`` float [V, 2] (m); lanes ``edge_from[e] -> edge_to[e]``; ``edge_speed``
        m/s (default no limit); ``names`` default ``"0", "1", ...``; ``kinds`` default
        ``"waypoint"``. Raises ValueError on self-loops, duplicate or zero-length lanes."""
        self.pos = np.asarray(pos, dtype=float).reshape(-1, 2)
        V = len(self.pos)
        self.edge_from = np.asarray(edge_from, dtype=np.int64).reshape(-1)
        self.edge_to = np.asarray(edge_to, dtype=np.int64).reshape(-1)
        E = len(self.edge_from)
        self.edge_speed = (np.full(E, np.inf) if edge_speed is None
                           else np.asarray(edge_speed, dtype=float).reshape(-1))
        if len(self.edge_to) != E or len(self.edge_speed) != E:
            raise ValueError(f"edge arrays differ in length: from {E}, to "
                             f"{len(self.edge_to)}, speed {len(self.edge_speed)}")
        if E and (self.edge_from.min() < 0 or self.edge_to.min() < 0
                  or max(self.edge_from.max(), self.edge_to.max()) >= V):
            raise ValueError(f"edge endpoints must be vertices 0..{V - 1}")
        if np.any(self.edge_from == self.edge_to):
            raise ValueError(f"lane from a vertex to itself: edge "
                             f"{int(np.argmax(self.edge_from == self.edge_to))}")
        if not np.all(self.edge_speed > 0):
            raise ValueError("edge speed limits must be > 0 m/s (inf for none)")
        self.edge_length = np.linalg.norm(self.pos[self.edge_to] - self.pos[self.edge_from],
                                          axis=1)
        if np.any(self.edge_length <= 0):
            raise ValueError(f"zero-length lane: edge {int(np.argmin(self.edge_length))}")

        self.num_vertices, self.num_edges, self.num_resources = V, E, V + E
        self.names = [str(v) for v in range(V)] if names is None else list(names)
        self.kinds = ["waypoint"] * V if kinds is None else list(kinds)
        if len(self.names) != V or len(self.kinds) != V:
            raise ValueError(f"need {V} names and kinds, got {len(self.names)} and "
                             f"{len(self.kinds)}")
        self._by_name = {name: v for v, name in enumerate(self.names)}
        if len(self._by_name) != V:
            raise ValueError("vertex names must be unique")
        self.grid, self.source, self.title = grid, source, title

        self._edge_ids = {(int(u), int(v)): e for e, (u, v)
                          in enumerate(zip(self.edge_from.tolist(), self.edge_to.tolist()))}
        if len(self._edge_ids) != E:
            raise ValueError("duplicate lane: two edges with the same (from, to)")
        self.out_edges = self._edges_by(self.edge_from)
        self.in_edges = self._edges_by(self.edge_to)
        self._by_pos = {(float(x), float(y)): v for v, (x, y) in enumerate(self.pos.tolist())}
        if grid is not None:
            self._cell_vertex = np.full((grid.height, grid.width), -1, dtype=np.int64)
            cells = self.pos.astype(np.int64)
            self._cell_vertex[cells[:, 1], cells[:, 0]] = np.arange(V)
        # Lanes of length 1 between integer poses: the grid case of docs/core-model.md.
        self._unit_grid = bool(np.all(self.pos == np.round(self.pos))
                               and np.all(self.edge_length == 1.0))

        self._reverse_graphs: dict[float, tuple[csr_matrix, float | None]] = {}
        self._lanes_from: dict[float, list[list[tuple[int, int, float]]]] = {}
        self._times: OrderedDict[tuple[int, float], np.ndarray] = OrderedDict()
        self._times_capacity = max(16, _TIMES_CACHE_BYTES // (8 * max(V, 1)))
        self._exclusions: dict[tuple[Footprint, str], Exclusion] = {}
        # Agents sharing a process (MultiThreadedExecutor) share one roadmap.
        self._lock = threading.RLock()

    def _edges_by(self, endpoint: np.ndarray) -> list[np.ndarray]:
        order = np.argsort(endpoint, kind="stable")
        bounds = np.searchsorted(endpoint[order], np.arange(self.num_vertices + 1))
        return [order[bounds[v]:bounds[v + 1]] for v in range(self.num_vertices)]

    def __repr__(self) -> str:
        origin = f" from {self.source!r}" if self.source else ""
        return f"Roadmap({self.num_vertices} vertices, {self.num_edges} edges{origin})"

    # ----- construction

    @classmethod
    def from_grid(cls, grid: GridMap) -> "Roadmap":
        """One vertex per free cell (row-major order, pose = (col, row), name "col,row"),
        4-connected unit lanes both ways, no speed limit. Edges are sorted by (from, to)."""
        ys, xs = np.nonzero(grid.free)  # row-major: vertex ids follow the file
        cell_vertex = np.full((grid.height, grid.width), -1, dtype=np.int64)
        cell_vertex[ys, xs] = np.arange(len(xs))
        pairs = []
        for dx, dy in ((1, 0), (-1, 0), (0, 1), (0, -1)):
            nx, ny = xs + dx, ys + dy
            inside = (nx >= 0) & (nx < grid.width) & (ny >= 0) & (ny < grid.height)
            u = np.flatnonzero(inside)
            v = cell_vertex[ny[inside], nx[inside]]
            pairs.append(np.stack([u[v >= 0], v[v >= 0]], axis=1))
        edges = np.concatenate(pairs) if pairs else np.empty((0, 2), np.int64)
        edges = edges[np.lexsort((edges[:, 1], edges[:, 0]))]
        return cls(np.stack([xs, ys], axis=1).astype(float), edges[:, 0], edges[:, 1],
                   names=[f"{x},{y}" for x, y in zip(xs.tolist(), ys.tolist())],
                   grid=grid, source=grid.path)

    @classmethod
    def from_yaml(cls, path: str | os.PathLike[str]) -> "Roadmap":
        """Load a YAML waypoint graph (format in the module docstring); raises
        :class:`MapError` naming file and line of the first problem."""
        return cls(**_parse_roadmap_yaml(os.fspath(path)))

    # ----- lookup

    def vertex(self, name_or_xy: str | tuple[int, int]) -> int:
        """The vertex of a station name, or of an ``(x, y)`` cell on a grid (a pose on a
        YAML roadmap). Raises :class:`UnknownVertexError` (a KeyError) listing what is
        known."""
        if isinstance(name_or_xy, str):
            v = self._by_name.get(name_or_xy)
            if v is None:
                close = difflib.get_close_matches(name_or_xy, self.names, n=1)
                hint = f"did you mean {close[0]!r}? " if close else ""
                raise UnknownVertexError(f"unknown station {name_or_xy!r}; {hint}known: "
                                         f"{self._some_names()}")
            return v
        try:
            x, y = name_or_xy
        except (TypeError, ValueError):
            raise UnknownVertexError(f"expected a station name or an (x, y) pair, got "
                                     f"{name_or_xy!r}") from None
        v = self.vertex_at(x, y)
        if v is None:
            if self.grid is not None:
                raise UnknownVertexError(
                    f"cell ({x}, {y}) is not a free cell of {self.grid.path} "
                    f"({self.grid.width}x{self.grid.height}, x = column, y = row)")
            raise UnknownVertexError(f"no station at ({x}, {y}); known: {self._some_names()}")
        return v

    def _some_names(self, limit: int = 12) -> str:
        shown = ", ".join(self.names[:limit])
        more = len(self.names) - limit
        return shown + (f", ... ({more} more)" if more > 0 else "")

    def vertex_at(self, x: int, y: int) -> int | None:
        """On a grid: the vertex of free cell (x, y), or None when blocked or outside.
        On a YAML roadmap: the station at exactly (x, y), or None."""
        if self.grid is None:
            return self._by_pos.get((float(x), float(y)))
        if 0 <= x < self.grid.width and 0 <= y < self.grid.height:
            v = int(self._cell_vertex[int(y), int(x)])
            return v if v >= 0 else None
        return None

    def vertices_of_kind(self, kind: str) -> list[int]:
        """All vertices whose station kind is ``kind`` (e.g. every charger)."""
        return [v for v, k in enumerate(self.kinds) if k == kind]

    def edge_id(self, u: int, v: int) -> int | None:
        """The edge u -> v, or None when there is no such lane."""
        return self._edge_ids.get((int(u), int(v)))

    def edge_resource(self, e: int) -> int:
        """The resource id of edge e."""
        return self.num_vertices + e

    def resource_name(self, resource: int) -> str:
        """A resource as people read it: a vertex's name, or ``"u->v"`` for a lane."""
        if resource < self.num_vertices:
            return self.names[resource]
        e = resource - self.num_vertices
        return f"{self.names[self.edge_from[e]]}->{self.names[self.edge_to[e]]}"

    def travel_time(self, e: int, max_speed: float) -> float:
        """Seconds to drive edge e for a robot whose top speed is ``max_speed``."""
        return float(self.edge_length[e] / min(self.edge_speed[e], max_speed))

    def lanes_from(self, max_speed: float) -> list[list[tuple[int, int, float]]]:
        """Per vertex u, its lanes as plain ``(e, v, travel time)`` tuples, in edge order:
        for searches written in Python (cached per speed; do not modify)."""
        max_speed = float(max_speed)
        with self._lock:
            lanes = self._lanes_from.get(max_speed)
            if lanes is None:
                times = (self.edge_length / np.minimum(self.edge_speed, max_speed)).tolist()
                to = self.edge_to.tolist()
                lanes = [[(e, to[e], times[e]) for e in out.tolist()] for out in self.out_edges]
                self._lanes_from[max_speed] = lanes
            return lanes

    # ----- distances

    def shortest_times(self, goal: int, max_speed: float = 1.0) -> np.ndarray:
        """Fastest travel time (s) from every vertex to ``goal`` at top speed
        ``max_speed``; float [V], inf where the goal is unreachable. Read-only and
        cached (least recently used tables are dropped beyond ~256 MB)."""
        goal, max_speed = int(goal), float(max_speed)
        key = (goal, max_speed)
        with self._lock:
            times = self._times.get(key)
            if times is not None:
                self._times.move_to_end(key)
                return times
        if not 0 <= goal < self.num_vertices:
            raise IndexError(f"goal vertex {goal} out of range 0..{self.num_vertices - 1}")
        if not max_speed > 0:
            raise ValueError(f"max_speed must be > 0 m/s, got {max_speed}")
        graph, uniform = self._reverse_graph(max_speed)
        if uniform is not None:  # every lane takes the same time: breadth-first search
            times = np.asarray(dijkstra(graph, indices=goal, unweighted=True)) * uniform
        else:
            times = np.asarray(dijkstra(graph, indices=goal))
        times.flags.writeable = False
        with self._lock:
            self._times[key] = times
            if len(self._times) > self._times_capacity:
                self._times.popitem(last=False)
        return times

    def _reverse_graph(self, max_speed: float) -> tuple[csr_matrix, float | None]:
        """Lanes reversed (so one Dijkstra from the goal times every start), weighted by
        travel time; plus that time when it is the same for every lane."""
        with self._lock:
            if max_speed in self._reverse_graphs:
                return self._reverse_graphs[max_speed]
            weight = self.edge_length / np.minimum(self.edge_speed, max_speed)
            graph = csr_matrix((weight, (self.edge_to, self.edge_from)),
                               shape=(self.num_vertices, self.num_vertices))
            uniform = (float(weight[0]) if len(weight) and np.all(weight == weight[0])
                       else None)
            self._reverse_graphs[max_speed] = (graph, uniform)
            return graph, uniform

    # ----- mutual exclusion

    def reverse_edges(self) -> np.ndarray:
        """int [E]: the edge v -> u for each edge u -> v, or -1 on a one-way lane."""
        return np.array([self._edge_ids.get((v, u), -1) for u, v in
                         zip(self.edge_from.tolist(), self.edge_to.tolist())], dtype=np.int64)

    def is_unit_grid(self) -> bool:
        """True when every vertex is at an integer pose and every lane is 1 m long (as
        built by :meth:`from_grid`): the closed-form exclusion may apply."""
        return self._unit_grid

    def exclusion(self, footprint: Footprint, method: str = "auto") -> "Exclusion":
        """The mutual-exclusion relation between resources for robots of this footprint
        (docs/core-model.md), computed once per footprint and cached.

        ``method``: ``"auto"`` (closed form on unit grids when the footprint fits in a
        disc of radius 1/6 around its reference point, swept shapes otherwise),
        ``"shapely"`` (always swept shapes) or ``"grid"`` (closed form; ValueError when
        it does not apply).
        """
        if method not in ("auto", "shapely", "grid"):
            raise ValueError(f"method must be 'auto', 'shapely' or 'grid', got {method!r}")
        key = (footprint, method)
        with self._lock:  # built once even when several agents ask at the same time
            if key not in self._exclusions:
                self._exclusions[key] = self._build_exclusion(footprint, method)
            return self._exclusions[key]

    def _build_exclusion(self, footprint: Footprint, method: str) -> "Exclusion":
        # The closed form needs neighbouring stars disjoint (L = 2 r <= 1/3, so a star
        # reaches L + r <= 1/2 along a lane) and the footprint to cover its reference
        # point (so a lane's middle meets its endpoints' stars and its reverse lane).
        closed_form = (self.is_unit_grid() and footprint.bounding_radius <= 1 / 6 + 1e-12
                       and footprint._contains_reference_point())
        if method == "grid" and not closed_form:
            raise ValueError("the grid closed form needs unit lanes between integer poses "
                             "and a footprint within 1/6 m of its reference point, got "
                             f"{footprint} on {self}")
        if method != "shapely" and closed_form:
            rows, cols = _grid_exclusive_pairs(self)
        else:
            rows, cols = _swept_exclusive_pairs(self, footprint)
        indptr, indices = _csr(rows, cols, self.num_resources)
        return Exclusion(self, footprint, indptr, indices)


# --------------------------------------------------------------------------- exclusion

class Exclusion:
    """Which resources two robots of one footprint may not hold at the same time.

    Stored as CSR arrays: the resources exclusive with ``r`` are
    ``indices[indptr[r]:indptr[r + 1]]``, sorted. The relation is symmetric; a resource
    with a non-empty shape is exclusive with itself.
    """

    def __init__(self, roadmap: Roadmap, footprint: Footprint, indptr: np.ndarray,
                 indices: np.ndarray):
        self.roadmap = roadmap
        self.footprint = footprint
        self.clearance = 2.0 * footprint.bounding_radius
        indptr.flags.writeable = False
        indices.flags.writeable = False  # of() hands out views into it
        self.indptr, self.indices = indptr, indices
        self._shapes: np.ndarray | None = None

    def of(self, resource: int) -> np.ndarray:
        """Sorted resource ids exclusive with ``resource`` (read-only view)."""
        return self.indices[self.indptr[resource]:self.indptr[resource + 1]]

    def exclusive(self, a: int, b: int) -> bool:
        """True when resources a and b may not be held at overlapping times."""
        row = self.of(a)
        i = np.searchsorted(row, b)
        return bool(i < len(row) and row[i] == b)

    def hold_offset(self, e: int, speed: float) -> float:
        """``c = min(L / s, d / 2)`` for a traversal of edge e at speed s = min(speed,
        speed limit), d = length / s: how long the robot still holds the departure vertex
        (and already holds the arrival vertex before arriving)."""
        s = min(float(speed), float(self.roadmap.edge_speed[e]))
        return min(self.clearance, float(self.roadmap.edge_length[e]) / 2.0) / s

    def geometry(self, resource: int) -> shapely.Geometry:
        """The shape of ``resource`` for this footprint (vertex star / edge middle; empty
        polygon for an empty middle), for display and debugging."""
        if self._shapes is None:
            skeletons, reach = _resource_skeletons(self.roadmap, self.footprint)
            shapes = np.where(reach > 0, shapely.buffer(skeletons, reach, quad_segs=_QUAD_SEGS),
                              skeletons)
            shapes[shapely.is_missing(shapes)] = shapely.Polygon()
            self._shapes = shapes
        return self._shapes[resource]

    def __repr__(self) -> str:
        return (f"Exclusion({self.footprint}, L={self.clearance:g} m, "
                f"{len(self.indices)} exclusive pairs over {self.roadmap})")


def _csr(rows: np.ndarray, cols: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Deduplicated, row-sorted CSR arrays (indptr [n+1], indices) of the pairs."""
    keys = np.unique(rows.astype(np.int64) * n + cols.astype(np.int64))
    rows, cols = np.divmod(keys, n)
    indptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.bincount(rows, minlength=n), out=indptr[1:])
    return indptr, cols


def _grid_exclusive_pairs(roadmap: Roadmap) -> tuple[np.ndarray, np.ndarray]:
    """The closed form on a unit grid with L <= 1/3 (docs/core-model.md, "Reduction to
    classic MAPF"): vertex v ~ {v} + middles of the lanes touching v; edge u -> v ~
    {u -> v, v -> u, u, v}. Returned as both directions of every pair."""
    V, E = roadmap.num_vertices, roadmap.num_edges
    vertices = np.arange(V)
    edges = V + np.arange(E)
    reverse = roadmap.reverse_edges()
    has_reverse = reverse >= 0
    rows = np.concatenate([vertices, edges, edges, edges, roadmap.edge_from, roadmap.edge_to,
                           edges[has_reverse]])
    cols = np.concatenate([vertices, edges, roadmap.edge_from, roadmap.edge_to, edges, edges,
                           V + reverse[has_reverse]])
    return rows, cols


def _resource_skeletons(roadmap: Roadmap, footprint: Footprint
                        ) -> tuple[np.ndarray, np.ndarray]:
    """Every resource's shape as a skeleton dilated by a disc: ``shape[r] =
    skeleton[r] (+) disc(reach[r])``. Returns (skeletons object [V+E], None for an empty
    middle; reach float [V+E]).

    Star of v: the segments from v to min(L, len/2) along each incident lane (v itself
    when isolated), dilated by the bounding radius, because a robot may turn on the spot
    at a vertex. Middle of u -> v: the lane without its first and last L; a disc is
    dilated by its radius, a polygon is swept along the middle facing the direction of
    travel (reach 0).
    """
    V, E = roadmap.num_vertices, roadmap.num_edges
    pos = roadmap.pos
    r_bound = footprint.bounding_radius
    L = 2.0 * r_bound

    # Stars: each lane once per endpoint, whichever direction it runs.
    spokes = np.unique(np.concatenate([
        np.stack([roadmap.edge_from, roadmap.edge_to], axis=1),
        np.stack([roadmap.edge_to, roadmap.edge_from], axis=1)]), axis=0)
    stars = shapely.points(pos)  # isolated vertices keep their point
    if len(spokes):
        start, end = pos[spokes[:, 0]], pos[spokes[:, 1]]
        length = np.linalg.norm(end - start, axis=1)
        tip = start + (end - start) * (np.minimum(L, length / 2) / length)[:, None]
        lines = shapely.linestrings(np.stack([start, tip], axis=1))
        centres = np.unique(spokes[:, 0])
        stars[centres] = shapely.multilinestrings(
            lines, indices=np.searchsorted(centres, spokes[:, 0]))

    # Middles: the part of the lane farther than L from both ends; empty when the lane
    # is not longer than 2L, because then c = d/2 and the edge is never held.
    middles = np.full(E, None, dtype=object)
    has_middle = roadmap.edge_length > 2.0 * L + _DISTANCE_EPS
    edges = np.flatnonzero(has_middle)
    if len(edges) == 0:
        return np.concatenate([stars, middles]), np.full(V + E, r_bound)
    start, end = pos[roadmap.edge_from[edges]], pos[roadmap.edge_to[edges]]
    direction = (end - start) / roadmap.edge_length[edges][:, None]
    a, b = start + L * direction, end - L * direction
    if footprint.radius is not None:
        middles[edges] = shapely.linestrings(np.stack([a, b], axis=1))
        middle_reach = footprint.radius
    else:
        middles[edges] = _swept_polygons(np.array(footprint.polygon), a, b, direction)
        middle_reach = 0.0

    skeletons = np.concatenate([stars, middles])
    reach = np.concatenate([np.full(V, r_bound), np.full(E, middle_reach)])
    return skeletons, reach


def _swept_polygons(polygon: np.ndarray, a: np.ndarray, b: np.ndarray,
                    direction: np.ndarray) -> np.ndarray:
    """The area covered by ``polygon`` (robot frame) driven from a[i] to b[i] facing
    ``direction[i]``: the Minkowski sum of the rotated polygon and the segment."""
    cos, sin = direction[:, 0], direction[:, 1]
    rotated = np.stack([polygon[None, :, 0] * cos[:, None] - polygon[None, :, 1] * sin[:, None],
                        polygon[None, :, 0] * sin[:, None] + polygon[None, :, 1] * cos[:, None]],
                       axis=2)                                          # [n, k, 2]
    at_a, at_b = rotated + a[:, None, :], rotated + b[:, None, :]
    shape = shapely.Polygon(polygon)
    if shape.convex_hull.area - shape.area <= _AREA_EPS:
        # Convex: the sweep is the hull of the polygon at both ends.
        hulls: np.ndarray = shapely.convex_hull(
            shapely.multipoints(np.concatenate([at_a, at_b], axis=1)))
        return hulls
    # Non-convex: both end copies plus the parallelogram each polygon side sweeps.
    swept = []
    k = len(polygon)
    for i in range(len(a)):
        parts = [shapely.Polygon(at_a[i]), shapely.Polygon(at_b[i])]
        for j in range(k):
            p, q = at_a[i, j], at_a[i, (j + 1) % k]
            side = q - p
            if abs(side[0] * (b[i] - a[i])[1] - side[1] * (b[i] - a[i])[0]) > _AREA_EPS:
                parts.append(shapely.Polygon([p, q, q + b[i] - a[i], p + b[i] - a[i]]))
        swept.append(shapely.union_all(parts))
    return np.array(swept, dtype=object)


def _swept_exclusive_pairs(roadmap: Roadmap, footprint: Footprint
                           ) -> tuple[np.ndarray, np.ndarray]:
    """Exclusive pairs from the swept shapes, both directions.

    A disc-dilated skeleton overlaps another shape with positive area exactly when the
    skeletons are closer than the summed reach, so for discs the test is a distance and
    exact (no polygonised circles); two swept polygons (reach 0) are tested by the area
    of their intersection. An STRtree proposes the candidate pairs.
    """
    skeletons, reach = _resource_skeletons(roadmap, footprint)
    if len(skeletons) == 0:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    present = np.flatnonzero(~shapely.is_missing(skeletons))
    tree = shapely.STRtree(skeletons[present])
    query, found = tree.query(skeletons[present], predicate="dwithin",
                              distance=reach[present] + reach.max())
    i, j = present[query], present[found]
    keep = i <= j  # each unordered pair once; mirrored below
    i, j = i[keep], j[keep]

    reach_sum = reach[i] + reach[j]
    dilated = reach_sum > 0
    exclusive = np.zeros(len(i), dtype=bool)
    exclusive[dilated] = (shapely.distance(skeletons[i[dilated]], skeletons[j[dilated]])
                          < reach_sum[dilated] - _DISTANCE_EPS)
    bare = ~dilated
    exclusive[bare] = shapely.area(shapely.intersection(skeletons[i[bare]],
                                                        skeletons[j[bare]])) > _AREA_EPS
    i, j = i[exclusive], j[exclusive]
    return np.concatenate([i, j]), np.concatenate([j, i])

"""Loading what every fleet node shares: the roadmap and its footprint exclusion.

The full fleet config (robots, backends, per-node parameters) grows here; every node
that needs the roadmap gets it through `load_roadmap_and_exclusion`, so the traffic
authority and all agents index resources the same way (`roadmap_id` checks that).
"""
from __future__ import annotations

import functools
import hashlib
import os

from fleet_coord.core.roadmap import Exclusion, Footprint, Roadmap, load_movingai_map

PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))
REPO_DIR = os.path.dirname(PACKAGE_DIR)
DEFAULT_MAP = os.path.join(REPO_DIR, "config", "maps", "warehouse.map")


def resolve_map(path: str) -> str:
    """An empty path means the bundled warehouse map; a relative path is tried as given,
    then under the package's config/maps."""
    if not path:
        return DEFAULT_MAP
    if os.path.exists(path):
        return path
    bundled = os.path.join(REPO_DIR, "config", "maps", path)
    if os.path.exists(bundled):
        return bundled
    raise FileNotFoundError(f"map file {path!r} not found (also looked in {os.path.dirname(bundled)})")


def load_roadmap(path: str) -> Roadmap:
    path = resolve_map(path)
    if path.endswith((".yaml", ".yml")):
        return Roadmap.from_yaml(path)
    return Roadmap.from_grid(load_movingai_map(path))


@functools.lru_cache(maxsize=8)
def load_roadmap_and_exclusion(path: str, footprint_radius: float) -> tuple[Roadmap, Exclusion, str]:
    """(roadmap, exclusion for a circular footprint, roadmap_id). Cached per process, so
    many agents in one process share one roadmap."""
    path = resolve_map(path)
    roadmap = load_roadmap(path)
    exclusion = roadmap.exclusion(Footprint(radius=footprint_radius))
    with open(path, "rb") as f:
        digest = hashlib.sha256(f.read() + repr(float(footprint_radius)).encode()).hexdigest()
    return roadmap, exclusion, digest[:16]

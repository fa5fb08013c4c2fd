"""Planning for one robot and for a fleet: the public face of the planner.

- ``path_to_segments`` (``timed_path``): a timed path -> the reservations it holds.
- ``sipp`` (``sipp``): Safe Interval Path Planning for one robot against the table.
- ``grid_sipp`` (``grid_sipp``): the same in integer time on unit grids (classic MAPF),
  against a ``UnitGridTable``; ``plan_prioritized`` uses it where it is exact.
- ``plan_prioritized`` (``prioritized``): a conflict-free plan for a whole fleet.

See docs/core-model.md for the model these share.
"""
from .grid_sipp import UnitGridTable, grid_sipp, unit_grid_model
from .prioritized import MultiPlan, plan_prioritized
from .sipp import MotionModel, motion_model, sipp
from .timed_path import (Segment, TimedPath, path_cost, path_to_segments,
                         vertices_at_unit_times)

__all__ = ["MultiPlan", "MotionModel", "Segment", "TimedPath", "UnitGridTable", "grid_sipp",
           "motion_model", "path_cost", "path_to_segments", "plan_prioritized", "sipp",
           "unit_grid_model", "vertices_at_unit_times"]

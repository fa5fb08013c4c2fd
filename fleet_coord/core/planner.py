"""Planning for one robot and for a fleet: the public face of the planner.

- ``path_to_segments`` (``timed_path``): a timed path -> the reservations it holds.
- ``sipp`` (``sipp``): Safe Interval Path Planning for one robot against the table.
- ``plan_prioritized`` (``prioritized``): a conflict-free plan for a whole fleet.

See docs/core-model.md for the model these share.
"""
from .prioritized import MultiPlan, plan_prioritized
from .sipp import MotionModel, motion_model, sipp
from .timed_path import (Segment, TimedPath, path_cost, path_to_segments,
                         vertices_at_unit_times)

__all__ = ["MultiPlan", "MotionModel", "Segment", "TimedPath", "motion_model", "path_cost",
           "path_to_segments", "plan_prioritized", "sipp", "vertices_at_unit_times"]

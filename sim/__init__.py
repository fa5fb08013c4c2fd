"""PyBullet simulation backend: a world built from a map, differential-drive robots in
kinematic or physics mode, contact counting (:mod:`fleet_coord_sim.world`, :mod:`fleet_coord_sim.robots`,
:mod:`fleet_coord_sim.contacts`) and the ROS 2 node that owns it and publishes ``/clock``
(:mod:`fleet_coord_sim.sim_node`, imported separately so the world works without ROS)."""
from fleet_coord_sim.contacts import ContactCounter, ContactEvent
from fleet_coord_sim.world import MODES, SimWorld, merge_blocked_cells

__all__ = ["SimWorld", "ContactCounter", "ContactEvent", "MODES", "merge_blocked_cells"]

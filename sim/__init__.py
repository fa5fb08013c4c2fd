"""PyBullet simulation backend: a world built from a map, differential-drive robots in
kinematic or physics mode, contact counting (:mod:`sim.world`, :mod:`sim.robots`,
:mod:`sim.contacts`) and the ROS 2 node that owns it and publishes ``/clock``
(:mod:`sim.sim_node`, imported separately so the world works without ROS)."""
from sim.contacts import ContactCounter, ContactEvent
from sim.world import MODES, SimWorld, merge_blocked_cells

__all__ = ["SimWorld", "ContactCounter", "ContactEvent", "MODES", "merge_blocked_cells"]

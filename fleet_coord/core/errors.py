"""Errors that end a fleet process for good.

A process that crashes is restarted by its launcher (`fleet-coord launch`'s `restart`
policy, systemd, a launch file's respawn). That helps with a transient fault; it does not
help when what the process was given cannot be used - a corrupted task ledger, a
parameter out of range - and only turns a clear message into a crash loop. Such errors
derive from `CannotStart`: `fleet_coord.spin.run_nodes` prints the message and exits with
`EXIT_CANNOT_START`, which the launcher does not restart.

Pure core: no rclpy.
"""
from __future__ import annotations

__all__ = ["CannotStart", "EXIT_CANNOT_START"]

#: Exit status of a process that refused to start (sysexits.h EX_CONFIG).
EXIT_CANNOT_START = 78


class CannotStart(Exception):
    """What the process was started with cannot be used, and starting it again will not
    change that. The message names the input and what to do."""

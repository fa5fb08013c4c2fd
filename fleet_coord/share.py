"""Files the package ships (configs, maps, the robot URDF, the RViz config): `share_path`
finds them in a source checkout (next to the package) or, on an install (colcon, a
non-editable pip install), in the package's share directory, share/fleet_coord."""
from __future__ import annotations

import os
import sys

PACKAGE = "fleet_coord"
_CHECKOUT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def package_share_dirs(package: str = PACKAGE) -> list[str]:
    """Where an installed package's share/<package> may be: the ament index's (a ROS
    install, a sourced workspace), then this Python prefix's (a pip install, the venv)."""
    dirs = []
    try:
        from ament_index_python.packages import get_package_share_directory
        dirs.append(get_package_share_directory(package))
    except (ImportError, LookupError, OSError, ValueError):
        # not in an ament index: a plain pip install, or AMENT_PREFIX_PATH unset
        pass
    dirs.append(os.path.join(sys.prefix, "share", package))
    return dirs


def share_path(*parts: str) -> str:
    """The shipped file share/fleet_coord/<parts...> (e.g. "config", "fleet_demo.yaml").
    Returns the source checkout's path when the file is nowhere, so an error names it."""
    rel = os.path.join(*parts)
    local = os.path.join(_CHECKOUT, rel)
    if os.path.exists(local):
        return local
    for base in package_share_dirs():
        path = os.path.join(base, rel)
        if os.path.exists(path):
            return path
    return local

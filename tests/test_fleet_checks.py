"""The tests' independent oracle (fleet_checks.Containment) sees every robot: one that
drives before it ever held anything, and one that held something and now holds nothing."""
import math

from fleet_checks import TOLERANCE_M, Containment
from fleet_coord.core.roadmap import Footprint, Roadmap, load_movingai_map


def _exclusion(tmp_path):
    (tmp_path / "room.map").write_text("type octile\nheight 3\nwidth 5\nmap\n@@@@@\n@...@\n@@@@@\n")
    roadmap = Roadmap.from_grid(load_movingai_map(str(tmp_path / "room.map")))
    return roadmap, roadmap.exclusion(Footprint(radius=0.15))


def test_a_robot_holding_nothing_is_checked_too(tmp_path):
    roadmap, exclusion = _exclusion(tmp_path)
    c = Containment(exclusion)
    v = roadmap.vertex("1,1")
    # not joined yet: standing where it was first seen is fine, driving is not
    assert c.error("a", [], 1.0, 1.0, 0.0) == 0.0
    assert c.error("a", [], 1.0, 1.0, 1.0) == 0.0
    assert c.error("a", [], 1.5, 1.0, 2.0) > TOLERANCE_M
    # joined: inside its hold is fine, holding nothing is an excursion even standing still
    assert c.error("b", [(v, 0.0, math.inf)], 1.0, 1.0, 0.0) <= TOLERANCE_M
    assert c.error("b", [], 1.0, 1.0, 1.0) == math.inf
    # outside the only thing it holds
    assert c.error("b", [(v, 0.0, math.inf)], 3.0, 1.0, 2.0) > TOLERANCE_M

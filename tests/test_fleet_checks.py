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


class _Node:
    """Collects the Monitor's subscriptions (a unit test of the oracle's bookkeeping; the
    Monitor runs over real DDS in every fleet test)."""

    def __init__(self):
        self.callbacks = {}

    def create_subscription(self, _type, topic, callback, _qos):
        self.callbacks[topic] = callback


def _fed_monitor(tmp_path):
    """A Monitor on a 3-cell corridor, with functions that feed it one robot's updates and
    odometry as its subscriptions would."""
    from builtin_interfaces.msg import Time
    from fleet_coord_msgs.msg import ReservationSet
    from nav_msgs.msg import Odometry

    from fleet_checks import Monitor
    from fleet_coord.convert import segment_msg

    (tmp_path / "room.map").write_text("type octile\nheight 3\nwidth 5\nmap\n@@@@@\n@...@\n@@@@@\n")
    node = _Node()
    m = Monitor(node, ["a"], str(tmp_path / "room.map"), every=1)

    def update(version, stamp, added=(), removed=(), snapshot=False, epoch=0,
               recovering=False):
        node.callbacks["/traffic/updates"](ReservationSet(
            version=version, robot="a", is_snapshot=snapshot, stamp=Time(sec=stamp),
            epoch=epoch, recovering=recovering,
            added=[segment_msg("a", *s) for s in added],
            removed=[segment_msg("a", *s) for s in removed]))

    def odom(t, x, y):
        msg = Odometry()
        msg.header.stamp = Time(sec=int(t), nanosec=int(round((t % 1) * 1e9)))
        msg.pose.pose.position.x, msg.pose.pose.position.y = float(x), float(y)
        node.callbacks["/a/odom"](msg)

    return m, update, odom


def test_the_monitor_judges_a_sample_on_the_updates_published_up_to_its_time(tmp_path):
    m, update, odom = _fed_monitor(tmp_path)
    v11, v31 = m.roadmap.vertex("1,1"), m.roadmap.vertex("3,1")
    update(1, 1, added=[(v11, 0.0, math.inf)], snapshot=True)
    # the grant to drive to 3,1 from t=2 was published at t=1 but reaches the monitor after
    # the robot's sample at t=2.5 (a restarted authority's history, say): no excursion
    odom(2.5, 3.0, 1.0)
    update(2, 1, removed=[(v11, 0.0, math.inf)], added=[(v11, 0.0, 2.0), (v31, 2.0, math.inf)])
    assert m._pending and m._samples == 0          # nothing published after 2.5 yet
    update(3, 3)
    assert (m._samples, m._excursions, m._pending) == (1, [], [])
    # a release published after a sample does not count against it
    odom(3.5, 3.0, 1.0)
    update(4, 4, removed=[(v31, 2.0, math.inf)], added=[(v31, 2.0, 3.8), (v11, 3.8, math.inf)])
    update(5, 5)
    assert (m._samples, m._excursions) == (2, [])
    # still at 3,1 at t=5.5, which it no longer holds: an excursion
    odom(5.5, 3.0, 1.0)
    update(6, 6)
    assert [e[:2] for e in m.excursions] == [("a", 5.5)]
    # a delta after a missed one: what came before it is unchecked, not judged
    odom(6.5, 3.0, 1.0)
    update(8, 7)
    assert m.unchecked == 1 and m.replica.stale
    update(9, 8, added=[(v11, 3.8, math.inf)], snapshot=True)
    # a sample still pending at the end of a run is judged when read
    odom(9.0, 1.0, 1.0)
    assert m.samples == 4 and len(m.excursions) == 1


def test_during_a_recovery_the_monitor_judges_on_what_was_held_before_the_restart(tmp_path):
    m, update, odom = _fed_monitor(tmp_path)
    v11, v21 = m.roadmap.vertex("1,1"), m.roadmap.vertex("2,1")
    update(1, 1, added=[(v11, 0.0, math.inf)], snapshot=True, epoch=7)
    # the authority restarts without its table; the robot has not re-asserted yet: it may
    # stand where it held before, not anywhere else
    update(1, 2, snapshot=True, epoch=8, recovering=True)
    odom(2.5, 1.0, 1.0)
    odom(2.6, 3.0, 1.0)
    update(2, 3, added=[(v11, 0.0, math.inf)], epoch=8, recovering=True)
    assert (m._samples, m.unchecked) == (2, 0)
    assert [e[:2] for e in m._excursions] == [("a", 2.6)]
    # the recovery ended: only the new table counts
    update(3, 4, removed=[(v11, 0.0, math.inf)], added=[(v11, 0.0, 4.5), (v21, 4.5, math.inf)],
           epoch=8)
    odom(5.0, 1.0, 1.0)
    update(4, 6, epoch=8)
    assert [e[:2] for e in m._excursions] == [("a", 2.6), ("a", 5.0)]
    # a gap before the next restart: that incarnation's table was not whole, so what is
    # judged during the next recovery is unchecked
    update(6, 7, epoch=8)
    update(1, 8, snapshot=True, epoch=9, recovering=True)
    odom(8.5, 3.0, 1.0)
    update(2, 9, epoch=9, recovering=True)
    assert m.unchecked == 1 and len(m._excursions) == 2


def test_the_monitor_on_tf_judges_each_robot_of_a_driver_message_like_its_odometry(tmp_path):
    from builtin_interfaces.msg import Time
    from fleet_coord_msgs.msg import ReservationSet
    from tf2_msgs.msg import TFMessage

    from fleet_checks import Monitor
    from fleet_coord.convert import segment_msg
    from fleet_coord.frames import transform

    (tmp_path / "room.map").write_text("type octile\nheight 3\nwidth 5\nmap\n@@@@@\n@...@\n@@@@@\n")
    node = _Node()
    m = Monitor(node, ["a", "b"], str(tmp_path / "room.map"), source="tf")
    assert set(node.callbacks) == {"/traffic/updates", "/tf"}
    v11, v31 = m.roadmap.vertex("1,1"), m.roadmap.vertex("3,1")
    node.callbacks["/traffic/updates"](ReservationSet(
        version=1, robot="a", is_snapshot=True, stamp=Time(sec=1),
        added=[segment_msg("a", v11, 0.0, math.inf), segment_msg("b", v31, 0.0, math.inf)]))
    stamp = Time(sec=2)
    # one driver message for both robots, and a frame that is no robot of the monitor's
    node.callbacks["/tf"](TFMessage(transforms=[
        transform("a/odom", "a/base_link", 1.0, 1.0, 0.0, stamp),
        transform("b/odom", "b/base_link", 1.0, 1.0, 0.0, stamp),
        transform("c/odom", "c/base_link", 9.0, 9.0, 0.0, stamp)]))
    assert m.samples == 2
    assert [e[:2] for e in m.excursions] == [("b", 2.0)]   # b holds 3,1 only


def test_the_monitor_refuses_an_unknown_pose_source(tmp_path):
    import pytest

    from fleet_checks import Monitor
    (tmp_path / "room.map").write_text("type octile\nheight 3\nwidth 5\nmap\n@@@@@\n@...@\n@@@@@\n")
    with pytest.raises(ValueError, match="'gps'"):
        Monitor(_Node(), ["a"], str(tmp_path / "room.map"), source="gps")

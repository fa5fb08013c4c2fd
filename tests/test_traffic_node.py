"""The traffic node over real DDS: atomic Reserve, refusals naming the conflict, replicas
kept in sync from /traffic/updates, and a silent robot declared lost within the bound
with its spot kept blocked."""
import math
import time

import pytest

rclpy = pytest.importorskip("rclpy", reason="rclpy is installed by `make setup`")
msgs = pytest.importorskip("fleet_coord_msgs.msg", reason="fleet_coord_msgs is built by `make setup`")
from fleet_coord_msgs.msg import (ReservationSegment, ReservationSet,  # noqa: E402
                                  RobotNotice, RobotState)
from fleet_coord_msgs.srv import Release, Reserve  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402

from fleet_coord import qos  # noqa: E402
from fleet_coord.core.traffic import WatchOdometry  # noqa: E402
from fleet_coord.fleet_config import load_roadmap_and_exclusion  # noqa: E402
from fleet_coord.table_replica import TableReplica  # noqa: E402
from fleet_coord.traffic import TrafficNode  # noqa: E402
from rosutil import ros_context, spin_until  # noqa: E402

INF = math.inf
# these tests start the authority themselves: nothing was granted before, nothing to recover
FRESH = Parameter("recovery_window", value=0.0)


def _call(ex, client, req, timeout=10.0):
    assert client.wait_for_service(timeout_sec=timeout)
    fut = client.call_async(req)
    assert spin_until(ex, fut.done, timeout)
    return fut.result()


def _segs(robot, *holds):
    return [ReservationSegment(robot=robot, resource=r, t_start=float(a), t_end=float(b))
            for r, a, b in holds]


def test_reserve_release_and_replica_sync_over_dds():
    roadmap, exclusion, rid = load_roadmap_and_exclusion("", 0.15)
    with ros_context() as (ctx, ex):
        traffic = TrafficNode(context=ctx, parameter_overrides=[Parameter("lost_after", value=1.0), FRESH])
        client = rclpy.create_node("agent_probe", context=ctx)
        replica = TableReplica(exclusion.of, roadmap.num_resources, rid)
        on_update = replica.apply
        client.create_subscription(ReservationSet, "/traffic/updates", on_update, qos.TABLE)
        reserve = client.create_client(Reserve, "/traffic/reserve")
        release = client.create_client(Release, "/traffic/release")
        ex.add_node(traffic)
        ex.add_node(client)

        v = roadmap.vertex_at(1, 1)
        w = roadmap.vertex_at(2, 1)
        r1 = _call(ex, reserve, Reserve.Request(robot="a", roadmap_id=rid,
                                                segments=_segs("a", (v, 0, 10), (w, 10, INF))))
        assert r1.ok and r1.error == Reserve.Response.ERROR_NONE
        # b wants w while a is parked there: refused, naming a's hold
        r2 = _call(ex, reserve, Reserve.Request(robot="b", segments=_segs("b", (w, 20, 30))))
        assert not r2.ok and r2.error == Reserve.Response.ERROR_CONFLICT
        assert r2.conflicting_segment.robot == "a" and r2.conflicting_segment.resource == w
        assert "a" in r2.message
        # a roadmap mismatch is refused before anything is looked at
        r3 = _call(ex, reserve, Reserve.Request(robot="b", roadmap_id="other",
                                                segments=_segs("b", (v, 50, 60))))
        assert r3.error == Reserve.Response.ERROR_ROADMAP_MISMATCH
        # a releases from t=15 on: b's request now fits
        rel = _call(ex, release, Release.Request(robot="a", only_after=True, after=15.0))
        assert rel.released >= 1
        assert _call(ex, reserve, Reserve.Request(robot="b", segments=_segs("b", (w, 20, 30)))).ok
        # the replica converges to the authority's table
        auth = traffic.authority.table
        assert spin_until(ex, lambda: replica.version == auth.version, 10)
        assert replica.table.snapshot() == auth.snapshot()


def test_a_stale_replica_asks_for_the_table_and_gets_a_snapshot_at_once():
    """A replica that missed a delta asks on /traffic/resync (table_replica.ResyncRequester,
    as the agents' and the dispatcher's do) and the node answers with a snapshot out of
    turn: current again in well under a second, not at the next periodic snapshot (here
    a minute away)."""
    from fleet_coord.table_replica import ResyncRequester
    roadmap, exclusion, rid = load_roadmap_and_exclusion("", 0.15)
    with ros_context() as (ctx, ex):
        traffic = TrafficNode(context=ctx, parameter_overrides=[
            Parameter("snapshot_period", value=60.0), FRESH])
        client = rclpy.create_node("agent_probe", context=ctx)
        replica = TableReplica(exclusion.of, roadmap.num_resources, rid)
        client.create_subscription(ReservationSet, "/traffic/updates", replica.apply, qos.TABLE)
        ResyncRequester(client, lambda name: name, "agent_probe", lambda: [replica.core])
        reserve = client.create_client(Reserve, "/traffic/reserve")
        ex.add_node(traffic)
        ex.add_node(client)
        assert spin_until(ex, lambda: not replica.stale, 10)   # the start snapshot
        v = roadmap.vertex_at(1, 1)
        replica.core.stale = True            # as after a lost delta
        assert _call(ex, reserve, Reserve.Request(robot="a", roadmap_id=rid,
                                                  segments=_segs("a", (v, 0, INF)))).ok
        t0 = time.monotonic()
        assert spin_until(ex, lambda: not replica.stale, 5), "no snapshot out of turn"
        assert time.monotonic() - t0 < 3.0
        assert replica.table.snapshot() == traffic.authority.table.snapshot()


def test_silent_robot_is_declared_lost_and_its_spot_stays_blocked():
    roadmap, _, _ = load_roadmap_and_exclusion("", 0.15)
    with ros_context() as (ctx, ex):
        traffic = TrafficNode(context=ctx, parameter_overrides=[Parameter("lost_after", value=1.0), FRESH])
        robot = rclpy.create_node("robot_x", context=ctx)
        probe = rclpy.create_node("probe", context=ctx)
        lost = []
        probe.create_subscription(RobotNotice, "/fleet/robot_lost", lambda m: lost.append(
            (m.robot, time.monotonic())), qos.PROTOCOL)
        state = robot.create_publisher(RobotState, "/fleet/robot_states", qos.state_qos())
        reserve = probe.create_client(Reserve, "/traffic/reserve")
        ex.add_node(traffic)
        ex.add_node(robot)
        ex.add_node(probe)
        v = roadmap.vertex_at(3, 1)
        now = traffic.now()
        assert _call(ex, reserve, Reserve.Request(
            robot="x",
            segments=_segs("x", (v, now, now + 0.5), (roadmap.vertex_at(4, 1), now + 0.5, INF)))).ok
        for _ in range(10):  # x speaks for a while...
            state.publish(RobotState(robot="x"))
            spin_until(ex, lambda: False, 0.05)
        silent_since = time.monotonic()  # ...then falls silent
        assert spin_until(ex, lambda: lost, 5.0)
        assert lost[0][0] == "x"
        assert lost[0][1] - silent_since <= 1.0 + 0.6  # bound + check period + DDS slack
        # x's spot (where it was at the moment it was lost) is blocked for everyone
        held = [r for r in traffic.authority.table.reservations("x") if r.t_end == INF]
        assert held, "the lost robot's spot must stay blocked"
        spot = held[0].resource
        r = _call(ex, reserve, Reserve.Request(robot="y", segments=_segs("y", (spot, now + 100, now + 101))))
        assert not r.ok and r.conflicting_segment.robot == "x"
        # and x itself cannot reserve while lost
        r = _call(ex, reserve, Reserve.Request(robot="x", segments=_segs("x", (v, now + 200, now + 201))))
        assert not r.ok and "lost" in r.message


def test_ended_reservations_leave_the_table_and_the_replicas():
    """Before each snapshot the authority drops what ended more than `keep_history` s ago,
    as ordinary deltas: the replica follows, what is current or ahead stays."""
    roadmap, exclusion, rid = load_roadmap_and_exclusion("", 0.15)
    with ros_context() as (ctx, ex):
        traffic = TrafficNode(context=ctx, parameter_overrides=[
            Parameter("keep_history", value=1.0), Parameter("snapshot_period", value=0.5), FRESH])
        client = rclpy.create_node("agent_probe", context=ctx)
        replica = TableReplica(exclusion.of, roadmap.num_resources, rid)
        client.create_subscription(ReservationSet, "/traffic/updates", replica.apply, qos.TABLE)
        reserve = client.create_client(Reserve, "/traffic/reserve")
        ex.add_node(traffic)
        ex.add_node(client)
        v, w, u = roadmap.vertex_at(1, 1), roadmap.vertex_at(2, 1), roadmap.vertex_at(5, 1)
        now = traffic.now()
        r = _call(ex, reserve, Reserve.Request(robot="a", roadmap_id=rid, segments=_segs(
            "a", (v, now - 5.0, now - 2.0), (w, now - 2.0, now + 100.0), (u, now + 100.0, INF))))
        assert r.ok, r.message
        assert spin_until(ex, lambda: len(traffic.authority.table.reservations("a")) == 2
                          and not replica.stale
                          and len(replica.table.reservations("a")) == 2, 5.0), \
            (traffic.authority.table.reservations("a"), replica.table.reservations("a"))
        assert {x.resource for x in replica.table.reservations("a")} == {w, u}
        assert replica.version == traffic.authority.table.version


def test_locating_lost_robots_over_and_over_leaves_nothing_behind():
    """Each loss subscribes to the lost robot's odometry and each return unsubscribes.
    rclpy keeps a reference per entity ever added to a callback group; the traffic node
    drops it, so thousands of losses in a long run (bench/load.py saw ~2000 in 8 min on an
    overloaded machine) do not add up."""
    with ros_context() as (ctx, ex):
        node = TrafficNode(context=ctx, parameter_overrides=[Parameter("map", value="")])
        ex.add_node(node)
        group = node.default_callback_group
        before = len(group.entities)
        for i in range(200):
            node._do([WatchOdometry(f"robot_{i % 7}", True)])
            node._do([WatchOdometry(f"robot_{i % 7}", False)])
        # (the last one's event handlers may still be alive: a few, not two per loss)
        assert len(group.entities) < before + 10, len(group.entities) - before
        assert node._odom_subs == {}
        assert not [s for s in node.subscriptions if s.topic_name.endswith("/odom")]

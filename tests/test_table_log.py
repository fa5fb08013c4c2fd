"""The traffic authority's table log: what was granted survives a crash, versions
continue, a torn last write is ignored, another roadmap's log is refused; and a traffic
node restarted on its log refuses what clashes with reservations granted before."""
import json
import math

import pytest

from fleet_coord.core.reservations import ReservationTable
from fleet_coord.core.table_log import TableLog, TableLogError
from fleet_coord.fleet_config import load_roadmap_and_exclusion

INF = math.inf


@pytest.fixture(scope="module")
def world():
    roadmap, exclusion, rid = load_roadmap_and_exclusion("", 0.15)
    return roadmap, exclusion, rid


def _authority_run(world, path, fsync=False):
    roadmap, exclusion, rid = world
    log = TableLog(str(path), rid, fsync=fsync)
    assert log.load(exclusion.of, roadmap.num_resources) is None
    table = ReservationTable(exclusion.of, roadmap.num_resources)
    log.start(table)
    v1, v2 = roadmap.vertex_at(1, 1), roadmap.vertex_at(5, 5)
    assert table.commit("r1", [(v1, 0.0, INF)]).ok
    log.append(table.drain_updates())
    assert table.commit("r2", [(v2, 0.0, 10.0)]).ok
    table.release("r2", after=4.0)
    log.append(table.drain_updates(), lost={"r3"})
    return table, log, (v1, v2)


def test_reload_gives_the_same_table_and_version(world, tmp_path):
    roadmap, exclusion, rid = world
    table, log, (v1, v2) = _authority_run(world, tmp_path / "t.jsonl")
    log.close()  # a kill: nothing more is written
    rec = TableLog(str(tmp_path / "t.jsonl"), rid).load(exclusion.of, roadmap.num_resources)
    assert rec.table.version == table.version == 3
    assert rec.table.snapshot() == table.snapshot()
    assert rec.lost == {"r3"} and rec.updates == 3
    # the reloaded authority refuses what the dead one granted to someone else
    assert not rec.table.commit("r9", [(v1, 100.0, 101.0)]).ok
    assert rec.table.commit("r9", [(v2, 5.0, 6.0)]).ok      # r2 released after t=4


def test_a_torn_last_line_is_ignored_but_corruption_in_the_middle_is_an_error(world, tmp_path):
    roadmap, exclusion, rid = world
    path = tmp_path / "t.jsonl"
    table, log, _ = _authority_run(world, path)
    log.close()
    with open(path, "ab") as f:
        f.write(b'{"update": {"version": 4, "rob')           # crash mid-write
    rec = TableLog(str(path), rid).load(exclusion.of, roadmap.num_resources)
    assert rec.table.version == 3
    lines = path.read_bytes().split(b"\n")
    lines[2] = b"garbage"
    path.write_bytes(b"\n".join(lines))
    with pytest.raises(TableLogError, match="corrupt"):
        TableLog(str(path), rid).load(exclusion.of, roadmap.num_resources)


def test_another_roadmaps_log_is_refused_with_what_to_do(world, tmp_path):
    roadmap, exclusion, rid = world
    _, log, _ = _authority_run(world, tmp_path / "t.jsonl")
    log.close()
    with pytest.raises(TableLogError, match="move the old log away"):
        TableLog(str(tmp_path / "t.jsonl"), "other-roadmap").load(exclusion.of, roadmap.num_resources)


def test_compaction_keeps_the_state_in_one_snapshot(world, tmp_path):
    roadmap, exclusion, rid = world
    path = tmp_path / "t.jsonl"
    table, log, _ = _authority_run(world, path)
    log.compact(table, {"r3"})
    log.close()
    lines = [json.loads(x) for x in path.read_text().splitlines()]
    assert [list(x)[0] for x in lines] == ["header", "snapshot"]
    rec = TableLog(str(path), rid).load(exclusion.of, roadmap.num_resources)
    assert rec.table.snapshot() == table.snapshot() and rec.lost == {"r3"}


def test_restarted_traffic_node_keeps_grants_and_continues_versions(world, tmp_path):
    rclpy = pytest.importorskip("rclpy", reason="rclpy is installed by `make setup`")
    pytest.importorskip("fleet_coord_msgs.msg", reason="fleet_coord_msgs is built by `make setup`")
    from fleet_coord_msgs.msg import ReservationSegment
    from fleet_coord_msgs.srv import Reserve
    from rclpy.parameter import Parameter
    from fleet_coord.traffic import TrafficNode
    from rosutil import ros_context, spin_until

    roadmap, exclusion, rid = world
    v = int(roadmap.vertex_at(2, 2))
    params = [Parameter("table_log", value=str(tmp_path / "table.jsonl")),
              Parameter("lost_after", value=60.0)]

    def reserve(ex, client, robot):
        req = Reserve.Request(robot=robot, roadmap_id=rid)
        req.segments = [ReservationSegment(robot=robot, resource=v, t_start=0.0, t_end=INF)]
        assert client.wait_for_service(timeout_sec=10)
        fut = client.call_async(req)
        assert spin_until(ex, fut.done, 10)
        return fut.result()

    with ros_context() as (ctx, ex):
        first = TrafficNode(context=ctx, parameter_overrides=params)
        probe = rclpy.create_node("probe", context=ctx)
        client = probe.create_client(Reserve, "/traffic/reserve")
        ex.add_node(first)
        ex.add_node(probe)
        r = reserve(ex, client, "r1")
        assert r.ok
        version = r.version
        ex.remove_node(first)
        first.destroy_node()
        second = TrafficNode(context=ctx, parameter_overrides=params)
        ex.add_node(second)
        assert second.authority.table.version == version
        # r1 is judged silent from the first robot state the new node hears (pure test below)
        assert set(second.authority.table.robots()) == {"r1"}
        r = reserve(ex, client, "r2")
        assert not r.ok and r.error == Reserve.Response.ERROR_CONFLICT
        assert r.conflicting_segment.robot == "r1"


def test_a_table_reloaded_from_its_log_keeps_its_epoch(world, tmp_path):
    # the same table goes on: replicas and robots see no new incarnation (no resync, no
    # re-assertions); a new log takes the epoch of the incarnation that starts it
    from fleet_coord.core.traffic import TrafficAuthority
    roadmap, exclusion, rid = world
    path = str(tmp_path / "table.log")

    def start(now, epoch):
        return TrafficAuthority.recover(TableLog(path, rid, fsync=False), exclusion,
                                        roadmap.num_resources, now, roadmap_id=rid,
                                        epoch=epoch)
    first = start(0.0, 7)
    assert first.epoch == 7 and first.request("a", [(roadmap.vertex_at(1, 1), 0.0, 5.0)]).ok
    first.drain()
    again = start(1.0, 99)
    assert again.epoch == 7 and len(again.table) == 1 and again.table.version == 1


def test_reloaded_robots_are_judged_from_when_their_host_could_be_heard(world, tmp_path):
    # a restarted process hears nobody until DDS has discovered it, and hosts are
    # discovered one by one, seconds apart on a loaded machine: nobody is judged before a
    # state is heard, a robot whose host is found after the first state heard is not lost
    # for that (the soak's false losses); one that never speaks is lost lost_after s after
    # the last discovery, and discoveries postpone that by at most discovery_grace s
    from fleet_coord.core.traffic import RobotLost, TrafficAuthority
    roadmap, exclusion, rid = world
    path = str(tmp_path / "table.log")

    def start(now):
        return TrafficAuthority.recover(TableLog(path, rid, fsync=False), exclusion,
                                        roadmap.num_resources, now, roadmap_id=rid,
                                        lost_after=1.5, discovery_grace=5.0, epoch=3)
    first = start(0.0)
    for i, r in enumerate(("a", "b", "c", "d")):
        assert first.request(r, [(roadmap.vertex_at(1 + 4 * i, 1), 0.0, INF)]).ok
    first.drain()
    again = start(100.0)
    assert again.remove_robot("d")[0].ok          # taken out before it was heard
    lost = []

    def run(until, speak=("a",)):
        t = run.t
        while t < until - 1e-9:
            t = round(t + 0.1, 1)
            for r in speak:
                again.on_robot_state(t, r)
            lost.extend(a.robot for a in again.tick(t) if isinstance(a, RobotLost))
        run.t = t
    assert [a for a in again.tick(104.9) if isinstance(a, RobotLost)] == []
    run.t = 104.9                                  # nobody heard for 4.9 s: nobody judged
    run(105.0)                                     # a's host found first
    again.on_discovery(106.0)                      # b's host 1 s later
    run(107.0)
    assert lost == []                              # b, c not judged from 105
    for t in (107.0, 108.4, 109.8):                # more writers found (c may speak)
        again.on_discovery(t)
        run(t + 1.4, speak=("a", "b"))
        assert lost == [] and "b" in again.liveness.alive()
    run(111.0, speak=("a", "b"))
    again.on_discovery(111.0)                      # capped: 105 + 5 s, + lost_after
    run(111.5, speak=("a", "b"))
    assert lost == []
    run(111.6, speak=("a", "b"))
    assert lost == ["c"] and again.lost == {"c"}
    # c has been silent since the reload: what it held since then stays blocked
    assert again.table.holder_at(roadmap.vertex_at(9, 1), 1e9) == "c"


def _line_authority(path, now, epoch=3, compact_every=5000):
    """An authority on its table log over resources 0..9 of a corridor (each exclusive
    with itself only), as `TrafficAuthority.recover` starts it after a crash."""
    from types import SimpleNamespace

    from fleet_coord.core.traffic import TrafficAuthority
    return TrafficAuthority.recover(
        TableLog(str(path), "line", fsync=False, compact_every=compact_every),
        SimpleNamespace(of=lambda r: (r,)), 10, now, roadmap_id="line", lost_after=1.5,
        brake_horizon=1.0, epoch=epoch)


@pytest.mark.parametrize("compact_every", [5000, 1])
def test_what_was_revoked_from_a_robot_not_heard_since_survives_a_restart(tmp_path, compact_every):
    """b drives 1 -> 2 -> 3 and parks in 4; a parks in 3 at 0.5 (it stands there), which
    revokes b's passage from 12 on. b has not been heard since: it may be cut off and
    still drive it, so no one else gets it - also not from the authority restarted right
    after (the revocation was in the log before anyone could be granted that space),
    until b is heard."""
    path = tmp_path / "table.jsonl"
    first = _line_authority(path, 0.0, compact_every=compact_every)
    first.on_robot_state(0.0, "b")
    assert first.request("b", [(1, 0, 10), (2, 10, 12), (3, 12, 14), (4, 14, INF)]).ok
    first.on_robot_state(0.0, "a")
    assert first.request("a", [(3, 0.5, INF)], replace_from=0.5).ok
    first.drain()
    assert "b" in first.unheard
    again = _line_authority(path, 1.0)   # a kill -9 and a restart on the log
    assert again.unheard.keys() == {"b"}
    assert again.unheard["b"].holds == first.unheard["b"].holds
    r = again.request("c", [(5, 1, 15), (4, 15, INF)], replace_from=1)
    assert not r.ok and r.conflict.robot == "b" and "not been heard since" in r.message
    again.on_robot_state(1.1, "b", sent=1.05)   # b speaks after the revocation: it can hear it
    assert again.request("c", [(5, 1.1, 15), (4, 15, INF)], replace_from=1.1).ok
    again.drain()
    assert _line_authority(path, 2.0).unheard == {}   # heard: nothing kept for it after another restart


def test_a_corrupt_unheard_record_is_an_error_naming_the_line(tmp_path):
    path = tmp_path / "table.jsonl"
    _line_authority(path, 0.0).drain()
    with open(path, "a") as f:
        f.write(json.dumps({"unheard": {"b": [[4, 14.0, "x"]]}}) + "\n")
        f.write(json.dumps({"lost": []}) + "\n")
    with pytest.raises(TableLogError, match=r"table.jsonl:3: \"unheard\" is not a map"):
        _line_authority(path, 1.0)

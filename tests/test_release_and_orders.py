"""The release rule (fleet_coord.core.release: routes with walls, pieces, released in
space and time) and VDA 5050 orders from reservations (fleet_coord.vda5050.orders: order
updates). Pure: no MQTT, no ROS."""
from __future__ import annotations

import math

import numpy as np
import pytest

from fleet_coord.core.planner import path_to_segments
from fleet_coord.core.roadmap import Footprint, GridMap, Roadmap
from fleet_coord.core.release import chain_holds, lateness, next_release, route_vertices
from fleet_coord.vda5050 import schema
from fleet_coord.vda5050.orders import OrderBook, build_route, node_ids
from fleet_coord.vda5050.protocol import Outbox

PLAN_SPEED = 0.33


@pytest.fixture(scope="module")
def grid():
    free = np.array([[c == "." for c in row] for row in ("....", "....")])
    roadmap = Roadmap.from_grid(GridMap(width=4, height=2, free=free, path="<test>"))
    return roadmap, roadmap.exclusion(Footprint(radius=0.15))


def timed_path(roadmap, names, t0=10.0, wait=1.0, speed=PLAN_SPEED):
    vs = [roadmap.vertex(n) for n in names]
    path, t = [(vs[0], t0), (vs[0], t0 + wait)], t0 + wait
    for v in vs[1:]:
        t += 1.0 / speed
        path.append((v, t))
    return path


def test_route_has_a_node_at_every_wall_and_one_piece_per_resource(grid):
    roadmap, exclusion = grid
    route = build_route(roadmap, exclusion.clearance,
                        [roadmap.vertex(n) for n in ("0,0", "1,0", "1,1")], 1.0)
    assert [n.node_id for n in route.nodes] == [
        "0_0", "0_0--1_0:1", "0_0--1_0:2", "1_0", "1_0--1_1:1", "1_0--1_1:2", "1_1"]
    assert [round(n.s, 6) for n in route.nodes] == [0, 0.3, 0.7, 1.0, 1.3, 1.7, 2.0]
    assert (route.nodes[1].x, route.nodes[1].y) == pytest.approx((0.3, 0.0))
    V = roadmap.num_vertices
    e01, e11 = roadmap.edge_id(0, 1), roadmap.edge_id(1, roadmap.vertex("1,1"))
    assert [p.resource for p in route.pieces] == [0, V + e01, 1, V + e11, roadmap.vertex("1,1")]
    assert [p.end for p in route.pieces] == [1, 2, 4, 5, 6]
    assert [e.edge_id for e in route.edges][:3] == ["0_0--1_0.0", "0_0--1_0.1", "0_0--1_0.2"]
    # the pieces are exactly the holds path_to_segments gives the same path
    path = timed_path(roadmap, ("0,0", "1,0", "1,1"))
    assert [r for r, _, _ in path_to_segments(roadmap, exclusion, path, PLAN_SPEED)] == \
        [p.resource for p in route.pieces]


def test_a_lane_shorter_than_two_clearances_has_a_single_wall():
    roadmap = Roadmap(np.array([[0.0, 0.0], [0.5, 0.0]]), [0], [1])
    route = build_route(roadmap, 0.3, [0, 1], 2.0)
    assert [n.node_id for n in route.nodes] == ["0", "0--1:1", "1"]
    assert route.nodes[1].s == pytest.approx(0.25)
    assert [p.resource for p in route.pieces] == [0, 1]


def test_route_rejects_a_step_without_a_lane(grid):
    roadmap, exclusion = grid
    with pytest.raises(ValueError, match="not a lane"):
        build_route(roadmap, exclusion.clearance, [roadmap.vertex("0,0"), roadmap.vertex("2,0")], 1.0)


def test_node_ids_are_valid_vda_ids_and_unique():
    roadmap = Roadmap(np.array([[0.0, 0.0], [1.0, 0.0], [2.0, 0.0]]), [0, 1], [1, 2],
                      names=["dock in", "dock_in", "a:b"])
    assert node_ids(roadmap) == ["v0", "dock_in", "a:b"]


def test_chain_of_holds_stops_at_the_first_piece_not_held(grid):
    roadmap, exclusion = grid
    path = timed_path(roadmap, ("0,0", "1,0", "2,0"))
    segs = path_to_segments(roadmap, exclusion, path, PLAN_SPEED)
    route = build_route(roadmap, exclusion.clearance, route_vertices(path), 1.0)
    assert len(chain_holds(route, 0, segs, 10.0)) == len(route.pieces)
    # the table no longer holds the middle of the second lane: the chain ends before it
    cut = [s for s in segs if s[0] != route.pieces[3].resource]
    assert len(chain_holds(route, 0, cut, 10.0)) == 3
    # a gap in time breaks the chain as well
    gap = [(r, a + (5.0 if k == 2 else 0.0), b) for k, (r, a, b) in enumerate(segs)]
    assert len(chain_holds(route, 0, gap, 10.0)) == 2


def drive(roadmap, exclusion, path, speed, holds=None, dt=0.02, latency_steps=0):
    """A vehicle driving the base at `speed` (its true speed; the master expects what it
    sees, top speed before it moved), the master releasing every `dt`. Returns (arc
    length reached, [(t, s) where the vehicle was strictly inside a piece it entered and
    did not hold], [(t, s) on a wall held by neither side]). The piece it starts in is
    not counted: it is there whatever is released (the agent must extend that hold)."""
    segs = path_to_segments(roadmap, exclusion, path, PLAN_SPEED) if holds is None else holds
    route = build_route(roadmap, exclusion.clearance, route_vertices(path), 1.0)
    base, s, now = 0, 0.0, path[0][1]
    inside, on_wall = [], []
    seen_speed = 1.0
    released = [0]
    while now < path[-1][1] + 5.0:
        base = next_release(route, base, segs, now, now, s, seen_speed)
        released.append(base)
        b = released[max(0, len(released) - 1 - latency_steps)]
        end = route.pieces[b - 1].s_out if b else 0.0
        moved = min(end, s + speed * dt) - s
        if moved > 0:
            seen_speed = min(speed, 1.0)
        s += max(0.0, moved)
        now += dt
        held = [p for p in route.pieces if p.s_in - 1e-9 <= s <= p.s_out + 1e-9
                and any(r == p.resource and a - 1e-9 <= now < b1 + 1e-9 for r, a, b1 in segs)]
        if not held and s > route.pieces[0].s_out + 1e-9:
            walls = [p for p in route.pieces if abs(p.s_in - s) < 1e-9 or abs(p.s_out - s) < 1e-9]
            (on_wall if walls else inside).append((round(now, 2), round(s, 3)))
    return s, inside, on_wall


@pytest.mark.parametrize("speed", [1.0, 0.5, PLAN_SPEED * 1.05])
def test_a_vehicle_at_least_as_fast_as_planned_stays_in_its_holds_and_arrives(grid, speed):
    roadmap, exclusion = grid
    path = timed_path(roadmap, ("0,0", "1,0", "2,0", "2,1", "3,1"))
    s, inside, on_wall = drive(roadmap, exclusion, path, speed)
    assert s == pytest.approx(4.0)
    assert inside == [] and on_wall == []


def test_release_latency_is_absorbed_by_a_faster_vehicle(grid):
    roadmap, exclusion = grid
    path = timed_path(roadmap, ("0,0", "1,0", "2,0", "2,1", "3,1"))
    s, inside, on_wall = drive(roadmap, exclusion, path, 1.0, latency_steps=10)   # 0.2 s
    assert s == pytest.approx(4.0) and inside == [] and on_wall == []


@pytest.mark.parametrize("speed", [0.25, 0.1])
def test_a_vehicle_slower_than_planned_is_never_released_into_a_piece_it_cannot_leave_in_time(grid, speed):
    """It stops at a wall instead (where the agent's re-commit must reach it in time);
    it is never strictly inside a piece whose hold has ended."""
    roadmap, exclusion = grid
    path = timed_path(roadmap, ("0,0", "1,0", "2,0"))
    s, inside, _ = drive(roadmap, exclusion, path, speed)
    assert inside == []
    assert s < 2.0


def test_the_base_never_extends_past_what_the_table_holds(grid):
    roadmap, exclusion = grid
    path = timed_path(roadmap, ("0,0", "1,0", "2,0"))
    segs = path_to_segments(roadmap, exclusion, path, PLAN_SPEED)
    route = build_route(roadmap, exclusion.clearance, route_vertices(path), 1.0)
    held = segs[:3]          # start star, first middle, star of 1,0 (until it leaves it)
    base, s, now = 0, 0.0, 10.0
    for _ in range(2000):
        base = next_release(route, base, held, now, now, s, 1.0)
        end = route.pieces[base - 1].s_out if base else 0.0
        s = min(end, s + 0.02)
        now += 0.02
    assert base == 3 and s == pytest.approx(route.pieces[2].s_out)


def test_release_is_timed_not_only_spatial(grid):
    """The next piece is released at the earliest moment the vehicle, at its top speed
    from where it was last seen, could not enter it early."""
    roadmap, exclusion = grid
    path = timed_path(roadmap, ("0,0", "1,0"), wait=3.0)
    segs = path_to_segments(roadmap, exclusion, path, PLAN_SPEED)
    route = build_route(roadmap, exclusion.clearance, route_vertices(path), 1.0)
    t_middle = chain_holds(route, 0, segs, 10.0)[1][0]
    # seen at the start (s = 0) just now: it needs 0.3 s to the wall
    now = t_middle - 0.31
    assert next_release(route, 1, segs, now, now, 0.0, 1.0) == 1
    now = t_middle - 0.29
    assert next_release(route, 1, segs, now, now, 0.0, 1.0) == 2
    # seen there 5 s ago: it may be waiting at the wall by now, so not before it is due
    assert next_release(route, 1, segs, now, now - 5.0, 0.0, 1.0) == 1
    assert next_release(route, 1, segs, t_middle, t_middle - 5.0, 0.0, 1.0) == 2


def test_lateness_against_the_holds(grid):
    roadmap, exclusion = grid
    path = timed_path(roadmap, ("0,0", "1,0"))
    segs = path_to_segments(roadmap, exclusion, path, PLAN_SPEED)
    route = build_route(roadmap, exclusion.clearance, route_vertices(path), 1.0)
    chain = chain_holds(route, 0, segs, 10.0)
    t_out = chain[0][1]
    assert lateness(route, chain, 0, 0.0, t_out - 1.0) == pytest.approx(-0.7)
    assert lateness(route, chain, 0, 0.0, t_out) == pytest.approx(0.3)


# -- the order book -----------------------------------------------------------------------


def state(book, *, last_seq=0, last_node="", x=0.0, y=0.0, driving=False, idle=False,
          update=None, speed=0.0):
    return {"orderId": book.order_id, "orderUpdateId": book.update_id if update is None else update,
            "lastNodeId": last_node, "lastNodeSequenceId": last_seq,
            "nodeStates": [] if idle else [{"nodeId": "x", "sequenceId": 1, "released": True}],
            "edgeStates": [], "driving": driving,
            "mobileRobotPosition": {"x": x, "y": y, "theta": 0.0, "mapId": "map",
                                    "localized": True},
            "velocity": {"vx": speed}}


def follow(book, now, idle=False):
    """The vehicle shows the last update and stands at the end of its base."""
    end = book.route.pieces[book.base_pieces - 1].end if book.base_pieces else 0
    n = book.route.nodes[end]
    book.on_state(state(book, last_seq=2 * end, last_node=n.node_id, x=n.x, y=n.y,
                        idle=idle), now)


def test_order_book_orders_are_schema_valid_and_extend_by_stitched_updates(grid):
    roadmap, exclusion = grid
    book = OrderBook(roadmap, exclusion.clearance, max_speed=1.0)
    book.on_state(state(book, idle=True), 9.9)     # idle at 0,0
    out = Outbox("acme", "v1")
    path = timed_path(roadmap, ("0,0", "1,0", "2,0"), wait=1.0)
    segs = path_to_segments(roadmap, exclusion, path, PLAN_SPEED)
    book.plan(path, 10.0)
    first = book.step(segs, 10.0)
    out.message("order", 10.0, first)        # raises if it breaks the schema
    assert first["orderUpdateId"] == 0
    assert [n["sequenceId"] for n in first["nodes"]] == list(range(0, 13, 2))
    assert [e["sequenceId"] for e in first["edges"]] == list(range(1, 12, 2))
    assert [n["released"] for n in first["nodes"]] == [True, True] + [False] * 5
    assert all(e["maximumSpeed"] == 1.0 for e in first["edges"])
    # nothing new until the vehicle shows the order, then the same update again after
    # resend_after without it
    assert book.step(segs, 10.5) is None
    assert book.step(segs, 10.0 + book.resend_after) == first
    book.on_state(state(book, last_seq=0, last_node="0_0"), 11.1)
    t_wall = chain_holds(book.route, 0, segs, 10.0)[1][0]
    assert book.step(segs, t_wall - 0.5) is None
    book.on_state(state(book, last_seq=2, last_node="0_0--1_0:1", x=0.3, idle=False), t_wall - 0.2)
    assert book.step(segs, t_wall - 0.1) is None     # it could be at the wall early
    upd = book.step(segs, t_wall)
    out.message("order", t_wall, upd)
    assert upd["orderUpdateId"] == 1
    # stitched at the previous decision point, which is resent with its sequenceId
    assert (upd["nodes"][0]["nodeId"], upd["nodes"][0]["sequenceId"]) == ("0_0--1_0:1", 2)
    assert upd["nodes"][0]["released"] and upd["nodes"][1]["released"]


def test_order_book_continues_the_order_with_a_plan_from_the_base_end(grid):
    roadmap, exclusion = grid
    book = OrderBook(roadmap, exclusion.clearance, max_speed=1.0)
    book.on_state(state(book, idle=True), 9.9)     # idle at 0,0
    path = timed_path(roadmap, ("0,0", "1,0"), wait=0.0)
    segs = path_to_segments(roadmap, exclusion, path, PLAN_SPEED)
    book.plan(path, 10.0)
    now = 10.0
    body = book.step(segs, now)
    while True:   # the vehicle follows at once and shows every update
        follow(book, now)
        now += 0.05
        nxt = book.step(segs, now)
        body = nxt or body
        if book.base_pieces == len(book.route.pieces):
            break
        assert now < 20
    assert body["nodes"][-1]["nodeId"] == "1_0" and body["nodes"][-1]["released"]
    # a new leg from 1,0 while the vehicle still shows the order (not idle): the same
    # order, next update, stitched at node 1_0 (sequenceId 6)
    book.on_state(state(book, last_seq=6, last_node="1_0", x=1.0, idle=False), now)
    leg = timed_path(roadmap, ("1,0", "1,1"), t0=now, wait=0.5)
    book.plan(leg, now)
    leg_segs = path_to_segments(roadmap, exclusion, leg, PLAN_SPEED)
    upd = book.step(leg_segs, now)
    Outbox("acme", "v1").message("order", now, upd)
    assert upd["orderId"] == body["orderId"]
    assert upd["nodes"][0]["nodeId"] == "1_0" and upd["nodes"][0]["sequenceId"] == 6
    assert [n["nodeId"] for n in upd["nodes"]][-1] == "1_1"
    assert upd["nodes"][1]["released"]   # the star of 1,0 up to its wall: held from now
    # a vehicle done with its order (idle) gets the next leg as a new order
    book.on_state(state(book, last_seq=12, last_node="1_1", x=1.0, y=1.0, idle=True), now + 5)
    back = timed_path(roadmap, ("1,1", "1,0"), t0=now + 5)
    book.plan(back, now + 5)
    new = book.step(path_to_segments(roadmap, exclusion, back, PLAN_SPEED), now + 5)
    assert new["orderId"] != body["orderId"] and new["orderUpdateId"] == 0


def test_order_book_starts_a_new_order_when_the_plan_does_not_continue_the_base(grid):
    roadmap, exclusion = grid
    book = OrderBook(roadmap, exclusion.clearance, max_speed=1.0)
    book.on_state(state(book, idle=True), 9.9)     # idle at 0,0
    path = timed_path(roadmap, ("0,0", "1,0"), wait=0.0)
    book.plan(path, 10.0)
    first = book.step(path_to_segments(roadmap, exclusion, path, PLAN_SPEED), 10.0)
    # the vehicle is idle at 0,0 (say, cancelled); a plan from 1,1 waits until it is there
    book.on_state(state(book, last_seq=0, last_node="0_0", idle=True), 10.5)
    other = timed_path(roadmap, ("1,1", "2,1"), t0=11.0)
    other_segs = path_to_segments(roadmap, exclusion, other, PLAN_SPEED)
    book.plan(other, 11.0)
    assert book.step(other_segs, 11.0) is None
    book.on_state(state(book, last_seq=0, last_node="0_0", x=1.1, y=1.0, idle=True), 11.0)
    body = book.step(other_segs, 11.0)
    assert body["orderId"] != first["orderId"] and body["orderUpdateId"] == 0
    assert body["nodes"][0]["nodeId"] == "1_1"
    # it stands 0.1 m off the first node: the node's allowed deviation covers it
    assert body["nodes"][0]["nodePosition"]["allowedDeviationXY"]["a"] == pytest.approx(0.15)


def test_order_book_learns_a_slow_vehicles_speed(grid):
    roadmap, exclusion = grid
    book = OrderBook(roadmap, exclusion.clearance, max_speed=1.0)
    book.on_state(state(book, idle=True), 9.9)     # idle at 0,0
    book.plan(timed_path(roadmap, ("0,0", "1,0")), 10.0)
    for k in range(10):
        book.on_state(state(book, driving=True, speed=0.2), 10.0 + k)
    assert book.expected_speed == pytest.approx(0.2, abs=0.02)


def test_every_order_the_book_builds_is_valid_against_the_official_schema(grid):
    roadmap, exclusion = grid
    book = OrderBook(roadmap, exclusion.clearance, max_speed=0.8)
    book.on_state(state(book, idle=True), 9.9)
    path = timed_path(roadmap, ("0,0", "1,0", "1,1", "2,1", "3,1", "3,0"))
    segs = path_to_segments(roadmap, exclusion, path, PLAN_SPEED)
    book.plan(path, 10.0)
    out, now, sent = Outbox("acme", "v1"), 10.0, 0
    while now < path[-1][1] + 1:
        body = book.step(segs, now)
        if body is not None:
            assert schema.errors("order", out.message("order", now, body)) == []
            sent += 1
        follow(book, now)
        now += 0.1
    assert sent >= len(book.route.pieces) // 2 and book.base_pieces == len(book.route.pieces)
    assert math.isinf(chain_holds(book.route, len(book.route.pieces) - 1, segs, now)[0][1])


def test_progress_projects_the_pose_and_never_goes_back(grid):
    from fleet_coord.core.release import project
    roadmap, exclusion = grid
    route = build_route(roadmap, exclusion.clearance,
                        [roadmap.vertex(n) for n in ("0,0", "1,0", "1,1", "0,1", "0,0")], 1.0)
    assert project(route, 0.5, 0.02) == pytest.approx(0.5)
    assert project(route, 1.02, 0.6) == pytest.approx(1.6)
    # back at the start place: the first pass is behind it, the last one counts
    assert project(route, 0.0, 0.0, s_from=3.5) == pytest.approx(4.0)
    assert project(route, 0.0, 0.0) == pytest.approx(0.0)


def test_retimed_holds_shift_the_rest_and_cover_the_robot_from_now(grid):
    from fleet_coord.core.release import retimed
    roadmap, exclusion = grid
    path = timed_path(roadmap, ("0,0", "1,0", "2,0"))
    segs = path_to_segments(roadmap, exclusion, path, PLAN_SPEED)
    later = retimed(segs, 1, now=12.5, shift=2.0)
    assert [r for r, _, _ in later] == [r for r, _, _ in segs[1:]]
    assert later[0][1] == 12.5 and later[0][2] == pytest.approx(segs[1][2] + 2.0)
    assert all(a[2] == b[1] for a, b in zip(later, later[1:]))      # still back to back
    assert math.isinf(later[-1][2])
    # the shifted path gives the same holds (path_to_segments is shift-invariant)
    shifted = path_to_segments(roadmap, exclusion, [(v, t + 2.0) for v, t in path], PLAN_SPEED)
    assert [r for r, _, _ in later[1:]] == [r for r, _, _ in shifted[2:]]
    assert [t for _, a, b in later[1:] for t in (a, b)] == \
        pytest.approx([t for _, a, b in shifted[2:] for t in (a, b)])
    with pytest.raises(ValueError, match="shift"):
        retimed(segs, 1, 12.5, -1.0)


def test_order_book_names_an_active_order_that_is_not_its_own(grid):
    roadmap, exclusion = grid
    book = OrderBook(roadmap, exclusion.clearance, max_speed=1.0)
    book.on_state(state(book, idle=True), 1.0)
    assert book.foreign_order() is None                       # idle: nothing to cancel
    st = state(book, idle=False)
    st["orderId"] = "someone-else-7"
    book.on_state(st, 2.0)
    assert book.foreign_order() == "someone-else-7"

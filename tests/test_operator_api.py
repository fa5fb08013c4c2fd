"""The operator view's API and view model without a fleet: input checks, status codes,
the documents the page draws. The real backend (operator_node over DDS) and the page in a
browser are tested together in tests/test_operator_browser.py."""
import asyncio

import pytest

pytest.importorskip("aiohttp", reason="aiohttp is in requirements.txt (make setup)")
from aiohttp.test_utils import TestClient, TestServer  # noqa: E402

from fleet_coord.fleet_config import DEFAULT_MAP, load_roadmap  # noqa: E402
from fleet_coord.web.api import FleetUnavailable, Refused, make_app, parse_task  # noqa: E402
from fleet_coord.web.view import FleetView, map_document  # noqa: E402


class Backend:
    """Records what the API asks of the fleet; answers like the fleet would."""

    def __init__(self):
        self.calls = []

    def map_document(self):
        return {"bounds": [0, 0, 1, 1]}

    def state_document(self):
        return {"t": 1.0, "robots": [], "tasks": []}

    async def submit(self, task):
        self.calls.append(("submit", task))
        if task["stations"] == ["nowhere"]:
            raise Refused("unknown station 'nowhere'")
        if task["id"] == "down":
            raise FleetUnavailable("/fleet/submit_task is not available")
        return task["id"]

    async def cancel(self, task_id, reason):
        self.calls.append(("cancel", task_id, reason))
        if task_id != "t1":
            raise Refused(f"unknown task {task_id!r}")

    async def estop(self, robot, engage):
        self.calls.append(("estop", robot, engage))
        return "engaged" if engage else "released"

    async def remove(self, robot, force, reason):
        self.calls.append(("remove", robot, force))
        return {"released": 2, "was_lost": False}


def _run(coro_fn):
    async def main():
        backend = Backend()
        async with TestClient(TestServer(make_app(backend, push_hz=20.0))) as client:
            await coro_fn(client, backend)
    asyncio.run(main())


def test_submit_checks_input_and_maps_fleet_answers_to_status_codes():
    async def body(client, backend):
        r = await client.post("/api/tasks", json={"id": "t1", "kind": "goto", "stations": ["2,14"]})
        assert r.status == 201 and (await r.json()) == {"task_id": "t1"}
        r = await client.post("/api/tasks", json={"id": "t2", "stations": ["nowhere"],
                                                   "kind": "goto"})
        assert r.status == 422 and "nowhere" in (await r.json())["error"]
        r = await client.post("/api/tasks", json={"id": "down", "kind": "goto",
                                                   "stations": ["a"]})
        assert r.status == 503
        r = await client.post("/api/tasks", data=b"{not json",
                              headers={"Content-Type": "application/json"})
        assert r.status == 400 and "JSON" in (await r.json())["error"]
        r = await client.post("/api/tasks", json=[1, 2])
        assert r.status == 400 and "list" in (await r.json())["error"]
        # nothing malformed reached the fleet
        assert [c[1]["id"] for c in backend.calls] == ["t1", "t2", "down"]
    _run(body)


@pytest.mark.parametrize("task, word", [
    ({"kind": "goto", "stations": ["a"]}, "id"),
    ({"id": " ", "kind": "goto", "stations": ["a"]}, "id"),
    ({"id": "x", "kind": "fly", "stations": ["a"]}, "kind"),
    ({"id": "x", "kind": "goto", "stations": []}, "stations"),
    ({"id": "x", "kind": "goto", "stations": [3]}, "stations"),
    ({"id": "x", "stations": ["a"]}, "2 station"),          # pick_and_drop by default
    ({"id": "x", "kind": "goto", "stations": ["a"], "priority": 1.5}, "priority"),
    ({"id": "x", "kind": "goto", "stations": ["a"], "priority": True}, "priority"),
    ({"id": "x", "kind": "goto", "stations": ["a"], "payload_kg": -1}, "payload_kg"),
    ({"id": "x", "kind": "goto", "stations": ["a"], "deadline_s": "soon"}, "deadline_s"),
    ({"id": "x", "kind": "goto", "stations": ["a"], "colour": "red"}, "colour"),
])
def test_parse_task_names_the_bad_field(task, word):
    with pytest.raises(ValueError, match=word):
        parse_task(task)


def test_parse_task_normalises():
    t = parse_task({"id": " t1 ", "kind": "pick_and_drop", "stations": "a b"})
    assert t == {"id": "t1", "kind": "pick_and_drop", "stations": ["a", "b"], "priority": 0,
                 "payload_kg": 0, "deadline_s": 0}


def test_cancel_estop_remove_and_the_websocket():
    async def body(client, backend):
        r = await client.post("/api/tasks/t1/cancel", json={"reason": "no longer needed"})
        assert r.status == 200
        r = await client.post("/api/tasks/t9/cancel")
        assert r.status == 422 and "t9" in (await r.json())["error"]
        r = await client.post("/api/robots/r1/estop", json={"engage": "yes"})
        assert r.status == 400 and "engage" in (await r.json())["error"]
        r = await client.post("/api/robots/r1/estop", json={"engage": False})
        assert (await r.json()) == {"ok": True, "message": "released"}
        r = await client.post("/api/robots/r1/remove", json={"force": True})
        assert (await r.json())["released"] == 2
        assert ("cancel", "t1", "no longer needed") in backend.calls
        assert ("remove", "r1", True) in backend.calls
        async with client.ws_connect("/api/ws") as ws:
            first = await ws.receive_json(timeout=5)
            second = await ws.receive_json(timeout=5)
        assert first["type"] == "map" and second == {"type": "state", "t": 1.0, "robots": [],
                                                     "tasks": []}
        r = await client.get("/")
        assert r.status == 200 and "operator view" in await r.text()
        r = await client.get("/static/app.js")
        assert r.status == 200
    _run(body)


def test_map_document_of_the_warehouse():
    doc = map_document(load_roadmap(DEFAULT_MAP))
    grid = load_roadmap(DEFAULT_MAP).grid
    assert doc["bounds"] == [-0.5, -0.5, grid.width - 0.5, grid.height - 0.5]
    assert len(doc["obstacles"]) == int((~grid.free).sum())
    # a two-way lane is drawn once
    assert all(two_way for _, _, two_way in doc["lanes"])
    assert len(doc["lanes"]) * 2 == load_roadmap(DEFAULT_MAP).num_edges


def test_view_orders_task_updates_and_shows_holds_ahead():
    rm = load_roadmap(DEFAULT_MAP)
    view = FleetView(rm)
    view.set_robots([{"name": "r1", "x": 2.0, "y": 18.0, "yaw": 0.0, "mode": 1,
                      "battery": None, "task": "t1", "queued": []}], lost=[])
    view.task_status("t1", 1, "", "dispatcher", 0.0, "", 10.0, lamport=1)   # QUEUED
    view.task_status("t1", 4, "r1", "r1", 0.5, "", 12.0, lamport=5)         # ACTIVE
    view.task_status("t1", 3, "r1", "dispatcher", 0.0, "", 11.0, lamport=3)  # late AWARDED
    v = rm.vertex((2, 18))
    e = rm.edge_id(v, rm.vertex((2, 17)))
    doc = view.state_document(20.0, [("r1", v, 15.0, 19.0),               # ended: not shown
                                     ("r1", rm.num_vertices + e, 21.0, 22.0),
                                     ("r1", v, 20.5, float("inf"))])
    task = doc["tasks"][0]
    assert (task["state"], task["robot"], task["submitted"], task["started"]) == (
        "ACTIVE", "r1", 10.0, 12.0)
    r = doc["robots"][0]
    assert r["mode"] == "MOVING"
    assert [h.get("at") or h["from"] for h in r["reservations"]] == [[2.0, 18.0], [2.0, 18.0]]
    assert r["reservations"][0]["t_end"] is None and r["reservations"][1]["to"] == [2.0, 17.0]
    view.task_status("t1", 6, "r1", "r1", 0.5, "blocked", 25.0, lamport=7)  # a hand-back
    assert view.tasks["t1"].state == "QUEUED" and view.tasks["t1"].ended is None
    view.task_status("t1", 5, "r1", "r1", 1.0, "", 40.0, lamport=9)
    assert view.tasks["t1"].ended == 40.0
    # an end is final: a late ACTIVE (it crossed a cancel) does not revive the task
    view.task_status("t2", 7, "", "dispatcher", 0.0, "by operator", 50.0, lamport=3)
    view.task_status("t2", 4, "r1", "r1", 0.3, "", 49.0, lamport=8)
    assert view.tasks["t2"].state == "CANCELLED"
    # the dispatcher's listing of an ended task wins over a missed final status
    view.task_status("t3", 4, "r1", "r1", 0.3, "", 49.0, lamport=8)
    view.task_listed("t3", "goto", ["2,14"], 0, 48.0, 7, "r1", 0.3, "by operator")
    assert view.tasks["t3"].state == "CANCELLED" and view.tasks["t3"].kind == "goto"


def test_in_an_authenticating_fleet_the_view_acts_as_the_operator(tmp_path):
    """With auth on, the view signs with the fleet's operator key: the serial bridge
    (enforce) takes its e-stop release, which it refuses from anyone else, and the view
    checks the bridge's signed answer. Real rclpy, the real bridge, the C emulator."""
    pytest.importorskip("rclpy")
    from rclpy.parameter import Parameter

    from fleet_coord.web.operator_node import OperatorNode
    from fleet_coord_bridge.bridge_node import SerialBridge
    from fleet_coord_bridge.emulator import Emulator
    from rosutil import ros_context, spin_until
    from test_driver_auth import provision

    keys = provision(tmp_path)
    with Emulator(link=str(tmp_path / "r1.pty")) as emu, ros_context() as (ctx, ex):
        auth = [Parameter("auth_mode", value="enforce"), Parameter("auth_keys", value=keys.path)]
        bridge = SerialBridge(context=ctx, parameter_overrides=[
            Parameter("robot", value="r1"), Parameter("port", value=emu.port),
            Parameter("autostart", value=True)] + auth)
        view = OperatorNode(context=ctx, parameter_overrides=[Parameter("port", value=0)] + auth)
        ex.add_node(bridge)
        ex.add_node(view)
        try:
            view.view.set_robots([{"name": "r1", "x": 2.0, "y": 18.0, "yaw": 0.0, "mode": 0,
                                   "battery": None, "task": "", "queued": []}], lost=[])

            def act(engage):
                fut = asyncio.run_coroutine_threadsafe(view.estop("r1", engage), view._loop)
                assert spin_until(ex, fut.done, 20)
                return fut.result()
            assert spin_until(ex, lambda: bridge.link.state.value == "up", 20), bridge.link.reason
            act(True)
            assert "r1" in view.view.estopped
            act(False)                          # a release: only an operator may
            assert "r1" not in view.view.estopped
            with pytest.raises(Refused, match="r9"):
                fut = asyncio.run_coroutine_threadsafe(view.estop("r9", True), view._loop)
                spin_until(ex, fut.done, 5)
                fut.result()
        finally:
            ex.remove_node(view)
            view.destroy_node()


def test_an_action_waits_for_a_fleet_service_that_is_not_up_yet():
    """A fleet node that comes up after the view (or restarts; on a loaded machine the
    dispatcher may be found last): an operator action waits for its service within
    service_timeout_s instead of failing at once; past it, a 503 naming the service.
    Real rclpy; the service stands in for the dispatcher (the real one answers the page in
    tests/test_operator_browser.py)."""
    pytest.importorskip("rclpy")
    import rclpy
    from fleet_coord_msgs.srv import SubmitTask
    from rclpy.parameter import Parameter

    from fleet_coord.web.operator_node import OperatorNode
    from rosutil import ros_context, spin_until

    task = {"id": "t1", "kind": "goto", "stations": ["2,14"], "priority": 0,
            "payload_kg": 0.0, "deadline_s": 0.0}
    with ros_context() as (ctx, ex):
        view = OperatorNode(context=ctx, parameter_overrides=[
            Parameter("port", value=0), Parameter("service_timeout_s", value=0.5)])
        ex.add_node(view)

        def submit():
            return asyncio.run_coroutine_threadsafe(view.submit(task), view._loop)
        fut = submit()
        assert spin_until(ex, fut.done, 20)
        with pytest.raises(FleetUnavailable, match="fleet/submit_task is not available"):
            fut.result()
        view.timeout_s = 30.0
        fut = submit()
        spin_until(ex, fut.done, 0.3)
        assert not fut.done()                  # waiting for the service, not failed
        served = []

        def serve(req, resp):
            served.append(req.task.id)
            resp.accepted, resp.task_id = True, req.task.id
            return resp
        fleet = rclpy.create_node("dispatcher_stand_in", context=ctx)
        fleet.create_service(SubmitTask, "/fleet/submit_task", serve)
        ex.add_node(fleet)
        assert spin_until(ex, fut.done, 30)
        assert fut.result() == "t1" and served == ["t1"]


def test_a_task_listing_whose_answer_is_lost_is_asked_again():
    """The task table is refreshed from /fleet/list_tasks, one call at a time: a call whose
    answer never comes (dropped by a server that had not matched the view's reader yet)
    is given up after service_timeout_s and asked again, instead of stopping the refresh
    for good. The stand-in server sits in a context of its own that is not spun at first,
    so the first calls go unanswered."""
    pytest.importorskip("rclpy")
    import rclpy
    from fleet_coord_msgs.msg import Task as TaskMsg
    from fleet_coord_msgs.msg import TaskStatus
    from fleet_coord_msgs.srv import ListTasks
    from rclpy.parameter import Parameter

    from fleet_coord.web.operator_node import OperatorNode
    from rosutil import ros_context, spin_until

    asked = []

    def serve(req, resp):
        asked.append(1)
        resp.tasks = [TaskMsg(id="t1", kind="goto", stations=["2,14"])]
        resp.statuses = [TaskStatus(task_id="t1", state=TaskStatus.QUEUED)]
        return resp
    with ros_context() as (ctx, ex), ros_context() as (ctx2, ex2):
        fleet = rclpy.create_node("dispatcher_stand_in", context=ctx2)
        fleet.create_service(ListTasks, "/fleet/list_tasks", serve)
        ex2.add_node(fleet)
        view = OperatorNode(context=ctx, parameter_overrides=[
            Parameter("port", value=0), Parameter("task_poll_s", value=0.1),
            Parameter("service_timeout_s", value=0.5)])
        ex.add_node(view)
        first = []
        assert spin_until(ex, lambda: view._listing is not None and (
            first or first.append(view._listing)), 20)
        assert spin_until(ex, lambda: view._listing is not first[0], 10)   # asked again
        assert spin_until(ex, lambda: (ex2.spin_once(timeout_sec=0.01), "t1" in
                                       view.view.tasks)[1], 20)
        assert view.view.tasks["t1"].state == "QUEUED" and len(asked) >= 2


def test_the_pushes_go_on_after_a_state_that_fails_and_carry_no_nan():
    """A state document that cannot be made (an exception) is skipped, not the end of the
    pushing (every page would freeze on its last state, still showing "live"); NaN and
    infinities, which JSON has not, go out as null."""
    class Flaky(Backend):
        n = 0

        def state_document(self):
            self.n += 1
            if self.n == 1:
                raise RuntimeError("replica in recovery")
            return {"t": 2.0, "robots": [{"name": "r1", "x": float("nan"), "v": float("inf")}],
                    "tasks": []}

    async def main():
        async with TestClient(TestServer(make_app(Flaky(), push_hz=20.0))) as client:
            async with client.ws_connect("/api/ws") as ws:
                assert (await ws.receive_json(timeout=5))["type"] == "map"
                state = await ws.receive_json(timeout=5)      # strict JSON: NaN would fail
            r = await client.get("/api/state")
            assert (await r.json())["robots"][0]["x"] is None
        return state
    state = asyncio.run(main())
    assert state["t"] == 2.0 and state["robots"][0] == {"name": "r1", "x": None, "v": None}

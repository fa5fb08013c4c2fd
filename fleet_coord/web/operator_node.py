"""operator_view: the ROS 2 node behind the web operator view, and its HTTP server.

It listens to the fleet — `/fleet/state` (robots), `/traffic/updates` (the reservation
table, on a replica), `/fleet/task_status` and `/fleet/list_tasks` every `task_poll_s`
(tasks), `/fleet/robot_removed` — and acts for the operator through the fleet's own
services: `/fleet/submit_task`, `/fleet/cancel_task`, `/fleet/remove_robot` and each
robot driver's `/<robot>/estop` (std_srvs/SetBool). It changes nothing by itself.

The server (fleet_coord.web.api) runs on its own thread with its own asyncio loop; the
node spins in the main thread like every fleet process (fleet_coord.spin). Parameters:
`host` (default 127.0.0.1: only this machine; set 0.0.0.0 to serve the network),
`port` (8080), `push_hz` (4), `task_poll_s` (1.0), `map`, `footprint_radius`,
`service_timeout_s` (5.0).

In a fleet that authenticates (`auth_mode` not off, `auth_keys` its key directory; the
node set passes both, docs/security.md) every operator action is signed with the
fleet's `operator` key, as `fleet-coord submit` / `cancel` / `remove-robot` sign them, and
the answer must verify as the server's; the e-stop then goes through the operator-signed
`/<robot>/set_estop` (fleet_coord_msgs/SetEstop), since a plain release is refused.
"""
from __future__ import annotations

import asyncio
import math
import threading
import time
from typing import Any

from fleet_coord_msgs.msg import FleetState, ReservationSet, RobotNotice, Task, TaskStatus
from fleet_coord_msgs.srv import CancelTask, ListTasks, RemoveRobot, SetEstop, SubmitTask
from rcl_interfaces.msg import ParameterDescriptor
from rclpy.duration import Duration
from rclpy.node import Node
from std_srvs.srv import SetBool

from fleet_coord import qos
from fleet_coord.fleet_config import load_roadmap_and_exclusion
from fleet_coord.namespace import FleetNames
from fleet_coord.spin import run_nodes
from fleet_coord.table_replica import TableReplica
from fleet_coord.web.api import FleetUnavailable, Refused, make_app
from fleet_coord.web.view import FleetView


def _seconds(t) -> float | None:
    s = t.sec + t.nanosec * 1e-9
    return s if s > 0 else None


def _yaw(q) -> float:
    return math.atan2(2.0 * (q.w * q.z + q.x * q.y), 1.0 - 2.0 * (q.y * q.y + q.z * q.z))


class OperatorNode(Node):
    def __init__(self, **kwargs) -> None:
        super().__init__("operator_view", **kwargs)
        self.names = FleetNames.of_node(self)

        def param(name, default, description):
            return self.declare_parameter(
                name, default, ParameterDescriptor(description=description)).value

        self.host = param("host", "127.0.0.1", "address to serve on; 127.0.0.1 = this "
                                               "machine only, 0.0.0.0 = every interface")
        self.port = param("port", 8080, "HTTP port of the operator view")
        self.push_hz = param("push_hz", 4.0, "state pushes per second to each page")
        poll = param("task_poll_s", 1.0, "seconds between /fleet/list_tasks polls")
        self.timeout_s = param("service_timeout_s", 5.0, "how long an operator action waits "
                                                         "for the fleet's answer (s)")
        self.signer = self.verifier = None
        if param("auth_mode", "off", "off | permissive | enforce (docs/security.md)") != "off":
            self._load_operator_key(param("auth_keys", "", "the fleet's key directory"))
        if not (isinstance(self.port, int) and 0 <= self.port <= 65535):
            raise ValueError(f"parameter port: expected 0..65535, got {self.port!r}")
        if not (self.push_hz > 0 and poll > 0 and self.timeout_s > 0):
            raise ValueError("parameters push_hz, task_poll_s and service_timeout_s must "
                             f"be > 0, got {self.push_hz}, {poll}, {self.timeout_s}")
        roadmap, exclusion, rid = load_roadmap_and_exclusion(
            param("map", "", "MovingAI .map or YAML roadmap; empty: bundled warehouse"),
            param("footprint_radius", 0.15, "robot footprint radius (m)"))
        self.view = FleetView(roadmap)
        self.replica = TableReplica(exclusion.of, roadmap.num_resources, rid)
        self._lock = threading.Lock()
        sub = self.create_subscription
        sub(FleetState, self.names("/fleet/state"), self._on_fleet, qos.state_qos())
        sub(ReservationSet, self.names("/traffic/updates"), self._on_table, qos.TABLE)
        sub(TaskStatus, self.names("/fleet/task_status"), self._on_status, qos.PROTOCOL)
        sub(RobotNotice, self.names("/fleet/robot_removed"), self._on_removed, qos.PROTOCOL)
        self._submit = self.create_client(SubmitTask, self.names("/fleet/submit_task"))
        self._cancel = self.create_client(CancelTask, self.names("/fleet/cancel_task"))
        self._list = self.create_client(ListTasks, self.names("/fleet/list_tasks"))
        self._remove = self.create_client(RemoveRobot, self.names("/fleet/remove_robot"))
        self._estop: dict[str, Any] = {}
        self._listing = None
        self._listing_since = 0.0
        self.create_timer(poll, self._poll_tasks)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ready = threading.Event()
        self._failed: BaseException | None = None
        self._server = threading.Thread(target=self._serve, name="operator_view_http",
                                        daemon=True)
        self._server.start()
        self._ready.wait(30.0)
        if self._failed is not None:
            raise RuntimeError(f"operator view: cannot serve on {self.host}:{self.port}: "
                               f"{self._failed}") from self._failed
        self.get_logger().info(f"operator view on http://{self.host}:{self.bound_port}/")

    def _load_operator_key(self, keys: str) -> None:
        from fleet_coord.auth import Signer, Verifier
        from fleet_coord.keys import KeyDir
        if not keys:
            raise ValueError("parameter auth_keys: the fleet authenticates, so the operator "
                             "view needs the key directory holding the operator key")
        kd = KeyDir(keys)
        self.verifier = Verifier(kd.keyring())
        self.signer = Signer("operator", kd.private_key("operator", self.verifier.keyring))

    # fleet -> view -------------------------------------------------------------------------
    def now(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    def _on_fleet(self, msg: FleetState) -> None:
        robots = []
        for r in msg.robots:
            p = r.pose.position
            robots.append({"name": r.robot, "x": p.x, "y": p.y, "yaw": _yaw(r.pose.orientation),
                           "v": r.twist.linear.x, "mode": int(r.mode),
                           "battery": None if math.isnan(r.battery) else float(r.battery),
                           "task": r.task_id, "queued": list(r.queued_task_ids),
                           "message": r.message})
        with self._lock:
            self.view.set_robots(robots, msg.lost)

    def _on_table(self, msg: ReservationSet) -> None:
        with self._lock:
            self.replica.apply(msg)

    def _on_status(self, m: TaskStatus) -> None:
        with self._lock:
            self.view.task_status(m.task_id, m.state, m.robot, m.reporter, m.progress,
                                  m.reason, _seconds(m.stamp) or self.now(), m.lamport)

    def _on_removed(self, msg: RobotNotice) -> None:
        with self._lock:
            self.view.remove_robot(msg.robot)

    def _poll_tasks(self) -> None:
        if self._listing is not None and not self._listing.done():
            if time.monotonic() - self._listing_since < self.timeout_s:
                return
            # its answer is lost (a server that had not matched this client's reader yet
            # drops it): ask again, or the task table would stop being refreshed for good
            self._list.remove_pending_request(self._listing)
        if not self._list.service_is_ready():
            return
        self._listing_since = time.monotonic()
        self._listing = self._list.call_async(ListTasks.Request(include_finished=True))
        self._listing.add_done_callback(self._on_listing)

    def _on_listing(self, fut) -> None:
        resp = fut.result()
        if resp is None:
            return
        with self._lock:
            for t, s in zip(resp.tasks, resp.statuses):
                self.view.task_listed(t.id, t.kind, list(t.stations), int(t.priority),
                                      _seconds(t.submitted_at), s.state, s.robot, s.progress,
                                      s.reason)

    # the backend of web.api (called on the server's thread) --------------------------------
    def map_document(self) -> dict[str, Any]:
        return self.view.map

    def state_document(self) -> dict[str, Any]:
        now = self.now()
        with self._lock:
            holds = [(h.robot, h.resource, h.t_start, h.t_end)
                     for h in self.replica.table.reservations() if h.t_end > now]
            return self.view.state_document(now, holds)

    async def _call(self, client, request, what: str, robot: str = ""):
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout_s
        # the service may not be matched yet: the fleet node serving it starts (or restarts)
        # after this view, or discovery is slow on a loaded machine; the action waits for it
        # within the same timeout as for the answer
        while not client.service_is_ready():
            if loop.time() >= deadline:
                raise FleetUnavailable(f"{client.srv_name} is not available (waited "
                                       f"{self.timeout_s:g} s): {what} needs it (is the "
                                       "fleet running?)")
            await asyncio.sleep(0.05)
        from fleet_coord.auth import sendable_problem
        if problem := sendable_problem(request):   # DDS would cut it (and void a signature)
            raise Refused(f"{what}: {problem}")
        channel = client.srv_name.lstrip("/")
        if self.signer is not None:   # as the operator; anew for every call (no replays)
            self.signer.sign(request, channel)
        done: asyncio.Future = loop.create_future()
        fut = client.call_async(request)
        fut.add_done_callback(lambda f: loop.call_soon_threadsafe(
            lambda: done.done() or done.set_result(f.result())))
        try:
            resp = await asyncio.wait_for(done, max(0.0, deadline - loop.time()))
        except asyncio.TimeoutError:
            client.remove_pending_request(fut)
            raise FleetUnavailable(f"{client.srv_name} did not answer within "
                                   f"{self.timeout_s:g} s") from None
        if self.verifier is not None:   # a robot's service answers under its robot's rule
            rule = dict(rule=f"{{robot}}/{channel.split('/', 1)[1]}#response",
                        subjects=[robot]) if robot else {}
            dropped = self.verifier.verify(resp, f"{channel}#response", request=request.auth,
                                           **rule)
            if dropped is not None:
                raise Refused(f"the answer on {client.srv_name} does not count: {dropped}")
        return resp

    async def submit(self, task: dict[str, Any]) -> str:
        msg = Task(id=task["id"], kind=task["kind"], stations=task["stations"],
                   priority=task["priority"], payload_kg=float(task["payload_kg"]),
                   requester="operator view")
        if task["deadline_s"]:
            msg.deadline = (self.get_clock().now()
                            + Duration(seconds=float(task["deadline_s"]))).to_msg()
        resp = await self._call(self._submit, SubmitTask.Request(task=msg), "submitting")
        if not resp.accepted:
            raise Refused(resp.error)
        return resp.task_id

    async def cancel(self, task_id: str, reason: str) -> None:
        resp = await self._call(self._cancel, CancelTask.Request(task_id=task_id,
                                                                 reason=reason), "cancelling")
        if not resp.ok:
            raise Refused(resp.error)

    async def remove(self, robot: str, force: bool, reason: str) -> dict[str, Any]:
        resp = await self._call(self._remove, RemoveRobot.Request(
            robot=robot, force=force, reason=reason), "removing a robot")
        if not resp.ok:
            raise Refused(resp.error)
        return {"released": int(resp.released), "was_lost": bool(resp.was_lost)}

    async def estop(self, robot: str, engage: bool) -> str:
        with self._lock:
            known = robot in self.view.robots
        if not known:
            raise Refused(f"unknown robot {robot!r}")
        client = self._estop.get(robot)
        if client is None:
            client = self._estop[robot] = (
                self.create_client(SetEstop, self.names(f"/{robot}/set_estop"))
                if self.signer is not None
                else self.create_client(SetBool, self.names(f"/{robot}/estop")))
        if self.signer is not None:
            resp = await self._call(client, SetEstop.Request(
                engage=engage, reason="from the operator view"), "the e-stop", robot)
            ok, message = resp.ok, resp.message
        else:
            resp = await self._call(client, SetBool.Request(data=engage), "the e-stop")
            ok, message = resp.success, resp.message
        if not ok:
            raise Refused(message)
        with self._lock:
            (self.view.estopped.add if engage else self.view.estopped.discard)(robot)
        return message

    # the server thread ---------------------------------------------------------------------
    def _serve(self) -> None:
        from aiohttp import web
        loop = self._loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        runner = web.AppRunner(make_app(self, self.push_hz), handle_signals=False,
                               access_log=None)
        try:
            loop.run_until_complete(runner.setup())
            site = web.TCPSite(runner, self.host, self.port)
            loop.run_until_complete(site.start())
            self.bound_port = site._server.sockets[0].getsockname()[1]
        except BaseException as e:  # noqa: BLE001 - reported by the constructor
            self._failed = e
            self._ready.set()
            loop.run_until_complete(runner.cleanup())
            return
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(runner.cleanup())
            loop.close()

    def destroy_node(self) -> None:
        if self._loop is not None and self._loop.is_running():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._server.join(timeout=5.0)
        super().destroy_node()


def main(args=None) -> None:
    run_nodes(lambda _argv: [OperatorNode()], args)


if __name__ == "__main__":
    main()

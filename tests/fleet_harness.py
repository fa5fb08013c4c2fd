"""A small fleet in one process for tests: traffic + ideal driver + agents + dispatcher,
all real rclpy nodes talking over real DDS (loopback, inside the test's netns).

`auth_keys` (a key directory with every identity of the fleet, `provision_keys`): the
fleet authenticates (auth_mode enforce, docs/security.md) and the test's submissions are
signed as the operator. FLEET_COORD_TEST_AUTH=enforce in the environment makes every
harness fleet authenticate, with keys provisioned per fleet: the same suites, signed."""
from __future__ import annotations

import os
import tempfile
import time

from fleet_coord_msgs.msg import TaskStatus
from fleet_coord_msgs.msg import Task as TaskMsg
from fleet_coord_msgs.srv import SubmitTask
from rclpy.parameter import Parameter

from fleet_coord import qos
from fleet_coord.dispatcher import Dispatcher
from fleet_coord.ideal_driver import IdealDriver
from fleet_coord.robot_agent import AgentGroup, RobotAgent
from fleet_coord.traffic import TrafficNode

# A fast ideal robot, so fleet tests finish quickly (with `rtf` they also run faster than
# real time: the ideal driver is then the clock and every other node uses sim time). Too
# fast for the real time model at a 20 Hz control loop (tracking.control_rate_problem).
LIMITS = dict(max_v=3.0, max_w=20.0, max_acc=40.0, max_alpha=400.0)


def P(name, value):
    return Parameter(name, value=value)


def provision_keys(robots, folder: str | None = None) -> str:
    """A key directory for a harness fleet of `robots` (every identity it needs)."""
    from fleet_coord.core.trust import Role
    from fleet_coord.keys import SERVER_IDENTITIES, IdentitySpec, KeyDir, robot_identities
    path = os.path.join(folder or tempfile.mkdtemp(prefix="fleet-keys-"), "fleet.keys")
    specs = [IdentitySpec(n, r) for n, r in SERVER_IDENTITIES]
    specs.append(IdentitySpec("ideal_driver", Role.SIM, ("*",)))
    for r in robots:
        specs += robot_identities(r, "ideal")
    KeyDir(path).init(specs)
    return path


class Fleet:
    def __init__(self, ctx, ex, map_path: str, robots: dict[str, tuple[float, float]],
                 ledger: str, bid_window: float = 0.3, retry_max_rounds: int = 4,
                 retry_base: float = 0.5, rtf: float | None = None,
                 grouped: bool = False, auth_keys: str | None = None,
                 extra_robots: tuple[str, ...] = ()) -> None:
        """`extra_robots`: robots the test itself speaks for (keys provisioned with the
        fleet's when FLEET_COORD_TEST_AUTH=enforce; sign with `sign(..., identity=)`)."""
        self.ctx, self.ex = ctx, ex
        names = list(robots)
        if auth_keys is None and os.environ.get("FLEET_COORD_TEST_AUTH") == "enforce":
            auth_keys = provision_keys(names + list(extra_robots),
                                       os.path.dirname(os.path.abspath(ledger)))
        self.auth_keys = auth_keys
        auth = [P("auth_mode", "enforce"), P("auth_keys", auth_keys)] if auth_keys else []
        #: parameters a node the test adds to this fleet needs (an agent joining later)
        self.auth_params = auth
        self.operator = None
        self._signers: dict = {}
        if auth_keys:
            from fleet_coord.auth import Signer
            from fleet_coord.keys import KeyDir
            self.operator = Signer("operator", KeyDir(auth_keys).private_key("operator"))
            self._signers["operator"] = self.operator
        poses = [c for xy in robots.values() for c in (float(xy[0]), float(xy[1]), 0.0)]
        limits = [P(k, float(v)) for k, v in LIMITS.items()]
        sim = [P("use_sim_time", True)] if rtf else []
        clock = [P("publish_clock", True), P("real_time_factor", float(rtf))] if rtf else []
        self.driver = IdealDriver(context=ctx, parameter_overrides=[
            P("robots", names), P("start_poses", poses), P("rate_hz", 100.0)] + limits + clock
            + auth)
        self.traffic = TrafficNode(context=ctx, parameter_overrides=[P("map", map_path)] + sim
                                   + auth)
        agent_params = [P("map", map_path), P("turn_margin", 0.2)] + limits + sim + auth
        if grouped:   # all agents on one AgentGroup, as `robot_agent --robots a,b,c` runs them
            self.group = AgentGroup(names, context=ctx, parameter_overrides=agent_params)
            self.agents = dict(zip(names, self.group.agents))
            agent_nodes = self.group.nodes()
        else:
            self.agents = {r: RobotAgent(r, context=ctx, parameter_overrides=agent_params)
                           for r in names}
            agent_nodes = list(self.agents.values())
        self.dispatcher = Dispatcher(context=ctx, parameter_overrides=[
            P("map", map_path), P("ledger", ledger), P("bid_window", bid_window),
            P("retry_max_rounds", retry_max_rounds), P("retry_base", retry_base)] + sim + auth)
        for n in [self.traffic, self.driver, *agent_nodes, self.dispatcher]:
            ex.add_node(n)
        self.statuses: list[TaskStatus] = []
        self.client_node = self.dispatcher  # any node can host the test's client
        self.submit_client = self.dispatcher.create_client(SubmitTask, "/fleet/submit_task")
        self.dispatcher.create_subscription(TaskStatus, "/fleet/task_status",
                                            self.statuses.append, qos.PROTOCOL)

    def ready(self) -> bool:
        return all(a.core.parked for a in self.agents.values()) and \
            len(self.dispatcher.alive_robots(self.dispatcher.now())) == len(self.agents)

    def submit(self, task_id: str, stations: list[str], kind: str = "goto", **fields):
        req = SubmitTask.Request()
        req.task = TaskMsg(id=task_id, kind=kind, stations=stations, **fields)
        return self.call(req)

    def call(self, req, timeout: float = 20.0, attempt_s: float = 3.0):
        """SubmitTask, sent again every `attempt_s` until answered: DDS can drop a response
        sent before the server matched this client's reader, and a submission is
        idempotent (the same task again is "accepted" again)."""
        deadline = time.monotonic() + timeout
        while True:
            if self.operator is not None:   # signed anew: a repeated signature is a replay
                self.operator.sign(req, "fleet/submit_task")
            fut = self.submit_client.call_async(req)
            give_up = min(deadline, time.monotonic() + attempt_s)
            while not fut.done() and time.monotonic() < give_up:
                self.ex.spin_once(timeout_sec=0.02)
            if fut.done():
                return fut.result()
            self.submit_client.remove_pending_request(fut)
            assert time.monotonic() < deadline, "SubmitTask did not answer"

    def sign(self, req, channel: str, identity: str = "operator"):
        """`req` signed as `identity` (the operator, or a robot of `extra_robots`) when the
        fleet authenticates (else unchanged); a request sent again must be signed again (a
        repeated signature is a replay)."""
        if self.operator is None:
            return req
        if identity not in self._signers:
            from fleet_coord.auth import Signer
            from fleet_coord.keys import KeyDir
            self._signers[identity] = Signer(identity,
                                             KeyDir(self.auth_keys).private_key(identity))
        return self._signers[identity].sign(req, channel)

    def final(self, task_id: str) -> TaskStatus | None:
        for s in self.statuses:
            if s.task_id == task_id and s.state in (TaskStatus.DONE, TaskStatus.FAILED,
                                                    TaskStatus.CANCELLED) \
                    and (s.state != TaskStatus.FAILED or not s.robot):
                return s
        return None

    def first(self, task_id: str, state: int) -> TaskStatus | None:
        return next((s for s in self.statuses if s.task_id == task_id and s.state == state),
                    None)

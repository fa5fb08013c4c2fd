"""robot_agent: one robot's agent node. It translates between ROS messages and the robot's
execution core (fleet_coord.core.execution.Execution), which decides everything:
bidding, parking, planning, committing, driving, yielding, recovering.

Topics and services (all absolute names; the robot is named by the parameter `robot`,
default: the node's namespace):

| in / out | name | type | QoS |
|---|---|---|---|
| sub | `/fleet/cfp` | CallForProposal | PROTOCOL |
| pub | `/fleet/proposals`, `/fleet/refusals` | Proposal, Refusal | PROTOCOL |
| sub | `/fleet/awards`, `/fleet/rejections` | Award, Rejection | PROTOCOL |
| pub / sub | `/fleet/task_status` | TaskStatus (ACTIVE + progress, DONE, FAILED + reason) | PROTOCOL |
| pub | `/fleet/robot_states` | RobotState, `state_rate` Hz (parked: new at `idle_state_rate`) | STATE |
| sub | `/traffic/updates` | ReservationSet (local replica of the table) | TABLE |
| pub | `/traffic/resync` | std_msgs/String: asks for a snapshot while the replica is stale | PROTOCOL |
| sub | `/fleet/robot_lost`, `/fleet/robot_removed` | String | PROTOCOL |
| client | `/traffic/reserve` | Reserve (async; never blocks the executor) | |
| client | `/fleet/list_tasks` | ListTasks: the open tasks, when it hears of one whose cfp it missed | |
| pub / sub | `/<robot>/cmd_vel`, `/<robot>/odom` | Twist, Odometry (the driver interface) | COMMAND, ODOM |
| pub | `/<robot>/plan` | nav_msgs/Path: the committed timed path (`drive: follow` only) | PLAN |
| sub | `/<robot>/vehicle` | DiagnosticStatus: available (OK) or not, its limits (`drive: follow`) | PLAN |

With authentication (docs/security.md) the driver topics are the signed ones
(fleet_coord.robot_link): `cmd_vel_signed`, `odom_signed`, and for `drive: follow`
`plan_signed` (SignedPath, also plain `plan` for tools) and `vehicle_signed`
(SignedDiagnosticStatus, only its driver's).

`drive: follow` is for robots that follow a path by themselves (a VDA 5050 vehicle behind
its master control, docs/vda5050.md): no velocity commands, the path goes out once
committed, progress comes from the odometry.

Parameters: `PARAMETERS` below (name, default, description); the robot's limits must
match its driver's. What the agent does with them: core/execution.py and
docs/execution.md.

`main()` runs one agent per process, or several with `--robots a,b,c` (parameters apply
to all of them): an AgentGroup node then hosts the fleet-wide topics, the traffic
client, the table replica, the timers and the /clock subscription once for all its
agents (fleet_coord.fleet_io.FleetIO), and each agent keeps a node of its own for its
name, parameters, logger and driver topics.
"""
from __future__ import annotations

import random
import sys
import time
from typing import Any, Callable

from fleet_coord_msgs.msg import Award, CallForProposal, Rejection, RobotNotice, TaskStatus
from fleet_coord_msgs.srv import ListTasks
from fleet_coord_msgs.srv import Reserve as ReserveSrv
from diagnostic_msgs.msg import DiagnosticStatus
from geometry_msgs.msg import Twist
from nav_msgs.msg import Odometry
from rcl_interfaces.msg import ParameterDescriptor
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.task import Future

from fleet_coord import convert, parameters
from fleet_coord.core import contract_net as cn
from fleet_coord.core.execution import (Abandon, Action, Execution, ExecutionConfig, FollowPath,
                                        ListOpenTasks, Reserve, ReserveAnswer, StatusReport,
                                        Velocity)
from fleet_coord.core.tasks import Task, TaskError
from fleet_coord.core.kinematics import Limits
from fleet_coord.core.pacing import IDLE_STATE_RATE, STATE_RATE, StatePacer
from fleet_coord.core.replica import TableUpdate
from fleet_coord.core.tracking import control_rate_problem, resolve_time_model
from fleet_coord.core.yielding import YieldMemo
from fleet_coord.fleet_config import load_roadmap_and_exclusion
from fleet_coord.namespace import FleetNames, robot_of
from fleet_coord.node_auth import REPEAT_WINDOW_S
from fleet_coord.fleet_io import FleetIO
from fleet_coord.parameters import ParameterError
from fleet_coord.robot_link import AgentLink, FollowerAgentLink
from fleet_coord.spin import run_nodes

#: The yield checks' searches, shared by every agent of this process: their replicas of
#: the one traffic authority have equal contents at equal versions (they only check when
#: not stale).
_YIELD_MEMO = YieldMemo()
#: A control tick this late (wall s) is logged: the driver's watchdog stops a robot
#: without commands for 0.5 s.
_STALL_S = 0.4

_DEFAULTS = ExecutionConfig()


def _time_model(prm: dict[str, Any]) -> str:
    """The time model the agent plans with ("auto" resolved for its limits and rate)."""
    limits = Limits(max_v=prm["max_v"], max_w=prm["max_w"], max_acc=prm["max_acc"],
                    max_alpha=prm["max_alpha"])
    return resolve_time_model(prm["time_model"], limits, prm["control_rate"])

#: (name, default, description) of every parameter. A callable default is computed
#: from the values declared before it.
PARAMETERS: list[tuple[str, Any, str]] = [
    ("robot", None, "robot name (default: the name the node was made for, else its "
     "namespace, else robot_1)"),
    ("map", "", "the fleet's map: a MovingAI .map grid or a YAML roadmap"),
    ("footprint_radius", 0.15, "m, radius of the robot's footprint (exclusion geometry)"),
    ("max_v", _DEFAULTS.limits.max_v, "m/s, the robot's top speed (as its driver's)"),
    ("max_w", _DEFAULTS.limits.max_w, "rad/s, the robot's top turn rate"),
    ("max_acc", _DEFAULTS.limits.max_acc, "m/s^2, the robot's acceleration limit"),
    ("max_alpha", _DEFAULTS.limits.max_alpha, "rad/s^2, the robot's turn acceleration limit"),
    ("control_rate", 20.0, "Hz of the control loop (commands to the driver)"),
    ("state_rate", STATE_RATE, "Hz of /fleet/robot_states"),
    ("idle_state_rate", IDLE_STATE_RATE,
     "Hz of new (signed) states while the robot stands idle and nothing in its state "
     "changes: in between, the last one is sent again at state_rate (liveness under packet "
     "loss); a change goes out at the next state tick (core/pacing.py). >= 1 (a copy older "
     "than 1 s is a replay to the fleet), or 0: a new state at every tick"),
    ("start_margin", _DEFAULTS.start_margin,
     "s from planning a leg to its earliest departure: the commit's latency budget"),
    ("reserve_timeout", _DEFAULTS.reserve_timeout,
     "s without an answer after which a /traffic/reserve call is given up and sent again"),
    ("silence", _DEFAULTS.silence,
     "s without /traffic/updates (a snapshot comes every 5 s) = cut off from the fleet; "
     "its results of that time are sent again once it hears the fleet"),
    ("time_model", "auto",
     "how long its paths take: real (straight runs at full speed, turns only where the "
     "path turns), stop_and_turn (every lane at plan_speed, a stop and a turn at every "
     "vertex: conservative) or auto (real when control_rate holds the robot at its "
     "limits, core/tracking.py control_rate_problem, else stop_and_turn), "
     "core/tracking.py robot_time_model"),
    ("time_margin", _DEFAULTS.time_margin,
     "s the robot may lead or lag its plan (time model real): every hold is that much "
     "longer at both ends"),
    ("leave_stations", _DEFAULTS.leave_stations,
     "an idle robot on a station (a vertex some task names) leaves it for the nearest "
     "spot that is no station and in no open task's way"),
    ("control_latency",
     lambda prm: ((2.0 if _time_model(prm) == "real" else 1.0) / prm["control_rate"]
                  if prm["control_rate"] > 0 else 0.0),
     "s from sending a command to its taking effect beyond the odometry's age (delay "
     "compensation, core/tracking.py CommandHistory); default two control periods at "
     "real speed (a lock-stepped simulator leads its agents by up to one or two; at speed "
     "the heading loop oscillates when the real latency is far from this), one with "
     "stop_and_turn"),
    ("driver_cmd_timeout", 0.5,
     "s the robot's driver runs a velocity command before its watchdog stops the robot "
     "(ideal_driver / sim cmd_timeout, serial_bridge cmd_vel_timeout; fleet-coord launch "
     "sets it from the config): with one control period, how long a command may run on "
     "when this agent stops; every command is one the robot may run on from and still "
     "stop where it must (core/tracking.py run_on_speed); 0: not modelled"),
    ("max_plan_attempts", _DEFAULTS.max_plan_attempts,
     "refused or failed plans for one station before the task fails"),
    ("capacity_kg", _DEFAULTS.capacity_kg, "kg the robot can carry (heavier tasks: refused)"),
    ("bid_objective", _DEFAULTS.bid_objective,
     "what a bid measures: completion (marginal sum of completion times, what the "
     "dispatcher's pool allocation matches on: spreads work over the fleet) or travel "
     "(marginal driving time), core/contract_net.py"),
    ("dwell", _DEFAULTS.dwell, "s at each station (load / unload)"),
    ("yield_check_period", _DEFAULTS.yield_check_period,
     "s between checks whether an idle robot's spot is needed by another's task"),
    ("yield_wait", _DEFAULTS.yield_wait,
     "s a task waits for an idle robot holding its station to yield before failing"),
    ("yield_wait_busy", _DEFAULTS.yield_wait_busy,
     "s a task waits for a working robot holding its station while that robot's task "
     "makes no progress"),
    ("yield_tabu", _DEFAULTS.yield_tabu, "s a spot it yielded (or failed to reach) is avoided"),
    ("status_period", _DEFAULTS.status_period,
     "s between repeats of its task's ACTIVE status (others forget a task not repeated "
     "for 4 periods + 1 s)"),
    ("plan_speed", _DEFAULTS.plan_speed,
     "m/s it plans at with time_model stop_and_turn; 0 = core.tracking.plan_speed_for("
     "limits), slower than max_v so it can stop and turn inside a vertex star"),
    ("turn_margin", _DEFAULTS.turn_margin,
     "s of control latency budget per turn (time_model stop_and_turn)"),
    ("drive", _DEFAULTS.drive,
     "track: velocity commands on /<robot>/cmd_vel along the timed path; follow: the robot "
     "follows the path by itself (a VDA 5050 vehicle), which goes out on /<robot>/plan"),
    ("follow_margin", _DEFAULTS.follow_margin,
     "follow: s before its hold ends at which a robot behind its path re-commits later holds"),
    ("driver_timeout", _DEFAULTS.driver_timeout,
     "s without odometry after which the robot is unavailable: the agent drops its tasks and "
     "stops speaking for it (the fleet declares it lost) until odometry returns; 0 = never"),
    ("follow_stall", _DEFAULTS.follow_stall,
     "follow: s a robot may make no progress along its path before its task fails"),
    ("stall_margin_max", _DEFAULTS.stall_margin_max,
     "track: s at most by which a new path's holds are widened for the stalls of this "
     "agent's control loop (a tick more than half a period late) seen in the last "
     "stall_memory s: a stalled loop sends no commands, its robot stands and is late; "
     "0 = off (core/execution.py Execution.stall_margin)"),
    ("stall_memory", _DEFAULTS.stall_memory,
     "s a control-loop stall keeps widening new paths' holds (stall_margin_max)"),
]


class AgentGroup(Node):
    """Several robot agents in one process (a large simulated fleet): the agents stay
    nodes of their own (`/<robot>/robot_agent`: name, parameters, logger, driver topics)
    without parameter or type-description services (the group node has them), and share
    this node's FleetIO and clock subscription (the agents' clocks follow this node's
    /clock under `use_sim_time`, one subscription for the process instead of one per
    agent)."""

    def __init__(self, robots: list[str], namespace: str = "", **kwargs: Any) -> None:
        if not robots:
            raise ValueError("AgentGroup: robots must name at least one robot")
        names = FleetNames(namespace)   # the fleet's (fleet_coord.namespace)
        overrides = list(kwargs.pop("parameter_overrides", None) or [])
        super().__init__(f"robot_agents_{robots[0]}", namespace=names.namespace,
                         parameter_overrides=overrides, **kwargs)
        self.names = names
        self.io = FleetIO(self)
        self.agents: list[RobotAgent] = []
        for r in robots:
            agent = RobotAgent(r, io=self.io, namespace=f"{names.namespace}/{r}",
                               start_parameter_services=False,
                               parameter_overrides=overrides + [
                                   Parameter("use_sim_time", value=False),
                                   Parameter("start_type_description_service", value=False)],
                               **kwargs)
            # rclpy has no public handle on a node's TimeSource; this one is the node's
            # own (it follows use_sim_time and owns the /clock subscription)
            self._time_source.attach_clock(agent.get_clock())
            self.agents.append(agent)

    def nodes(self) -> list[Node]:
        """This node and its agents: what an executor spins."""
        return [self, *self.agents]


class RobotAgent(Node):
    """One robot's agent: messages in -> `self.core` (Execution) -> actions out."""

    def __init__(self, robot: str | None = None, io: FleetIO | None = None,
                 **kwargs: Any) -> None:
        super().__init__("robot_agent", namespace=kwargs.pop("namespace", robot or ""),
                         **kwargs)
        prm = self._declare_parameters(robot)
        self.robot: str = prm["robot"]
        self.names = FleetNames.of_node(self, self.robot)
        roadmap, exclusion, self.roadmap_id = load_roadmap_and_exclusion(
            prm["map"], prm["footprint_radius"])
        try:
            config = ExecutionConfig(
                limits=Limits(max_v=prm["max_v"], max_w=prm["max_w"], max_acc=prm["max_acc"],
                              max_alpha=prm["max_alpha"]),
                **{name: prm[name] for name in (
                    "start_margin", "reserve_timeout", "silence", "control_latency",
                    "max_plan_attempts", "capacity_kg", "bid_objective", "dwell",
                    "yield_check_period", "yield_wait", "yield_wait_busy", "yield_tabu",
                    "status_period", "time_margin", "leave_stations",
                    "plan_speed", "turn_margin", "drive", "follow_margin", "driver_timeout",
                    "follow_stall", "stall_margin_max", "stall_memory")},
                control_period=1.0 / prm["control_rate"],
                # a command runs until the driver's watchdog, and the next one was due
                # a control period after it
                run_on=(prm["driver_cmd_timeout"] + 1.0 / prm["control_rate"]
                        if prm["driver_cmd_timeout"] > 0 else 0.0),
                time_model=_time_model(prm))
        except ValueError as e:   # the core refuses what the bounds table let through
            raise ParameterError(f"node {self.get_fully_qualified_name()}: {e}") from None
        # the robot's own driver topics on this node; the fleet-wide topics, the traffic
        # client, the table replica and the timers on the host of `io`: this node, or the
        # AgentGroup node that serves every agent of a process
        self.io = io if io is not None else FleetIO(self)
        self._guard = self.io.guard   # what a callback cannot take is dropped and logged
        self.roadmap = roadmap
        self.auth = self.io.auth
        self.follower = None
        if config.drive == "follow":
            # a robot that follows paths itself: its master control takes the path and
            # says whether the robot is available (fleet_coord/vda5050/master.py)
            self.follower = FollowerAgentLink(
                self, self.auth, self.robot,
                self._guard.wrap(f"/{self.robot}/vehicle", self._on_vehicle))
        self.link = AgentLink(self, self.auth, self.robot,
                              self._guard.wrap(f"/{self.robot}/odom", self._on_odom,
                                               lambda _m: self.robot))
        self.replica = self.io.replica(exclusion.of, roadmap.num_resources, self.roadmap_id)
        self.core = Execution(self.robot, roadmap, exclusion, self.replica, config,
                              rng=random.Random(self.robot), memo=_YIELD_MEMO,
                              log=self.get_logger())
        self._calls: dict[int, Future] = {}     # seq -> the pending /traffic/reserve call
        self._call_auth: dict[int, Any] = {}    # seq -> its request's Auth (the answer's)
        self._listing: tuple[int, Future] | None = None   # the /fleet/list_tasks call
        self._tick_wall: float | None = None    # monotonic time of the last control tick
        self._tick_period = 1.0 / prm["control_rate"]
        try:
            self._state_pacer = StatePacer(1.0 / prm["state_rate"], prm["idle_state_rate"])
            if 0 < prm["idle_state_rate"] < 1.0 / REPEAT_WINDOW_S:
                raise ValueError(f"idle_state_rate must be 0 (off) or >= "
                                 f"{1.0 / REPEAT_WINDOW_S:g} Hz (the fleet takes a repeated "
                                 f"state older than {REPEAT_WINDOW_S:g} s for a replay), got "
                                 f"{prm['idle_state_rate']!r}")
        except ValueError as e:
            raise ParameterError(f"node {self.get_fully_qualified_name()}: {e}") from None
        self._state_msg: Any = None   # the last state signed, sent again while nothing changes
        problem = control_rate_problem(config.limits, prm["control_rate"], config.time_model)
        if problem:
            self.get_logger().warning(problem)
        elif prm["time_model"] == "auto" and config.time_model != "real":
            self.get_logger().info(
                "time_model auto: planning with stop_and_turn: "
                f"{control_rate_problem(config.limits, prm['control_rate'], 'real')}")
        self.io.add(self, prm["control_rate"], prm["state_rate"])

    def _declare_parameters(self, robot: str | None) -> dict[str, Any]:
        prm: dict[str, Any] = {}
        for name, default, desc in PARAMETERS:
            if name == "robot":
                default = robot or robot_of(self.get_namespace()) or "robot_1"
            elif callable(default):
                default = default(prm)
            prm[name] = self.declare_parameter(
                name, default, ParameterDescriptor(description=desc)).value
        parameters.check_node(self, "robot_agent")   # bounds: ParameterError names the bad one
        return prm

    def now(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    # -- messages in --------------------------------------------------------------------

    def _on_cfp(self, msg: CallForProposal) -> None:
        task = convert.task_from_msg(msg.task)
        task.validate()   # TaskError names the field: dropped (fleet_coord.guard)
        self._act(self.core.on_cfp(self.now(), task, msg.round, msg.excluded_robots))

    def _on_award(self, msg: Award) -> None:
        self._act(self.core.on_award(self.now(), msg.robot, msg.task_id, msg.round))

    def _on_rejection(self, msg: Rejection) -> None:
        self._act(self.core.on_rejection(self.now(), msg.robot, msg.task_id, msg.round,
                                         msg.reason or msg.winner))

    def _on_update(self, update: TableUpdate) -> None:
        self._act(self.core.on_table_update(self.now(), update))

    def _on_task_status(self, msg: TaskStatus) -> None:
        status = convert.status_from_msg(msg)
        if status is not None:
            self._act(self.core.on_task_status(self.now(), status))

    def _on_robot_lost(self, msg: RobotNotice) -> None:
        self._act(self.core.on_robot_lost(self.now(), msg.robot))

    def _on_robot_removed(self, msg: RobotNotice) -> None:
        self._act(self.core.on_robot_removed(self.now(), msg.robot))

    def _on_odom(self, msg: Odometry) -> None:
        self._act(self.core.on_odometry(self.now(), convert.odometry_from_msg(msg)))

    def _on_vehicle(self, msg: DiagnosticStatus) -> None:
        available, limits = convert.driver_status_from_msg(msg)
        self._act(self.core.on_driver(self.now(), available, limits))

    def _tick(self) -> None:
        wall = time.monotonic()
        if self._tick_wall is not None and wall - self._tick_wall > _STALL_S \
                and self.core.job is not None:
            self.get_logger().warning(f"control loop stalled: {wall - self._tick_wall:.2f} s "
                                      f"since the last tick (period {self._tick_period:g} s)")
        self._tick_wall = wall
        now = self.now()
        for seq, future in list(self._calls.items()):
            if future.done():
                del self._calls[seq]
                resp = future.result()
                # a grant counts only with the authority's signature for this request
                if resp is not None and not self.auth.check(
                        resp, "traffic/reserve#response", request=self._call_auth.get(seq)):
                    resp = None
                self._call_auth.pop(seq, None)
                answer = ReserveAnswer(seq, False, 0, "no answer") if resp is None else \
                    ReserveAnswer(seq, bool(resp.ok), int(resp.version), resp.message,
                                  int(resp.epoch))
                self._act(self.core.on_reserve_answer(now, answer))
        if self._listing is not None and self._listing[1].done():
            (seq, future), self._listing = self._listing, None
            resp = future.result()
            if resp is not None:   # (no answer: the core asks again)
                self._act(self.core.on_task_list(now, seq, self._tasks_of(resp)))
        self._act(self.core.tick(now, authority_ready=self.io.reserve_client.service_is_ready()))

    def _tasks_of(self, resp: ListTasks.Response) -> list[Task]:
        """The listed tasks; one that does not validate is left out, saying so."""
        tasks = []
        for m in resp.tasks:
            task = convert.task_from_msg(m)
            try:
                task.validate()
            except TaskError as e:
                self.get_logger().warning(f"/fleet/list_tasks: task {m.id!r} left out: {e}")
                continue
            tasks.append(task)
        return tasks

    def _publish_state(self) -> None:
        report = self.core.state_report(self.now())
        if report is None:
            self._state_msg = None
            return
        # paced by wall time, as the fleet's nodes time the copies (on sim time a held or
        # slow clock would stretch the copies past their window)
        if self._state_pacer.due(time.monotonic(), report) or self._state_msg is None:
            self._state_msg = self.auth.sign(convert.robot_state_msg(
                report, self.get_clock().now().to_msg()), "fleet/robot_states", self.robot)
        self.io.state_pub.publish(self._state_msg)

    # -- actions out --------------------------------------------------------------------

    def _act(self, actions: list[Action]) -> None:
        for a in actions:
            self._ACT[type(a)](self, a)

    def _velocity(self, a: Velocity) -> None:
        twist = Twist()
        twist.linear.x, twist.angular.z = a.v, a.w
        self.link.publish_cmd(twist)

    def _follow_path(self, a: FollowPath) -> None:
        if self.follower is not None:
            self.follower.publish_plan(convert.timed_path_msg(self.roadmap, a.path,
                                                              self.get_clock().now().to_msg()))

    def _status(self, a: StatusReport) -> None:
        self.io.status_pub.publish(self.auth.sign(convert.status_msg(a), "fleet/task_status",
                                                  self.robot))

    def _reserve(self, a: Reserve) -> None:
        req = ReserveSrv.Request(robot=self.robot, roadmap_id=self.roadmap_id, replace=True,
                                 replace_from=a.replace_from, reassert=a.reassert)
        req.segments = [convert.segment_msg(self.robot, r, t0, t1) for r, t0, t1 in a.segments]
        self.auth.sign(req, "traffic/reserve", self.robot)
        self._call_auth[a.seq] = req.auth
        self._calls[a.seq] = self.io.reserve_client.call_async(req)

    def _abandon(self, a: Abandon) -> None:
        """The client drops the response of a call removed from it."""
        self._call_auth.pop(a.seq, None)
        future = self._calls.pop(a.seq, None)
        if future is not None and not future.done():
            self.io.reserve_client.remove_pending_request(future)

    def _list_tasks(self, a: ListOpenTasks) -> None:
        client = self.io.list_client
        if self._listing is not None:
            client.remove_pending_request(self._listing[1])
            self._listing = None
        if client.service_is_ready():   # (not yet: the core asks again)
            self._listing = (a.seq, client.call_async(ListTasks.Request()))

    def _propose(self, a: cn.Proposal) -> None:
        self.io.proposal_pub.publish(self.auth.sign(convert.proposal_msg(a), "fleet/proposals",
                                                    self.robot))

    def _refuse(self, a: cn.Refusal) -> None:
        self.io.refusal_pub.publish(self.auth.sign(convert.refusal_msg(a), "fleet/refusals",
                                                   self.robot))

    _ACT: dict[type, Callable[[RobotAgent, Any], None]] = {
        Velocity: _velocity, FollowPath: _follow_path, StatusReport: _status,
        Reserve: _reserve, Abandon: _abandon, cn.Proposal: _propose, cn.Refusal: _refuse,
        ListOpenTasks: _list_tasks}


def main(args: list[str] | None = None) -> None:
    """One agent (`robot` parameter or namespace), or several in this process:
    `--robots a,b,c` (a large simulated fleet), all on one executor; `--namespace NS`: the
    fleet's namespace for them (their nodes are /NS/<robot>/robot_agent)."""
    argv = list(sys.argv if args is None else args)
    opts = {"--robots": "", "--namespace": ""}
    for opt in opts:
        if opt in argv:
            i = argv.index(opt)
            if i + 1 >= len(argv):
                raise SystemExit(f"robot_agent: {opt} needs a value")
            opts[opt] = argv[i + 1]
            del argv[i:i + 2]
    robots = [r for r in opts["--robots"].split(",") if r]
    if opts["--namespace"] and not robots:
        raise SystemExit("robot_agent: --namespace goes with --robots (a lone agent takes "
                         "its namespace from ROS: --ros-args -r __ns:=/NS/<robot>)")
    run_nodes(lambda _argv: (AgentGroup(robots, opts["--namespace"]).nodes() if robots
                             else [RobotAgent()]), argv)


if __name__ == "__main__":
    main()

"""robot_agent: one robot's autonomous agent (Contract Net participant, planner, executor).

Topics and services (all absolute names; the robot is named by the parameter `robot`,
default: the node's namespace):

| in / out | name | type | QoS |
|---|---|---|---|
| sub | `/fleet/cfp` | CallForProposal | PROTOCOL |
| pub | `/fleet/proposals`, `/fleet/refusals` | Proposal, Refusal | PROTOCOL |
| sub | `/fleet/awards`, `/fleet/rejections` | Award, Rejection | PROTOCOL |
| pub | `/fleet/task_status` | TaskStatus (ACTIVE + progress, DONE, FAILED + reason) | PROTOCOL |
| pub | `/fleet/robot_states` | RobotState, `state_rate` Hz | STATE |
| sub | `/traffic/updates` | ReservationSet (local replica of the table) | TABLE |
| client | `/traffic/reserve` | Reserve (async; never blocks the executor) | |
| pub / sub | `/<robot>/cmd_vel`, `/<robot>/odom` | Twist, Odometry (the driver interface) | COMMAND, ODOM |

Life of a task: bid the marginal travel time (core Participant over
`Roadmap.shortest_times`), refuse what it cannot reach; on accept-proposal queue it; per
station: plan with SIPP against the replica from the vertex it stands on, commit through
`/traffic/reserve` (replacing its parking hold), replan with back-off on a refused
commit, track the timed path (core.tracking), dwell, go on; at the last station it parks
(its vertex held until further notice, t_end = inf) and reports DONE.

Reserve calls (park, commit, re-commit) are given up after `reserve_timeout` s without an
answer (a request or response lost to packet loss, a traffic restart) and sent again;
every call is idempotent (`replace=True` from now), and only the latest call of each kind
is looked at, so the answer to one given up on is never applied. A grant seen in
`/traffic/updates` counts as the answer (the response may be lost while the update got
through). A commit also holds the vertex the robot stands on until further notice (the
anchor): should its answer come late or never while the authority granted it, the table
still covers the robot standing there; once it drives the path it trims the anchor off
(the path alone, from now).

Withdrawn tasks: a task it holds (queued or being done) that another robot reports DONE,
or whose award the dispatcher withdraws (a Rejection for the round it won), is dropped;
a leg being committed or driven is finished without the task and the robot parks.

Cut off: no `/traffic/updates` for `silence` s (the authority sends a snapshot every 5 s)
means the agent is cut off from the fleet; when it hears the fleet again it re-sends the
DONE / FAILED statuses of that time (DDS drops them when the partition outlasts the
participant lease), so the dispatcher learns of work done while the robot was lost.

Yielding (fleet_coord.core.yielding): an idle parked agent checks every
`yield_check_period` s whether an open task of another robot needs its spot (its next
station, or its only way there) and if so drives to the nearest vertex nobody needs. It
learns the open tasks from the cfp (stations), task-status (who is ACTIVE, how far) and
robot-lost topics; an agent repeats the ACTIVE status of its task every `status_period`
s while it works (also while it waits or yields), so an agent that missed it (or dropped
it when the robot was briefly declared lost) learns it again, and one whose end it missed
goes quiet and is forgotten after `4 status_period + 1` s. A working agent whose
station is held for good by a parked robot waits for it to yield instead of burning its
plan attempts: up to `yield_wait` s while the holder is idle, and while the holder works
on a task (it heads to that station as the end of its own task, and yields once done) as
long as that task progresses — up to `yield_wait_busy` s without progress. An idle parked
agent also checks that it holds exactly its spot for good (`_check_footprint`).

Revoked reservations (fleet_coord.core.revocation): while driving, the agent compares
what it committed with its replica; when the traffic authority cut its holds (a lost
robot's spot is blocked) it re-commits a plan that stops before the cut — with a
continuation to its station when SIPP finds one — and never drives past the cut.

Speeds: the robot's limits (`max_v`, `max_w`, `max_acc`, `max_alpha`) must match its
driver; it *plans* at `plan_speed` (0 = `core.tracking.plan_speed_for(limits)`, slower
than max_v so it has time to stop and turn inside a vertex star; see core/tracking.py).

Removal: when the traffic authority announces this robot on `/fleet/robot_removed`
(`fleet-coord remove-robot`), the agent stops the robot, drops its job and queue (the
dispatcher re-announces them) and stands down for good: no states, no bids, no commands.
Starting a new agent is how the robot rejoins. Another robot's removal ends what this
agent knew of that robot's task (as a loss does).

`main()` runs one agent per process, or several with `--robots a,b,c` (parameters apply to
all of them): an AgentGroup node then hosts the fleet-wide topics, the traffic client, the
timers and the /clock subscription once for all its agents (FleetIO), and each agent keeps
a node of its own for its name, parameters, logger and driver topics.
"""
from __future__ import annotations

import math
import random
import sys
import time
from dataclasses import dataclass, field

from fleet_coord_msgs.msg import (Award, CallForProposal, Proposal, Refusal, Rejection,
                                  ReservationSet, RobotNotice, RobotState, TaskStatus)
from fleet_coord_msgs.srv import Reserve
from geometry_msgs.msg import Twist
from nav_msgs.msg import Odometry
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.node import Node
from rclpy.parameter import Parameter

from fleet_coord import qos
from fleet_coord.convert import (REFUSE_CODE, from_time, segment_msg, set_yaw, task_from_msg,
                                  to_time, yaw_of)
from fleet_coord.spin import run_nodes
from fleet_coord.core import contract_net as cn
from fleet_coord.core.kinematics import Limits
from fleet_coord.core.planner import path_to_segments, sipp
from fleet_coord.core.revocation import clip, first_uncovered, legs_done_at, stop_point
from fleet_coord.core.tasks import Task
from fleet_coord.core.tracking import CommandHistory, PathTracker, plan_speed_for, turn_time
from fleet_coord.core.yielding import OpenTask, YieldMemo, needed_by, parked_at, yield_target
from fleet_coord.fleet_config import load_roadmap_and_exclusion
from fleet_coord.table_replica import TableReplica

INF = math.inf
#: The yield checks' searches, shared by every agent of this process: their replicas of
#: the one traffic authority have equal contents at equal versions (they only check when
#: not stale).
_YIELD_MEMO = YieldMemo()
#: Default of the `reserve_timeout` parameter: a /traffic/reserve call unanswered for this
#: long (s of the node's clock) is given up and sent again. DDS can drop a service
#: response (at start-up under load, under packet loss, across a traffic restart).
RESERVE_TIMEOUT_S = 2.0
_GAVE_UP = "no answer in time"   # the message of a call given up on (compared by identity)



@dataclass
class _Reserve:
    """One /traffic/reserve call in flight. Every call carries a new `seq`; only the
    current call of its kind (park, commit, re-commit) is ever looked at, so the answer
    to a call given up on cannot be applied (its future is also removed from the client,
    which then drops the late response). Requests are idempotent (`replace=True`): a
    given-up call the authority did grant is superseded by the next one."""
    seq: int
    future: object
    sent: float
    keys: frozenset          # (resource, t_start, t_end) of the requested segments
    granted_version: int | None = None   # seen granted in /traffic/updates first


@dataclass
class _Job:
    """The task being executed (or a yield move, task None): stations left, dwell, and
    what is in flight."""
    task: Task | None
    dwell: float
    round: int
    stations: list[int] = field(default_factory=list)  # vertices still to visit
    phase: str = "plan"      # plan | commit | drive | dwell
    attempts: int = 0        # refused / failed plans for the current station
    retry_at: float = 0.0
    dwell_until: float = 0.0
    legs_total: int = 1
    blocked_since: float | None = None   # its station is held by a parked robot
    holder_idle_since: float | None = None   # ... that is not working on a task
    holder_progress: tuple = ()               # ... whose tasks were this far along
    holder_moved_at: float | None = None      # ... when that last changed

    @property
    def task_id(self) -> str:
        return self.task.id if self.task is not None else ""


def _seg_key(resource: int, t0: float, t1: float) -> tuple:
    return (int(resource), float(t0), float(t1))


class FleetIO:
    """The fleet-wide half of an agent's interface, on one host node for every agent of a
    process: `/fleet/*` and `/traffic/updates` subscriptions (each message is handed to
    every agent, which filters what is its own), the shared publishers, the
    `/traffic/reserve` client, and one control and one state timer per rate that tick
    all agents in turn.

    Why (docs/benchmarks.md, "DDS latency"): rclpy's executor costs ~0.5 ms per callback
    in bookkeeping over every entity in the process, and a cfp then waited in a queue
    behind the other agents' timers. With one agent per node and per entity, 10 agents
    in a process had ~180 entities and 500 timer callbacks/s; shared, ~30 and 30, and a
    cfp is one DDS delivery and one callback that bids for all 10."""

    def __init__(self, host: Node) -> None:
        self.host = host
        self.agents: list[RobotAgent] = []
        self._timers: dict[tuple[str, float], list] = {}
        #: MessageInfo of the cfp being handed out (bench/dds_latency.py reads it)
        self.cfp_info = None
        group = MutuallyExclusiveCallbackGroup()
        pub, sub = host.create_publisher, host.create_subscription
        self.proposal_pub = pub(Proposal, "/fleet/proposals", qos.PROTOCOL)
        self.refusal_pub = pub(Refusal, "/fleet/refusals", qos.PROTOCOL)
        self.status_pub = pub(TaskStatus, "/fleet/task_status", qos.PROTOCOL)
        self.state_pub = pub(RobotState, "/fleet/robot_states", qos.state_qos())
        sub(CallForProposal, "/fleet/cfp", self._on_cfp, qos.PROTOCOL, callback_group=group)
        for msg_type, topic, handler, profile in (
                (Award, "/fleet/awards", "_on_award", qos.PROTOCOL),
                (Rejection, "/fleet/rejections", "_on_rejection", qos.PROTOCOL),
                (ReservationSet, "/traffic/updates", "_on_update", qos.TABLE),
                (TaskStatus, "/fleet/task_status", "_on_task_status", qos.PROTOCOL),
                (RobotNotice, "/fleet/robot_lost", "_on_robot_lost", qos.PROTOCOL),
                (RobotNotice, "/fleet/robot_removed", "_on_robot_removed", qos.PROTOCOL)):
            sub(msg_type, topic, self._fan_out(self.agents, handler), profile,
                callback_group=group)
        self.reserve_client = host.create_client(Reserve, "/traffic/reserve",
                                                 callback_group=group)
        self._group = group
        self._replicas: dict[tuple[str, int], TableReplica] = {}

    def replica(self, exclusive, num_resources: int, roadmap_id: str) -> TableReplica:
        """The table replica of the agents on this roadmap: one per process and roadmap
        (the first agent's `_on_update` applies a message, the others find it applied),
        not one per agent: 25 agents kept 25 copies of the table and converted every
        update and every 5-s snapshot 25 times (2.6 % of a 25-agent process's CPU in a
        py-spy profile of the 50-robot demo). An agent whose roadmap has no id gets a
        replica of its own."""
        if not roadmap_id:
            return TableReplica(exclusive, num_resources, roadmap_id)
        key = (roadmap_id, num_resources)
        if key not in self._replicas:
            self._replicas[key] = TableReplica(exclusive, num_resources, roadmap_id)
        return self._replicas[key]

    @staticmethod
    def _fan_out(agents: list, method: str):
        """A callback calling `method` of each of `agents` (a live list) in turn."""
        def call(*args) -> None:
            for agent in agents:
                getattr(agent, method)(*args)
        return call

    def _on_cfp(self, msg: CallForProposal, info) -> None:
        self.cfp_info = info
        for agent in self.agents:
            agent._on_cfp(msg)

    def add(self, agent: RobotAgent, control_rate: float, state_rate: float) -> None:
        """Serve `agent`: its handlers get the fleet-wide messages, its `_tick` and
        `_publish_state` run on the host's timers of its rates."""
        self.agents.append(agent)
        for kind, rate in (("_tick", control_rate), ("_publish_state", state_rate)):
            key = (kind, float(rate))
            if key not in self._timers:
                members: list = []
                self._timers[key] = members
                self.host.create_timer(1.0 / rate, self._fan_out(members, kind),
                                       callback_group=self._group)
            self._timers[key].append(agent)


class AgentGroup(Node):
    """Several robot agents in one process (a large simulated fleet): the agents stay
    nodes of their own (`/<robot>/robot_agent`: name, parameters, logger, driver topics)
    without parameter or type-description services (the group node has them), and share
    this node's FleetIO and clock subscription (the agents' clocks follow this node's
    /clock under `use_sim_time`, one subscription for the process instead of one per
    agent)."""

    def __init__(self, robots: list[str], **kwargs) -> None:
        if not robots:
            raise ValueError("AgentGroup: robots must name at least one robot")
        overrides = list(kwargs.pop("parameter_overrides", None) or [])
        super().__init__(f"robot_agents_{robots[0]}", parameter_overrides=overrides, **kwargs)
        self.io = FleetIO(self)
        self.agents: list[RobotAgent] = []
        for r in robots:
            agent = RobotAgent(r, io=self.io, start_parameter_services=False,
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
    def __init__(self, robot: str | None = None, io: FleetIO | None = None, **kwargs) -> None:
        super().__init__("robot_agent", namespace=kwargs.pop("namespace", robot or ""),
                         **kwargs)
        p = self.declare_parameter
        ns_name = self.get_namespace().strip("/")
        self.robot = p("robot", robot or ns_name or "robot_1").value
        map_path = p("map", "").value
        radius = p("footprint_radius", 0.15).value
        self.limits = Limits(max_v=p("max_v", 1.0).value, max_w=p("max_w", 2.0).value,
                             max_acc=p("max_acc", 2.0).value,
                             max_alpha=p("max_alpha", 6.0).value)
        control_rate = p("control_rate", 20.0).value
        state_rate = p("state_rate", 10.0).value
        self.start_margin = p("start_margin", 0.6).value   # commit latency budget (s)
        # s without an answer after which a /traffic/reserve call is given up and resent
        self.reserve_timeout = p("reserve_timeout", RESERVE_TIMEOUT_S).value
        # no /traffic/updates (the authority sends a snapshot every 5 s) for this long:
        # cut off from the fleet; its results of that time are sent again on return
        self.silence = p("silence", 11.0).value
        # s from sending a command to its taking effect, beyond the odometry's age (which
        # the agent measures): delay compensation, core/tracking.py CommandHistory
        self.control_latency = p("control_latency", 1.0 / control_rate).value
        self.max_plan_attempts = p("max_plan_attempts", 20).value
        self.capacity_kg = p("capacity_kg", INF).value
        # what a bid measures: "travel" (marginal driving time) or "completion" (marginal
        # sum of completion times: spreads work over the fleet), core/contract_net.py
        objective = p("bid_objective", "travel").value
        if objective not in cn.OBJECTIVES:
            raise ValueError(f"parameter bid_objective must be one of "
                             f"{', '.join(cn.OBJECTIVES)}, got {objective!r}")
        self.dwell = p("dwell", 0.0).value   # seconds at each station (load / unload)
        self.yield_check_period = p("yield_check_period", 1.0).value
        self.yield_wait = p("yield_wait", 30.0).value
        self.yield_wait_busy = p("yield_wait_busy", 180.0).value
        self.yield_tabu = p("yield_tabu", 30.0).value
        # s between repeats of its task's ACTIVE status (while driving: every 0.5 s)
        self.status_period = p("status_period", 2.0).value
        # an open task of another robot not heard of for this long (its ACTIVE repeats
        # stopped) is forgotten: its DONE was lost (see _expire_active)
        self.active_expiry = 4.0 * self.status_period + 1.0
        self.roadmap, self.exclusion, self.roadmap_id = load_roadmap_and_exclusion(map_path, radius)
        speed = p("plan_speed", 0.0).value
        margin = p("turn_margin", 0.25).value   # s of control latency budget per turn
        self.plan_speed = speed if speed > 0 else plan_speed_for(
            self.limits, self.exclusion.clearance, margin)
        self.turn_allowance = turn_time(math.pi / 2, self.limits.max_w,
                                        0.7 * self.limits.max_alpha) + 0.1
        self._rng = random.Random(self.robot)
        self.participant = cn.Participant(self.robot, self._travel_time,
                                          cn.RobotProfile(capacity_kg=self.capacity_kg,
                                                         objective=objective))
        self.queue: list[Task] = []          # awarded, not started
        self._rounds: dict[str, int] = {}
        self.job: _Job | None = None
        # a task job set aside while the robot yields its spot (it waited for a station)
        self._suspended: _Job | None = None
        self.tracker: PathTracker | None = None
        self.pose: tuple[float, float, float] | None = None
        self.twist = (0.0, 0.0)
        self.odom_t: float | None = None      # stamp of the last odometry (node clock)
        self.commands = CommandHistory()
        self.here: int | None = None          # vertex stood on / parked at
        self.parked = False                   # its vertex is held until further notice
        self._reserve_seq = 0
        self._park_call: _Reserve | None = None
        self._commit_call: _Reserve | None = None
        self._commit_path = None
        self._trim: _Reserve | None = None    # drops the start-vertex anchor of a commit
        self._results: list[tuple[float, TaskStatus]] = []   # recent DONE / FAILED sent
        self._heard_at: float | None = None   # last /traffic/updates message
        self._cut_off_since: float | None = None
        self._resend_at: list[float] = []
        self._resend_since = 0.0
        self._tick_wall: float | None = None   # monotonic time of the last control tick
        self._tick_period = 1.0 / control_rate
        self._lamport = 0
        self._last_status = 0.0
        self._idle_stop_sent = False
        self._task_stations: dict[str, list[int]] = {}   # from cfps
        # task -> (robot, progress, when last heard ACTIVE)
        self._active: dict[str, tuple[str, float, float]] = {}
        self._tabu: dict[int, float] = {}                  # vertex -> tabu until
        self._next_yield_check = 0.0
        self._odd_holds_since: float | None = None   # see _check_footprint
        self._park_version = 0               # table version that shows the last park
        self._segments: list = []            # what the current drive committed
        self._commit_version = 0             # replica version that shows the commit
        self._checked_version = -1
        self._recommit = None                # (_Reserve, plan, segments) after a cut
        self.removed = False                 # removed from the fleet: stands down

        # the robot's own driver topics on this node; the fleet-wide topics, the traffic
        # client, the table replica and the timers on the host of `io`: this node, or the
        # AgentGroup node that serves every agent of a process
        self.cmd_pub = self.create_publisher(Twist, f"/{self.robot}/cmd_vel", qos.COMMAND)
        self.create_subscription(Odometry, f"/{self.robot}/odom", self._on_odom, qos.ODOM)
        self.io = io if io is not None else FleetIO(self)
        self.replica = self.io.replica(self.exclusion.of, self.roadmap.num_resources,
                                       self.roadmap_id)
        self.io.add(self, control_rate, state_rate)
        self.proposal_pub, self.refusal_pub = self.io.proposal_pub, self.io.refusal_pub
        self.status_pub, self.state_pub = self.io.status_pub, self.io.state_pub
        self.reserve_client = self.io.reserve_client

    # -- helpers ------------------------------------------------------------------------

    def now(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    def _travel_time(self, a: str, b: str) -> float:
        va, vb = self.roadmap.vertex(a), self.roadmap.vertex(b)
        return float(self.roadmap.shortest_times(vb, self.plan_speed)[va])

    def _nearest_vertex(self, x: float, y: float) -> int:
        d = (self.roadmap.pos[:, 0] - x) ** 2 + (self.roadmap.pos[:, 1] - y) ** 2
        return int(d.argmin())

    def _lamport_tick(self) -> int:
        self._lamport += 1
        return self._lamport

    # -- /traffic/reserve calls ------------------------------------------------------------

    def _call_reserve(self, segments, now: float) -> _Reserve:
        """Send `segments` [(resource, t0, t1)] as this robot's plan from `now` on."""
        req = Reserve.Request(robot=self.robot, roadmap_id=self.roadmap_id, replace=True,
                              replace_from=now)
        req.segments = [segment_msg(self.robot, r, a, b) for r, a, b in segments]
        self._reserve_seq += 1
        return _Reserve(self._reserve_seq, self.reserve_client.call_async(req), now,
                        frozenset(_seg_key(r, a, b) for r, a, b in segments))

    def _give_up(self, call: _Reserve | None) -> None:
        """Forget a call: a response arriving later is dropped by the client."""
        if call is not None and not call.future.done():
            self.reserve_client.remove_pending_request(call.future)

    def _answer(self, call: _Reserve, now: float):
        """(done, ok, version, message) of a call: its response, or its grant seen in the
        table updates (the response may be lost while the update got through), or, after
        `reserve_timeout` s with neither, done and not ok (given up: send again)."""
        if call.future.done():
            resp = call.future.result()
            if resp is None:
                return True, False, 0, "no answer"
            return True, bool(resp.ok), int(resp.version), resp.message
        if call.granted_version is not None:
            self._give_up(call)
            return True, True, call.granted_version, "granted (seen in /traffic/updates)"
        if now - call.sent > self.reserve_timeout:
            self._give_up(call)
            return True, False, 0, _GAVE_UP
        return False, False, 0, ""

    def _on_update(self, msg: ReservationSet) -> None:
        self.replica.apply(msg)
        now = self.now()
        if self._cut_off_since is not None:
            # back in touch: DDS may have dropped what it sent meanwhile (a partition
            # longer than the participant lease); send its results again, a few times
            # while the fleet's readers rediscover it (duplicates are harmless: a DONE of
            # an ended task is ignored)
            self.get_logger().warning(f"heard the fleet again after "
                                      f"{now - self._cut_off_since:.1f} s; re-sending my results")
            self._resend_at = [now + d for d in (0.5, 2.0, 5.0)]
            self._resend_since = self._cut_off_since - 1.0
            self._cut_off_since = None
        self._heard_at = now
        if msg.is_snapshot or msg.robot != self.robot:
            return
        added = None
        rc = self._recommit[0] if self._recommit is not None else None
        for call in (self._park_call, self._commit_call, rc, self._trim):
            if call is None or call.granted_version is not None or call.future.done():
                continue
            if added is None:
                added = {_seg_key(x.resource, x.t_start, x.t_end) for x in msg.added}
            if call.keys and call.keys <= added:
                call.granted_version = int(msg.version)

    def _working(self, robot: str) -> bool:
        """`robot` is executing a task (heard ACTIVE, not yet ended, lost or removed)."""
        return any(r == robot for r, _, _ in self._active.values())

    def _progress_of(self, robot: str) -> tuple:
        """How far along `robot` is with the tasks it works on: (task, progress) pairs."""
        return tuple(sorted((tid, round(p, 3)) for tid, (r, p, _) in self._active.items()
                            if r == robot))

    def busy(self) -> bool:
        return self.job is not None or bool(self.queue)

    def _core_state(self) -> cn.RobotState:
        """The plan as the Participant sees it: where the current job ends and when."""
        now = self.now()
        if self.job is not None:
            position = self.roadmap.names[self.job.stations[-1]] if self.job.stations \
                else self.roadmap.names[self.here]
            remaining = 0.0
            here = self.tracker.next_vertex if self.tracker else self.here
            for v in self.job.stations:
                remaining += float(self.roadmap.shortest_times(v, self.plan_speed)[here])
                here = v
            free_at = now + remaining
        else:
            position = self.roadmap.names[self.here]
            free_at = now
        return cn.RobotState(position=position, queue=list(self.queue), free_at=free_at,
                             now=now)

    # -- Contract Net ---------------------------------------------------------------------

    def _refuse(self, task_id: str, rnd: int, code: int, reason: str) -> None:
        self.refusal_pub.publish(Refusal(task_id=task_id, round=rnd, robot=self.robot,
                                         reason_code=code, reason=reason))

    def _on_cfp(self, msg: CallForProposal) -> None:
        task = task_from_msg(msg.task)
        try:
            self._task_stations[task.id] = [self.roadmap.vertex(s) for s in task.stations]
        except KeyError:
            pass
        if self.robot in msg.excluded_robots or self.removed:
            return
        if self.here is None:
            self._refuse(task.id, msg.round, Refusal.REASON_NOT_READY,
                         f"{self.robot} has no odometry yet")
            return
        for s in task.stations:
            try:
                self.roadmap.vertex(s)
            except KeyError as e:
                self._refuse(task.id, msg.round, Refusal.REASON_UNKNOWN_STATION, str(e))
                return
        answer = self.participant.bid(task, self._core_state(), msg.round)
        if isinstance(answer, cn.Refusal):
            self._refuse(task.id, msg.round, REFUSE_CODE.get(answer.reason, Refusal.REASON_OTHER),
                         f"{answer.reason}: {answer.detail}")
            return
        self.proposal_pub.publish(Proposal(task_id=task.id, round=msg.round, robot=self.robot,
                                           cost=float(answer.cost), eta=to_time(answer.eta)))

    def _on_award(self, msg: Award) -> None:
        if msg.robot != self.robot or self.removed:
            return
        if self.job is not None and self.job.task_id == msg.task_id:
            return  # a duplicate award of the task it is doing
        result = self.participant.on_accept_proposal(
            cn.AcceptProposal(self.robot, msg.task_id, msg.round), self._core_queue())
        if isinstance(result, cn.Failure):
            self._status(msg.task_id, TaskStatus.FAILED, msg.round, reason=result.reason)
            return
        self._rounds[msg.task_id] = msg.round
        self.get_logger().info(f"awarded {msg.task_id} (round {msg.round}), queue "
                               f"{[t.id for t in self.queue]}")

    def _core_queue(self) -> cn.RobotState:
        # on_accept_proposal inserts into state.queue in place: hand it our queue.
        state = self._core_state()
        state.queue = self.queue
        return state

    def _on_rejection(self, msg: Rejection) -> None:
        if msg.robot != self.robot:
            return
        if self._holds(msg.task_id) == msg.round:
            # a reject after the accept of the same round: the dispatcher withdrew the
            # award (the robot it had taken the task from finished it after all)
            self._withdraw(msg.task_id, f"award withdrawn: {msg.reason or msg.winner}")
            return
        self.participant.on_reject_proposal(
            cn.RejectProposal(self.robot, msg.task_id, msg.round))

    def _holds(self, task_id: str) -> int | None:
        """The round it was awarded `task_id` in, if it is queued or being done here."""
        if self.job is not None and self.job.task_id == task_id:
            return self.job.round
        if self._suspended is not None and self._suspended.task_id == task_id:
            return self._suspended.round
        if any(t.id == task_id for t in self.queue):
            return self._rounds.get(task_id, 0)
        return None

    def _withdraw(self, task_id: str, why: str) -> None:
        """Drop a task someone else has done: from the queue, or the current job. A job
        whose commit is in flight or that is driving finishes the leg it committed (as a
        move without a task: nobody hears of it) and parks at its end, so the robot stays
        inside what it holds; otherwise it stops being a job at once."""
        if any(t.id == task_id for t in self.queue):
            self.queue[:] = [t for t in self.queue if t.id != task_id]
            self._rounds.pop(task_id, None)
            self.get_logger().info(f"dropped queued {task_id}: {why}")
            return
        if self._suspended is not None and self._suspended.task_id == task_id:
            self._suspended = None   # the yield move goes on; nothing to resume after it
            self.get_logger().info(f"dropped {task_id} (set aside while yielding): {why}")
            return
        job = self.job
        if job is None or job.task_id != task_id:
            return
        if job.phase in ("commit", "drive") and job.stations:
            self.job = _Job(task=None, dwell=0.0, round=0, stations=[job.stations[0]],
                            phase=job.phase, legs_total=1)
        else:
            self.job = None
            self.parked = False   # hold where it stands again (idempotent)
        self.get_logger().info(f"dropped {task_id} (it was {job.phase}): {why}")

    def _status(self, task_id: str, state: int, rnd: int, progress: float = 0.0,
                reason: str = "") -> None:
        msg = TaskStatus(
            task_id=task_id, robot=self.robot, state=state, round=rnd,
            progress=float(progress), reason=reason, stamp=self.get_clock().now().to_msg(),
            lamport=self._lamport_tick())
        self.status_pub.publish(msg)
        if state in (TaskStatus.DONE, TaskStatus.FAILED):
            now = self.now()
            self._results = [(t, m) for t, m in self._results if now - t < 600.0][-19:]
            self._results.append((now, msg))

    def _check_contact(self, now: float) -> None:
        """Notice a cut-off (no table update for `silence` s) and, once back, re-send the
        results of that time (see _on_update)."""
        if self._heard_at is not None and self._cut_off_since is None \
                and now - self._heard_at > self.silence:
            self._cut_off_since = self._heard_at
            self.get_logger().warning(f"no word from the traffic authority for "
                                      f"{now - self._heard_at:.1f} s")
        if self._resend_at and now >= self._resend_at[0]:
            self._resend_at.pop(0)
            for t, m in self._results:
                if t >= self._resend_since:
                    self.status_pub.publish(m)

    # -- what the others are doing (for yielding) -----------------------------------------

    def _on_task_status(self, m: TaskStatus) -> None:
        if m.state == TaskStatus.DONE and m.robot and m.robot != self.robot \
                and self._holds(m.task_id) is not None:
            self._withdraw(m.task_id, f"{m.robot} reported it done")
        if m.state == TaskStatus.ACTIVE and m.robot and m.robot != self.robot:
            if m.task_id in self._task_stations:
                self._active[m.task_id] = (m.robot, float(m.progress), self.now())
        elif m.state in (TaskStatus.DONE, TaskStatus.FAILED, TaskStatus.CANCELLED):
            self._active.pop(m.task_id, None)
            # a robot's FAILED sends the task back to auction; DONE, CANCELLED and the
            # dispatcher's FAILED (no robot: it gave up) end it
            if m.state != TaskStatus.FAILED or not m.robot:
                self._task_stations.pop(m.task_id, None)
                self.participant.forget(m.task_id)

    def _expire_active(self, now: float) -> None:
        """Forget the open tasks of others not heard of for `active_expiry` s. A working
        agent repeats its ACTIVE every `status_period` s, so only a task whose end this
        agent missed goes quiet: a reliable reader still drops messages when its history
        (PROTOCOL, keep-last 100) overflows while its process is stalled. In the 50-robot
        demo of 2026-12-03 the agents of one process missed a DONE that way and yielded
        seven times to a task that had ended 3 000 s before."""
        for tid, (_, _, heard) in list(self._active.items()):
            if now - heard > self.active_expiry:
                del self._active[tid]

    def _on_robot_lost(self, m: RobotNotice) -> None:
        for tid, (robot, _, _) in list(self._active.items()):
            if robot == m.robot:
                del self._active[tid]

    def _on_robot_removed(self, m: RobotNotice) -> None:
        if m.robot != self.robot:
            self._on_robot_lost(m)
            return
        if self.removed:
            return
        self.removed = True
        dropped = ([self.job.task_id] if self.job is not None and self.job.task_id else []) \
            + [t.id for t in self.queue]
        self.job, self.tracker, self._suspended = None, None, None
        self.queue.clear()
        self._stop()
        self.get_logger().warning(
            f"{self.robot} was removed from the fleet: stopped and standing down (tasks "
            f"dropped, the dispatcher re-announces them: {dropped or 'none'}); start a new "
            "agent for it to rejoin")

    def open_tasks(self) -> list[OpenTask]:
        out = []
        for tid, (robot, progress, _) in sorted(self._active.items()):
            stations = self._task_stations.get(tid)
            if not stations:
                continue
            k = min(int(progress * len(stations) + 1e-6), len(stations) - 1)
            out.append(OpenTask(tid, robot, stations[k], tuple(stations[k + 1:])))
        return out

    def _maybe_yield(self, now: float) -> None:
        tasks = self.open_tasks()
        if not tasks or self.replica.stale:
            return
        table = self.replica.table
        need = needed_by(self.robot, self.here, tasks, table, self.roadmap, self.exclusion,
                         now, self.plan_speed, memo=_YIELD_MEMO)
        if need is None:
            return
        tabu = [v for v, until in self._tabu.items() if until > now]
        target = yield_target(self.robot, self.here, tasks, table, self.roadmap,
                              self.exclusion, now, self.plan_speed, tabu=tabu,
                              memo=_YIELD_MEMO)
        name = self.roadmap.names
        if target is None:
            self.get_logger().warning(f"{need.robot} needs my spot {name[self.here]} for "
                                      f"{need.task_id} but there is nowhere to yield to")
            return
        self.get_logger().info(f"yielding {name[self.here]} to {need.robot} ({need.task_id}, "
                               f"heading to {name[need.goal]}): moving to {name[target]}")
        self._tabu[self.here] = now + self.yield_tabu
        if self.job is not None:   # a task waiting for its station: resumed after the move
            self._suspended = self.job
        self.job = _Job(task=None, dwell=0.0, round=0, stations=[target])

    def _check_footprint(self, now: float) -> None:
        """An idle parked robot should hold exactly its spot for good in the table. It may
        hold more: the traffic authority blocks, for good, everything a robot held around
        the time it was declared lost (a stall of its process is enough), and an idle robot
        never commits again to replace that block; nobody else can take those resources
        and nothing would ever free them. Or less: its spot was cut. Either way, seen on
        two checks in a row (the replica may lag a call by a moment), it parks again: a
        hold of its spot from now on, replacing everything else it holds."""
        if self.replica.stale or self._park_call is not None or \
                self.replica.version < max(self._park_version, self._commit_version):
            return   # the replica does not show our last hold yet
        mine = [r for r in self.replica.table.reservations(self.robot) if r.t_end > now]
        odd = [r for r in mine if r.t_end == INF and r.resource != self.here]
        if odd or not any(r.resource == self.here and r.t_end == INF for r in mine):
            if self._odd_holds_since is None:
                self._odd_holds_since = now
                return
            held = ', '.join(self.roadmap.resource_name(r.resource) for r in odd)
            self.get_logger().warning(
                f"idle at {self.roadmap.names[self.here]} but holding "
                f"{held or 'not my spot'} for good: "
                f"parking again")
            self.parked = False
        self._odd_holds_since = None

    def _repeat_status(self, now: float) -> None:
        """Say again that it works on its task (ACTIVE, how far) every `status_period` s.
        The others yield on what they last heard: one that missed the status, or dropped
        it when this robot was declared lost for a moment, would otherwise never learn
        that this robot waits for its spot."""
        job = self.job if self.job is not None and self.job.task is not None \
            else self._suspended
        if job is None or now - self._last_status < self.status_period:
            return
        done = job.legs_total - len(job.stations)
        self._status(job.task.id, TaskStatus.ACTIVE, job.round, done / job.legs_total)
        self._last_status = now

    @staticmethod
    def _waiting(job: _Job | None) -> bool:
        """A task job standing still until its next station frees up: it waits on a robot
        holding the station, or its plans were refused. Such a robot yields its own spot
        like an idle one (two robots waiting on each other's spots would otherwise block
        until `yield_wait_busy`), and resumes the task after the move."""
        return job is not None and job.task is not None and job.phase == "plan" \
            and (job.blocked_since is not None or job.attempts > 0)

    def _stop(self) -> None:
        self.cmd_pub.publish(Twist())
        self.commands.clear()

    # -- inputs ---------------------------------------------------------------------------

    def _on_odom(self, msg: Odometry) -> None:
        self.pose = (msg.pose.pose.position.x, msg.pose.pose.position.y,
                     yaw_of(msg.pose.pose.orientation))
        self.twist = (msg.twist.twist.linear.x, msg.twist.twist.angular.z)
        self.odom_t = from_time(msg.header.stamp)
        if self.here is None:
            self.here = self._nearest_vertex(self.pose[0], self.pose[1])

    # -- the control loop -----------------------------------------------------------------

    def _tick(self) -> None:
        wall = time.monotonic()
        if self._tick_wall is not None and wall - self._tick_wall > 0.4 \
                and self.job is not None:
            # the driver's watchdog stops a robot without commands for 0.5 s
            self.get_logger().warning(f"control loop stalled: {wall - self._tick_wall:.2f} s "
                                      f"since the last tick (period {self._tick_period:g} s)")
        self._tick_wall = wall
        if self.pose is None or self.here is None or self.removed:
            return
        now = self.now()
        self._check_contact(now)
        self._expire_active(now)
        if not self.parked:
            self._park(now)
        if self.job is None and self.queue and self.parked:
            self._start(self.queue.pop(0), now)
        self._repeat_status(now)
        if now >= self._next_yield_check and (
                (self.job is None and self.parked) or self._waiting(self.job)):
            # on the period's grid: the agents of a process check in the same tick, on
            # the same table version, and share the searches (_YIELD_MEMO)
            p = self.yield_check_period
            self._next_yield_check = (math.floor(now / p) + 1) * p if p > 0 else now
            if self.job is None:
                self._check_footprint(now)
            if self.parked:
                self._maybe_yield(now)
        if self.job is None:
            if not self._idle_stop_sent:
                self._stop()
                self._idle_stop_sent = True
            return
        self._idle_stop_sent = False
        job = self.job
        if job.phase == "plan" and now >= job.retry_at:
            self._plan(job, now)
        elif job.phase == "commit":
            self._check_commit(job, now)
        elif job.phase == "drive":
            self._drive(job, now)
        elif job.phase == "dwell" and now >= job.dwell_until:
            self._next_station(job, now)
        if job.phase != "drive":
            self._stop()

    def _park(self, now: float) -> None:
        """Hold the vertex it stands on until further notice (at start-up)."""
        if self._park_call is None:
            if not self.reserve_client.service_is_ready():
                return
            self._park_call = self._call_reserve([(self.here, now, INF)], now)
            return
        done, ok, version, message = self._answer(self._park_call, now)
        if not done:
            return
        self._park_call = None
        if ok:
            self.parked = True
            self._park_version = version
            self.get_logger().info(f"parked at {self.roadmap.names[self.here]}")
        elif message is _GAVE_UP:
            # a lost request or response: ask again (holding where it stands is idempotent)
            self.get_logger().warning(f"no answer from /traffic/reserve for "
                                      f"{self.reserve_timeout:g} s; asking again")
        else:
            self.get_logger().warning(
                f"cannot hold my start vertex {self.roadmap.names[self.here]}: "
                f"{message}; retrying")

    def _start(self, task: Task, now: float) -> None:
        stations = [self.roadmap.vertex(s) for s in task.stations]
        self.job = _Job(task=task, dwell=self.dwell,
                        round=self._rounds.pop(task.id, 0), stations=stations,
                        legs_total=len(stations))
        self._status(task.id, TaskStatus.ACTIVE, self.job.round, 0.0)
        self._last_status = now

    def _plan(self, job: _Job, now: float) -> None:
        goal = job.stations[0]
        if goal == self.here:
            self._arrived(job, now)
            return
        holder = parked_at(self.replica.table, self.exclusion, goal, self.robot)
        if holder is not None and job.task is not None:
            # A robot holds the station for good: parked there, or heading there as the
            # end of its task. It yields (core.yielding) once it is idle; waiting costs
            # no plan attempt. The wait is bounded by `yield_wait` s of the holder being
            # idle (it should have yielded: nowhere to go, lost) and by `yield_wait_busy`
            # s of its tasks not progressing (two working robots waiting for each other;
            # a holder driving to the station across a crowded map may take minutes);
            # then the task fails here and goes back to auction.
            name = self.roadmap.names[goal]
            if job.blocked_since is None:
                job.blocked_since = now
                self.get_logger().info(f"station {name} is held by {holder}; "
                                       f"waiting for it to yield")
            if self._working(holder):
                job.holder_idle_since = None
            elif job.holder_idle_since is None:
                job.holder_idle_since = now
            progress = self._progress_of(holder)
            if job.holder_moved_at is None or progress != job.holder_progress:
                job.holder_progress, job.holder_moved_at = progress, now
            idle = job.holder_idle_since is not None and \
                now - job.holder_idle_since > self.yield_wait
            if idle or now - job.holder_moved_at > self.yield_wait_busy:
                self._finish(job, TaskStatus.FAILED,
                             f"station {name} stayed held by {holder} for "
                             f"{now - job.blocked_since:.0f} s" +
                             (f" ({self.yield_wait:g} s while it was idle)" if idle else
                              f", its task stuck for {now - job.holder_moved_at:.0f} s "
                              f"(yield_wait_busy {self.yield_wait_busy:g} s)"))
            else:
                job.retry_at = now + 0.3
            return
        job.blocked_since = job.holder_idle_since = job.holder_moved_at = None
        t_start = now + self.start_margin + self.turn_allowance
        path = sipp(self.roadmap, self.exclusion, self.replica.table, self.robot, self.here,
                    goal, t_start, self.plan_speed, deadline_s=0.5)
        if path is None:
            self._retry(job, now, f"no conflict-free path from {self.roadmap.names[self.here]} "
                                  f"to station {self.roadmap.names[goal]} (it may be occupied)")
            return
        path = [(self.here, now)] + path
        segments = path_to_segments(self.roadmap, self.exclusion, path, self.plan_speed)
        # The anchor: its start vertex stays held until further notice until it knows
        # the answer. Should the answer be late or lost while the authority granted the
        # path, the table then still covers the robot standing here (otherwise it would
        # say the robot left at the planned departure and could give the vertex to
        # someone else); a granted commit is trimmed once the robot drives it.
        self._give_up(self._commit_call)
        self._give_up(self._trim)
        self._trim = None
        self._commit_call = self._call_reserve(segments + [(self.here, now, INF)], now)
        self._commit_path = path
        self._commit_segments = segments
        job.phase = "commit"

    def _retry(self, job: _Job, now: float, reason: str) -> None:
        job.attempts += 1
        if job.attempts >= self.max_plan_attempts:
            self._finish(job, TaskStatus.FAILED, f"{reason}; gave up after {job.attempts} "
                                                 "attempts")
            return
        job.phase = "plan"
        job.retry_at = now + min(2.0, 0.1 * 1.5 ** job.attempts) * (0.5 + self._rng.random())

    def _check_commit(self, job: _Job, now: float) -> None:
        done, ok, version, message = self._answer(self._commit_call, now)
        if not done:
            return
        self._commit_call = None
        path = self._commit_path
        if message is _GAVE_UP:
            # A lost request or response. If the authority did grant it, the table says
            # the robot leaves while it stands here: plan again at once, the new commit
            # (replace=True, from now) supersedes it. Not a refusal: no attempt counted.
            self.get_logger().warning(f"no answer from /traffic/reserve for "
                                      f"{self.reserve_timeout:g} s; planning again")
            job.phase = "plan"
            job.retry_at = now
            return
        if not ok:
            self._retry(job, now, f"reservation refused: {message}")
            return
        # The parking hold was replaced by the path; it parks again at the path's end.
        first_departure = next((t for (v, t), (w, _) in zip(path[1:], path[2:]) if w != v),
                               path[-1][1])
        if now > first_departure - self.turn_allowance:
            self.get_logger().warning(f"commit answered {now - first_departure:.2f} s after "
                                      "the planned departure; replanning")
            job.phase = "plan"
            return
        self.tracker = PathTracker(self.roadmap, path, self.plan_speed,
                                   self.exclusion.clearance, self.limits)
        self.tracker_path = list(path)
        self._segments = self._commit_segments
        self._commit_version = version
        self._checked_version = -1
        self._drop_recommit()
        job.phase = "drive"
        self._send_trim(now)

    # -- revoked reservations ---------------------------------------------------------

    def _legs_driven(self) -> int:
        return self.tracker.index + int(self.tracker.driving)

    def _check_cut(self, job: _Job, now: float) -> None:
        """Did the authority take part of the committed plan away? Then stop before the
        cut (and go on from there when SIPP finds a way)."""
        rep = self.replica
        if rep.stale or rep.version < self._commit_version or rep.version == self._checked_version:
            return
        self._checked_version = rep.version
        cut = first_uncovered(rep.table, self.robot, self._segments, now)
        if cut is None:
            return
        path = self.tracker_path
        k = stop_point(rep.table, self.roadmap, self.exclusion, self.robot, path,
                       self.plan_speed, cut, self._legs_driven())
        name = self.roadmap.names
        if k is None:
            self.get_logger().error(f"my reservations were revoked from t={cut:.2f} and I "
                                    "cannot reach a free stop point; stopping here")
            self._stop_here(job, now)
            return
        prefix = list(path[:k + 1])
        self.get_logger().warning(f"my reservations were revoked from t={cut:.2f}: stopping "
                                  f"at {name[prefix[-1][0]]} and replanning")
        # Stop there whatever the authority answers: everything up to it is still ours.
        self._set_tracker(prefix)
        self._segments = clip(path_to_segments(self.roadmap, self.exclusion, prefix,
                                               self.plan_speed), now)
        plan = prefix
        goal = job.stations[0]
        v, t_v = prefix[-1]
        if v != goal:
            t0 = max(t_v, now + self.start_margin + self.turn_allowance)
            cont = sipp(self.roadmap, self.exclusion, rep.table, self.robot, v, goal, t0,
                        self.plan_speed, deadline_s=0.2)
            if cont is not None:
                plan = prefix + [(v, t0)] + cont[1:] if t0 > t_v else prefix + cont[1:]
        self._send_recommit(plan, now)

    def _send_trim(self, now: float) -> None:
        """Hold exactly the committed path from now on (drops the commit's anchor)."""
        self._give_up(self._trim)
        self._trim = self._call_reserve(clip(self._segments, now), now)

    def _check_trim(self, now: float) -> None:
        done, _, _, message = self._answer(self._trim, now)
        if not done:
            return
        self._trim = None
        if message is _GAVE_UP:
            self._send_trim(now)
        # refused: part of the path was revoked meanwhile; _check_cut deals with that (and
        # its re-commit drops the anchor as well)

    def _send_recommit(self, plan, now: float) -> None:
        segs = clip(path_to_segments(self.roadmap, self.exclusion, plan, self.plan_speed), now)
        self._give_up(self._trim)   # a re-commit replaces everything from now as well
        self._trim = None
        self._drop_recommit()
        self._recommit = (self._call_reserve(segs, now), plan, segs)

    def _drop_recommit(self) -> None:
        if self._recommit is not None:
            self._give_up(self._recommit[0])
            self._recommit = None

    def _check_recommit(self, job: _Job, now: float) -> None:
        call, plan, segs = self._recommit
        done, ok, version, message = self._answer(call, now)
        if not done:
            return
        self._recommit = None
        stop = self.tracker_path
        if message is _GAVE_UP:
            # lost: ask again for what it drives now (the stop point; replace=True
            # supersedes the call given up on if that was granted after all)
            self.get_logger().warning(f"no answer to my re-commit for "
                                      f"{self.reserve_timeout:g} s; sending it again")
            self._send_recommit(stop, now)
            return
        if ok:
            self._commit_version = version
            self._checked_version = -1
            if len(plan) > len(stop):
                # the continuation: only if the robot has not passed the stop point yet
                # and the next departure is still ahead
                departures = [t for (u, _), (w, t) in zip(plan[len(stop) - 1:],
                                                          plan[len(stop):]) if w != u]
                if self._legs_driven() <= legs_done_at(stop)[-1] and departures:
                    self._set_tracker(plan)
            self._segments = segs
            return
        if len(plan) > len(stop):
            self._send_recommit(stop, now)   # at least the stop point
            return
        self.get_logger().error(f"cannot hold my stop point: {message}; stopping here")
        self._stop_here(job, now)

    def _set_tracker(self, path) -> None:
        old = self.tracker
        new = PathTracker(self.roadmap, path, self.plan_speed, self.exclusion.clearance,
                          self.limits)
        if old is not None:
            new.index, new.driving, new.reverse = old.index, old.driving, old.reverse
        self.tracker = new
        self.tracker_path = list(path)

    def _stop_here(self, job: _Job, now: float) -> None:
        self._stop()
        self.here = self.tracker.vertex if self.tracker else self.here
        self.tracker = None
        self._drop_recommit()
        self._give_up(self._trim)
        self._trim = None
        job.phase = "plan"
        job.retry_at = now + 0.5
        self.parked = False   # hold where it stands again before anything else

    def _drive(self, job: _Job, now: float) -> None:
        if self._recommit is not None:
            self._check_recommit(job, now)
        else:
            if self._trim is not None:
                self._check_trim(now)
            self._check_cut(job, now)
        if job.phase != "drive":
            return
        x, y, th = self.pose
        # Act on where the robot will be when this command takes effect (see
        # CommandHistory). An odometry stamp far from our clock (a driver on another
        # clock) is not trusted: then the pose is taken as of now.
        t_odom = self.odom_t if self.odom_t is not None and abs(self.odom_t - now) < 1.0 \
            else now
        t_apply = max(now, t_odom) + self.control_latency
        x, y, th = self.commands.predict(x, y, th, t_odom, t_apply)
        cmd = self.tracker.command(x, y, th, t_apply)
        self.commands.record(t_apply, cmd.v, cmd.w)
        self.here = cmd.vertex
        twist = Twist()
        twist.linear.x, twist.angular.z = float(cmd.v), float(cmd.w)
        self.cmd_pub.publish(twist)
        if now - self._last_status > 0.5 and job.task is not None:
            done = job.legs_total - len(job.stations)
            self._status(job.task.id, TaskStatus.ACTIVE, job.round,
                         (done + cmd.progress) / job.legs_total)
            self._last_status = now
        if cmd.arrived:
            self.here = self.tracker.goal
            self.tracker = None
            if self.here == job.stations[0]:
                self._arrived(job, now)
            else:   # a stop point after a cut: plan on from here
                job.phase = "plan"
                job.retry_at = now

    def _arrived(self, job: _Job, now: float) -> None:
        job.stations.pop(0)
        job.attempts = 0
        job.phase = "dwell"
        job.dwell_until = now + job.dwell
        if job.stations and job.task is not None:
            # tell the others where it heads next (they may be parked there)
            done = job.legs_total - len(job.stations)
            self._status(job.task.id, TaskStatus.ACTIVE, job.round, done / job.legs_total)
            self._last_status = now

    def _next_station(self, job: _Job, now: float) -> None:
        if job.stations:
            job.phase = "plan"
            job.retry_at = now
        else:
            self._finish(job, TaskStatus.DONE)

    def _finish(self, job: _Job, state: int, reason: str = "") -> None:
        self.job = None
        if job.task is None:   # a yield move: nobody to report to
            if state == TaskStatus.FAILED:
                self.get_logger().warning(f"could not yield: {reason}")
                if job.stations:   # pick another spot next time
                    self._tabu[job.stations[0]] = self.now() + self.yield_tabu
            if self._suspended is not None:   # back to the task it waited in
                self.job, self._suspended = self._suspended, None
                self.job.phase, self.job.retry_at = "plan", 0.0
                self.get_logger().info(f"resuming {self.job.task_id} after yielding")
            return
        self._status(job.task.id, state, job.round, 1.0 if state == TaskStatus.DONE else 0.0,
                     reason)
        if state == TaskStatus.FAILED:
            self.get_logger().warning(f"task {job.task.id} failed: {reason}")

    # -- state ----------------------------------------------------------------------------

    def _publish_state(self) -> None:
        if self.removed:
            return
        msg = RobotState(robot=self.robot, battery=1.0, lamport=self._lamport_tick())
        msg.header.stamp = self.get_clock().now().to_msg()
        msg.header.frame_id = "map"
        if self.pose is not None:
            x, y, th = self.pose
            msg.pose.position.x, msg.pose.position.y = x, y
            set_yaw(msg.pose.orientation, th)
            msg.twist.linear.x, msg.twist.angular.z = self.twist
        if self.job is None:
            msg.mode = RobotState.IDLE
        else:
            msg.task_id = self.job.task_id
            msg.mode = RobotState.MOVING if self.job.phase == "drive" else RobotState.WAITING
        msg.queued_task_ids = [t.id for t in self.queue]
        if self.here is not None:
            msg.vertex = self.here
        self.state_pub.publish(msg)


def main(args=None) -> None:
    """One agent (`robot` parameter or namespace), or several in this process:
    `--robots a,b,c` (a large simulated fleet), all on one executor."""
    argv = list(sys.argv if args is None else args)
    robots: list[str] = []
    if "--robots" in argv:
        i = argv.index("--robots")
        robots = [r for r in argv[i + 1].split(",") if r]
        del argv[i:i + 2]
    run_nodes(lambda _argv: AgentGroup(robots).nodes() if robots else [RobotAgent()], argv)

if __name__ == "__main__":
    main()

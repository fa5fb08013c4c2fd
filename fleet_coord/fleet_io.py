"""FleetIO: the fleet-wide half of the robot agents' interface, on one host node for
every agent of a process (fleet_coord.robot_agent.AgentGroup, or a lone agent's own node).

It carries the `/fleet/*` and `/traffic/updates` subscriptions (each message is handed
to every agent, whose core keeps what concerns it), the shared publishers, the
`/traffic/reserve` and `/fleet/list_tasks` clients, one table replica per roadmap (and
its `/traffic/resync` requests while it is stale), and one
control and one state timer per rate that tick all agents in turn. Why shared: rclpy's executor pays per
callback for every entity of the process, and a cfp waited behind the other agents'
timers; shared, a cfp is one DDS delivery and one callback that bids for all the agents
of the process (measured: docs/benchmarks.md, "DDS latency").
"""
from __future__ import annotations

from typing import Any, Callable, Protocol

from fleet_coord_msgs.msg import (Award, CallForProposal, Proposal, Refusal, Rejection,
                                  ReservationSet, RobotNotice, RobotState, TaskStatus)
from fleet_coord_msgs.srv import ListTasks, Reserve
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.node import Node

from fleet_coord import qos
from fleet_coord.convert import table_update_from_msg
from fleet_coord.core.replica import Replica, TableUpdate
from fleet_coord.guard import Guard, sender_of
from fleet_coord.namespace import names_of
from fleet_coord.node_auth import NodeAuth
from fleet_coord.table_replica import ResyncRequester


class Agent(Protocol):
    """What FleetIO calls on each agent it serves (fleet_coord.robot_agent.RobotAgent)."""
    replica: Replica

    def _on_cfp(self, msg: CallForProposal) -> None: ...
    def _on_update(self, update: TableUpdate) -> None: ...


class FleetIO:
    def __init__(self, host: Node) -> None:
        self.host = host
        self.guard = Guard(host.get_logger())   # one agent's failure is not the others'
        self.agents: list[Any] = []
        self._timers: dict[tuple[str, float], list[Any]] = {}
        #: MessageInfo of the cfp being handed out (bench/dds_latency.py reads it)
        self.cfp_info = None
        #: signs as each agent it serves (`add`), checks what the fleet says to them
        self.auth = NodeAuth(host)
        group = MutuallyExclusiveCallbackGroup()
        pub, sub, names = host.create_publisher, host.create_subscription, names_of(host)
        self.proposal_pub = pub(Proposal, names("/fleet/proposals"), qos.PROTOCOL)
        self.refusal_pub = pub(Refusal, names("/fleet/refusals"), qos.PROTOCOL)
        self.status_pub = pub(TaskStatus, names("/fleet/task_status"), qos.PROTOCOL)
        self.state_pub = pub(RobotState, names("/fleet/robot_states"), qos.state_qos())
        sub(CallForProposal, names("/fleet/cfp"), self._on_cfp, qos.PROTOCOL,
            callback_group=group)
        sub(ReservationSet, names("/traffic/updates"), self._on_update, qos.TABLE,
            callback_group=group)
        a = self.auth
        #: robots of the agents served: an award or rejection names one robot and only its
        #: agent acts on it, so one naming none of them is dropped unchecked (a rejection
        #: goes to every losing bidder: ~80 us of signature check each, per process)
        self._robots: set[str] = set()
        ours = self._robots
        for msg_type, topic, handler, check in (
                (Award, "/fleet/awards", "_on_award",
                 lambda m: m.robot in ours and a.check(m, "fleet/awards")),
                (Rejection, "/fleet/rejections", "_on_rejection",
                 lambda m: m.robot in ours and a.check(m, "fleet/rejections")),
                (TaskStatus, "/fleet/task_status", "_on_task_status", a.check_status),
                (RobotNotice, "/fleet/robot_lost", "_on_robot_lost",
                 lambda m: a.check(m, "fleet/robot_lost")),
                (RobotNotice, "/fleet/robot_removed", "_on_robot_removed",
                 lambda m: a.check(m, "fleet/robot_removed"))):
            sub(msg_type, names(topic), self._fan_out(self.agents, handler, topic, check),
                qos.PROTOCOL,
                callback_group=group)
        self.reserve_client = host.create_client(Reserve, names("/traffic/reserve"),
                                                 callback_group=group)
        self.list_client = host.create_client(ListTasks, names("/fleet/list_tasks"),
                                              callback_group=group)
        self._group = group
        self._replicas: dict[tuple[str, int], Replica] = {}
        # a stale replica asks for the table at once: a robot does not see revocations
        # made since (the next periodic snapshot is up to 5 s away)
        self.resync = ResyncRequester(
            host, names, host.get_name(),
            lambda: {id(a.replica): a.replica for a in self.agents}.values(),
            callback_group=group)

    def replica(self, exclusive, num_resources: int, roadmap_id: str) -> Replica:
        """The table replica of the agents on this roadmap: one per process and roadmap
        (each update is converted and applied once), not one per agent. An agent whose
        roadmap has no id gets a replica of its own."""
        if not roadmap_id:
            return Replica(exclusive, num_resources, roadmap_id)
        key = (roadmap_id, num_resources)
        if key not in self._replicas:
            self._replicas[key] = Replica(exclusive, num_resources, roadmap_id)
        return self._replicas[key]

    def _fan_out(self, agents: list[Any], method: str, where: str,
                 check: Callable[[Any], bool] | None = None) -> Callable[..., None]:
        """A callback calling `method` of each of `agents` (a live list) in turn; looked
        up at each call, so a test can replace one agent's handler. `check`: a message
        that fails it (its sender may not say it) reaches no agent. What one agent cannot
        take is dropped for it alone (fleet_coord.guard)."""
        def call(*args: Any) -> None:
            if check is not None and not check(args[0]):
                return
            for agent in agents:
                try:
                    getattr(agent, method)(*args)
                except Exception as e:  # noqa: BLE001 - the input guard
                    self.guard.drop(where, sender_of(args[0]) if args else "timer", e)
        return call

    def _on_cfp(self, msg: CallForProposal, info: Any) -> None:
        if not self.auth.check(msg, "fleet/cfp"):
            return
        self.cfp_info = info
        self._fan_out(self.agents, "_on_cfp", "/fleet/cfp")(msg)

    def _on_update(self, msg: ReservationSet) -> None:
        if not self.auth.check(msg, "traffic/updates"):
            return
        # converted once for all agents; a snapshot no replica takes, without its segments
        # (a delta always: it is small)
        segments = not msg.is_snapshot or any(
            a.replica.wants(msg.version, True, msg.roadmap_id) for a in self.agents)
        try:
            update = table_update_from_msg(msg, segments=segments)
        except ValueError as e:
            self.guard.drop("/traffic/updates", "?", e)
            return
        self._fan_out(self.agents, "_on_update", "/traffic/updates")(update)
        self.resync.check()

    def add(self, agent: Any, control_rate: float, state_rate: float) -> None:
        """Serve `agent`: its handlers get the fleet-wide messages, its `_tick` and
        `_publish_state` run on the host's timers of its rates."""
        self.auth.add_identity(agent.robot, link=True)
        self.agents.append(agent)
        self._robots.add(agent.robot)
        for kind, rate in (("_tick", control_rate), ("_publish_state", state_rate)):
            key = (kind, float(rate))
            if key not in self._timers:
                members: list[Any] = []
                self._timers[key] = members
                self.host.create_timer(1.0 / rate, self._fan_out(members, kind, kind),
                                       callback_group=self._group)
            self._timers[key].append(agent)

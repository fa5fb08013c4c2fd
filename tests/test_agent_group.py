"""Several agents in one process (`robot_agent --robots a,b,c`): what AgentGroup shares
and what each agent keeps, over real DDS. The group bidding, winning and driving is
tests/test_fleet_auction.py[agent-group]."""

from builtin_interfaces.msg import Time
from rosgraph_msgs.msg import Clock
from rclpy.node import Node
from rclpy.parameter import Parameter

from fleet_coord import qos
from fleet_coord.fleet_config import DEFAULT_MAP
from fleet_coord.robot_agent import AgentGroup
from rosutil import ros_context, spin_until

ROBOTS = ["g1", "g2", "g3"]


def test_group_shares_fleet_topics_and_sim_clock_each_agent_keeps_its_driver_topics():
    with ros_context() as (ctx, ex):
        group = AgentGroup(ROBOTS, context=ctx, parameter_overrides=[
            Parameter("map", value=DEFAULT_MAP), Parameter("use_sim_time", value=True)])
        for n in group.nodes():
            ex.add_node(n)
        probe = Node("group_probe", context=ctx)
        ex.add_node(probe)
        clock_pub = probe.create_publisher(Clock, "/clock", 10)

        # one DDS reader per fleet-wide topic for the whole group, one per robot topic
        assert spin_until(ex, lambda: probe.count_subscribers("/fleet/cfp") == 1
                          and probe.count_subscribers("/g3/odom") == 1, 10.0)
        for topic in ("/fleet/awards", "/traffic/updates", "/fleet/task_status"):
            assert probe.count_subscribers(topic) == 1, topic
        assert probe.count_publishers("/fleet/robot_states") == 1
        assert all(probe.count_publishers(f"/{r}/cmd_vel") == 1 for r in ROBOTS)

        # the agents' clocks follow the group's /clock subscription (they have none)
        assert probe.count_subscribers("/clock") == 1
        def clocked(sec):
            clock_pub.publish(Clock(clock=Time(sec=sec)))
            return all(abs(a.now() - sec) < 1e-6 for a in group.agents)
        assert spin_until(ex, lambda: clocked(1234), 10.0), [a.now() for a in group.agents]

        # agents are nodes of their own (name, namespace, parameters) without services
        names = {(n, ns) for n, ns in probe.get_node_names_and_namespaces()}
        assert {("robot_agent", f"/{r}") for r in ROBOTS} <= names, names
        services = {name for name, _ in probe.get_service_names_and_types()}
        assert "/robot_agents_g1/get_parameters" in services
        assert not any(s.startswith("/g1/") for s in services), sorted(services)
        assert [a.robot for a in group.agents] == ROBOTS
        assert all(a.get_parameter("map").value == DEFAULT_MAP for a in group.agents)


def test_the_agents_of_a_group_plan_against_one_table_replica():
    """One replica per process applies each /traffic/updates message once; every agent
    sees the result (and a standalone agent keeps a replica of its own)."""
    from fleet_coord_msgs.msg import ReservationSegment, ReservationSet
    from fleet_coord.robot_agent import RobotAgent

    with ros_context() as (ctx, ex):
        params = [Parameter("map", value=DEFAULT_MAP)]
        group = AgentGroup(ROBOTS, context=ctx, parameter_overrides=params)
        alone = RobotAgent("solo", context=ctx, parameter_overrides=params)
        for n in [*group.nodes(), alone]:
            ex.add_node(n)
        replica = group.agents[0].replica
        assert all(a.replica is replica for a in group.agents)
        assert alone.replica is not replica
        probe = Node("replica_probe", context=ctx)
        ex.add_node(probe)
        pub = probe.create_publisher(ReservationSet, "/traffic/updates", qos.TABLE)
        assert spin_until(ex, lambda: probe.count_subscribers("/traffic/updates") == 2, 10.0)

        seg = ReservationSegment(robot="g2", resource=5, t_start=1.0, t_end=2.0)
        snap = ReservationSet(version=3, is_snapshot=True, roadmap_id=replica.roadmap_id,
                              added=[seg])
        delta = ReservationSet(version=4, robot="g3", roadmap_id=replica.roadmap_id,
                               added=[ReservationSegment(robot="g3", resource=7,
                                                         t_start=2.0, t_end=3.0)])
        pub.publish(snap)
        assert spin_until(ex, lambda: alone.replica.version == 3 and replica.version == 3, 10.0)
        pub.publish(delta)
        assert spin_until(ex, lambda: alone.replica.version == 4 and replica.version == 4, 10.0)
        for rep in (replica, alone.replica):
            assert not rep.stale
            assert sorted(rep.table.robots()) == ["g2", "g3"]
            assert [(r.resource, r.t_start) for r in rep.table.reservations("g3")] == [(7, 2.0)]


def test_an_agent_refuses_to_start_with_a_bad_parameter_naming_it():
    """Out of the bounds table (parameters.SCHEMA): a ParameterError (exit 78, no restart
    loop), also for a value another default is computed from (control_rate)."""
    import pytest

    from fleet_coord.parameters import ParameterError
    from fleet_coord.robot_agent import RobotAgent
    with ros_context() as (ctx, _ex):
        for name, value in (("reserve_timeout", -1.0), ("bid_objective", "speed"),
                            ("control_rate", 0.0), ("idle_state_rate", -1.0)):
            with pytest.raises(ParameterError, match=name):
                RobotAgent("bad", context=ctx, parameter_overrides=[
                    Parameter("map", value=DEFAULT_MAP), Parameter(name, value=value)])


def test_an_agent_that_missed_a_tasks_cfp_learns_its_stations_from_the_task_list():
    """A robot's ACTIVE for a task whose cfp the agent never had: the agent calls
    /fleet/list_tasks (served here by the probe in the dispatcher's place: the
    dispatcher's own answer is tests/test_fleet_processes.py's) once, and knows the task
    from then on (it yields to it: tests/test_execution.py, tests/test_in_process.py)."""
    from fleet_coord_msgs.msg import Task as TaskMsg
    from fleet_coord_msgs.msg import TaskStatus
    from fleet_coord_msgs.srv import ListTasks
    from nav_msgs.msg import Odometry
    from fleet_coord.robot_agent import RobotAgent

    with ros_context() as (ctx, ex):
        agent = RobotAgent("solo", context=ctx,
                           parameter_overrides=[Parameter("map", value=DEFAULT_MAP)])
        probe = Node("list_probe", context=ctx)
        for n in (agent, probe):
            ex.add_node(n)
        station = agent.roadmap.names[1]
        asked = []

        def serve(req, resp):
            asked.append(req)
            resp.tasks = [TaskMsg(id="tx", kind="goto", stations=[station]),
                          TaskMsg(id="bad", kind="goto", stations=[])]   # left out
            return resp
        probe.create_service(ListTasks, "/fleet/list_tasks", serve)
        odom = probe.create_publisher(Odometry, "/solo/odom", qos.ODOM)
        status = probe.create_publisher(TaskStatus, "/fleet/task_status", qos.PROTOCOL)
        here = Odometry()
        here.pose.pose.position.x, here.pose.pose.position.y = map(float, agent.roadmap.pos[0])
        here.pose.pose.orientation.w = 1.0
        active = TaskStatus(task_id="tx", robot="other", reporter="other",
                            state=TaskStatus.ACTIVE, progress=0.0, lamport=1)

        def learned() -> bool:
            odom.publish(here)
            status.publish(active)
            return "tx" in agent.core.active
        assert spin_until(ex, learned, 20.0), (asked, agent.core.unknown_active)
        assert agent.core.task_stations["tx"] == [agent.roadmap.vertex(station)]
        assert "bad" not in agent.core.task_stations and len(asked) == 1


def test_a_parked_robot_signs_a_new_state_at_the_idle_rate_and_at_once_on_a_change():
    """core/pacing.py in the agent: while it stands idle a new state ~2 times a second,
    sent again at every state tick in between (10 Hz on the wire: liveness under loss);
    a new one at the next tick after it is moved, and at every tick while it moves."""
    import time

    from fleet_coord_msgs.msg import RobotState
    from nav_msgs.msg import Odometry
    from fleet_coord.robot_agent import RobotAgent

    with ros_context() as (ctx, ex):
        agent = RobotAgent("pace", context=ctx, parameter_overrides=[
            Parameter("map", value=DEFAULT_MAP), Parameter("state_rate", value=10.0),
            Parameter("idle_state_rate", value=2.0)])
        probe = Node("pace_probe", context=ctx)
        for n in (agent, probe):
            ex.add_node(n)
        states: list[tuple[float, RobotState]] = []
        probe.create_subscription(RobotState, "/fleet/robot_states",
                                  lambda m: states.append((time.monotonic(), m)),
                                  qos.state_qos())
        odom = probe.create_publisher(Odometry, "/pace/odom", qos.ODOM)
        here = Odometry()
        here.pose.pose.position.x, here.pose.pose.position.y = map(float, agent.roadmap.pos[0])
        here.pose.pose.orientation.w = 1.0

        def heard_at(x: float) -> bool:
            odom.publish(here)
            return any(abs(m.pose.position.x - x) < 1e-6 for _, m in states)
        assert spin_until(ex, lambda: heard_at(here.pose.pose.position.x), 10.0)
        assert agent.core.job is None

        def count(seconds: float) -> tuple[int, int]:
            """States heard in `seconds`, and how many different ones (by stamp)."""
            states.clear()
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                odom.publish(here)
                ex.spin_once(timeout_sec=0.02)
            stamps = {(m.header.stamp.sec, m.header.stamp.nanosec) for _, m in states}
            assert all(m.lamport == next(x for _, x in states if x.header.stamp ==
                                         m.header.stamp).lamport for _, m in states)
            return len(states), len(stamps)
        heard, new = count(3.0)
        assert heard >= 20, heard                # still ~10 Hz on the wire
        assert 4 <= new <= 8, new                # new (signed) ones at 2 Hz, not 10

        # pushed 0.3 m: the next state tick says so, long before the next idle one
        spin_until(ex, lambda: False, 0.05)
        here.pose.pose.position.x += 0.3
        t_moved = time.monotonic()
        assert spin_until(ex, lambda: heard_at(here.pose.pose.position.x), 5.0)
        delay = next(t for t, m in states
                     if abs(m.pose.position.x - here.pose.pose.position.x) < 1e-6) - t_moved
        assert delay < 0.35, delay

        # its odometry says it moves: a new state at every tick
        here.twist.twist.linear.x = 0.2
        heard, new = count(2.0)
        assert new >= 12 and new == heard, (heard, new)     # ~20 in 2 s at 10 Hz

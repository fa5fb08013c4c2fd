"""Drive mode "follow" of the execution core, end to end without MQTT or ROS: the core
hands its committed path to a VDA 5050 order book (fleet_coord.vda5050.orders), whose
orders drive an emulated vehicle (fleet_coord.vda5050.vehicle); the vehicle's pose comes
back as the core's odometry. The core authority holds the table. Every position of the
vehicle is checked against what its robot held at that time."""
from __future__ import annotations

import dataclasses
import math

import pytest

from fleet_coord.core.execution import (CallKind, FollowPath, Odometry, Reserve,
                                        StatusReport, Velocity)
from fleet_coord.core.contract_net import Refusal
from fleet_coord.core.tasks import Task, TaskState
from fleet_coord.core.tracking import containment_error
from fleet_coord.vda5050.orders import OrderBook
from fleet_coord.vda5050.protocol import Outbox
from fleet_coord.vda5050.vehicle import Vehicle, VehicleSpec
from fleet_coord.core.kinematics import Limits, step
from test_execution import CONFIG, DT, LIMITS, World

FOLLOW = dataclasses.replace(CONFIG, drive="follow", driver_timeout=1.0)


class VdaWorld(World):
    """World whose robot `a` is a VDA 5050 vehicle behind an order book."""

    def __init__(self, rows, robots, speed_factor=1.0):
        # the others are robots driven by velocity commands (ideal, as in World)
        super().__init__(rows, robots, FOLLOW, {r: CONFIG for r in robots if r != "a"})
        x, y = robots["a"]
        self.vehicle = Vehicle(VehicleSpec("acme", "a", max_speed=LIMITS.max_v,
                                           max_angular_speed=LIMITS.max_w,
                                           speed_factor=speed_factor), float(x), float(y))
        self.book = OrderBook(self.roadmap, self.ex.clearance, LIMITS.max_v)
        self.out = Outbox("acme", "a")
        self.outside: list[tuple[float, float, float, float]] = []
        self.vehicle_online = True

    def _do(self, name, actions):
        plans = [a for a in actions if isinstance(a, FollowPath)]
        super()._do(name, [a for a in actions if not isinstance(a, FollowPath)])
        for a in plans:
            self.actions.append((name, a))
            self.book.plan(a.path, self.t)

    def step(self):
        """World.step, with robot `a` moved by its vehicle instead of velocity commands."""
        self.t = round(self.t + DT, 9)
        v = self.vehicle
        if self.vehicle_online:
            v.step(self.t)
            self.book.on_state(v.state_body(), self.t)
            holds = [(r.resource, r.t_start, r.t_end)
                     for r in self.authority.table.reservations("a")]
            body = self.book.step(holds, self.t)
            if body is not None:
                assert v.on_order(self.out.message("order", self.t, body)), v.errors
            if holds:
                err = containment_error(self.ex, holds, v.x, v.y, self.t, slack_t=1e-6)
                if err > 1e-6:
                    self.outside.append((self.t, v.x, v.y, err))
            self.cores["a"].on_odometry(self.t, Odometry(v.x, v.y, v.theta, v.speed, 0.0, self.t))
        for name, core in self.cores.items():
            if name != "a":
                b = self.bodies[name] = step(self.bodies[name], *self.cmd[name], DT, LIMITS)
                core.on_odometry(self.t, Odometry(b.x, b.y, b.theta, b.v, b.w, self.t))
        self._publish()
        for name, core in self.cores.items():
            self._do(name, core.tick(self.t))
        self._publish()


def vda_up(speed_factor=1.0, rows=(".....", "....."), **others):
    w = VdaWorld(list(rows), {"a": (0, 0), **others}, speed_factor)
    assert w.run_until(lambda: all(c.parked for c in w.cores.values()), 3.0)
    return w


def test_follow_mode_hands_the_path_over_and_the_vehicle_drives_it_inside_its_holds():
    w = vda_up()
    w.award("a", "t1", ["4,1"])
    assert w.run_until(lambda: w.final("t1") is not None, 40.0)
    assert w.final("t1").state is TaskState.DONE
    assert w.sent("a", FollowPath), "no path handed over"
    assert all(v == Velocity(0.0, 0.0) for v in w.sent("a", Velocity))   # never a drive command
    assert (round(w.vehicle.x, 3), round(w.vehicle.y, 3)) == (4.0, 1.0)
    assert w.outside == []
    progress = [s.progress for s in w.statuses if s.task_id == "t1"
                and s.state is TaskState.ACTIVE]
    assert progress == sorted(progress) and 0 < max(progress) < 1


def test_a_vehicle_slower_than_planned_gets_later_holds_and_never_leaves_them():
    w = vda_up(speed_factor=0.1)           # 0.3 m/s, 2 rad/s: the agent plans at 0.44 m/s
    w.award("a", "t1", ["4,1"])
    assert w.run_until(lambda: w.final("t1") is not None, 120.0)
    assert w.final("t1").state is TaskState.DONE
    retimes = [r for r in w.sent("a", Reserve) if r.kind is CallKind.RECOMMIT]
    assert retimes, "the late vehicle's holds were never re-committed"
    assert w.outside == []
    assert w.cores["a"].plan_speed < 0.3   # it plans the next legs at what it saw


def test_an_unavailable_vehicle_makes_the_robot_silent_until_it_is_back():
    w = vda_up()
    core = w.cores["a"]
    w.award("a", "t1", ["4,1"])
    w.run_until(lambda: core.drive is not None, 10.0)
    core.on_driver(w.t, False)
    assert core.unavailable and core.state_report(w.t) is None
    assert core.job is None and not core.queue
    # it takes no new work while gone: it refuses calls and gives back a late award
    (refusal,) = core.on_cfp(w.t, Task("t2", "goto", ["4,0"]), 1)
    assert isinstance(refusal, Refusal) and "unavailable" in refusal.detail
    (back,) = core.on_award(w.t, "a", "t2", 1)
    assert back.state is TaskState.FAILED and not core.queue
    core.on_driver(w.t, True)
    assert not core.unavailable and core.state_report(w.t) is not None
    assert w.run_until(lambda: core.parked, 3.0)
    # and odometry that stops for driver_timeout does the same
    w.vehicle_online = False
    t0 = w.t
    assert w.run_until(lambda: core.unavailable, 3.0) and w.t - t0 >= 1.0


def test_a_vehicle_that_never_moves_fails_its_task_after_the_stall_bound():
    w = VdaWorld([".....", "....."], {"a": (0, 0)})
    w.cores["a"].config = dataclasses.replace(FOLLOW, follow_stall=5.0)
    assert w.run_until(lambda: w.cores["a"].parked, 3.0)
    w.vehicle.paused = True                # it takes orders but does not drive
    w.award("a", "t1", ["4,1"])
    assert w.run_until(lambda: w.final("t1") is not None, 30.0)
    final = w.final("t1")
    assert final.state is TaskState.FAILED and "no progress" in final.reason
    assert isinstance(final, StatusReport)


def test_follow_mode_is_a_config_choice():
    with pytest.raises(ValueError, match="drive must be track or follow"):
        dataclasses.replace(CONFIG, drive="fly")
    assert isinstance(Odometry(0, 0, 0), Odometry)


def test_the_vehicles_own_limits_set_the_speed_its_robot_plans_with():
    w = vda_up()
    core = w.cores["a"]
    fast = core.plan_speed
    w.vehicle.spec.max_speed = w.book.max_speed = 0.2    # what its factsheet says
    core.on_driver(w.t, True, Limits(max_v=0.2, max_w=math.inf, max_acc=math.inf))
    assert core.plan_speed <= 0.2 < fast and core.config.limits.max_w == LIMITS.max_w
    w.award("a", "t1", ["4,1"])
    assert w.run_until(lambda: w.final("t1") is not None, 120.0)
    assert w.final("t1").state is TaskState.DONE and w.outside == []
    # planned at its speed from the start: never late, never re-committed
    assert not [r for r in w.sent("a", Reserve) if r.kind is CallKind.RECOMMIT]


def test_an_idle_robot_parked_on_a_late_vehicles_way_yields_to_it():
    """Robot b (velocity-driven) parks for good on the corridor vertex 2,0 once the slow
    vehicle a's hold there has passed; a, too late for its holds, cannot hold the rest of
    its path later. It stops at the next vertex and plans from there, so the table says
    where it stands; b, idle, sees a's way through its spot and yields into the pocket
    below it, as it would to any robot. (Before, a asked for the same path until its task
    failed after `follow_stall`, and the table kept it at its goal: b never yielded.)"""
    w = vda_up(speed_factor=0.1, rows=(".....", "##.##", "##.##"),
               b=(2, 1))
    a, b = w.cores["a"], w.cores["b"]
    w.award("a", "t1", ["4,0"])
    assert w.run_until(lambda: a.drive is not None, 5.0)
    w.award("b", "t2", ["2,0"])           # b gets there after a's hold, and stays
    assert w.run_until(lambda: w.final("t2") is not None, 20.0)
    assert w.final("t2").state is TaskState.DONE and b.job is None
    assert w.run_until(lambda: w.final("t1") is not None, 60.0)
    assert w.final("t1").state is TaskState.DONE, w.final("t1").reason
    assert w.roadmap.names[b.here] == "2,2", "b never yielded"
    assert (round(w.vehicle.x, 3), round(w.vehicle.y, 3)) == (4.0, 0.0)
    assert w.outside == []


def test_a_late_vehicle_that_cannot_hold_the_way_to_the_next_vertex_holds_where_it_stands():
    """As above, but b parks on 1,0, the next vertex ahead of the vehicle: a can hold
    neither the rest of its path later nor the way to that vertex. It holds where it
    stands for good (it must not stand outside its holds), which also tells b that a is
    behind it: b yields back into its pocket, and a goes on."""
    w = vda_up(speed_factor=0.1, rows=(".....", "#.###", "#.###"), b=(1, 2))
    a, b = w.cores["a"], w.cores["b"]
    w.award("a", "t1", ["4,0"])
    assert w.run_until(lambda: a.drive is not None, 5.0)
    w.award("b", "t2", ["1,0"])
    assert w.run_until(lambda: w.final("t2") is not None, 20.0)
    assert w.final("t2").state is TaskState.DONE
    assert w.run_until(lambda: w.final("t1") is not None, 60.0)
    assert w.final("t1").state is TaskState.DONE, w.final("t1").reason
    stands = [r for r in w.sent("a", Reserve) if r.kind is CallKind.RECOMMIT
              and len(r.segments) == 1 and r.segments[0][2] == math.inf]
    assert stands, "a never held where it stood"
    assert w.roadmap.names[b.here] == "1,2", "b never yielded"
    assert w.outside == []

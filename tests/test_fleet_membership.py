"""Robots leaving and joining a running fleet over real DDS (/fleet/remove_robot,
/ideal_driver/spawn_robot): a removed robot's reservations are released — a lost robot's
blocked spot too —, its task goes back to auction, it receives no further awards, and a
new agent for it rejoins the fleet."""
import time

from fleet_coord_msgs.msg import Award, TaskStatus
from fleet_coord_msgs.srv import RemoveRobot, SpawnRobot

from fleet_coord import qos
from fleet_coord.robot_agent import RobotAgent
from fleet_harness import LIMITS, P, Fleet, provision_keys
from rosutil import ros_context, spin_until
from test_fleet_auction import MAP

ROBOTS = {"r0": (1, 1), "r1": (10, 1), "r2": (1, 6)}


def _call(fleet, client, req, timeout=10.0):
    """One call, signed as the operator when the fleet authenticates."""
    assert client.wait_for_service(timeout_sec=timeout)
    fut = client.call_async(fleet.sign(req, client.srv_name.lstrip("/")))
    deadline = time.monotonic() + timeout
    while not fut.done() and time.monotonic() < deadline:
        fleet.ex.spin_once(timeout_sec=0.02)
    assert fut.done(), f"{client.srv_name} did not answer"
    return fut.result()


def test_removed_robots_release_reservations_get_no_awards_and_a_new_agent_rejoins(tmp_path):
    room = tmp_path / "room.map"
    room.write_text(MAP)
    with ros_context() as (ctx, ex):
        fleet = Fleet(ctx, ex, str(room), ROBOTS, str(tmp_path / "ledger.db"))
        node = fleet.dispatcher
        remove = node.create_client(RemoveRobot, "/fleet/remove_robot")
        spawn = node.create_client(SpawnRobot, "/ideal_driver/spawn_robot")
        awards: list[tuple[float, Award]] = []
        node.create_subscription(Award, "/fleet/awards",
                                 lambda m: awards.append((time.monotonic(), m)), qos.PROTOCOL)
        traffic, table = fleet.traffic, fleet.traffic.authority.table
        assert spin_until(ex, fleet.ready, 30.0), "fleet did not come up"
        # agents are told apart by their state publisher's GID (a new agent: a new GID)
        assert traffic.authority.membership.incarnation.get("r1") is not None

        # An unknown robot: refused, naming it.
        r = _call(fleet, remove, RemoveRobot.Request(robot="r9"))
        assert not r.ok and "unknown robot 'r9'" in r.error, r.error

        # r2's agent dies: r2 is declared lost and its spot stays blocked...
        agent2 = fleet.agents.pop("r2")
        ex.remove_node(agent2)
        agent2.destroy_node()
        assert spin_until(ex, lambda: "r2" in traffic.authority.lost, 20.0), "r2 not lost"
        assert table.reservations("r2"), "a lost robot's spot stays blocked"
        # ...until it is removed: everything it held is released.
        r = _call(fleet, remove, RemoveRobot.Request(robot="r2", reason="test"))
        assert r.ok, r.error
        assert r.was_lost and r.released >= 1
        assert table.reservations("r2") == [] and "r2" not in traffic.authority.lost
        assert spin_until(ex, lambda: "r2" not in fleet.driver.robots, 10.0)
        again = _call(fleet, remove, RemoveRobot.Request(robot="r2"))   # idempotent
        assert again.ok and again.released == 0, again.error

        # r0 or r1 takes a task (5-8 m away: ~15 s of driving); while it works it is
        # refused without --force.
        resp = fleet.submit("job-a", ["4,3"])
        assert resp.accepted, resp.error
        assert spin_until(ex, lambda: fleet.first("job-a", TaskStatus.AWARDED), 20.0)
        worker = fleet.first("job-a", TaskStatus.AWARDED).robot
        assert worker in ("r0", "r1")
        spare = "r1" if worker == "r0" else "r0"
        assert spin_until(ex, lambda: "job-a" in traffic.authority.work.get(worker, ()), 10.0)
        r = _call(fleet, remove, RemoveRobot.Request(robot=worker))
        assert not r.ok and "job-a" in r.error and "force" in r.error, r.error
        assert table.reservations(worker)
        # Forced: its reservations go, its agent stands down, the task is re-auctioned.
        r = _call(fleet, remove, RemoveRobot.Request(robot=worker, force=True))
        assert r.ok and not r.was_lost and r.released >= 1, (r.ok, r.error)
        removed_at = time.monotonic()
        assert spin_until(ex, lambda: fleet.agents[worker].core.removed, 10.0)
        assert spin_until(ex, lambda: fleet.final("job-a") is not None, 60.0), "job-a never ended"
        assert fleet.final("job-a").state == TaskStatus.DONE
        done_by = [s.robot for s in fleet.statuses if s.task_id == "job-a"
                   and s.state == TaskStatus.DONE]
        assert done_by == [spare], done_by

        # Another task: only the robot still in the fleet bids and wins.
        resp = fleet.submit("next", ["5,3"])
        assert resp.accepted, resp.error
        assert spin_until(ex, lambda: fleet.final("next") is not None, 60.0)
        assert fleet.final("next").state == TaskStatus.DONE
        late = [m.robot for t, m in awards if t > removed_at]
        assert late and set(late) == {spare}, late
        # The removed robots hold nothing and their old agents did not re-park.
        assert table.reservations(worker) == [] and table.reservations("r2") == []
        assert "r2" not in fleet.dispatcher.alive_robots(fleet.dispatcher.now())
        assert worker not in fleet.dispatcher.alive_robots(fleet.dispatcher.now())

        # r2 comes back: spawned in the world again, with a new agent it rejoins.
        s = _call(fleet, spawn, SpawnRobot.Request(robot="r2", x=1.0, y=6.0))
        assert s.ok, s.error
        dup = _call(fleet, spawn, SpawnRobot.Request(robot="r2", x=2.0, y=6.0))
        assert not dup.ok and "already" in dup.error
        agent = RobotAgent("r2", context=ctx, parameter_overrides=[
            P("map", str(room)), P("turn_margin", 0.2)]
            + [P(k, float(v)) for k, v in LIMITS.items()] + fleet.auth_params)
        ex.add_node(agent)
        assert spin_until(ex, lambda: agent.core.parked and table.reservations("r2"), 20.0), \
            "r2 did not rejoin"
        assert spin_until(ex, lambda: "r2" in fleet.dispatcher.alive_robots(
            fleet.dispatcher.now()), 10.0)


def test_cli_add_robot_joins_a_running_fleet_and_remove_robot_takes_it_out(tmp_path, processes):
    """`fleet-coord add-robot` / `remove-robot` as processes against a running fleet. The
    fleet authenticates (docs/security.md): add-robot provisions the new robot's keys and
    publishes the keyring, its agent signs, the CLI acts as the operator - the one run of
    CI that covers a robot joining an authenticating fleet (the other harness suites run
    signed with FLEET_COORD_TEST_AUTH=enforce)."""
    import signal
    import subprocess
    import sys

    room = tmp_path / "room.map"
    room.write_text(MAP)
    cfg = tmp_path / "fleet.yaml"
    config = ("fleet: {map: room.map, discovery_range: LOCALHOST, backend: ideal}\n"
              "robots:\n  - {name: r0, start: [1, 1]}\n"
              "nodes:\n  robot_agent: {turn_margin: 0.2}\n")
    with ros_context() as (ctx, ex):
        # The test asserts which robot wins: a round closes as soon as every live robot
        # bid, so a long window costs nothing, and r5's bid (another process, on a loaded
        # machine) is not lost to the 0.3 s default, which gave the task to far-away r0.
        fleet = Fleet(ctx, ex, str(room), {"r0": (1, 1)}, str(tmp_path / "ledger.db"),
                      bid_window=10.0, auth_keys=provision_keys(["r0"], str(tmp_path)))
        # the CLI acts as the operator of the test's fleet
        cfg.write_text(config + f"auth: {{mode: enforce, keys: {fleet.auth_keys}}}\n")
        keys = ["--keys", fleet.auth_keys]
        table = fleet.traffic.authority.table
        assert spin_until(ex, fleet.ready, 30.0), "fleet did not come up"

        def run(*args):
            """A CLI process while this process's fleet keeps spinning."""
            proc = processes.popen([sys.executable, "-m", "fleet_coord.cli", *args],
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            assert spin_until(ex, lambda: proc.poll() is not None, 120.0), args
            out, err = proc.communicate()
            return proc.returncode, out, err

        # bad input: unknown station, an occupied station, an unknown robot
        rc, _, err = run("add-robot", "r5", "--station", "9,99", "--config", str(cfg))
        assert rc == 2 and "'9,99'" in err, err
        rc, _, err = run("add-robot", "r5", "--station", "1,1", "--config", str(cfg))
        assert rc == 2 and "station '1,1' is not free" in err and "r0" in err, err
        rc, _, err = run("remove-robot", "r9", *keys)
        assert rc == 1 and "unknown robot 'r9'" in err, err

        # r5 joins at 5,3: spawned in the ideal driver, its agent parks there
        v = fleet.agents["r0"].core.roadmap.vertex("5,3")
        proc = processes.popen([sys.executable, "-m", "fleet_coord.cli", "add-robot", "r5",
                                "--station", "5,3", "--config", str(cfg)],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            assert spin_until(ex, lambda: any(r.resource == v for r in table.reservations("r5"))
                              or proc.poll() is not None, 90.0)
            assert proc.poll() is None, proc.communicate()[0]
            assert spin_until(ex, lambda: "r5" in fleet.dispatcher.alive_robots(
                fleet.dispatcher.now()), 20.0)
            # the new robot takes work: a task next to it goes to r5
            resp = fleet.submit("near-r5", ["6,3"])
            assert resp.accepted, resp.error
            assert spin_until(ex, lambda: fleet.final("near-r5") is not None, 60.0)
            assert fleet.final("near-r5").state == TaskStatus.DONE
            assert fleet.first("near-r5", TaskStatus.AWARDED).robot == "r5"
        finally:
            proc.send_signal(signal.SIGINT)
            stopped = spin_until(ex, lambda: proc.poll() is not None, 60.0)
        assert stopped, "add-robot did not stop within 60 s of SIGINT"
        out = proc.communicate()[0]
        assert "spawned r5 at station 5,3" in out, out
        assert "keyring serial" in out and "taken by" in out, out   # r5's keys reached the fleet
        # its agent stopped: r5 goes lost, then remove-robot frees its spot
        assert spin_until(ex, lambda: "r5" in fleet.traffic.authority.lost, 20.0)
        rc, out, err = run("remove-robot", "r5", *keys)
        assert rc == 0 and "removed r5" in out and "lost" in out, (out, err)
        assert table.reservations("r5") == []
        assert spin_until(ex, lambda: "r5" not in fleet.driver.robots, 10.0)

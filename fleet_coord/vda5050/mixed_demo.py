"""``fleet-coord demo --vda5050 N``: a mixed fleet on the bundled warehouse. The demo's
robots driven over ROS (the ideal driver) and N emulated VDA 5050 vehicles on a private
Mosquitto, one fleet: the same traffic authority, dispatcher and auctions, on wall time
(VDA 5050 is UTC). Pick-and-drop tasks go through the dispatcher; the run is checked from
the outside: the reservation table (conflicting holds), the ROS robots' odometry and the
vehicles' own MQTT reports (excursions), every MQTT message both ways against the
official schemas. Writes ``<out>/metrics.json`` and ``<out>/fleet.log``.

The fleet authenticates by default (``--auth enforce``, docs/security.md): keys for every
identity, the vehicles' master controls as their drivers, are provisioned in the demo's
temporary folder and the demo's submissions are signed as the operator.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from typing import Any

MANUFACTURER = "fleet_coord"
#: The robots' limits, the vehicles' too: agile (agents plan at 0.4 m/s with these;
#: the PyBullet demo's 1 m/s, 4 rad/s, 4 m/s^2 give 0.22 m/s, and this demo runs in real
#: time, not 4x).
LIMITS = dict(max_v=2.0, max_w=10.0, max_acc=20.0, max_alpha=100.0)
SUBMIT_INTERVAL_S = 0.6
STALL_S = 300.0        # no task ended for this long (wall s) while tasks are open: stuck


def mixed_config(map_path: str, ros: dict[str, tuple[float, float]],
                 vda: dict[str, tuple[float, float]], broker: str, workdir: str,
                 auth: str = "off") -> Any:
    """The FleetConfig of the mixed demo: `ros` robots on the ideal driver, `vda` robots
    behind VDA 5050 master controls, wall time, loopback discovery; `auth` its
    `auth.mode`, keys in `workdir`."""
    from fleet_coord.fleet_config import AuthConfig, FleetConfig, RobotConfig

    cfg = FleetConfig(path="<fleet-coord demo --vda5050>", map=map_path, footprint_radius=0.15,
                      discovery_range="LOCALHOST",
                      domain_id=int(os.environ.get("ROS_DOMAIN_ID", "0") or 0),
                      use_sim_time=False, agents_per_process=1, restart="never",
                      ledger=os.path.join(workdir, "tasks.sqlite"))
    cfg.robots = [RobotConfig(name=n, backend="ideal", start=(x, y, 0.0),
                              max_speed=LIMITS["max_v"], max_angular_speed=LIMITS["max_w"])
                  for n, (x, y) in ros.items()]
    cfg.robots += [RobotConfig(name=n, backend="vda5050", start=(x, y, 0.0),
                               max_speed=LIMITS["max_v"], max_angular_speed=LIMITS["max_w"],
                               manufacturer=MANUFACTURER, serial_number=n, broker=broker)
                   for n, (x, y) in vda.items()]
    acc = {"max_acc": LIMITS["max_acc"], "max_alpha": LIMITS["max_alpha"]}
    # completion bids spread the work over the fleet (travel bids queue many tasks on the
    # robot nearest the picks)
    cfg.nodes = {"robot_agent": {"turn_margin": 0.2, "bid_objective": "completion", **acc},
                 "ideal_driver": acc,
                 "traffic": {"lost_after": 3.0},
                 "dispatcher": {"bid_window": 0.5, "robot_timeout": 3.0}}
    cfg.auth = AuthConfig(mode=auth, keys=os.path.join(workdir, "keys"))
    return cfg


def run_mixed_demo(args: Any, roadmap: Any, exclusion: Any, robots: dict[str, int],
                   tasks: list[Any]) -> int:
    """Run it; exit 0 when every task is done with no conflicting hold, no excursion and
    no schema problem, else 1."""
    import rclpy
    from fleet_coord_msgs.msg import RobotState, TaskStatus
    from rclpy.executors import SingleThreadedExecutor
    from fleet_coord_msgs.srv import SubmitTask

    from fleet_coord import qos
    from fleet_coord.cli import CliError
    from fleet_coord.convert import task_to_msg
    from fleet_coord.launcher import FleetLauncher, die_with_parent
    from fleet_coord.node_set import fleet_nodes
    from fleet_coord.run_monitor import RunMonitor
    from fleet_coord.vda5050.broker import Broker, BrokerError
    from fleet_coord.vda5050.observer import MqttObserver, vehicle_excursions

    os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"   # network rule: never off-host
    n_vda = args.vda5050
    names = list(robots)
    pos = {n: (float(roadmap.pos[v, 0]), float(roadmap.pos[v, 1])) for n, v in robots.items()}
    ros = {n: pos[n] for n in names[:len(names) - n_vda]}
    vda = {f"agv_{i + 1}": pos[n] for i, n in enumerate(names[len(names) - n_vda:])}
    out = args.out
    workdir = tempfile.mkdtemp(prefix="fleet-coord-mixed-")
    try:
        broker = Broker().start()
    except BrokerError as e:
        raise CliError(f"--vda5050 needs an MQTT broker: {e}") from None
    print(f"demo: {len(ros)} ROS robots (ideal driver) + {len(vda)} VDA 5050 vehicles "
          f"(emulated, Mosquitto on {broker.address}), {len(tasks)} pick-and-drop tasks on "
          f"{os.path.relpath(roadmap.grid.path)} (seed {args.seed}), wall time; fleet output "
          f"in {os.path.join(out, 'fleet.log')}")
    fleet_log = open(os.path.join(out, "fleet.log"), "w", encoding="utf-8")
    emulators: list[subprocess.Popen[bytes]] = []
    launcher = None
    observer = None
    ctx = None
    t0 = time.monotonic()
    # Ctrl-C / SIGTERM only set a flag the loop checks: the fleet, the emulators and the
    # broker are then stopped on the way out (they also die with this process)
    stop: list[int] = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda signum, _frame: stop.append(signum))
    try:
        for n, (x, y) in vda.items():
            emulators.append(subprocess.Popen(
                [sys.executable, "-m", "fleet_coord.vda5050.emulator", "--broker",
                 broker.address, "--manufacturer", MANUFACTURER, "--serial-number", n,
                 "--start", f"{x},{y},0", "--max-speed", str(LIMITS["max_v"]),
                 "--max-angular-speed", str(LIMITS["max_w"]),
                 "--max-acceleration", str(LIMITS["max_acc"]), "--log-level", "WARNING"],
                stdout=fleet_log, stderr=subprocess.STDOUT, start_new_session=True,
                preexec_fn=die_with_parent))
        observer = MqttObserver(broker.host, broker.port, MANUFACTURER)
        cfg = mixed_config(roadmap.grid.path, ros, vda, broker.address, workdir,
                           getattr(args, "auth", "off"))
        operator = None
        if cfg.auth.enabled:   # the demo's own keys, in its temporary folder: no manual step
            from fleet_coord.auth import Signer
            from fleet_coord.keys import KeyDir, fleet_identities
            kd = KeyDir(cfg.auth.keys)
            kd.init(fleet_identities(cfg))
            operator = Signer("operator", kd.private_key("operator"))
        print("authentication: " + ("on (messages signed and checked; keys provisioned for "
                                    "this run, docs/security.md)" if operator else "off"))
        launcher = FleetLauncher(cfg, [s for s in fleet_nodes(cfg)
                                       if s.executable != "fleet_monitor"],
                                 out=fleet_log, grace_s=5.0,
                                 extra_env={"ROS_LOG_DIR": os.path.join(workdir, "ros_log")})
        ctx = rclpy.Context()
        rclpy.init(context=ctx, args=[])
        ex = SingleThreadedExecutor(context=ctx)
        node = rclpy.create_node("fleet_coord_mixed_demo", context=ctx)
        ex.add_node(node)
        monitor = RunMonitor(node, list(ros), roadmap.grid.path)
        final: dict[str, Any] = {}

        def on_status(m: Any) -> None:
            if m.state in (TaskStatus.DONE, TaskStatus.CANCELLED) or (
                    m.state == TaskStatus.FAILED and not m.robot):
                final.setdefault(m.task_id, (int(m.state), m.robot))
        node.create_subscription(TaskStatus, "/fleet/task_status", on_status, qos.PROTOCOL)
        # a robot is up once its agent says it holds its spot (its state's table_epoch): the
        # spot in the table alone is not that (the authority holds configured start vertices
        # itself), and a vehicle's agent is silent until its master control has heard the
        # vehicle
        parked: set[str] = set()
        node.create_subscription(RobotState, "/fleet/robot_states",
                                 lambda m: parked.add(m.robot) if m.table_epoch else None,
                                 qos.state_qos())
        submit = node.create_client(SubmitTask, "/fleet/submit_task")
        launcher.start()

        def spin(seconds: float) -> None:
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                if stop:
                    raise RuntimeError("interrupted: the fleet is shut down")
                ex.spin_once(timeout_sec=0.02)
            launcher.poll()
            dead = [c.spec.process_name for c in launcher.children if c.proc is None]
            if dead:
                raise RuntimeError(f"fleet process(es) {', '.join(dead)} exited; see "
                                   f"{fleet_log.name}")

        everyone = list(ros) + list(vda)
        deadline = time.monotonic() + 90.0
        while not (parked >= set(everyone) and submit.service_is_ready()):
            if time.monotonic() > deadline:
                raise RuntimeError(f"the fleet did not come up within 90 s: parked: "
                                   f"{sorted(parked)} of {sorted(everyone)}")
            spin(0.1)
        t_start = time.monotonic()
        for task in tasks:
            req = SubmitTask.Request()
            req.task = task_to_msg(task)
            if operator is not None:
                operator.sign(req, "fleet/submit_task")
            fut = submit.call_async(req)
            while not fut.done():
                spin(0.05)
            if not fut.result().accepted:
                raise RuntimeError(f"task {task.id} refused: {fut.result().error}")
            spin(SUBMIT_INTERVAL_S)
        last_end, ended = time.monotonic(), 0
        while len(final) < len(tasks):
            spin(0.5)
            if len(final) != ended:
                ended, last_end = len(final), time.monotonic()
                print(f"  {ended}/{len(tasks)} tasks ended ({time.monotonic() - t_start:.0f} s)",
                      flush=True)
            if time.monotonic() - last_end > STALL_S:
                print(f"no task ended for {STALL_S:.0f} s: stopping", file=sys.stderr)
                break
        run_s = time.monotonic() - t_start
        vda_exc, checked = vehicle_excursions(
            monitor.exclusion, monitor.holds,
            observer.reports(list(vda)))
        done = sorted(t for t, (s, _) in final.items() if s == TaskStatus.DONE)
        by_vda = sum(1 for t, (s, r) in final.items() if s == TaskStatus.DONE and r in vda)
        metrics = {
            "ros_robots": len(ros), "vda5050_vehicles": len(vda), "tasks": len(tasks),
            "done": len(done), "done_by_vda5050": by_vda, "run_s": round(run_s, 1),
            "conflicting_holds": len(monitor.conflicts),
            "excursions_ros": len(monitor.excursions), "excursions_vda5050": len(vda_exc),
            "vehicle_reports_checked": checked, "odometry_samples": monitor.samples,
            "mqtt_messages": dict(sorted(observer.counts.items())),
            "schema_problems": len(observer.problems),
            "first_problems": observer.problems[:5], "first_excursions":
                [list(e) for e in (monitor.excursions + vda_exc)[:5]],
        }
        with open(os.path.join(out, "metrics.json"), "w") as f:
            json.dump(metrics, f, indent=2)
        ok = (len(done) == len(tasks) and not monitor.conflicts and not monitor.excursions
              and not vda_exc and not observer.problems)
        print(f"done {len(done)}/{len(tasks)} tasks ({by_vda} by VDA 5050 vehicles) in "
              f"{run_s:.0f} s; conflicting holds {len(monitor.conflicts)}; excursions "
              f"{len(monitor.excursions)} (ROS, {monitor.samples} odometry samples) + "
              f"{len(vda_exc)} (VDA, {checked} vehicle reports); MQTT messages "
              f"{sum(observer.counts.values())}, schema problems {len(observer.problems)}")
        print(f"report: {os.path.join(out, 'metrics.json')}")
        return 0 if ok else 1
    except RuntimeError as e:
        print(f"fleet-coord demo: {e}", file=sys.stderr)
        return 1
    finally:
        if launcher is not None:
            launcher.shutdown()
        for p in emulators:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in emulators:
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                p.kill()
        if observer is not None:
            observer.close()
        broker.stop()
        if ctx is not None:
            rclpy.shutdown(context=ctx)
        fleet_log.close()
        print(f"(wall {time.monotonic() - t0:.0f} s)")

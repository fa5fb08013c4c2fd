"""``fleet-coord`` commands that talk to a running fleet over ROS 2:

    fleet-coord submit ID --kind pick_and_drop --stations PICK DROP [--priority P] [--deadline S]
    fleet-coord cancel ID [--reason TEXT]
    fleet-coord tasks [--all] [--robot NAME]
    fleet-coord status [--watch]          # a live fleet table from /fleet/state
    fleet-coord add-robot NAME --station S [--config F] [--print]
    fleet-coord remove-robot NAME [--force] [--reason TEXT]

They use the fleet's services (/fleet/submit_task, /fleet/cancel_task, /fleet/list_tasks,
/fleet/remove_robot, /ideal_driver/spawn_robot) and topics, with the discovery range and
domain of the environment (set ROS_AUTOMATIC_DISCOVERY_RANGE / ROS_DOMAIN_ID as the
fleet's config says; add-robot takes them from its --config like `fleet-coord launch`),
under the fleet's namespace: `--namespace NS` (default $FLEET_COORD_NAMESPACE; add-robot:
its config's fleet.namespace), as the fleet was launched (fleet_coord.namespace).

In a fleet that authenticates (docs/security.md) submit, cancel, remove-robot and
add-robot act as the operator: they sign with the `operator` key of `--keys DIR` (or
$FLEET_COORD_KEYS; add-robot: its --config's key directory) and accept only answers the
fleet's dispatcher / authority / driver signed for that request.

Robots join and leave a running fleet (fleet_coord.core.membership): a robot joins when
its agent first publishes its state, so `add-robot` puts the robot into the world (the
ideal driver spawns it; a serial robot's bridge must already run) and then runs its
agent here in the foreground, like `ros2 run`, until Ctrl-C or SIGTERM (`--print` prints
the agent's command line instead, e.g. to run it on the robot's computer). An agent that
stops makes its robot lost; `remove-robot` takes a robot out for good and frees what it
holds.
"""
from __future__ import annotations

import math
import os
import shlex
import signal
import subprocess
import sys
import time

from fleet_coord.cli import number

#: seconds: the longest --deadline (a task's deadline is a ROS time, int32 seconds)
DEADLINE_MAX_S = 10 * 365 * 24 * 3600.0
TIMEOUT = number(0, 86400, above=True, unit="s")


def register(subparsers) -> None:
    p = subparsers.add_parser("submit", help="submit a task to the running fleet")
    p.add_argument("task_id")
    p.add_argument("--kind", default="pick_and_drop", choices=("pick_and_drop", "goto", "charge"))
    p.add_argument("--stations", nargs="+", required=True, metavar="STATION",
                   help="station names: PICK DROP for pick_and_drop, GOAL for goto/charge")
    p.add_argument("--priority", type=number(-2**31, 2**31 - 1, integer=True), default=0,
                   help="higher is more urgent (int32, default 0)")
    p.add_argument("--deadline", type=number(0, DEADLINE_MAX_S, unit="s"), default=0.0,
                   help="seconds from now by which the task should be done (0 = none)")
    p.add_argument("--payload", type=number(0, 1e6, unit="kg"), default=0.0, metavar="KG")
    p.add_argument("--wait", action="store_true", help="wait until the task is done or failed")
    p.add_argument("--wait-timeout", type=number(0, 1e9, unit="s"), default=0.0, metavar="SEC",
                   help="with --wait: give up after SEC seconds (exit 3; the task goes on); "
                   "0 = wait as long as it takes")
    p.add_argument("--timeout", type=TIMEOUT, default=10.0, help="seconds to wait for the fleet")
    _keys_arg(p)
    _namespace_arg(p)
    p.set_defaults(run=run_submit)

    p = subparsers.add_parser("cancel", help="cancel a task of the running fleet")
    p.add_argument("task_id")
    p.add_argument("--reason", default="cancelled from the command line")
    p.add_argument("--timeout", type=TIMEOUT, default=10.0)
    _keys_arg(p)
    _namespace_arg(p)
    p.set_defaults(run=run_cancel)

    p = subparsers.add_parser("tasks", help="list the running fleet's tasks")
    p.add_argument("--all", action="store_true", help="include finished tasks")
    p.add_argument("--robot", default="", help="only this robot's tasks")
    p.add_argument("--timeout", type=TIMEOUT, default=10.0)
    _namespace_arg(p)
    p.set_defaults(run=run_tasks)

    p = subparsers.add_parser("status", help="the running fleet's robots as a table")
    p.add_argument("--watch", action="store_true", help="refresh until Ctrl-C")
    p.add_argument("--timeout", type=TIMEOUT, default=10.0)
    _namespace_arg(p)
    p.set_defaults(run=run_status)

    p = subparsers.add_parser(
        "add-robot", help="add a robot to the running fleet and run its agent",
        description="Put a new robot at a station of the running fleet (the ideal driver "
                    "spawns it; a serial robot's bridge must already run) and run its robot "
                    "agent here in the foreground until Ctrl-C. The robot joins when its "
                    "agent first reports; stopping the agent makes it lost, `fleet-coord "
                    "remove-robot` takes it out.")
    p.add_argument("robot", metavar="NAME", help="robot name: a letter, then letters, digits or _")
    p.add_argument("--station", required=True, help="station (roadmap vertex name, 'x,y' on a "
                                                    "grid map) where the robot starts; must be free")
    p.add_argument("--theta", type=number(-2 * math.pi, 2 * math.pi, unit="rad"), default=0.0,
                   help="start heading, rad (default 0)")
    p.add_argument("--config", default=None,
                   help="the running fleet's config (default: config/fleet_demo.yaml): map, "
                        "footprint, clock, discovery, robot_agent parameters")
    p.add_argument("--backend", choices=("ideal", "serial", "sim"), default=None,
                   help="the robot's backend (default: the config robots' backend)")
    p.add_argument("--max-speed", type=number(0, 20, above=True, unit="m/s"), default=1.0,
                   help="m/s (default 1.0)")
    p.add_argument("--max-angular-speed", type=number(0, 100, above=True, unit="rad/s"),
                   default=2.0, help="rad/s (default 2.0)")
    p.add_argument("--domain", type=number(0, 232, integer=True),
                   help="ROS_DOMAIN_ID override (as for launch)")
    p.add_argument("--print", dest="print_only", action="store_true",
                   help="after the checks (and the spawn), print the agent's command line "
                        "instead of running it")
    p.add_argument("--timeout", type=TIMEOUT, default=10.0, help="seconds to wait for the fleet")
    p.add_argument("--namespace", default=None, metavar="NS",
                   help="the running fleet's namespace (default: the config's fleet.namespace)")
    p.set_defaults(run=run_add_robot)

    p = subparsers.add_parser(
        "remove-robot", help="take a robot out of the running fleet",
        description="Remove a robot from the running fleet (/fleet/remove_robot on the traffic "
                    "authority): everything it holds is released (a lost robot's blocked spot "
                    "too), its unfinished tasks go back to auction, it gets no more awards, "
                    "its agent (if running) stands down and a simulated robot leaves the "
                    "world. Refused for an unknown robot, and for an alive robot with tasks "
                    "unless --force.")
    p.add_argument("robot", metavar="NAME")
    p.add_argument("--force", action="store_true",
                   help="remove it even though it is alive and has tasks")
    p.add_argument("--reason", default="removed from the command line")
    p.add_argument("--timeout", type=TIMEOUT, default=10.0)
    _keys_arg(p)
    _namespace_arg(p)
    p.set_defaults(run=run_remove_robot)


def _namespace_arg(p) -> None:
    p.add_argument("--namespace", default=os.environ.get("FLEET_COORD_NAMESPACE", ""),
                   metavar="NS", help="the fleet's namespace, as it was launched with "
                   "(fleet-coord launch --namespace; default $FLEET_COORD_NAMESPACE, else none)")


def _keys_arg(p) -> None:
    p.add_argument("--keys", default=os.environ.get("FLEET_COORD_KEYS", ""), metavar="DIR",
                   help="the fleet's key directory: sign as its operator (a fleet that "
                        "authenticates; default $FLEET_COORD_KEYS)")


class _Client:
    """One short-lived rclpy node for a command."""

    def __init__(self, name: str, keys: str = "", namespace: str = "", **node_kwargs) -> None:
        import rclpy

        from fleet_coord.cli import CliError
        from fleet_coord.namespace import FleetNames
        self.rclpy = rclpy
        self.signer = self.verifier = None
        try:
            self.names = FleetNames(namespace)    # the fleet's topics (fleet_coord.namespace)
        except ValueError as e:
            raise CliError(f"--namespace: {e}") from None
        if keys:   # before rclpy: a bad key file is an error naming it, nothing started
            from fleet_coord.auth import Signer, Verifier
            from fleet_coord.keys import KeyDir, KeyFileError
            try:
                kd = KeyDir(keys)
                self.verifier = Verifier(kd.keyring())
                self.signer = Signer("operator", kd.private_key("operator",
                                                                self.verifier.keyring))
            except KeyFileError as e:
                raise CliError(str(e)) from None
        rclpy.init(args=[])
        ns = self.names.namespace
        self.node = rclpy.create_node(   # the fleet's clock is under its namespace too
            name, namespace=ns or None,
            cli_args=["--ros-args", "-r", f"/clock:={ns}/clock"] if ns else None, **node_kwargs)

    def call(self, srv_type, service: str, request, timeout: float, attempt_s: float = 3.0):
        """Call `service`, retrying every `attempt_s` until `timeout`: DDS can drop a
        response sent before the server has matched this client's reader, and the fleet's
        services are idempotent for a repeated request. Signed as the operator (each
        attempt anew: a repeated signature is a replay), the answer checked, with --keys."""
        from fleet_coord.auth import sendable_problem
        from fleet_coord.cli import CliError
        if problem := sendable_problem(request):   # DDS would cut it (and void a signature)
            raise CliError(f"{service}: {problem}")
        channel = service.lstrip("/")        # auth channels name it without the namespace
        service = self.names(service)
        client = self.node.create_client(srv_type, service)
        deadline = time.monotonic() + timeout
        if not client.wait_for_service(timeout_sec=timeout):
            raise CliError(f"no fleet answers on {service} within {timeout:g} s (is the fleet "
                           "running, with the same ROS_DOMAIN_ID and discovery range?)")
        while True:
            if self.signer is not None:
                self.signer.sign(request, channel)
            fut = client.call_async(request)
            left = deadline - time.monotonic()
            self.rclpy.spin_until_future_complete(self.node, fut, timeout_sec=max(0.1, min(attempt_s, left)))
            if fut.done():
                resp = fut.result()
                if self.verifier is not None:
                    dropped = self.verifier.verify(resp, f"{channel}#response",
                                                   request=request.auth)
                    if dropped is not None:
                        raise CliError(f"the answer on {service} does not count: {dropped}")
                return resp
            client.remove_pending_request(fut)
            if time.monotonic() >= deadline:
                raise CliError(f"{service} did not answer within {timeout:g} s")

    def close(self) -> None:
        self.node.destroy_node()
        self.rclpy.try_shutdown()


STATE_NAMES = ("UNKNOWN", "QUEUED", "ANNOUNCED", "AWARDED", "ACTIVE", "DONE", "FAILED", "CANCELLED")


def run_submit(args) -> int:
    from fleet_coord_msgs.msg import Task, TaskStatus
    from fleet_coord_msgs.srv import SubmitTask

    from fleet_coord import qos
    from fleet_coord.cli import CliError
    from fleet_coord.core.names import id_problem
    # what the dispatcher would refuse anyway, said before anything is sent
    problem = id_problem(args.task_id, "task id") or next(
        (p for i, st in enumerate(args.stations)
         if (p := id_problem(st, f"--stations[{i}]", "station name"))), None)
    if problem:
        raise CliError(problem)
    c = _Client("fleet_coord_cli_submit", args.keys, args.namespace)
    try:
        statuses = []
        c.node.create_subscription(TaskStatus, c.names("/fleet/task_status"), statuses.append,
                                   qos.PROTOCOL)
        task = Task(id=args.task_id, kind=args.kind, stations=args.stations,
                    priority=args.priority, payload_kg=args.payload, requester="fleet-coord cli")
        if args.deadline:
            from rclpy.duration import Duration
            task.deadline = (c.node.get_clock().now() + Duration(seconds=args.deadline)).to_msg()
        resp = c.call(SubmitTask, "/fleet/submit_task", SubmitTask.Request(task=task), args.timeout)
        if not resp.accepted:
            print(f"fleet-coord submit: rejected: {resp.error}", file=sys.stderr)
            return 1
        print(f"accepted {resp.task_id}")
        if not args.wait:
            return 0
        import time
        if args.wait_timeout < 0:
            print(f"fleet-coord submit: error: --wait-timeout must be >= 0 s, got "
                  f"{args.wait_timeout}", file=sys.stderr)
            return 2
        give_up = time.monotonic() + args.wait_timeout if args.wait_timeout > 0 else None
        last = "ACCEPTED"
        while True:
            if give_up is not None and time.monotonic() > give_up:
                print(f"{resp.task_id}: still {last} after {args.wait_timeout:g} s; not waiting "
                      "any longer (the task goes on)", file=sys.stderr)
                return 3
            c.rclpy.spin_once(c.node, timeout_sec=0.2)
            for s in statuses:
                if s.task_id == resp.task_id:
                    last = STATE_NAMES[s.state] if 0 <= s.state < len(STATE_NAMES) else str(s.state)
                if s.task_id == resp.task_id and s.state in (TaskStatus.DONE, TaskStatus.CANCELLED) \
                        or (s.task_id == resp.task_id and s.state == TaskStatus.FAILED
                            and s.reporter != s.robot):
                    print(f"{resp.task_id}: {STATE_NAMES[s.state]}"
                          + (f" by {s.robot}" if s.robot else "") + (f" ({s.reason})" if s.reason else ""))
                    return 0 if s.state == TaskStatus.DONE else 1
            statuses.clear()
    finally:
        c.close()


def run_cancel(args) -> int:
    from fleet_coord_msgs.srv import CancelTask
    c = _Client("fleet_coord_cli_cancel", args.keys, args.namespace)
    try:
        resp = c.call(CancelTask, "/fleet/cancel_task",
                      CancelTask.Request(task_id=args.task_id, reason=args.reason), args.timeout)
    finally:
        c.close()
    if not resp.ok:
        print(f"fleet-coord cancel: {resp.error}", file=sys.stderr)
        return 1
    print(f"cancelled {args.task_id}")
    return 0


def run_tasks(args) -> int:
    from fleet_coord_msgs.srv import ListTasks
    c = _Client("fleet_coord_cli_tasks", namespace=args.namespace)
    try:
        resp = c.call(ListTasks, "/fleet/list_tasks",
                      ListTasks.Request(robot=args.robot, include_finished=args.all), args.timeout)
    finally:
        c.close()
    rows = [(t.id, t.kind, " -> ".join(t.stations), STATE_NAMES[s.state] if s.state < len(STATE_NAMES)
             else str(s.state), s.robot or "-", f"{s.progress * 100:.0f}%", s.reason)
            for t, s in zip(resp.tasks, resp.statuses)]
    print(_table(("task", "kind", "stations", "state", "robot", "progress", "reason"), rows))
    return 0


MODES = ("IDLE", "MOVING", "WAITING", "CHARGING", "ESTOP", "LOST", "ERROR")


def fleet_table(fs) -> str:
    rows = []
    for r in fs.robots:
        rows.append((r.robot, MODES[r.mode] if r.mode < len(MODES) else str(r.mode),
                     f"{r.pose.position.x:6.2f}", f"{r.pose.position.y:6.2f}",
                     f"{r.twist.linear.x:5.2f}", f"{r.battery * 100:3.0f}%", r.task_id or "-",
                     str(len(r.queued_task_ids))))
    return _table(("robot", "mode", "x", "y", "v", "battery", "task", "queued"), rows) + (
        f"\nlost: {', '.join(fs.lost)}" if fs.lost else "")


def run_status(args) -> int:
    from fleet_coord_msgs.msg import FleetState

    from fleet_coord import qos
    from fleet_coord.cli import CliError
    c = _Client("fleet_coord_cli_status", namespace=args.namespace)
    got = []
    c.node.create_subscription(FleetState, c.names("/fleet/state"), got.append, qos.state_qos())
    try:
        deadline = time.monotonic() + args.timeout
        while True:
            c.rclpy.spin_once(c.node, timeout_sec=0.2)
            if got:
                text = fleet_table(got[-1])
                if not args.watch:
                    print(text)
                    return 0
                sys.stdout.write("\x1b[2J\x1b[H" + text + "\n")
                sys.stdout.flush()
                got.clear()
                deadline = time.monotonic() + args.timeout
            elif time.monotonic() > deadline:
                raise CliError(f"no /fleet/state within {args.timeout:g} s (is a fleet_monitor running?)")
    except KeyboardInterrupt:
        return 0
    finally:
        c.close()


def run_remove_robot(args) -> int:
    from fleet_coord_msgs.srv import RemoveRobot
    c = _Client("fleet_coord_cli_remove_robot", args.keys, args.namespace)
    try:
        resp = c.call(RemoveRobot, "/fleet/remove_robot",
                      RemoveRobot.Request(robot=args.robot, force=args.force, reason=args.reason),
                      args.timeout)
    finally:
        c.close()
    if not resp.ok:
        print(f"fleet-coord remove-robot: {resp.error}", file=sys.stderr)
        return 1
    print(f"removed {args.robot}{' (it was lost)' if resp.was_lost else ''}: {resp.released} "
          "reservation(s) released; its unfinished tasks go back to auction")
    return 0


def _ros_param(value) -> str:
    """A value as `-p name:=value` wants it (YAML)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value) if value == value and abs(value) != float("inf") else (
            ".nan" if value != value else (".inf" if value > 0 else "-.inf"))
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_ros_param(v) for v in value) + "]"
    return str(value)


def agent_command(cfg, robot: str, *, max_speed: float = 1.0, max_angular_speed: float = 2.0,
                  use_sim_time: bool | None = None, namespace: str | None = None) -> list[str]:
    """The command that runs `robot`'s agent for the fleet of `cfg` — the parameters
    `fleet-coord launch` gives the config's own agents (fleet_coord.node_set); under
    `namespace` (default: the config's)."""
    from fleet_coord.namespace import normalize
    ns = normalize(cfg.namespace if namespace is None else namespace)
    from fleet_coord.node_set import auth_parameters
    params = {"use_sim_time": cfg.use_sim_time if use_sim_time is None else use_sim_time,
              "map": os.path.abspath(cfg.map), "footprint_radius": float(cfg.footprint_radius),
              "max_v": float(max_speed), "max_w": float(max_angular_speed),
              **auth_parameters(cfg), **cfg.nodes.get("robot_agent", {})}
    argv = [sys.executable, "-m", "fleet_coord.robot_agent", "--ros-args",
            "-r", f"__ns:={ns}/{robot}", "-p", f"robot:={robot}"]
    if ns:
        argv += ["-r", f"/clock:={ns}/clock"]
    for k, v in params.items():
        argv += ["-p", f"{k}:={_ros_param(v)}"]
    return argv


def _config_backend(cfg, choice: str | None) -> str:
    from fleet_coord.cli import CliError
    if choice is not None:
        return choice
    backends = sorted({r.backend for r in cfg.robots})
    if len(backends) != 1:
        raise CliError(f"{cfg.path} mixes backends ({', '.join(backends)}): say which one the "
                       "new robot uses with --backend")
    return backends[0]


def run_add_robot(args) -> int:
    from fleet_coord.cli import CliError
    from fleet_coord.fleet_config import (_ROS_NAME, ConfigError, load_fleet_config,
                                          load_roadmap_and_exclusion)
    from fleet_coord.node_set import default_config_path, environment

    robot = args.robot
    if not _ROS_NAME.match(robot):
        raise CliError(f"{robot!r} is not a valid robot name (a letter, then letters, digits "
                       "or '_')")
    config = args.config or default_config_path()
    try:
        cfg = load_fleet_config(config)
    except (ConfigError, OSError) as e:
        raise CliError(str(e)) from None
    for k, v in (("--max-speed", args.max_speed), ("--max-angular-speed", args.max_angular_speed)):
        if not v > 0:
            raise CliError(f"{k} must be > 0, got {v}")
    roadmap, _exclusion, roadmap_id = load_roadmap_and_exclusion(cfg.map, cfg.footprint_radius)
    try:
        vertex = roadmap.vertex(args.station)
    except KeyError as e:
        raise CliError(f"--station: {e.args[0] if e.args else e} (map {cfg.map})") from None
    x, y = float(roadmap.pos[vertex, 0]), float(roadmap.pos[vertex, 1])
    backend = _config_backend(cfg, args.backend)
    if backend == "sim":
        raise CliError("the PyBullet sim cannot add robots at runtime: add "
                       f"{robot} to the robots of {config} and relaunch (or use the ideal backend)")
    os.environ.update(environment(cfg))
    if args.domain is not None:
        os.environ["ROS_DOMAIN_ID"] = str(args.domain)
    namespace = cfg.namespace if args.namespace is None else args.namespace
    try:
        argv = agent_command(cfg, robot, max_speed=args.max_speed,
                             max_angular_speed=args.max_angular_speed, namespace=namespace)
    except ValueError as e:
        raise CliError(f"--namespace: {e}") from None

    if cfg.auth.enabled:
        _provision_robot(cfg, robot, backend, args.timeout)
    from rclpy.parameter import Parameter
    c = _Client(f"fleet_coord_cli_add_{robot}", cfg.auth.keys if cfg.auth.enabled else "",
                namespace, parameter_overrides=[Parameter("use_sim_time", value=bool(cfg.use_sim_time))])
    try:
        _check_join(c, cfg, robot, vertex, args.station, roadmap_id, args.timeout)
        if backend == "ideal":
            from fleet_coord_msgs.srv import SpawnRobot
            resp = c.call(SpawnRobot, "/ideal_driver/spawn_robot",
                          SpawnRobot.Request(robot=robot, x=x, y=y, theta=args.theta),
                          args.timeout)
            if not resp.ok:
                print(f"fleet-coord add-robot: {resp.error}", file=sys.stderr)
                return 1
            print(f"spawned {robot} at station {args.station} ({x:g}, {y:g})")
        elif c.node.count_publishers(c.names(f"/{robot}/odom")) == 0:
            raise CliError(f"nobody publishes {c.names(f'/{robot}/odom')}: start {robot}'s "
                           f"serial_bridge first (ros2 run fleet_coord serial_bridge --ros-args "
                           f"-r __ns:={c.names(f'/{robot}')} -p port:=/dev/ttyACM0 -p "
                           "autostart:=true), with "
                           f"the robot standing on station {args.station}")
    finally:
        c.close()

    env_prefix = " ".join(f"{k}={shlex.quote(v)}" for k, v in sorted(environment(cfg).items()))
    if args.print_only:
        print(f"{env_prefix} {shlex.join(argv)}")
        return 0
    print(f"starting {robot}'s agent (Ctrl-C stops it; the robot then goes lost until "
          f"`fleet-coord remove-robot {robot}` or a new agent)", flush=True)
    from fleet_coord.launcher import die_with_parent
    # the agent stops with this command, also when it is killed (no orphaned agent that
    # keeps speaking for the robot)
    child = subprocess.Popen(argv, env={**os.environ, "PYTHONUNBUFFERED": "1"},
                             preexec_fn=die_with_parent)

    def forward(signum, _frame):
        if child.poll() is None:
            child.send_signal(signum)
    old = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        while True:
            try:
                rc = child.wait()
                break
            except KeyboardInterrupt:   # pragma: no cover - SIGINT is forwarded instead
                continue
    finally:
        for s, h in old.items():
            signal.signal(s, h)
    return 0 if rc in (0, -signal.SIGINT, -signal.SIGTERM) else rc


def _provision_robot(cfg, robot: str, backend: str, timeout: float) -> None:
    """A joining robot of an authenticating fleet: its keys (unless provisioned already,
    e.g. by `fleet-coord keys add`), and the running fleet told (operator-signed keyring)."""
    from fleet_coord.cli import CliError
    from fleet_coord.cli_keys import publish_keyring
    from fleet_coord.keys import KeyDir, KeyFileError, robot_identities
    kd = KeyDir(cfg.auth.keys)
    try:
        kr = kd.keyring()
        if robot not in kr.keys:
            kr = kd.add(robot_identities(robot, backend))
            print(f"provisioned keys for {robot} in {kd.path} (keyring serial {kr.serial})")
        n = publish_keyring(cfg, kd, kr, f"added {robot}", timeout, set_env=False)
    except KeyFileError as e:
        raise CliError(str(e)) from None
    print(f"keyring serial {kr.serial} taken by {n} running node(s)")


def _check_join(c, cfg, robot: str, vertex: int, station: str, roadmap_id: str,
                timeout: float) -> None:
    """Before a robot joins: the fleet runs the config's map, nobody speaks for `robot`
    yet, and `station` is free from now on (a robot there would collide with whoever
    holds or will cross it).

    The table is judged from a snapshot the authority published after this command began
    listening (it publishes one every `snapshot_period`, 5 s by default): /traffic/updates
    hands a late joiner its history (TRANSIENT_LOCAL), old snapshots first, and on a loaded
    machine the rest of that history can take longer than any fixed wait - a replica built
    from an old snapshot alone showed a parked robot's station as free."""
    from fleet_coord_msgs.msg import ReservationSet, RobotState

    from fleet_coord import qos
    from fleet_coord.cli import CliError
    from fleet_coord.convert import from_time
    from fleet_coord.fleet_config import load_roadmap_and_exclusion
    from fleet_coord.table_replica import TableReplica

    _roadmap, exclusion, _ = load_roadmap_and_exclusion(cfg.map, cfg.footprint_radius)
    replica = TableReplica(exclusion.of, _roadmap.num_resources, "")
    ids: set[str] = set()
    speaking: list[str] = []

    start: list[float] = []     # the fleet's time when listening began (sim: once known)
    fresh: list[bool] = [False]  # a snapshot published since then was applied

    def on_table(m) -> None:
        if m.roadmap_id:
            ids.add(m.roadmap_id)
        replica.apply(m)
        if m.is_snapshot and start and from_time(m.stamp) >= start[0]:
            fresh[0] = True

    c.node.create_subscription(ReservationSet, c.names("/traffic/updates"), on_table, qos.TABLE)
    c.node.create_subscription(RobotState, c.names("/fleet/robot_states"),
                               lambda m: speaking.append(m.robot), qos.state_qos())
    # long enough for one snapshot period of this config's authority
    period = float(cfg.nodes.get("traffic", {}).get("snapshot_period", 5.0))
    deadline = time.monotonic() + max(timeout, period + 1.0)
    listen_until = time.monotonic() + 1.5   # robots speak at 10 Hz
    while True:
        now_ns = c.node.get_clock().now().nanoseconds
        if not start and (now_ns > 0 or not cfg.use_sim_time):
            start.append(now_ns * 1e-9)
        c.rclpy.spin_once(c.node, timeout_sec=0.1)
        synced = fresh[0] and not replica.stale
        if synced and time.monotonic() >= listen_until:
            break
        if time.monotonic() > deadline:
            if not start:
                raise CliError(f"no fleet answers on /clock within {timeout:g} s (is the "
                               f"fleet of {cfg.path} running, with the same ROS_DOMAIN_ID "
                               "and discovery range?)")
            if replica.core.following:
                raise CliError(f"no table snapshot on /traffic/updates stamped after this "
                               f"command started, within {max(timeout, period + 1.0):g} s "
                               f"(the authority publishes one every {period:g} s, "
                               "nodes.traffic.snapshot_period; is this host's clock ahead "
                               "of the authority's?)")
            raise CliError(f"no fleet answers on /traffic/updates within {timeout:g} s (is "
                           f"the fleet of {cfg.path} running, with the same ROS_DOMAIN_ID "
                           "and discovery range?)")
    if ids and roadmap_id not in ids:
        raise CliError(f"the running fleet uses another map or footprint than {cfg.path} "
                       f"(roadmap {', '.join(sorted(ids))}, the config's {roadmap_id})")
    if robot in speaking:
        raise CliError(f"robot {robot!r} is already in the fleet (its agent is publishing "
                       "states); pick another name")
    now = c.node.get_clock().now().nanoseconds * 1e-9
    clash = replica.table.first_conflict(vertex, now, float("inf"), robot=robot)
    if clash is not None:
        when = ("held until further notice" if clash.t_end == float("inf")
                else f"reserved {clash.t_start - now:+.1f} s to {clash.t_end - now:+.1f} s from now")
        raise CliError(f"station {station!r} is not free: {clash.robot} {when}; pick a free "
                       "station")


def _table(header, rows) -> str:
    cols = list(zip(header, *rows)) if rows else [(h,) for h in header]
    widths = [max(len(str(x)) for x in col) for col in cols]
    line = lambda r: "  ".join(str(x).ljust(w) for x, w in zip(r, widths)).rstrip()  # noqa: E731
    out = [line(header), line(["-" * w for w in widths])] + [line(r) for r in rows]
    return "\n".join(out)

"""``fleet-coord`` commands that talk to a running fleet over ROS 2:

    fleet-coord submit ID --kind pick_and_drop --stations PICK DROP [--priority P] [--deadline S]
    fleet-coord cancel ID [--reason TEXT]
    fleet-coord tasks [--all] [--robot NAME]
    fleet-coord status [--watch]          # a live fleet table from /fleet/state

They use the fleet's services (/fleet/submit_task, /fleet/cancel_task, /fleet/list_tasks)
and topics, with the discovery range and domain of the environment (set
ROS_AUTOMATIC_DISCOVERY_RANGE / ROS_DOMAIN_ID as the fleet's config says).
"""
from __future__ import annotations

import sys
import time


def register(subparsers) -> None:
    p = subparsers.add_parser("submit", help="submit a task to the running fleet")
    p.add_argument("task_id")
    p.add_argument("--kind", default="pick_and_drop", choices=("pick_and_drop", "goto", "charge"))
    p.add_argument("--stations", nargs="+", required=True, metavar="STATION",
                   help="station names: PICK DROP for pick_and_drop, GOAL for goto/charge")
    p.add_argument("--priority", type=int, default=0)
    p.add_argument("--deadline", type=float, default=0.0,
                   help="seconds from now by which the task should be done (0 = none)")
    p.add_argument("--payload", type=float, default=0.0, metavar="KG")
    p.add_argument("--wait", action="store_true", help="wait until the task is done or failed")
    p.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for the fleet")
    p.set_defaults(run=run_submit)

    p = subparsers.add_parser("cancel", help="cancel a task of the running fleet")
    p.add_argument("task_id")
    p.add_argument("--reason", default="cancelled from the command line")
    p.add_argument("--timeout", type=float, default=10.0)
    p.set_defaults(run=run_cancel)

    p = subparsers.add_parser("tasks", help="list the running fleet's tasks")
    p.add_argument("--all", action="store_true", help="include finished tasks")
    p.add_argument("--robot", default="", help="only this robot's tasks")
    p.add_argument("--timeout", type=float, default=10.0)
    p.set_defaults(run=run_tasks)

    p = subparsers.add_parser("status", help="the running fleet's robots as a table")
    p.add_argument("--watch", action="store_true", help="refresh until Ctrl-C")
    p.add_argument("--timeout", type=float, default=10.0)
    p.set_defaults(run=run_status)


class _Client:
    """One short-lived rclpy node for a command."""

    def __init__(self, name: str) -> None:
        import rclpy
        self.rclpy = rclpy
        rclpy.init(args=[])
        self.node = rclpy.create_node(name)

    def call(self, srv_type, service: str, request, timeout: float, attempt_s: float = 3.0):
        """Call `service`, retrying the same request every `attempt_s` until `timeout`:
        DDS can drop a response sent before the server has matched this client's reader,
        and the fleet's services are idempotent for a repeated request."""
        from fleet_coord.cli import CliError
        client = self.node.create_client(srv_type, service)
        deadline = time.monotonic() + timeout
        if not client.wait_for_service(timeout_sec=timeout):
            raise CliError(f"no fleet answers on {service} within {timeout:g} s (is the fleet "
                           "running, with the same ROS_DOMAIN_ID and discovery range?)")
        while True:
            fut = client.call_async(request)
            left = deadline - time.monotonic()
            self.rclpy.spin_until_future_complete(self.node, fut, timeout_sec=max(0.1, min(attempt_s, left)))
            if fut.done():
                return fut.result()
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
    c = _Client("fleet_coord_cli_submit")
    try:
        statuses = []
        c.node.create_subscription(TaskStatus, "/fleet/task_status", statuses.append, qos.PROTOCOL)
        task = Task(id=args.task_id, kind=args.kind, stations=args.stations,
                    priority=args.priority, payload_kg=args.payload, requester="fleet-coord cli")
        if args.deadline:
            if args.deadline < 0:
                print(f"fleet-coord submit: error: --deadline must be >= 0 s, got {args.deadline}",
                      file=sys.stderr)
                return 2
            from rclpy.duration import Duration
            task.deadline = (c.node.get_clock().now() + Duration(seconds=args.deadline)).to_msg()
        resp = c.call(SubmitTask, "/fleet/submit_task", SubmitTask.Request(task=task), args.timeout)
        if not resp.accepted:
            print(f"fleet-coord submit: rejected: {resp.error}", file=sys.stderr)
            return 1
        print(f"accepted {resp.task_id}")
        if not args.wait:
            return 0
        while True:
            c.rclpy.spin_once(c.node, timeout_sec=0.2)
            for s in statuses:
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
    c = _Client("fleet_coord_cli_cancel")
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
    c = _Client("fleet_coord_cli_tasks")
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
    c = _Client("fleet_coord_cli_status")
    got = []
    c.node.create_subscription(FleetState, "/fleet/state", got.append, qos.state_qos())
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


def _table(header, rows) -> str:
    cols = list(zip(header, *rows)) if rows else [(h,) for h in header]
    widths = [max(len(str(x)) for x in col) for col in cols]
    line = lambda r: "  ".join(str(x).ljust(w) for x, w in zip(r, widths)).rstrip()  # noqa: E731
    out = [line(header), line(["-" * w for w in widths])] + [line(r) for r in rows]
    return "\n".join(out)

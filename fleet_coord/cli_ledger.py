"""``fleet-coord ledger``: look after the dispatcher's task ledger (SQLite) while the
dispatcher is stopped.

    fleet-coord ledger check PATH     # open it as the dispatcher would: tasks per state, problems
    fleet-coord ledger reset PATH     # set the files aside (PATH.broken-<time>*): next start is empty
    fleet-coord ledger accept PATH    # take a restored older copy as it is

A dispatcher refuses to start on a ledger it cannot trust (fleet_coord.core.tasks,
`TaskLedger`) and says which of these to run. `--config F` takes the ledger of a fleet
config instead of PATH.
"""
from __future__ import annotations

import os
import sys


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "ledger", help="check, reset or accept the dispatcher's task ledger",
        description="Look after the dispatcher's task ledger while the dispatcher is stopped. "
                    "check: open it as the dispatcher would and list tasks per state and any "
                    "invalid records. reset: move its files aside (nothing is deleted) so the "
                    "next dispatcher start begins with an empty ledger; the tasks in it are "
                    "not run. accept: take a copy restored from a backup as it is (changes "
                    "acknowledged after the copy was made are not in it).")
    p.add_argument("action", choices=("check", "reset", "accept"))
    p.add_argument("path", nargs="?", help="the ledger file (default: --config's fleet.ledger)")
    p.add_argument("--config", help="a fleet config: use its fleet.ledger")
    p.set_defaults(run=run_ledger)


def _path(args) -> str:
    from fleet_coord.cli import CliError
    if args.path and args.config:
        raise CliError("give the ledger file or --config, not both")
    if args.path:
        return args.path
    if not args.config:
        raise CliError("which ledger? give its path or --config with a fleet.ledger")
    from fleet_coord.fleet_config import ConfigError, load_fleet_config
    try:
        cfg = load_fleet_config(args.config)
    except (ConfigError, OSError) as e:
        raise CliError(str(e)) from None
    if not cfg.ledger:
        raise CliError(f"{args.config} sets no fleet.ledger (the dispatcher then uses "
                       "~/.ros/fleet_coord_tasks.db): give that path")
    return cfg.ledger


def run_ledger(args) -> int:
    from fleet_coord.cli import CliError
    from fleet_coord.core.tasks import LedgerError, TaskLedger, TaskState, accept_as_is, set_aside
    path = _path(args)
    if args.action == "reset":
        moved = set_aside(path)
        if not moved:
            raise CliError(f"no ledger at {path}")
        print(f"set aside {len(moved)} file(s): {', '.join(moved)}\n"
              f"the next dispatcher start creates an empty ledger at {path}")
        return 0
    if not os.path.lexists(path):
        raise CliError(f"no ledger at {path}")
    try:
        if args.action == "accept":
            n = accept_as_is(path)
            print(f"accepted {path} as it is ({n} changes)")
            return 0
        with TaskLedger(path) as led:
            counts = {s: 0 for s in TaskState}
            for rec in led.list():
                counts[rec.state] += 1
            print(f"{path}: ok, {sum(counts.values())} task(s): "
                  + ", ".join(f"{n} {s.value}" for s, n in counts.items() if n))
            for problem in led.problems:
                print(f"  invalid: {problem}")
            return 1 if led.problems else 0
    except LedgerError as e:
        print(f"fleet-coord ledger {args.action}: {e}", file=sys.stderr)
        return 1

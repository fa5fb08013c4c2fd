"""``fleet-coord``: the command-line entry point.

A small dispatcher. Each subcommand lives in its own module that exposes
``register(subparsers)``: it adds its parser and sets ``run=`` (``args -> exit code``)
as the parser default. Add a subcommand by appending its module to ``SUBCOMMANDS``.
Subcommand modules import the heavy machinery inside ``run``, so ``--help`` stays fast.

A subcommand reports a problem with the user's input by raising ``CliError``: the
dispatcher prints ``fleet-coord <command>: error: <message>`` and exits with status 2,
without a traceback.
"""
from __future__ import annotations

import argparse
import importlib
import math
import sys
from typing import Callable, List, Optional

SUBCOMMANDS = [
    "fleet_coord.cli_plan",
    "fleet_coord.cli_demo",
    "fleet_coord.cli_launch",
    "fleet_coord.cli_fleet",
    "fleet_coord.cli_report",
    "fleet_coord.cli_keys",
    "fleet_coord.cli_lifelong",
    "fleet_coord.cli_ledger",
]


class CliError(Exception):
    """A user-facing error: bad arguments, unreadable input, no result. Exit status 2."""


def number(lo: float = -math.inf, hi: float = math.inf, *, above: bool = False,
           integer: bool = False, unit: str = "") -> Callable[[str], float]:
    """An argparse `type`: a finite number (an integer with `integer`) in [lo, hi], or
    (lo, hi] with `above`. `nan`, `inf` and `1e300` are refused with what was expected."""
    def fmt(x: float) -> str:
        return str(int(x)) if float(x).is_integer() and abs(x) < 1e15 else f"{x:g}"
    lo_text = f"> {fmt(lo)}" if above else f">= {fmt(lo)}"
    bounds = " and ".join(t for t in ((lo_text if lo > -math.inf else ""),
                                      (f"<= {fmt(hi)}" if hi < math.inf else "")) if t)
    expected = (f"{'an integer' if integer else 'a finite number'}"
                f"{' ' + bounds if bounds else ''}{' ' + unit if unit else ''}")

    def parse(text: str) -> float:
        try:
            value: float = int(text) if integer else float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
        if not math.isfinite(value) or value < lo or value > hi or (above and value == lo):
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text}")
        return value
    return parse


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fleet-coord",
        description="fleet_coord: multi-robot fleet coordination (planning, reservations, "
                    "auctions) on ROS 2.")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module_name in SUBCOMMANDS:
        importlib.import_module(module_name).register(subparsers)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    run = getattr(args, "run", None)
    if run is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        return int(run(args) or 0)
    except CliError as err:
        print(f"fleet-coord {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"fleet-coord {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    # `python -m fleet_coord.cli`: run the imported module, not this `__main__` copy,
    # so subcommands raise the same CliError class that main() catches.
    from fleet_coord.cli import main as _main
    sys.exit(_main())

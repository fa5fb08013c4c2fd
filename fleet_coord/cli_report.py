"""``fleet-coord report RECORDING``: the demo's report (metrics JSON, trajectories and
timeline pictures, summary) rebuilt from an MCAP recording of a fleet run
(fleet_coord.report_mcap)."""
from __future__ import annotations

import os


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "report", help="rebuild a run's report from its MCAP recording",
        description="Read an MCAP recording of a fleet (fleet-coord demo writes "
                    "<out>/fleet.mcap; fleet-coord launch --record FILE) and write its report: "
                    "metrics.json, trajectories.png, timeline.png, and print the summary.")
    p.add_argument("recording", help="the .mcap file")
    p.add_argument("--out", default=None,
                   help="report folder (default: <recording's folder>/report-<name>)")
    p.set_defaults(run=run)


def run(args) -> int:
    from fleet_coord import report
    from fleet_coord.cli import CliError
    from fleet_coord.demo import summary
    from fleet_coord.fleet_config import load_roadmap

    path = args.recording
    if not os.path.isfile(path):
        raise CliError(f"recording {path!r} not found (expected an .mcap file)")
    from fleet_coord.report_mcap import load
    try:
        rec, tasks, spec, events = load(path)
    except (ValueError, LookupError, OSError) as e:
        raise CliError(f"{path}: not a readable fleet recording: {e}") from None
    except Exception as e:  # noqa: BLE001 - the mcap reader's own errors name no common base
        if type(e).__module__.startswith("mcap"):
            raise CliError(f"{path}: not a readable MCAP file: {e}") from None
        raise
    if not rec.robots:
        raise CliError(f"{path}: no robots in the recording (no /fleet/robot_states and no "
                       "fleet_coord metadata)")
    out = args.out or os.path.join(os.path.dirname(os.path.abspath(path)),
                                   "report-" + os.path.splitext(os.path.basename(path))[0])
    os.makedirs(out, exist_ok=True)
    m = report.metrics(rec, tasks, spec, events)
    report.write_metrics(m, os.path.join(out, "metrics.json"))
    files = ["metrics.json"]
    roadmap = load_roadmap(spec.map) if spec.map else None
    if roadmap is None:
        from fleet_coord.recording import read_metadata
        roadmap = load_roadmap(read_metadata(path).get("fleet_coord", {}).get("map", ""))
    if roadmap.grid is not None:
        report.plot_trajectories(rec, roadmap, tasks, os.path.join(out, "trajectories.png"))
        files.append("trajectories.png")
    report.plot_timeline(rec, os.path.join(out, "timeline.png"))
    files.append("timeline.png")
    print(summary(m))
    print(f"report: {out}/ " + ", ".join(files))
    return 0

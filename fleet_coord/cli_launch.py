"""``fleet-coord launch CONFIG``: start a fleet's node set as processes, here, without
``ros2 launch`` (the same nodes as ``launch/fleet.launch.py``: fleet_coord.node_set).

Ctrl-C or SIGTERM stops every process cleanly; crashed nodes restart per the config's
``restart`` policy.
"""
from __future__ import annotations


from fleet_coord.cli_plan import _positive_int
import signal


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "launch", help="start a fleet from a fleet config (processes, here)",
        description="Start the node set of a fleet config as processes with per-node log "
                    "prefixes, restart crashed nodes per the config, stop cleanly on Ctrl-C "
                    "or SIGTERM.")
    p.add_argument("config", help="fleet config YAML (see docs/fleet-config.md)")
    p.add_argument("--robot-count", type=_positive_int, help="start only the first N robots")
    p.add_argument("--agents-per-process", type=_positive_int,
                   help="group N robot agents per process (default: the config's)")
    p.add_argument("--use-sim-time", choices=("true", "false"), help="override the config")
    p.add_argument("--domain", type=int, help="ROS_DOMAIN_ID override")
    p.add_argument("--operator-view", choices=("true", "false"),
                   help="serve the web operator view (default: the config's operator_view)")
    p.add_argument("--operator-port", type=int, metavar="PORT",
                   help="port of the web operator view (default: the config's, else 8080)")
    p.add_argument("--record", metavar="FILE.mcap",
                   help="also record the fleet's topics to an MCAP file (ros2 bag, Foxglove, "
                        "fleet-coord report)")
    p.add_argument("--namespace", metavar="NS",
                   help="put the whole fleet under this ROS namespace (default: the config's "
                        "fleet.namespace): two fleets then share a domain")
    p.set_defaults(run=run)


def run(args) -> int:
    from fleet_coord.cli import CliError
    from fleet_coord.fleet_config import ConfigError, load_fleet_config
    from fleet_coord.launcher import FleetLauncher
    from fleet_coord.node_set import fleet_nodes

    try:
        cfg = load_fleet_config(args.config)
        specs = fleet_nodes(cfg, robot_count=args.robot_count,
                            agents_per_process=args.agents_per_process,
                            use_sim_time=None if args.use_sim_time is None
                            else args.use_sim_time == "true",
                            operator_view=None if args.operator_view is None
                            else args.operator_view == "true",
                            operator_port=args.operator_port, record=args.record,
                            namespace=args.namespace)
    except (ConfigError, ValueError) as e:
        raise CliError(str(e)) from None
    from fleet_coord.keys import KeyFileError
    extra = {"ROS_DOMAIN_ID": str(args.domain)} if args.domain is not None else None
    launcher = FleetLauncher(cfg, specs, extra_env=extra)
    signal.signal(signal.SIGTERM, launcher.request_stop)
    signal.signal(signal.SIGINT, launcher.request_stop)
    try:
        launcher.start()
    except KeyFileError as e:
        launcher.shutdown()
        raise CliError(str(e)) from None
    try:
        launcher.run()
    finally:
        launcher.shutdown()
    return 0

"""``fleet-coord keys``: a fleet's identities and keys (docs/security.md).

    fleet-coord keys init CONFIG [--force] [--sros2]   provision every identity of the config
    fleet-coord keys list CONFIG                       identities, roles, key ids, revoked
    fleet-coord keys add CONFIG NAME [--role ROLE] [--backend B]   a new identity (a robot)
    fleet-coord keys rotate CONFIG NAME                a new key for NAME; the old one revoked
    fleet-coord keys revoke CONFIG NAME [--reason R]   a stolen robot: refused from then on
    fleet-coord keys sros2 CONFIG                      (re)write the SROS2 keystore

The key directory is the config's `auth.keys` (default `<config stem>.keys/` next to it).
`add`, `rotate` and `revoke` also publish the new keyring, signed by the operator, on
/fleet/keyring so a running fleet takes it at once (`--no-publish`: only the files).
"""
from __future__ import annotations

import os
import sys
import time

ROLES = ("agent", "operator", "driver", "dispatcher", "traffic", "monitor", "sim")


def register(subparsers) -> None:
    p = subparsers.add_parser("keys", help="provision, rotate and revoke the fleet's keys",
                              description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="keys_command", metavar="ACTION", required=True)

    def action(name: str, help: str, run):
        a = sub.add_parser(name, help=help)
        a.add_argument("config", help="fleet config YAML (its auth.keys is the key directory)")
        a.set_defaults(run=run)
        return a

    a = action("init", "provision every identity of the config (a new key directory)", run_init)
    a.add_argument("--force", action="store_true",
                   help="replace every key of an existing key directory")
    a.add_argument("--sros2", action="store_true", help="also write the SROS2 keystore")
    action("list", "list identities, roles, key ids and revoked keys", run_list)
    a = action("add", "provision a new identity (a robot joining at run time, an operator)",
               run_add)
    a.add_argument("name", help="identity: a robot's name for its agent, or e.g. web_operator")
    a.add_argument("--role", choices=ROLES, default="agent",
                   help="its role (default: agent, a robot)")
    a.add_argument("--backend", choices=("ideal", "sim", "serial"), default="ideal",
                   help="for a robot: its backend (serial adds its bridge's identity)")
    _publish_args(a)
    a = action("rotate", "a new key for an identity (the old key is revoked)", run_rotate)
    a.add_argument("name")
    _publish_args(a)
    a = action("revoke", "revoke an identity's key: a robot's agent and bridge are refused "
                         "from then on", run_revoke)
    a.add_argument("name")
    a.add_argument("--reason", default="revoked from the command line")
    _publish_args(a)
    action("sros2", "(re)write the SROS2 keystore of the config's node set", run_sros2)


def _publish_args(a) -> None:
    a.add_argument("--no-publish", action="store_true",
                   help="only change the key directory; do not tell the running fleet")
    a.add_argument("--timeout", type=float, default=3.0,
                   help="seconds to wait for the running fleet's nodes (default 3)")


def _load(args):
    from fleet_coord.cli import CliError
    from fleet_coord.fleet_config import ConfigError, load_fleet_config
    from fleet_coord.keys import KeyDir
    try:
        cfg = load_fleet_config(args.config)
    except (ConfigError, OSError) as e:
        raise CliError(str(e)) from None
    return cfg, KeyDir(cfg.auth.keys)


def _keys_call(fn, *a):
    from fleet_coord.cli import CliError
    from fleet_coord.keys import KeyFileError
    try:
        return fn(*a)
    except KeyFileError as e:
        raise CliError(str(e)) from None


def run_init(args) -> int:
    from fleet_coord.keys import fleet_identities
    cfg, kd = _load(args)
    kr = _keys_call(kd.init, fleet_identities(cfg), args.force)
    print(f"provisioned {len(kr.keys)} identities in {kd.path} (keyring serial {kr.serial}); "
          "private keys are mode 0600 - copy each host only the keys its nodes need")
    if args.sros2:
        return run_sros2(args)
    if not cfg.auth.enabled:
        print(f"note: {cfg.path} has auth mode off; set `auth: {{mode: enforce}}` to use them")
    return 0


def run_list(args) -> int:
    from fleet_coord.cli_fleet import _table
    _cfg, kd = _load(args)
    kr = _keys_call(kd.keyring)
    rows = [(r.identity, r.role.value, ",".join(r.robots) or "-", r.key_id,
             "yes" if os.path.exists(kd.key_path(r.identity)) else "no")
            for r in sorted(kr.keys.values(), key=lambda r: (r.role.value, r.identity))]
    print(f"{kd.keyring_path}: serial {kr.serial}")
    print(_table(("identity", "role", "robots", "key id", "private key here"), rows))
    if kr.revoked:
        print(f"revoked: {', '.join(sorted(kr.revoked))}")
    return 0


def run_add(args) -> int:
    from fleet_coord.core.trust import Role
    from fleet_coord.keys import IdentitySpec, robot_identities
    cfg, kd = _load(args)
    role = Role(args.role)
    specs = (robot_identities(args.name, args.backend) if role is Role.AGENT
             else [IdentitySpec(args.name, role, ("*",) if role is Role.SIM else ())])
    kr = _keys_call(kd.add, specs)
    print(f"added {', '.join(s.name for s in specs)} to {kd.keyring_path} (serial {kr.serial})")
    return _maybe_publish(args, cfg, kd, kr, f"added {args.name}")


def run_rotate(args) -> int:
    cfg, kd = _load(args)
    kr = _keys_call(kd.rotate, args.name)
    print(f"new key for {args.name}: {kr.keys[args.name].key_id} (the old one is revoked); "
          f"restart {args.name}'s node(s) with the new key file")
    return _maybe_publish(args, cfg, kd, kr, f"rotated {args.name}")


def run_revoke(args) -> int:
    cfg, kd = _load(args)
    kr, names = _keys_call(kd.revoke, args.name)
    print(f"revoked {', '.join(names)} (keyring serial {kr.serial})")
    return _maybe_publish(args, cfg, kd, kr, f"revoked {', '.join(names)}: {args.reason}")


def run_sros2(args) -> int:
    from fleet_coord.node_set import fleet_nodes
    from fleet_coord.sros2 import write_keystore
    cfg, kd = _load(args)
    path = os.path.join(kd.path, "sros2")
    os.makedirs(kd.path, mode=0o700, exist_ok=True)
    enclaves = write_keystore(path, fleet_nodes(cfg), domain_id=cfg.domain_id or 0)
    print(f"SROS2 keystore {path}: {len(enclaves)} enclaves ({', '.join(enclaves)}). It is "
          "enforced only by a ROS 2 install whose DDS has the Security plugins (not the "
          "PyPI Fast DDS); set auth.sros2: true in the config to launch with it")
    return 0


def _maybe_publish(args, cfg, kd, kr, reason: str) -> int:
    if args.no_publish:
        return 0
    n = publish_keyring(cfg, kd, kr, reason, args.timeout)
    if n == 0:
        print(f"no running fleet node took the keyring within {args.timeout:g} s: nodes that "
              "start from now on read it from the key directory", file=sys.stderr)
    else:
        print(f"published keyring serial {kr.serial} to {n} node(s)")
    return 0


def publish_keyring(cfg, kd, kr, reason: str, timeout: float, set_env: bool = True) -> int:
    """Publish `kr` on /fleet/keyring (under the config's namespace) signed by the operator;
    returns how many subscribers
    acknowledged it within `timeout` (0: no fleet running). `set_env`: take discovery
    range and domain from the config (False: the caller has set them)."""
    import rclpy
    from rclpy.duration import Duration

    from fleet_coord import qos
    from fleet_coord.auth import Signer
    from fleet_coord.convert import keyring_to_msg
    from fleet_coord.namespace import FleetNames
    from fleet_coord.node_set import environment
    from fleet_coord_msgs.msg import Keyring

    if set_env:
        os.environ.update(environment(cfg))
    key = _keys_call(kd.private_key, "operator", kr)
    msg = Signer("operator", key).sign(keyring_to_msg(kr, reason), "fleet/keyring")
    ctx = rclpy.Context()
    rclpy.init(args=[], context=ctx)
    try:
        node = rclpy.create_node("fleet_coord_cli_keys", context=ctx)
        pub = node.create_publisher(Keyring, FleetNames(cfg.namespace)("/fleet/keyring"),
                                   qos.KEYRING)
        deadline = time.monotonic() + timeout
        settle = None
        # wait for the running nodes to be discovered (their count stops growing)
        while time.monotonic() < deadline:
            n = pub.get_subscription_count()
            if n and settle is None:
                settle = time.monotonic() + 0.5
            if settle is not None and time.monotonic() > settle:
                break
            time.sleep(0.05)
        n = pub.get_subscription_count()
        pub.publish(msg)
        if n:
            pub.wait_for_all_acked(Duration(seconds=max(0.5, deadline - time.monotonic())))
        node.destroy_node()
        return n
    finally:
        rclpy.shutdown(context=ctx)

"""The fleet's key directory: identities provisioned from a fleet config.

`fleet-coord keys init CONFIG` writes, next to the config (`<config stem>.keys/`, or the
config's `auth.keys`):

    keyring.yaml           public: serial, every identity's role, robots and public key,
                           the revoked key ids. Distributed with the config.
    <identity>.key         the identity's Ed25519 private key (PKCS#8 PEM), mode 0600
    <robot>.link           robot N's link key (32 random bytes, hex), mode 0600: shared by
                           its agent, its driver and the traffic authority (fleet_coord.auth)

Identities (docs/security.md, "Roles"): `operator`; `traffic`, `dispatcher`,
`fleet_monitor`; one per robot agent, named like the robot; `bridge_<robot>` for a serial
robot's bridge; `ideal_driver` / `sim` for the simulated worlds the config uses.

A private key file is refused when it is missing, unreadable, readable by others than its
owner (as ssh does), not an Ed25519 key, or not the key the keyring lists for the
identity - each with an error naming the file, before a node starts.
"""
from __future__ import annotations

import base64
import os
import secrets
import stat
import tempfile
from dataclasses import dataclass
from typing import Any

import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from fleet_coord.core.trust import Keyring, KeyRecord, Role, bridge_identity, key_id

KEYRING = "keyring.yaml"
SERVER_IDENTITIES = (("operator", Role.OPERATOR), ("traffic", Role.TRAFFIC),
                     ("dispatcher", Role.DISPATCHER), ("fleet_monitor", Role.MONITOR))


class KeyFileError(Exception):
    """A key directory or file that cannot be used; the message names the file and what
    was expected."""

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = path
        self.problem = problem


@dataclass(frozen=True)
class IdentitySpec:
    name: str
    role: Role
    robots: tuple[str, ...] = ()
    link: str = ""             # the robot whose link key this identity holds ("" none)


def robot_identities(robot: str, backend: str) -> list[IdentitySpec]:
    """The identities a robot brings: its agent, and the driver of a robot that has one of
    its own (a serial robot's bridge, a VDA 5050 vehicle's master control)."""
    out = [IdentitySpec(robot, Role.AGENT, (robot,), link=robot)]
    if backend in ("serial", "vda5050"):
        out.append(IdentitySpec(bridge_identity(robot), Role.DRIVER, (robot,), link=robot))
    return out


def fleet_identities(cfg: Any) -> list[IdentitySpec]:
    """Every identity a fleet config needs (cfg: fleet_coord.fleet_config.FleetConfig)."""
    out = [IdentitySpec(n, r) for n, r in SERVER_IDENTITIES]
    backends = {r.backend for r in cfg.robots}
    if "ideal" in backends:
        # the ideal driver spawns robots at run time (add-robot): any robot
        out.append(IdentitySpec("ideal_driver", Role.SIM, ("*",)))
    if "sim" in backends:
        out.append(IdentitySpec("sim", Role.SIM,
                                tuple(r.name for r in cfg.robots if r.backend == "sim")))
    for r in cfg.robots:
        out += robot_identities(r.name, r.backend)
    return out


# -- files --------------------------------------------------------------------------------

def _write_atomic(path: str, data: bytes, mode: int) -> None:
    """Write a file whole or not at all (a node may read it meanwhile), with `mode`."""
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".tmp-")   # created 0600
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_private(path: str, data: bytes) -> None:
    """A secret: readable by its owner only."""
    _write_atomic(path, data, 0o600)


def write_public(path: str, text: str) -> None:
    _write_atomic(path, text.encode(), 0o644)


def _read_secret(path: str, what: str) -> bytes:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise KeyFileError(path, f"{what} not found (provision it with `fleet-coord keys init "
                                 "CONFIG` or `fleet-coord keys add`)") from None
    except OSError as e:
        raise KeyFileError(path, f"cannot read {what}: {e.strerror}") from None
    if not stat.S_ISREG(st.st_mode):
        raise KeyFileError(path, f"{what} is not a regular file")
    if st.st_mode & 0o077:
        raise KeyFileError(path, f"{what} is accessible by others (mode "
                                 f"{stat.S_IMODE(st.st_mode):04o}); it must be readable by its "
                                 f"owner only: chmod 600 {path}")
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise KeyFileError(path, f"cannot read {what}: {e.strerror}") from None


def _b64(b: bytes) -> str:
    return base64.b64encode(b).decode()


def keyring_to_yaml(kr: Keyring) -> str:
    doc = {
        "serial": kr.serial,
        "identities": {
            name: {"role": rec.role.value, **({"robots": list(rec.robots)} if rec.robots else {}),
                   "key_id": rec.key_id, "public_key": _b64(rec.public_key)}
            for name, rec in sorted(kr.keys.items())},
        "revoked": sorted(kr.revoked),
    }
    return ("# fleet_coord keyring: the fleet's public keys. Distribute it with the fleet config;\n"
            "# change it only with `fleet-coord keys` (docs/security.md).\n"
            + yaml.safe_dump(doc, sort_keys=False, width=120))


def keyring_from_yaml(path: str) -> Keyring:
    try:
        with open(path) as f:
            doc = yaml.safe_load(f)
    except FileNotFoundError:
        raise KeyFileError(path, "keyring not found (provision the fleet's keys with "
                                 "`fleet-coord keys init CONFIG`)") from None
    except (OSError, UnicodeDecodeError) as e:
        raise KeyFileError(path, f"cannot read the keyring: {e}") from None
    except yaml.YAMLError as e:
        raise KeyFileError(path, f"not a keyring (YAML error: {e})") from None

    def bad(problem: str) -> KeyFileError:
        return KeyFileError(path, f"not a valid keyring: {problem}")

    if not isinstance(doc, dict) or not isinstance(doc.get("identities"), dict):
        raise bad("expected a mapping with 'serial', 'identities' and 'revoked'")
    serial = doc.get("serial")
    if not isinstance(serial, int) or isinstance(serial, bool) or serial < 1:
        raise bad(f"'serial' must be an integer >= 1, got {serial!r}")
    keys: dict[str, KeyRecord] = {}
    for name, entry in doc["identities"].items():
        if not isinstance(name, str) or not isinstance(entry, dict):
            raise bad(f"identity {name!r}: expected a mapping of role, key_id, public_key")
        try:
            role = Role(entry.get("role"))
        except ValueError:
            raise bad(f"identity {name!r}: role {entry.get('role')!r} is not one of "
                      f"{', '.join(r.value for r in Role)}") from None
        try:
            public = base64.b64decode(entry.get("public_key", ""), validate=True)
        except (ValueError, TypeError):
            raise bad(f"identity {name!r}: public_key is not base64") from None
        if len(public) != 32:
            raise bad(f"identity {name!r}: public_key must be 32 bytes (Ed25519), "
                      f"got {len(public)}")
        robots = entry.get("robots", [])
        if not isinstance(robots, list) or not all(isinstance(r, str) for r in robots):
            raise bad(f"identity {name!r}: robots must be a list of robot names")
        rec = KeyRecord(name, role, public, tuple(robots))
        if entry.get("key_id") != rec.key_id:
            raise bad(f"identity {name!r}: key_id {entry.get('key_id')!r} does not match its "
                      f"public_key ({rec.key_id})")
        keys[name] = rec
    revoked = doc.get("revoked") or []
    if not isinstance(revoked, list) or not all(isinstance(k, str) for k in revoked):
        raise bad("'revoked' must be a list of key ids")
    try:
        return Keyring(serial, keys, frozenset(revoked))
    except ValueError as e:
        raise bad(str(e)) from None


# -- the directory ------------------------------------------------------------------------

class KeyDir:
    """A fleet's key directory (see the module docstring)."""

    def __init__(self, path: str) -> None:
        self.path = os.path.abspath(path)

    @property
    def keyring_path(self) -> str:
        return os.path.join(self.path, KEYRING)

    def key_path(self, identity: str) -> str:
        return os.path.join(self.path, f"{identity}.key")

    def link_path(self, robot: str) -> str:
        return os.path.join(self.path, f"{robot}.link")

    def exists(self) -> bool:
        return os.path.isfile(self.keyring_path)

    def keyring(self) -> Keyring:
        if not os.path.isdir(self.path):
            raise KeyFileError(self.path, "key directory not found (provision the fleet's "
                                          "keys with `fleet-coord keys init CONFIG`)")
        return keyring_from_yaml(self.keyring_path)

    def private_key(self, identity: str, keyring: Keyring | None = None) -> Ed25519PrivateKey:
        """The identity's private key, checked against the keyring."""
        path = self.key_path(identity)
        data = _read_secret(path, f"private key of {identity!r}")
        try:
            key = serialization.load_pem_private_key(data, password=None)
        except (ValueError, TypeError) as e:
            raise KeyFileError(path, f"not a PEM private key ({e})") from None
        if not isinstance(key, Ed25519PrivateKey):
            raise KeyFileError(path, f"expected an Ed25519 key, got {type(key).__name__}")
        kr = self.keyring() if keyring is None else keyring
        rec = kr.keys.get(identity)
        kid = key_id(key.public_key().public_bytes_raw())
        if rec is None:
            why = "it was revoked" if kid in kr.revoked else "it is not provisioned"
            raise KeyFileError(path, f"{identity!r} is not in {self.keyring_path} ({why})")
        if rec.key_id != kid:
            raise KeyFileError(path, f"key {kid} does not match the key of {identity!r} in "
                                     f"{self.keyring_path} ({rec.key_id}): a stale copy after "
                                     "a rotation? copy the key directory again")
        return key

    def link_key(self, robot: str) -> bytes:
        path = self.link_path(robot)
        text = _read_secret(path, f"link key of {robot!r}").strip()
        try:
            key = bytes.fromhex(text.decode())
        except (ValueError, UnicodeDecodeError):
            raise KeyFileError(path, "expected 64 hex digits (a 32-byte link key)") from None
        if len(key) != 32:
            raise KeyFileError(path, f"expected a 32-byte link key, got {len(key)} bytes")
        return key

    def link_key_or_none(self, robot: str) -> bytes | None:
        """For receivers that look a link key up at run time (a robot added later)."""
        try:
            return self.link_key(robot)
        except KeyFileError:
            return None

    # writing ---------------------------------------------------------------------------
    def write_keyring(self, kr: Keyring) -> None:
        write_public(self.keyring_path, keyring_to_yaml(kr))

    def _new_identity(self, spec: IdentitySpec) -> KeyRecord:
        key = Ed25519PrivateKey.generate()
        pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
        write_private(self.key_path(spec.name), pem)
        if spec.link and spec.role is Role.AGENT:
            write_private(self.link_path(spec.link), secrets.token_bytes(32).hex().encode()
                           + b"\n")
        return KeyRecord(spec.name, spec.role, key.public_key().public_bytes_raw(), spec.robots)

    def init(self, specs: list[IdentitySpec], force: bool = False) -> Keyring:
        """Provision every identity (a new directory; `force` replaces an existing one's
        keys - every node then needs the new directory)."""
        if self.exists() and not force:
            raise KeyFileError(self.path, "a key directory is already there (rotate single "
                                          "keys with `fleet-coord keys rotate`, or pass "
                                          "--force to replace every key)")
        os.makedirs(self.path, mode=0o700, exist_ok=True)
        os.chmod(self.path, 0o700)
        serial = 1
        if self.exists():
            serial = self.keyring().serial + 1
        kr = Keyring(serial, {s.name: self._new_identity(s) for s in specs})
        self.write_keyring(kr)
        return kr

    def add(self, specs: list[IdentitySpec]) -> Keyring:
        """Provision new identities (a robot added at run time); refuses existing ones."""
        kr = self.keyring()
        for s in specs:
            if s.name in kr.keys:
                raise KeyFileError(self.keyring_path, f"{s.name!r} is already provisioned "
                                                      "(rotate its key instead)")
        for s in specs:
            kr = kr.with_identity(self._new_identity(s))
        self.write_keyring(kr)
        return kr

    def rotate(self, identity: str) -> Keyring:
        """A new key for `identity` (and a new link key for a robot agent); the old key is
        revoked."""
        kr = self.keyring()
        rec = kr.keys.get(identity)
        if rec is None:
            raise KeyFileError(self.keyring_path, f"no identity {identity!r} to rotate (known: "
                                                  f"{', '.join(sorted(kr.keys))})")
        link = rec.robots[0] if rec.role is Role.AGENT and rec.robots else ""
        kr = kr.with_identity(self._new_identity(IdentitySpec(identity, rec.role, rec.robots,
                                                              link)))
        self.write_keyring(kr)
        return kr

    def revoke(self, identity: str) -> tuple[Keyring, list[str]]:
        """Revoke `identity`'s key; for a robot (its agent's identity) every identity that
        speaks for the robot (its bridge too: a stolen robot carries both). They are out
        of the keyring, their key ids refused, their private keys and the robot's link key
        deleted here. Returns the keyring and the identities revoked."""
        kr = self.keyring()
        rec = kr.keys.get(identity)
        if rec is None:
            raise KeyFileError(self.keyring_path, f"no identity {identity!r} to revoke (known: "
                                                  f"{', '.join(sorted(kr.keys)) or 'none'})")
        names = [identity]
        if rec.role is Role.AGENT:
            names += sorted(n for n, r in kr.keys.items()
                            if n != identity and r.robots == rec.robots)
        for n in names:
            kr = kr.without_identity(n)
        kr = Keyring(kr.serial - len(names) + 1, kr.keys, kr.revoked)
        self.write_keyring(kr)
        for path in [self.key_path(n) for n in names] + [self.link_path(identity)]:
            if os.path.exists(path):
                os.unlink(path)
        return kr, names


# -- what a process needs -----------------------------------------------------------------

def node_credentials(spec: Any) -> tuple[list[str], list[str]]:
    """(identities whose private keys the process signs with, robots whose link keys it
    holds) for one process of the node set (spec: fleet_coord.node_set.NodeSpec). The
    traffic authority and the simulated worlds look link keys up when a robot needs one."""
    exe = spec.executable
    if exe == "robot_agent":
        return list(spec.robots), list(spec.robots)
    if exe in ("serial_bridge", "vda5050_master"):
        return [bridge_identity(r) for r in spec.robots], list(spec.robots)
    if exe in ("traffic", "dispatcher", "fleet_monitor", "ideal_driver", "sim"):
        return [exe], []
    return [], []


def check_credentials(cfg: Any, specs: list[Any]) -> None:
    """Before a fleet starts: every key file its processes need is there, readable, owner-
    only and the keyring's (cfg: FleetConfig with auth enabled). Raises KeyFileError naming
    every bad file."""
    kd = KeyDir(cfg.auth.keys)
    keyring = kd.keyring()
    problems: list[KeyFileError] = []
    for spec in specs:
        identities, links = node_credentials(spec)
        for identity in identities:
            try:
                kd.private_key(identity, keyring)
            except KeyFileError as e:
                problems.append(e)
        for robot in links:
            try:
                kd.link_key(robot)
            except KeyFileError as e:
                problems.append(e)
    if problems:
        first = problems[0]
        more = "".join(f"\n  {p}" for p in problems[1:])
        raise KeyFileError(first.path, first.problem + more)


def check_fleet(cfg: Any, specs: list[Any]) -> None:
    """Everything a fleet's processes need for authentication, before any starts: their
    key files (auth.mode not off) and their SROS2 enclaves (auth.sros2)."""
    if cfg.auth.enabled:
        check_credentials(cfg, specs)
    if cfg.auth.sros2:
        from fleet_coord.sros2 import check_keystore
        check_keystore(os.path.join(cfg.auth.keys, "sros2"), specs)

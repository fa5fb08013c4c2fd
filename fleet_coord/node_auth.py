"""Authentication inside a ROS 2 node: what a node of the fleet holds to sign what it
says and check what it hears (docs/security.md).

    auth = NodeAuth(node, identities=["traffic"])       # declares the auth_* parameters
    pub.publish(auth.sign(msg, "traffic/updates"))
    def on_state(msg):
        if not auth.check(msg, "fleet/robot_states", subjects=[msg.robot], op=MODES[msg.mode]):
            return                                        # dropped and logged (rate-limited)

Parameters (set by fleet_coord.node_set from the config's `auth:` section):
`auth_mode` off | permissive | enforce, `auth_keys` (the key directory), `auth_window`,
`auth_tolerance`. With `off` signing is a no-op and every check passes, so the nodes run
as before; `permissive` signs and checks, logs what it would drop, but drops nothing (for
rolling authentication out); `enforce` drops.

The node also listens to /fleet/keyring and takes a newer keyring an operator signed
(a robot added, a key rotated or revoked) - from then on its checks use it. Missing or
bad key files raise fleet_coord.keys.KeyFileError naming the file, before the node does
anything.
"""
from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from fleet_coord_msgs.msg import Auth, RobotState
from fleet_coord_msgs.msg import Keyring as KeyringMsg
from rcl_interfaces.msg import ParameterDescriptor

from fleet_coord import qos
from fleet_coord.auth import LinkSigner, Signer, Verifier
from fleet_coord.core.trust import RateLimiter, Refusal
from fleet_coord.keys import KeyDir, KeyFileError
from fleet_coord.namespace import names_of

MODES = ("off", "permissive", "enforce")

#: s (wall) after a robot's state was checked and taken during which an exact copy of it
#: counts without a second check: between two signatures a parked robot's agent repeats
#: its last signed state at every state tick (core/pacing.py, at most ~1 s of wall time).
#: A later copy is not taken. Bounds what a replayed copy can do: keep a robot that just
#: died "heard" this long.
REPEAT_WINDOW_S = 1.0

#: RobotState.mode codes by name: the operation a state message does (core.trust POLICY)
ROBOT_MODES = {RobotState.IDLE: "IDLE", RobotState.MOVING: "MOVING",
               RobotState.WAITING: "WAITING", RobotState.CHARGING: "CHARGING",
               RobotState.ESTOP: "ESTOP", RobotState.LOST: "LOST", RobotState.ERROR: "ERROR"}

_PARAMS = (
    ("auth_mode", "off", "off | permissive (check and log, accept) | enforce (drop what fails)"),
    ("auth_keys", "", "the fleet's key directory (fleet-coord keys init CONFIG)"),
    ("auth_window", 30.0, "s: the oldest a message on a volatile channel may be"),
    ("auth_tolerance", 2.0, "s: clock skew allowed between hosts"),
)


class NodeAuth:
    """One node's (or one process's) signers and verifier. `identities`: who this node
    signs as (a process of several agents signs as each of its robots); `links`: robots
    whose link key it holds from the start (others are looked up when needed)."""

    def __init__(self, node: Any, identities: Iterable[str] = (), links: Iterable[str] = (),
                 *, keyring_topic: bool = True, relay_keyring: bool = False) -> None:
        self.node = node
        values = {}
        for name, default, text in _PARAMS:
            if not node.has_parameter(name):
                node.declare_parameter(name, default, ParameterDescriptor(description=text))
            values[name] = node.get_parameter(name).value
        self.mode = values["auth_mode"]
        if self.mode not in MODES:
            raise ValueError(f"parameter auth_mode: expected one of {', '.join(MODES)}, "
                             f"got {self.mode!r}")
        self.enabled = self.mode != "off"
        self.enforce = self.mode == "enforce"
        self._signers: dict[str, Signer] = {}
        self._links: dict[str, LinkSigner] = {}
        self._link_keys: dict[str, bytes] = {}
        self.verifier: Verifier | None = None
        #: the newest operator-signed keyring message heard
        self.keyring_msg: KeyringMsg | None = None
        self._relay = None
        self._no_link = RateLimiter(5.0)
        #: robot -> (monotonic time it was taken, its newest state checked in full)
        self._states: dict[str, tuple[float, Any]] = {}
        if not self.enabled:
            return
        if not values["auth_keys"]:
            raise KeyFileError("auth_keys", f"auth_mode is {self.mode} but no key directory "
                                            "is set (parameter auth_keys)")
        self.keys = KeyDir(values["auth_keys"])
        keyring = self.keys.keyring()
        for identity in identities:
            self._signers[identity] = Signer(identity, self.keys.private_key(identity, keyring))
        for robot in links:
            self._link_keys[robot] = self.keys.link_key(robot)
        logger = node.get_logger()
        self.verifier = Verifier(keyring, window=values["auth_window"],
                                 tolerance=values["auth_tolerance"], link_key=self._link_key,
                                 log=logger.warning)
        if keyring_topic:
            node.create_subscription(KeyringMsg, names_of(node)("/fleet/keyring"), self._on_keyring,
                                     qos.KEYRING)
        if relay_keyring:
            # the command that changed the keys exits; a node that starts later (or on
            # another host, with an older key directory) still gets the change from here:
            # the operator's signature is relayed unchanged
            self._relay = node.create_publisher(KeyringMsg, names_of(node)("/fleet/keyring"),
                                                qos.KEYRING)
        logger.info(f"authentication {self.mode}: signing as {', '.join(self._signers) or '-'}, "
                    f"keyring serial {keyring.serial} ({self.keys.path})")

    def add_identity(self, identity: str, link: bool = False) -> None:
        """Sign as `identity` too (an agent joining a process of agents); `link`: it is a
        robot whose link key this node holds. No-op when off."""
        if not self.enabled or identity in self._signers:
            return
        assert self.verifier is not None
        self._signers[identity] = Signer(identity, self.keys.private_key(
            identity, self.verifier.keyring))
        if link:
            self._link_keys[identity] = self.keys.link_key(identity)

    # -- signing --------------------------------------------------------------------------
    def sign(self, msg: Any, channel: str, identity: str | None = None,
             request: Auth | None = None) -> Any:
        """Fill msg.auth as `identity` (default: this node's only identity); no-op if off."""
        if not self.enabled:
            return msg
        if identity is None:
            if len(self._signers) != 1:
                raise ValueError(f"sign {channel}: say which identity "
                                 f"({', '.join(self._signers)})")
            identity = next(iter(self._signers))
        return self._signers[identity].sign(msg, channel, request)

    def has_link(self, robot: str) -> bool:
        """Whether this node can sign and check robot N's link (its link key is here)."""
        return not self.enabled or self._link_key(robot) is not None

    def link_sign(self, msg: Any, robot: str, channel: str) -> Any | None:
        """`msg` with its link MAC; None when this node has no link key for `robot` (never
        provisioned here, or revoked): the caller sends nothing."""
        if not self.enabled:
            return msg
        signer = self._link_signer(robot, channel)
        return None if signer is None else signer.sign(msg, channel)

    def _link_signer(self, robot: str, channel: str) -> LinkSigner | None:
        signer = self._links.get(robot)
        if signer is None:
            key = self._link_key(robot)
            if key is None:
                if self._no_link.allow(robot, time.monotonic()) is not None:
                    self.node.get_logger().warning(
                        f"no link key for {robot!r} in {self.keys.path}: its {channel} is "
                        "not sent (revoked, or not provisioned here)")
                return None
            signer = self._links[robot] = LinkSigner(robot, key)
        return signer

    def link_sign_raw(self, body: Any, envelope: type, robot: str, channel: str
                      ) -> bytes | None:
        """`link_sign` of an envelope of `body`, serialised for a raw publish
        (LinkSigner.sign_raw); None when there is no link key for `robot`. Only with
        authentication on."""
        signer = self._link_signer(robot, channel)
        return None if signer is None else signer.sign_raw(body, envelope, channel)

    # -- checking -------------------------------------------------------------------------
    def check(self, msg: Any, channel: str, *, subjects: Iterable[str] = (),
              op: str | None = None, request: Auth | None = None, rule: str | None = None
              ) -> bool:
        """Whether to use a received message (a drop is logged, rate-limited)."""
        return self.refusal(msg, channel, subjects=subjects, op=op, request=request,
                            rule=rule) is None

    def refusal(self, msg: Any, channel: str, *, subjects: Iterable[str] = (),
                op: str | None = None, request: Auth | None = None, rule: str | None = None
                ) -> str | None:
        """`check` for a service: None when the request counts, else why not, for the
        error text of the answer (the caller cannot see the log line)."""
        if self.verifier is None:
            return None
        dropped = self.verifier.verify(msg, channel, rule=rule, subjects=subjects, op=op,
                                       request=request)
        if dropped is None or not self.enforce:
            return None
        if dropped.reason is Refusal.BAD_SIGNATURE:
            return (f"{Refusal.BAD_SIGNATURE.value}: the request is not what its signer "
                    "signed (changed on the way, or signed with a string DDS cut at a NUL "
                    "character)")
        return dropped.reason.value

    # the fleet's common messages: who they speak for and what they do, in one place
    def check_state(self, msg: Any) -> bool:
        """A RobotState: robot N's own, never LOST (the monitor's verdict). An exact copy
        of the last one taken from N, within REPEAT_WINDOW_S of taking it, counts without
        a second check (a parked robot repeats its last signed state); a later copy is
        not taken, silently (it says nothing new: a copy delayed on its way, or a replay
        of the newest state, which can do nothing but not count)."""
        if self.verifier is None:
            return True
        now = time.monotonic()
        last = self._states.get(msg.robot)
        if last is not None and msg == last[1]:
            return now - last[0] <= REPEAT_WINDOW_S
        dropped = self.verifier.verify(msg, "fleet/robot_states", subjects=[msg.robot],
                                       op=ROBOT_MODES.get(msg.mode, str(msg.mode)))
        if dropped is None:
            self._states[msg.robot] = (now, msg)
        return dropped is None or not self.enforce

    def check_status(self, msg: Any) -> bool:
        """A TaskStatus: the dispatcher's, or robot N's own ACTIVE / DONE / FAILED."""
        from fleet_coord.convert import state_from_code
        state = state_from_code(msg.state)
        subjects = [msg.robot, msg.reporter] if msg.reporter else [msg.robot]
        return self.check(msg, "fleet/task_status", subjects=subjects,
                          op=state.value if state is not None else str(msg.state))

    def check_robot_msg(self, msg: Any, channel: str) -> bool:
        """A message that speaks for its `robot` field (a proposal, a refusal, a Reserve or
        Release request)."""
        return self.check(msg, channel, subjects=[msg.robot])

    def precheck_robot_msg(self, msg: Any, channel: str) -> bool:
        """`check_robot_msg` without the signature check (Verifier.precheck): for a
        proposal, whose signature is checked if it is about to win."""
        if self.verifier is None:
            return True
        return self.verifier.precheck(msg, channel, subjects=[msg.robot]) is None \
            or not self.enforce

    def check_link(self, msg: Any, robot: str, channel: str) -> bool:
        if self.verifier is None:
            return True
        return self.verifier.verify_link(msg, robot, channel) is None or not self.enforce

    def take_link(self, data: bytes, envelope: type, robot: str, channel: str) -> Any | None:
        """The body of a link message taken raw (`Verifier.verify_link_raw`), None when it
        is dropped. Only with authentication on (a raw take needs the envelope type)."""
        assert self.verifier is not None
        body, dropped = self.verifier.verify_link_raw(data, envelope, robot, channel)
        return body if dropped is None or not self.enforce else None

    def _link_key(self, robot: str) -> bytes | None:
        key = self._link_keys.get(robot)
        if key is None:
            # a robot added at run time: its link key file appears in the key directory
            # (not remembered while missing: it may be provisioned in a moment)
            key = self.keys.link_key_or_none(robot)
            if key is not None:
                self._link_keys[robot] = key
        return key

    # -- run-time keyring -----------------------------------------------------------------
    def _on_keyring(self, msg: KeyringMsg) -> None:
        from fleet_coord.convert import keyring_from_msg
        assert self.verifier is not None
        if msg.serial <= self.verifier.keyring.serial:
            return   # not newer: the relayed copy of one we took, or an old one replayed
        if self.verifier.verify(msg, "fleet/keyring") is not None:
            return
        old = self.verifier.keyring
        try:
            keyring = keyring_from_msg(msg, {n: r.robots for n, r in old.keys.items()})
        except ValueError as e:
            self.node.get_logger().warning(f"keyring serial {msg.serial} refused: {e}")
            return
        if self.verifier.update_keyring(keyring):
            self.keyring_msg = msg
            self._states.clear()   # a copy of a state signed with a revoked key: refused
            if self._relay is not None:
                self._relay.publish(msg)
            # a rotated or revoked robot's link key is read again (or is gone)
            changed = {n for n in set(old.keys) | set(keyring.keys)
                       if old.keys.get(n) != keyring.keys.get(n)}
            for robot in changed:
                self._links.pop(robot, None)
                self._link_keys.pop(robot, None)
            gone = sorted(set(old.keys) - set(keyring.keys))
            self.node.get_logger().warning(
                f"keyring serial {keyring.serial} from {msg.auth.signer}"
                + (f": {msg.reason}" if msg.reason else "")
                + (f"; refusing {', '.join(gone)} from now on" if gone else ""))

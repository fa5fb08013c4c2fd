"""Trust: who may say what in the fleet, and whether a signed message is new.

The fleet checks identities itself (docs/security.md): every message that can move a
robot, grant or release space, change a task or a robot's membership carries an `Auth`
(signer, key id, session, counter, wall-clock stamp, signature). This module makes the
decisions about it that need no cryptography and no ROS:

- `Keyring`: the identities of a fleet (name, role, current key) and the revoked keys;
  whether a (signer, key id) is current, unknown or revoked; which of two keyrings is
  newer (`serial`).
- `POLICY`: per channel (a topic or service of the fleet, named without the fleet's
  namespace), which roles may sign it, whether the signer must be the robot the message
  speaks for, and which operations (task states, e-stop engage/release) a role may do.
  `authorize` applies it.
- `ReplayGuard`: refuses a message whose (signer, session, channel, counter) was seen
  already, that is older than the freshness window, from the future, or - on a volatile
  channel - stamped before this receiver started (a receiver that restarted has forgotten
  what it saw; messages captured earlier must not count again).
- `RateLimiter`: one log line per (claimed sender, reason) and period, so a flood of
  forged input cannot flood the log.

The order of checks (cheap first, crypto before anything is remembered) is
fleet_coord.auth.Verifier's: unsigned -> keyring -> policy -> freshness -> signature ->
replay. Time is a parameter (wall-clock seconds; the nodes pass time.time()).
"""
from __future__ import annotations

import enum
import hashlib
from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass, field

#: How many counters behind the highest one seen a message may arrive and still be taken
#: once (the IPsec / DTLS anti-replay window): services and the topics of one process are
#: not delivered in counter order.
REPLAY_WINDOW = 256


class Role(str, enum.Enum):
    """What an identity is in the fleet (docs/security.md, "Roles")."""
    OPERATOR = "operator"      # a person or their tool: submit, cancel, remove, e-stop release
    DISPATCHER = "dispatcher"  # runs the auctions, owns the task ledger
    TRAFFIC = "traffic"        # the reservation table authority: the only grantor
    MONITOR = "monitor"        # aggregates fleet state (read-mostly)
    AGENT = "agent"            # robot N's agent: speaks for robot N only
    DRIVER = "driver"          # robot N's driver / serial bridge
    SIM = "sim"                # a simulated world (ideal driver, PyBullet) driving many robots


class Refusal(str, enum.Enum):
    """Why input was dropped (the log line names it and the claimed sender)."""
    UNSIGNED = "unsigned"
    UNKNOWN_SIGNER = "unknown signer"
    UNKNOWN_KEY = "unknown key"
    REVOKED = "revoked key"
    NOT_ALLOWED = "role not allowed on this channel"
    WRONG_SUBJECT = "speaks for another robot"
    OPERATION = "operation not allowed for this role"
    STALE = "stale (older than the freshness window or than this receiver)"
    FUTURE = "stamped in the future"
    BAD_SIGNATURE = "bad signature"
    REPLAY = "replayed"
    MALFORMED = "malformed (does not read as the message type)"


def bridge_identity(robot: str) -> str:
    """The identity of robot N's driver (its serial bridge)."""
    return f"bridge_{robot}"


def robots_of(identity: str, role: Role) -> tuple[str, ...]:
    """The robots an identity speaks for by its name: an agent for its own name, a bridge
    for its robot; () for the others (a simulated world's robots are listed explicitly)."""
    if role is Role.AGENT:
        return (identity,)
    if role is Role.DRIVER and identity.startswith("bridge_"):
        return (identity[len("bridge_"):],)
    return ()


def key_id(public_key: bytes) -> str:
    """An identity's key id: the first 16 hex digits of SHA-256 over the raw public key
    (over the link key for an HMAC link)."""
    return hashlib.sha256(public_key).hexdigest()[:16]


@dataclass(frozen=True)
class KeyRecord:
    identity: str
    role: Role
    public_key: bytes          # raw Ed25519 public key, 32 bytes
    #: robots this identity speaks for: [N] for agent N and driver N, () for the others;
    #: ("*",) for a simulated world that drives whatever robot it spawns
    robots: tuple[str, ...] = ()

    @property
    def key_id(self) -> str:
        return key_id(self.public_key)

    def speaks_for(self, robot: str) -> bool:
        return robot in self.robots or "*" in self.robots


@dataclass(frozen=True)
class Keyring:
    """The fleet's identities with their current keys, and every key id ever revoked
    (a rotated-out key is revoked too). `serial` grows with every change: a node applies
    a keyring only if it is newer than the one it has."""
    serial: int
    keys: Mapping[str, KeyRecord]
    revoked: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        for name, rec in self.keys.items():
            if name != rec.identity:
                raise ValueError(f"keyring entry {name!r} holds the key of {rec.identity!r}")
            if rec.key_id in self.revoked:
                raise ValueError(f"keyring: the current key of {name!r} ({rec.key_id}) "
                                 "is also listed as revoked")

    def lookup(self, signer: str, kid: str) -> KeyRecord | Refusal:
        """The record whose key signed, or why it does not count."""
        if kid in self.revoked:
            return Refusal.REVOKED
        rec = self.keys.get(signer)
        if rec is None:
            return Refusal.UNKNOWN_SIGNER
        if rec.key_id != kid:
            return Refusal.UNKNOWN_KEY
        return rec

    def with_identity(self, rec: KeyRecord, reason_revoked: Iterable[str] = ()) -> Keyring:
        """A newer keyring in which `rec` is the identity's key (added, or rotated: the old
        key is revoked), plus the key ids in `reason_revoked` revoked."""
        revoked = set(self.revoked) | set(reason_revoked)
        old = self.keys.get(rec.identity)
        if old is not None and old.key_id != rec.key_id:
            revoked.add(old.key_id)
        return Keyring(self.serial + 1, {**self.keys, rec.identity: rec}, frozenset(revoked))

    def without_identity(self, identity: str) -> Keyring:
        """A newer keyring in which `identity` is gone and its key revoked (a stolen
        robot): nothing it signs counts from then on."""
        rec = self.keys.get(identity)
        if rec is None:
            raise KeyError(f"no identity {identity!r} in the keyring "
                           f"(known: {', '.join(sorted(self.keys)) or 'none'})")
        keys = {k: v for k, v in self.keys.items() if k != identity}
        return Keyring(self.serial + 1, keys, self.revoked | {rec.key_id})

    def operators(self) -> list[KeyRecord]:
        return [r for r in self.keys.values() if r.role is Role.OPERATOR]


# -- policy -------------------------------------------------------------------------------

@dataclass(frozen=True)
class Grant:
    """One role's permission on a channel."""
    role: Role
    #: the signer must speak for the robot(s) the message names (KeyRecord.robots)
    own_robot: bool = False
    #: operations this role may do on the channel; None = all
    ops: frozenset[str] | None = None


@dataclass(frozen=True)
class Rule:
    grants: tuple[Grant, ...]
    #: transient-local channel: a late joiner receives history older than the window;
    #: content ordering (table versions, keyring serials) protects it instead
    latched: bool = False

    def grant_for(self, role: Role) -> Grant | None:
        for g in self.grants:
            if g.role is role:
                return g
        return None


def _rule(*grants: Grant, latched: bool = False) -> Rule:
    return Rule(tuple(grants), latched)


_AGENT_OWN = Grant(Role.AGENT, own_robot=True)
_ANY_ROLE = tuple(Role)

#: What each channel accepts. Services have two channels: "<name>" for the request and
#: "<name>#response" for the reply. "{robot}" in a name stands for one robot's name.
POLICY: dict[str, Rule] = {
    # Contract Net: only the dispatcher announces, awards and rejects; a robot bids and
    # refuses for itself only
    "fleet/cfp": _rule(Grant(Role.DISPATCHER)),
    "fleet/awards": _rule(Grant(Role.DISPATCHER)),
    "fleet/rejections": _rule(Grant(Role.DISPATCHER)),
    "fleet/proposals": _rule(_AGENT_OWN),
    "fleet/refusals": _rule(_AGENT_OWN),
    # a robot reports only its own execution (inform-done / failure), never the
    # dispatcher's states
    "fleet/task_status": _rule(Grant(Role.DISPATCHER),
                               Grant(Role.AGENT, own_robot=True,
                                     ops=frozenset({"ACTIVE", "DONE", "FAILED"}))),
    # robot N's state (its heartbeat) only from robot N; LOST is the monitor's verdict
    "fleet/robot_states": _rule(Grant(Role.AGENT, own_robot=True,
                                      ops=frozenset({"IDLE", "MOVING", "WAITING", "CHARGING",
                                                     "ESTOP", "ERROR"}))),
    # only the authority writes the table and announces losses and removals
    "traffic/updates": _rule(Grant(Role.TRAFFIC), latched=True),
    "fleet/robot_lost": _rule(Grant(Role.TRAFFIC)),
    "fleet/robot_removed": _rule(Grant(Role.TRAFFIC)),
    "fleet/state": _rule(Grant(Role.MONITOR)),
    "fleet/keyring": _rule(Grant(Role.OPERATOR), latched=True),
    # services: requests, then the responses (a grant counts only with the authority's)
    "traffic/reserve": _rule(_AGENT_OWN),
    "traffic/reserve#response": _rule(Grant(Role.TRAFFIC)),
    "traffic/release": _rule(_AGENT_OWN, Grant(Role.OPERATOR)),
    "traffic/release#response": _rule(Grant(Role.TRAFFIC)),
    "fleet/remove_robot": _rule(Grant(Role.OPERATOR)),
    "fleet/remove_robot#response": _rule(Grant(Role.TRAFFIC)),
    "fleet/submit_task": _rule(Grant(Role.OPERATOR)),
    "fleet/submit_task#response": _rule(Grant(Role.DISPATCHER)),
    "fleet/cancel_task": _rule(Grant(Role.OPERATOR)),
    "fleet/cancel_task#response": _rule(Grant(Role.DISPATCHER)),
    "fleet/execute_task": _rule(Grant(Role.OPERATOR)),
    "ideal_driver/spawn_robot": _rule(Grant(Role.OPERATOR)),
    "ideal_driver/spawn_robot#response": _rule(Grant(Role.SIM)),
    # the robot <-> driver link (HMAC with robot N's link key, see fleet_coord.auth)
    "{robot}/cmd_vel_signed": _rule(_AGENT_OWN),
    "{robot}/odom_signed": _rule(Grant(Role.DRIVER, own_robot=True),
                                 Grant(Role.SIM, own_robot=True)),
    # a robot that follows paths by itself (a VDA 5050 vehicle): only its agent hands it a
    # path (Ed25519: the link key is also the authority's); latched, so a master control
    # that restarts gets the last one - the master takes only a plan signed after the
    # newest it took (content order, as the table's versions)
    "{robot}/plan_signed": _rule(_AGENT_OWN, latched=True),
    # ... and only its driver (the master control) says whether it is available
    "{robot}/vehicle_signed": _rule(Grant(Role.DRIVER, own_robot=True)),
    # stopping is always allowed to every identity of the fleet; releasing only to an
    # operator
    "{robot}/set_estop": _rule(*(Grant(r, ops=frozenset({"engage"})) for r in _ANY_ROLE
                                 if r is not Role.OPERATOR),
                               Grant(Role.OPERATOR)),
    "{robot}/set_estop#response": _rule(Grant(Role.DRIVER, own_robot=True),
                                        Grant(Role.SIM, own_robot=True)),
}


def rule_of(channel: str) -> Rule:
    """The rule of `channel`; for a per-robot channel pass the template ("{robot}/...")."""
    try:
        return POLICY[channel]
    except KeyError:
        raise KeyError(f"no authentication rule for channel {channel!r} "
                       f"(known: {', '.join(sorted(POLICY))})") from None


def authorize(rule: Rule, signer: KeyRecord, subjects: Iterable[str] = (),
              op: str | None = None) -> Refusal | None:
    """None if `signer` may send this message; else why not. `subjects`: the robots the
    message speaks for (its `robot` field, a TaskStatus's reporter, a per-robot topic's
    robot); `op`: the operation (a task state, a robot mode, "engage" / "release")."""
    grant = rule.grant_for(signer.role)
    if grant is None:
        return Refusal.NOT_ALLOWED
    if grant.own_robot and not all(signer.speaks_for(s) for s in subjects):
        return Refusal.WRONG_SUBJECT
    if grant.ops is not None and op not in grant.ops:
        return Refusal.OPERATION
    return None


# -- replay -------------------------------------------------------------------------------

@dataclass
class _Channel:
    highest: int
    seen: int          # bit i set: counter highest - i was taken
    last_stamp: float


@dataclass
class ReplayGuard:
    """Freshness and uniqueness of signed messages at one receiver.

    `window` (s): the oldest a message on a volatile channel may be; `tolerance` (s): how
    far a sender's clock may run ahead, and how long before this receiver's `started`
    a message may have been signed (in flight while it started). Per (signer, session,
    channel) it keeps the highest counter and which of the REPLAY_WINDOW before it were
    taken; a session silent for longer than `window` is forgotten (its messages are
    stale by then anyway)."""
    started: float
    window: float = 30.0
    tolerance: float = 2.0
    _channels: dict[tuple[str, int, str], _Channel] = field(default_factory=dict)
    _pruned_at: float = 0.0

    def __post_init__(self) -> None:
        if not self.window > 0 or not self.tolerance >= 0:
            raise ValueError(f"replay window must be > 0 and tolerance >= 0 seconds, got "
                             f"{self.window!r} and {self.tolerance!r}")

    def fresh(self, stamp: float, now: float, latched: bool = False) -> Refusal | None:
        """The time check, before the (expensive) signature check."""
        if stamp > now + self.tolerance:
            return Refusal.FUTURE
        if not latched and (stamp < now - self.window
                            or stamp < self.started - self.tolerance):
            return Refusal.STALE
        return None

    def accept(self, signer: str, session: int, channel: str, counter: int, stamp: float,
               now: float) -> Refusal | None:
        """Take a message whose signature was verified: None the first time, REPLAY after.
        (Only verified messages reach here, so forged ones cannot fill the window.)"""
        if now - self._pruned_at > self.window:
            self._prune(now)
        key = (signer, session, channel)
        ch = self._channels.get(key)
        if ch is None:
            self._channels[key] = _Channel(counter, 1, stamp)
            return None
        ch.last_stamp = max(ch.last_stamp, stamp)
        if counter > ch.highest:
            shift = counter - ch.highest
            ch.seen = ((ch.seen << shift) | 1) & ((1 << REPLAY_WINDOW) - 1) \
                if shift < REPLAY_WINDOW else 1
            ch.highest = counter
            return None
        back = ch.highest - counter
        if back >= REPLAY_WINDOW or ch.seen >> back & 1:
            return Refusal.REPLAY
        ch.seen |= 1 << back
        return None

    def newest(self, signer: str) -> float | None:
        """The stamp of the newest message taken from `signer` (None: none in the window);
        e.g. the last one a revoked identity got through."""
        stamps = [ch.last_stamp for (who, _, _), ch in self._channels.items() if who == signer]
        return max(stamps, default=None)

    def _prune(self, now: float) -> None:
        self._pruned_at = now
        for key in [k for k, ch in self._channels.items()
                    if ch.last_stamp < now - self.window - self.tolerance]:
            del self._channels[key]

    def __len__(self) -> int:
        return len(self._channels)


# -- logging ------------------------------------------------------------------------------

@dataclass
class RateLimiter:
    """At most one report per key and `period` seconds; counts what it held back."""
    period: float = 5.0
    _last: dict[Hashable, float] = field(default_factory=dict)
    _held: dict[Hashable, int] = field(default_factory=dict)

    def allow(self, key: Hashable, now: float) -> int | None:
        """None: stay quiet. Else report now; the int is how many were held back since the
        last report of this key."""
        last = self._last.get(key)
        if last is not None and now - last < self.period:
            self._held[key] = self._held.get(key, 0) + 1
            return None
        self._last[key] = now
        return self._held.pop(key, 0)


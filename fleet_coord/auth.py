"""Message authentication for the fleet's ROS 2 messages (docs/security.md).

The PyPI Fast DDS has no DDS Security plugins, so the fleet proves who sent what itself:
a sender fills a message's `auth` field (fleet_coord_msgs/Auth) with its identity, key
id, session, counter and wall-clock stamp and a signature over a canonical form; a
receiver checks it against the keyring and the policy of fleet_coord.core.trust.

Canonical form: a version tag, the channel (topic or service name without the fleet's
namespace, e.g. "fleet/proposals", "robot_3/cmd_vel_signed", "traffic/reserve#response"),
the auth fields, for a response the (signer, session, counter) of its request, then every
field of the message except `auth`, in declaration order (little-endian numbers,
length-prefixed strings and sequences; see `canonical`).

Primitives (from `cryptography`, nothing lower is written here):
- Ed25519 signatures for everything an identity says to the fleet (a key per identity;
  anybody holding the public keyring can verify, only the holder can sign);
- HMAC-SHA256 with robot N's link key for the robot <-> driver link (SignedTwist,
  SignedOdometry at 20-50 Hz per robot: a world node driving 50 robots would spend a
  large share of a core on signature checks). The link key is shared only by robot N's
  agent, its driver and the traffic authority (which reads a lost robot's odometry).
"""
from __future__ import annotations

import array
import hmac
import importlib
import secrets
import struct
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import (Ed25519PrivateKey,
                                                               Ed25519PublicKey)
from fleet_coord_msgs.msg import Auth

from fleet_coord.core.names import short_repr
from fleet_coord.core.trust import (Keyring, KeyRecord, RateLimiter, Refusal, ReplayGuard,
                                    authorize, key_id, rule_of)

TAG = b"fleet_coord/auth/v1"


def _field(b: bytes) -> bytes:
    return struct.pack("<I", len(b)) + b


# -- canonical form ------------------------------------------------------------------------
# Not the CDR bytes rclpy.serialization produces: their alignment padding is not zeroed
# (measured: two serialisations of one Proposal differed in a padding byte), so a receiver
# could not reproduce them. Instead every field, in declaration order, little-endian,
# strings and sequences length-prefixed: one encoder per message type, built once.

_PRIM = {"boolean": "?", "octet": "B", "char": "B", "byte": "B", "uint8": "B", "int8": "b",
         "uint16": "H", "int16": "h", "uint32": "I", "int32": "i", "uint64": "Q", "int64": "q",
         "float": "f", "double": "d"}
_LEN = struct.Struct("<I")
_LITTLE = sys.byteorder == "little"


class UnsendableText(ValueError):
    """A string field a ROS 2 message cannot carry intact: rclpy hands strings to DDS as C
    strings, so a NUL ends them there (the receiver would get - and check a signature
    over - less than was signed); a lone surrogate is no UTF-8 at all. `path` names the
    field, e.g. "task.stations[0]"."""

    def __init__(self, problem: str, path: str = "") -> None:
        self.problem, self.path = problem, path
        super().__init__(f"{path}: {problem}" if path else problem)

    def within(self, outer: str) -> UnsendableText:
        """The same problem, its path prefixed with the enclosing field (or index)."""
        sep = "" if not self.path or self.path.startswith("[") else "."
        return UnsendableText(self.problem, outer + sep + self.path)


def _text_problem(v: str) -> str:
    try:
        v.encode()
    except UnicodeEncodeError:
        return f"is not valid Unicode text ({short_repr(v)}): it has no UTF-8 form"
    k = v.index("\x00")
    return (f"contains a NUL character at index {k} ({short_repr(v)}): a ROS 2 string ends "
            f"at the first NUL, so the receiver would get {short_repr(v[:k])} (expected text "
            "without NUL characters)")


_Encoder = Callable[[Any, list[bytes]], None]
_ENCODERS: dict[type, _Encoder] = {}


def _type_class(name: str) -> type:
    pkg, _, typ = name.partition("/")
    module = importlib.import_module(f"{pkg}.msg")
    return getattr(module, typ)  # type: ignore[no-any-return]


def _element_encoder(t: str) -> _Encoder:
    """Encoder of one value of field type `t` (appends to the output list)."""
    base = t.split("<", 1)[0] if t.startswith("string<") else t
    if base in ("octet", "byte"):
        # rclpy holds a single byte as bytes of length 1 (DiagnosticStatus.level: b'\x02')
        st = struct.Struct("<B")
        return lambda v, out: out.append(bytes(v) if isinstance(v, bytes) else st.pack(v))
    if base in _PRIM:
        st = struct.Struct("<" + _PRIM[base])
        return lambda v, out: out.append(st.pack(v))
    if base in ("string", "wstring"):
        def enc_str(v: str, out: list[bytes]) -> None:
            if "\x00" in v:
                raise UnsendableText(_text_problem(v))
            try:
                b = v.encode()
            except UnicodeEncodeError:
                raise UnsendableText(_text_problem(v)) from None
            out.append(_LEN.pack(len(b)))
            out.append(b)
        return enc_str
    return _encoder(_type_class(base))


def _field_encoder(t: str) -> _Encoder:
    if t.startswith("sequence<") or t.endswith("]"):
        if t.startswith("sequence<"):
            inner = t[len("sequence<"):-1].split(",")[0].strip()
        else:
            inner = t[:t.rindex("[")]
        if inner in _PRIM:
            fmt = _PRIM[inner]
            size = struct.calcsize(fmt)
            # rclpy holds these in numpy arrays (fixed size) or array.array (sequences):
            # their raw bytes are the little-endian packing, without a Python loop
            little = numpy.dtype(fmt).newbyteorder("<")

            def enc_prims(v: Any, out: list[bytes]) -> None:
                out.append(_LEN.pack(len(v)))
                if isinstance(v, numpy.ndarray) and v.dtype == little:
                    out.append(v.tobytes())
                elif isinstance(v, numpy.ndarray) and v.dtype.kind == little.kind:
                    out.append(v.astype(little).tobytes())
                elif isinstance(v, array.array) and v.typecode == fmt and _LITTLE \
                        and v.itemsize == size:
                    out.append(v.tobytes())
                else:
                    out.append(struct.pack(f"<{len(v)}{fmt}", *v))
            return enc_prims
        one = _element_encoder(inner)

        def enc_seq(v: Any, out: list[bytes]) -> None:
            out.append(_LEN.pack(len(v)))
            try:
                for item in v:
                    one(item, out)
            except UnsendableText as e:   # which element (rare: found again, with its index)
                for i, item in enumerate(v):
                    try:
                        one(item, [])
                    except UnsendableText as inner:
                        raise inner.within(f"[{i}]") from None
                raise e from None
        return enc_seq
    return _element_encoder(t)


def _encoder(cls: type, skip: str = "") -> _Encoder:
    key = cls if not skip else (cls, skip)  # type: ignore[assignment]
    enc = _ENCODERS.get(key)  # type: ignore[arg-type]
    if enc is None:
        fields = [(name, _field_encoder(t)) for name, t in
                  cls.get_fields_and_field_types().items() if name != skip]  # type: ignore[attr-defined]

        def enc(msg: Any, out: list[bytes]) -> None:
            for name, f in fields:
                try:
                    f(getattr(msg, name), out)
                except UnsendableText as e:
                    raise e.within(name) from None
        _ENCODERS[key] = enc  # type: ignore[index]
    return enc


def canonical(msg: Any, channel: str, auth: Auth, request: Auth | None = None) -> bytes:
    """The bytes a signature covers (see the module docstring)."""
    head = [TAG, _field(channel.encode()), _field(auth.signer.encode()),
            _field(auth.key_id.encode()),
            struct.pack("<QQiI", auth.session, auth.counter, auth.wall_stamp.sec,
                        auth.wall_stamp.nanosec)]
    if request is not None:
        head += [b"req", _field(request.signer.encode()),
                 struct.pack("<QQ", request.session, request.counter)]
    _encoder(type(msg), "auth")(msg, head)
    return b"".join(head)


def sendable_problem(msg: Any) -> str | None:
    """None when every string of `msg` crosses DDS intact, else which field does not and
    why (UnsendableText): for a sender to refuse before anything is sent."""
    try:
        _encoder(type(msg))(msg, [])
    except UnsendableText as e:
        return f"{type(msg).__name__}.{e}"
    return None


def stamp_seconds(auth: Auth) -> float:
    return auth.wall_stamp.sec + auth.wall_stamp.nanosec * 1e-9


class _Sequencer:
    """Session and counter of one signing identity in this process (thread-safe: nodes
    publish from executor threads)."""

    def __init__(self) -> None:
        self.session = secrets.randbits(63)
        self._counter = 0
        self._lock = threading.Lock()

    def next(self) -> int:
        with self._lock:
            self._counter += 1
            return self._counter


def _fill(auth: Auth, signer: str, kid: str, seq: _Sequencer, clock: Callable[[], float]
          ) -> None:
    auth.signer = signer
    auth.key_id = kid
    auth.session = seq.session
    auth.counter = seq.next()
    ns = int(clock() * 1e9)
    auth.wall_stamp.sec, auth.wall_stamp.nanosec = divmod(ns, 1_000_000_000)


def _signed_form(msg: Any, channel: str, auth: Auth, request: Auth | None = None) -> bytes:
    try:
        return canonical(msg, channel, auth, request)
    except UnsendableText as e:
        raise UnsendableText(f"{e.problem}; {channel} not signed, nothing sent",
                             f"{type(msg).__name__}.{e.path}") from None


class Signer:
    """Signs as one identity (Ed25519)."""

    def __init__(self, identity: str, private_key: Ed25519PrivateKey,
                 clock: Callable[[], float] = time.time) -> None:
        self.identity = identity
        self._key = private_key
        self.public_key = private_key.public_key().public_bytes_raw()
        self.key_id = key_id(self.public_key)
        self._seq = _Sequencer()
        self._clock = clock

    def sign(self, msg: Any, channel: str, request: Auth | None = None) -> Any:
        """Fill `msg.auth` for `channel` (and, for a response, bound to `request`);
        returns `msg`. UnsendableText (naming the field) for a string DDS would cut: its
        signature could never be verified."""
        auth = Auth()
        _fill(auth, self.identity, self.key_id, self._seq, self._clock)
        auth.signature = self._key.sign(_signed_form(msg, channel, auth, request))
        msg.auth = auth
        return msg


class LinkSigner:
    """Authenticates robot N's link messages (HMAC-SHA256 with N's link key)."""

    def __init__(self, robot: str, link_key: bytes,
                 clock: Callable[[], float] = time.time) -> None:
        self.robot = robot
        self._key = link_key
        self.key_id = key_id(link_key)
        self._seq = _Sequencer()
        self._clock = clock

    def sign(self, msg: Any, channel: str) -> Any:
        auth = Auth()
        _fill(auth, self.robot, self.key_id, self._seq, self._clock)
        auth.signature = hmac.digest(self._key, _signed_form(msg, channel, auth), "sha256")
        msg.auth = auth
        return msg


@dataclass
class Dropped:
    """Why a message was dropped, for the caller's log line."""
    channel: str
    claimed: str        # the claimed sender: the signer, or the robot the message names
    reason: Refusal
    held_back: int      # similar drops not logged since the last line

    def __str__(self) -> str:
        more = f" (+{self.held_back} more since the last report)" if self.held_back else ""
        return f"dropped {self.channel} claiming to be from {self.claimed!r}: {self.reason.value}{more}"


class Verifier:
    """Checks the `auth` of received messages against the keyring and the policy, with
    replay protection; one per node. `verify` returns None when the message counts."""

    def __init__(self, keyring: Keyring, *, started: float | None = None,
                 window: float = 30.0, tolerance: float = 2.0,
                 link_key: Callable[[str], bytes | None] | None = None,
                 log: Callable[[str], None] | None = None, log_period: float = 5.0,
                 clock: Callable[[], float] = time.time) -> None:
        self.keyring = keyring
        self._clock = clock
        self.guard = ReplayGuard(started=clock() if started is None else started,
                                 window=window, tolerance=tolerance)
        self._link_key = link_key
        self._public: dict[str, Ed25519PublicKey] = {}
        self._limiter = RateLimiter(log_period)
        self._log = log
        self._lock = threading.Lock()
        #: drops per reason since start (tests and diagnostics read it)
        self.dropped: dict[Refusal, int] = {}

    # keyring ---------------------------------------------------------------------------
    def update_keyring(self, keyring: Keyring) -> bool:
        """Take a newer keyring (e.g. a revocation); False if it is not newer."""
        with self._lock:
            if keyring.serial <= self.keyring.serial:
                return False
            self.keyring = keyring
            self._public.clear()
            return True

    def _public_key(self, rec: KeyRecord) -> Ed25519PublicKey:
        pk = self._public.get(rec.key_id)
        if pk is None:
            pk = self._public[rec.key_id] = Ed25519PublicKey.from_public_bytes(rec.public_key)
        return pk

    # checks ----------------------------------------------------------------------------
    def verify(self, msg: Any, channel: str, *, rule: str | None = None,
               subjects: Iterable[str] = (), op: str | None = None,
               request: Auth | None = None) -> Dropped | None:
        """Check an Ed25519-signed message received on `channel` (`rule`: the POLICY key
        when it differs, e.g. "{robot}/set_estop"). None: it counts. Else a Dropped,
        which was also logged (rate-limited) if a log was given."""
        auth = msg.auth
        subjects = tuple(subjects)
        reason = self._check(msg, auth, channel, rule or channel, subjects, op, request)
        if reason is None:
            return None
        return self._drop(channel, auth.signer or (subjects[0] if subjects else "?"), reason)

    def precheck(self, msg: Any, channel: str, *, rule: str | None = None,
                 subjects: Iterable[str] = (), op: str | None = None) -> Dropped | None:
        """The cheap part of `verify` (signed at all, keyring, policy, freshness): no
        signature check, nothing remembered. For input whose signature matters only if it
        is used - a proposal, only if it wins: `verify` it then, before acting on it."""
        auth = msg.auth
        subjects = tuple(subjects)
        found = self._precheck(auth, rule or channel, subjects, op)
        if not isinstance(found, Refusal):
            return None
        return self._drop(channel, auth.signer or (subjects[0] if subjects else "?"), found)

    def _precheck(self, auth: Auth, rule_name: str, subjects: tuple[str, ...],
                  op: str | None) -> Refusal | tuple[KeyRecord, float, float]:
        """A refusal, or what the signature check needs: the key, the stamp, now."""
        if not auth.signer or not auth.signature:
            return Refusal.UNSIGNED
        rec = self.keyring.lookup(auth.signer, auth.key_id)
        if isinstance(rec, Refusal):
            return rec
        rule = rule_of(rule_name)
        refused = authorize(rule, rec, subjects, op)
        if refused is not None:
            return refused
        now = self._clock()
        stamp = stamp_seconds(auth)
        refused = self.guard.fresh(stamp, now, rule.latched)
        if refused is not None:
            return refused
        return rec, stamp, now

    def _check(self, msg: Any, auth: Auth, channel: str, rule_name: str,
               subjects: tuple[str, ...], op: str | None, request: Auth | None
               ) -> Refusal | None:
        found = self._precheck(auth, rule_name, subjects, op)
        if isinstance(found, Refusal):
            return found
        rec, stamp, now = found
        try:
            self._public_key(rec).verify(bytes(auth.signature),
                                         canonical(msg, channel, auth, request))
        except (InvalidSignature, UnsendableText):   # the latter never arrives over DDS
            return Refusal.BAD_SIGNATURE
        with self._lock:
            return self.guard.accept(auth.signer, auth.session, channel, auth.counter, stamp,
                                     now)

    def verify_link(self, msg: Any, robot: str, channel: str) -> Dropped | None:
        """Check a link message (HMAC with `robot`'s link key) on `channel`. A robot no
        longer in the keyring (revoked) has no link either."""
        auth = msg.auth
        reason = self._check_link(msg, auth, robot, channel)
        if reason is None:
            return None
        return self._drop(channel, auth.signer or robot, reason)

    def _check_link(self, msg: Any, auth: Auth, robot: str, channel: str) -> Refusal | None:
        if not auth.signer or not auth.signature:
            return Refusal.UNSIGNED
        if auth.signer != robot:
            return Refusal.WRONG_SUBJECT
        if robot not in self.keyring.keys:   # never provisioned, or revoked
            return Refusal.UNKNOWN_SIGNER
        key = self._link_key(robot) if self._link_key is not None else None
        if key is None or key_id(key) != auth.key_id:
            return Refusal.UNKNOWN_KEY
        now = self._clock()
        stamp = stamp_seconds(auth)
        refused = self.guard.fresh(stamp, now)
        if refused is not None:
            return refused
        try:
            expected = hmac.digest(key, canonical(msg, channel, auth), "sha256")
        except UnsendableText:   # never arrives over DDS
            return Refusal.BAD_SIGNATURE
        if not hmac.compare_digest(expected, bytes(auth.signature)):
            return Refusal.BAD_SIGNATURE
        with self._lock:
            return self.guard.accept(auth.signer, auth.session, channel, auth.counter, stamp,
                                     now)

    def _drop(self, channel: str, claimed: str, reason: Refusal) -> Dropped:
        with self._lock:
            self.dropped[reason] = self.dropped.get(reason, 0) + 1
            held = self._limiter.allow((claimed, channel, reason), self._clock())
        d = Dropped(channel, claimed, reason, held or 0)
        if held is not None and self._log is not None:
            self._log(str(d))
        return d

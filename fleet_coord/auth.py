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
from typing import Any, NamedTuple

import numpy
from rclpy.serialization import deserialize_message, serialize_message
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


def _head(channel: str, signer: str, kid: str, session: int, counter: int, sec: int,
          nanosec: int) -> list[bytes]:
    return [TAG, _field(channel.encode()), _field(signer.encode()), _field(kid.encode()),
            struct.pack("<QQiI", session, counter, sec, nanosec)]


def canonical(msg: Any, channel: str, auth: Auth, request: Auth | None = None) -> bytes:
    """The bytes a signature covers (see the module docstring)."""
    head = _head(channel, auth.signer, auth.key_id, auth.session, auth.counter,
                 auth.wall_stamp.sec, auth.wall_stamp.nanosec)
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


# -- link envelopes taken raw ------------------------------------------------------------
# A link envelope (SignedOdometry, SignedTwist) is its body followed by an Auth. rclpy
# builds a received message by constructing a default one and then converting each field,
# so taking a SignedOdometry built two Odometry trees and an Auth: ~24 us more than an
# Odometry (measured), at 20-50 Hz per robot. Taken raw instead, rclpy deserialises the
# body from the same bytes (CDR reads a struct's fields in order; the Auth after them is
# not read) and the Auth is read here. Whatever is read, only what the link key MACs
# counts: a misread Auth is a refused message, never an accepted one.

class LinkAuth(NamedTuple):
    """The Auth of a link envelope as read from its CDR bytes."""
    signer: str
    key_id: str
    session: int
    counter: int
    sec: int
    nanosec: int
    signature: bytes

    @property
    def stamp(self) -> float:
        return self.sec + self.nanosec * 1e-9


#: the encapsulation of plain little-endian CDR (XCDR1), which Fast DDS sends; anything
#: else is left to rclpy (`unpack_link` returns None)
_CDR_LE = b"\x00\x01"
_AUTH_FIELDS = {"signer": "string", "key_id": "string", "session": "uint64",
                "counter": "uint64", "wall_stamp": "builtin_interfaces/Time",
                "signature": "sequence<uint8>"}
_U32 = struct.Struct("<I")
_AUTH_NUMBERS = struct.Struct("<QQiII")   # session, counter, sec, nanosec, signature length
_SKIPS: dict[type, list[tuple[int, int]]] = {}


def _skips(cls: type) -> list[tuple[int, int]]:
    """How to step over a `cls` in CDR: (alignment, size) per run of numbers, (0, 0) per
    string. ValueError for a field of another kind (a sequence, a string array)."""
    ops = _SKIPS.get(cls)
    if ops is None:
        ops = []
        for t in cls.get_fields_and_field_types().values():  # type: ignore[attr-defined]
            n, base = 1, t
            if t.endswith("]") and not t.startswith("sequence<"):
                base, n = t[:t.rindex("[")], int(t[t.rindex("[") + 1:-1])
            if base in _PRIM:
                size = struct.calcsize(_PRIM[base])
                if ops and ops[-1][0] == size:   # still aligned: one run
                    ops[-1] = (size, ops[-1][1] + n * size)
                else:
                    ops.append((size, n * size))
            elif n == 1 and (base == "string" or base.startswith("string<")):
                ops.append((0, 0))
            elif n == 1 and "/" in base and not base.startswith("sequence<"):
                for op in _skips(_type_class(base)):
                    if op[0] and ops and ops[-1][0] == op[0]:
                        ops[-1] = (op[0], ops[-1][1] + op[1])
                    else:
                        ops.append(op)
            else:
                raise ValueError(f"{cls.__name__}: field type {t} is not stepped over here")
        _SKIPS[cls] = ops
    return ops


def unpack_link(data: bytes, envelope: type) -> tuple[Any, LinkAuth] | None:
    """(body, auth) of a serialised link envelope (its two fields: the body, then `auth`),
    without building the envelope. None when the bytes are not plain little-endian CDR
    (then deserialise the envelope the usual way) or end too soon."""
    body_type, skips, _ = _link_layout(envelope)
    if data[:2] != _CDR_LE:
        return None
    try:
        pos = 0   # CDR aligns relative to the data after the 4-byte encapsulation
        for align, size in skips:
            if align:
                pos = -(-pos // align) * align + size
            else:
                pos = -(-pos // 4) * 4
                pos += 4 + _U32.unpack_from(data, 4 + pos)[0]
        signer, pos = _cdr_string(data, pos)
        kid, pos = _cdr_string(data, pos)
        pos = -(-pos // 8) * 8
        session, counter, sec, nanosec, n = _AUTH_NUMBERS.unpack_from(data, 4 + pos)
        sig = data[4 + pos + 28:4 + pos + 28 + n]
        if len(sig) != n:
            return None
    except (struct.error, UnicodeDecodeError):
        return None
    return deserialize_message(data, body_type), LinkAuth(signer, kid, session, counter,
                                                          sec, nanosec, sig)


_LINKS: dict[type, tuple[type, list[tuple[int, int]], str]] = {}


def _link_layout(envelope: type) -> tuple[type, list[tuple[int, int]], str]:
    """A link envelope's body type, how to step over it, and the body's field name."""
    got = _LINKS.get(envelope)
    if got is None:
        fields = list(envelope.get_fields_and_field_types().items())  # type: ignore[attr-defined]
        if len(fields) != 2 or fields[1] != ("auth", "fleet_coord_msgs/Auth") \
                or Auth.get_fields_and_field_types() != _AUTH_FIELDS:
            raise ValueError(f"{envelope.__name__} is not a link envelope (a body, then "
                             f"an Auth of the fields {', '.join(_AUTH_FIELDS)})")
        body = _type_class(fields[0][1])
        got = _LINKS[envelope] = (body, _skips(body), fields[0][0])
    return got


def _auth_cdr(pos: int, signer: str, kid: str, session: int, counter: int, sec: int,
              nanosec: int, signature: bytes) -> bytes:
    """An Auth in CDR, to follow `pos` bytes of CDR data (its padding depends on them)."""
    out = []
    for text in (signer, kid):
        b = text.encode() + b"\x00"
        pad = -pos % 4
        out += [b"\x00" * pad, _U32.pack(len(b)), b]
        pos += pad + 4 + len(b)
    pad = -pos % 8
    out += [b"\x00" * pad, _AUTH_NUMBERS.pack(session, counter, sec, nanosec, len(signature)),
            signature]
    return b"".join(out)


def _cdr_string(data: bytes, pos: int) -> tuple[str, int]:
    pos = -(-pos // 4) * 4
    n = _U32.unpack_from(data, 4 + pos)[0]   # with the terminating NUL
    if n == 0 or 4 + pos + 4 + n > len(data):
        raise struct.error("string past the end")
    return data[4 + pos + 4:4 + pos + 3 + n].decode(), pos + 4 + n


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

    def sign_raw(self, body: Any, envelope: type, channel: str) -> bytes:
        """The serialised `envelope` of `body` with its MAC, for a raw publish (what `sign`
        and a publish of the envelope send, the same MAC over the same canonical form):
        the envelope is never built - rclpy would build a default body first and convert
        the Auth field by field (~10 us of 20 per odometry message, 20-50 Hz per robot).
        The body is serialised by rclpy; the Auth after it here (`unpack_link` reads it)."""
        data = serialize_message(body)
        if data[:2] != _CDR_LE:   # another encoding: the usual way
            msg = envelope()
            setattr(msg, _link_layout(envelope)[2], body)
            return serialize_message(self.sign(msg, channel))  # type: ignore[no-any-return]
        counter = self._seq.next()
        sec, nanosec = divmod(int(self._clock() * 1e9), 1_000_000_000)
        form = _head(channel, self.robot, self.key_id, self._seq.session, counter, sec, nanosec)
        try:
            _encoder(type(body))(body, form)
        except UnsendableText as e:
            raise UnsendableText(f"{e.problem}; {channel} not signed, nothing sent",
                                 f"{envelope.__name__}.{_link_layout(envelope)[2]}.{e.path}"
                                 ) from None
        mac = hmac.digest(self._key, b"".join(form), "sha256")
        return data + _auth_cdr(len(data) - 4, self.robot, self.key_id, self._seq.session,
                                counter, sec, nanosec, mac)


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
        self._link_ids: dict[bytes, str] = {}
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
        _, _, field = _link_layout(type(msg))
        reason = self._check_link(getattr(msg, field), LinkAuth(
            auth.signer, auth.key_id, auth.session, auth.counter, auth.wall_stamp.sec,
            auth.wall_stamp.nanosec, bytes(auth.signature)), robot, channel)
        if reason is None:
            return None
        return self._drop(channel, auth.signer or robot, reason)

    def verify_link_raw(self, data: bytes, envelope: type, robot: str, channel: str
                        ) -> tuple[Any, Dropped | None]:
        """`verify_link` of a link message taken raw (a subscription with raw=True): its
        body, and None when it counts, else the Dropped. Cheaper than taking the envelope
        (`unpack_link`)."""
        try:
            got = unpack_link(data, envelope)
            if got is None:   # not plain little-endian CDR: the usual way
                msg = deserialize_message(data, envelope)
                return getattr(msg, _link_layout(envelope)[2]), self.verify_link(msg, robot,
                                                                                  channel)
        except Exception:  # noqa: BLE001 - rclpy's deserialiser: bytes of another layout
            return None, self._drop(channel, robot, Refusal.MALFORMED)
        body, auth = got
        reason = self._check_link(body, auth, robot, channel)
        return body, None if reason is None else self._drop(channel, auth.signer or robot,
                                                            reason)

    def _check_link(self, body: Any, auth: LinkAuth, robot: str, channel: str
                    ) -> Refusal | None:
        if not auth.signer or not auth.signature:
            return Refusal.UNSIGNED
        if auth.signer != robot:
            return Refusal.WRONG_SUBJECT
        if robot not in self.keyring.keys:   # never provisioned, or revoked
            return Refusal.UNKNOWN_SIGNER
        key = self._link_key(robot) if self._link_key is not None else None
        if key is None or self._link_id(key) != auth.key_id:
            return Refusal.UNKNOWN_KEY
        now = self._clock()
        stamp = auth.stamp
        refused = self.guard.fresh(stamp, now)
        if refused is not None:
            return refused
        # the envelope's canonical form (`canonical`: its only field besides auth is the body)
        form = _head(channel, auth.signer, auth.key_id, auth.session, auth.counter, auth.sec,
                     auth.nanosec)
        try:
            _encoder(type(body))(body, form)
        except UnsendableText:   # never arrives over DDS
            return Refusal.BAD_SIGNATURE
        expected = hmac.digest(key, b"".join(form), "sha256")
        if not hmac.compare_digest(expected, auth.signature):
            return Refusal.BAD_SIGNATURE
        with self._lock:
            return self.guard.accept(auth.signer, auth.session, channel, auth.counter, stamp,
                                     now)

    def _link_id(self, key: bytes) -> str:
        kid = self._link_ids.get(key)
        if kid is None:
            kid = self._link_ids[key] = key_id(key)
        return kid

    def _drop(self, channel: str, claimed: str, reason: Refusal) -> Dropped:
        with self._lock:
            self.dropped[reason] = self.dropped.get(reason, 0) + 1
            held = self._limiter.allow((claimed, channel, reason), self._clock())
        d = Dropped(channel, claimed, reason, held or 0)
        if held is not None and self._log is not None:
            self._log(str(d))
        return d

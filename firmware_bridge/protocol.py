"""protocol: the serial wire protocol between the bridge and the robot firmware.

Byte layouts are specified in docs/protocol.md; the C implementation is
firmware_bridge/firmware/src/fb_protocol.c and both are checked against
firmware_bridge/test_vectors.txt.

A frame on the wire is ``COBS(raw) 0x00`` where

    raw = version u8 | type u8 | seq u16 | body | crc u16

all little-endian, the CRC being CRC-16/CCITT-FALSE over ``version .. body``.
Transmitters put an extra 0x00 before every frame, so the first intact frame after line
noise is always received; empty frames (consecutive 0x00) are ignored.

Nothing here does I/O or reads a clock: `Parser` is fed bytes and returns frames.
"""
from __future__ import annotations

import binascii
import enum
import struct
from collections import Counter
from dataclasses import astuple, dataclass, fields
from typing import Callable, ClassVar, Union

PROTOCOL_VERSION = 1
HEADER = struct.Struct("<BBH")  # version, type, seq
CRC = struct.Struct("<H")
MAX_BODY = 48
MAX_RAW = HEADER.size + MAX_BODY + CRC.size
#: COBS adds one byte per started 254 bytes; v1 frames are far below that.
MAX_ENCODED = MAX_RAW + 1
DELIMITER = b"\x00"


class MsgType(enum.IntEnum):
    HELLO = 0x01          # host -> device
    HELLO_ACK = 0x02      # device -> host
    VEL_CMD = 0x03        # host -> device
    ODOMETRY = 0x04       # device -> host
    STATUS = 0x05         # device -> host
    HEARTBEAT = 0x06      # both ways
    ESTOP = 0x07          # host -> device
    ESTOP_RELEASE = 0x08  # host -> device
    ACK = 0x09            # device -> host
    NACK = 0x0A           # device -> host
    SET_PARAM = 0x0B      # host -> device
    RESET_ODOM = 0x0C     # host -> device


class NackReason(enum.IntEnum):
    UNKNOWN_TYPE = 1
    BAD_LENGTH = 2
    BAD_VALUE = 3
    UNKNOWN_PARAM = 4
    ESTOPPED = 5
    NO_SESSION = 6
    VERSION = 7
    ESTOP_INPUT_ACTIVE = 8


class Param(enum.IntEnum):
    """Device parameters settable with SET_PARAM (value always sent as f32)."""
    WHEEL_RADIUS = 1         # m
    TRACK_WIDTH = 2          # m, wheel to wheel
    MAX_V = 3                # m/s
    MAX_OMEGA = 4            # rad/s
    MAX_ACCEL = 5            # m/s^2
    MAX_ALPHA = 6            # rad/s^2
    CMD_TIMEOUT_MS = 7       # watchdog timeout of a VEL_CMD whose own timeout is 0
    ODOM_PERIOD_MS = 8       # periodic ODOMETRY (0 = only in reply to VEL_CMD)
    STATUS_PERIOD_MS = 9
    HOST_TIMEOUT_MS = 10     # device drops the session after this much host silence
    HEARTBEAT_PERIOD_MS = 11


class StateFlag(enum.IntFlag):
    ESTOP_LATCHED = 0x01
    MOTORS_ENABLED = 0x02
    WATCHDOG_TRIPPED = 0x04   # no fresh command: motors zeroed
    SESSION = 0x08            # a host completed the HELLO handshake
    ESTOP_INPUT = 0x10        # the hardware e-stop input is active


class FaultFlag(enum.IntFlag):
    OVERCURRENT_LEFT = 0x0001
    OVERCURRENT_RIGHT = 0x0002
    ENCODER_LEFT = 0x0004
    ENCODER_RIGHT = 0x0008
    LOW_BATTERY = 0x0010
    HOST_TIMEOUT = 0x0020     # the last session ended because the host fell silent
    MOTOR_DRIVER = 0x0040


# --- messages -------------------------------------------------------------------------

class _Message:
    TYPE: ClassVar[MsgType]
    FORMAT: ClassVar[struct.Struct]

    def pack(self) -> bytes:
        try:
            return self.FORMAT.pack(*astuple(self))
        except struct.error as e:
            values = ", ".join(f"{f.name}={getattr(self, f.name)!r}" for f in fields(self))
            raise ValueError(f"{type(self).__name__}({values}) does not fit its wire layout "
                             f"{self.FORMAT.format!r}: {e}") from None

    @classmethod
    def unpack(cls, body: bytes):
        return cls(*cls.FORMAT.unpack(body))


def _message(type_: MsgType, fmt: str):
    def wrap(cls):
        cls = dataclass(frozen=True)(cls)
        cls.TYPE = type_
        cls.FORMAT = struct.Struct(fmt)
        assert cls.FORMAT.size <= MAX_BODY, cls
        return cls
    return wrap


@_message(MsgType.HELLO, "<I")
class Hello(_Message):
    """Opens a session. The device answers HELLO_ACK echoing `nonce` (or NACK VERSION)."""
    nonce: int


@_message(MsgType.HELLO_ACK, "<IBBBBI")
class HelloAck(_Message):
    nonce: int
    fw_major: int
    fw_minor: int
    fw_patch: int
    capabilities: int
    device_id: int


@_message(MsgType.VEL_CMD, "<ffH")
class VelCmd(_Message):
    """Body twist; `timeout_ms` is this command's watchdog timeout (0: device default)."""
    v: float
    omega: float
    timeout_ms: int = 0


@_message(MsgType.ODOMETRY, "<IfffffH")
class Odometry(_Message):
    """Pose in the odometry frame, body twist, device time (us, wraps at 2^32) and the
    seq of the last VEL_CMD the device applied."""
    t_us: int
    x: float
    y: float
    theta: float
    v: float
    omega: float
    cmd_seq: int


@_message(MsgType.STATUS, "<IHBBHHH")
class Status(_Message):
    t_us: int
    battery_mv: int
    battery_pct: int          # 0..100, 255 = unknown
    state: int                # StateFlag bits
    faults: int               # FaultFlag bits
    rx_errors: int            # corrupt frames the device dropped (wrapping)
    rx_lost: int              # host frames the device never saw (seq gaps, wrapping)

    @property
    def flags(self) -> StateFlag:
        return StateFlag(self.state)


@_message(MsgType.HEARTBEAT, "<IB")
class Heartbeat(_Message):
    uptime_ms: int
    state: int = 0            # device: StateFlag bits; host: 0


@_message(MsgType.ESTOP, "<")
class EStop(_Message):
    """Engage the e-stop latch: motors disabled until ESTOP_RELEASE."""


@_message(MsgType.ESTOP_RELEASE, "<")
class EStopRelease(_Message):
    """Release the latch (refused while the hardware e-stop input is active). The robot
    stays still until the next VEL_CMD."""


@_message(MsgType.ACK, "<HB")
class Ack(_Message):
    """The request (by its seq and type) was carried out."""
    ref_seq: int
    ref_type: int


@_message(MsgType.NACK, "<HBB")
class Nack(_Message):
    """The request (by its seq and type) was refused, for a NackReason."""
    ref_seq: int
    ref_type: int
    reason: int


@_message(MsgType.SET_PARAM, "<Bf")
class SetParam(_Message):
    param: int
    value: float


@_message(MsgType.RESET_ODOM, "<fff")
class ResetOdom(_Message):
    x: float = 0.0
    y: float = 0.0
    theta: float = 0.0


Message = Union[Hello, HelloAck, VelCmd, Odometry, Status, Heartbeat, EStop, EStopRelease,
                Ack, Nack, SetParam, ResetOdom]
MESSAGES: dict[int, type] = {cls.TYPE: cls for cls in (
    Hello, HelloAck, VelCmd, Odometry, Status, Heartbeat, EStop, EStopRelease, Ack, Nack,
    SetParam, ResetOdom)}


@dataclass(frozen=True)
class Frame:
    seq: int
    msg: Message
    version: int = PROTOCOL_VERSION


# --- CRC and COBS ----------------------------------------------------------------------

def crc16(data: bytes, crc: int = 0xFFFF) -> int:
    """CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF, no reflection, no xorout).
    binascii.crc_hqx is exactly this polynomial, unreflected, with the given init."""
    return binascii.crc_hqx(data, crc)


class CobsError(ValueError):
    pass


def cobs_encode(data: bytes) -> bytes:
    """Consistent Overhead Byte Stuffing: the result has no 0x00 byte."""
    out = bytearray()
    chunks = bytes(data).split(b"\x00")
    for i, chunk in enumerate(chunks):
        last = i == len(chunks) - 1
        # a 0xFF block holds 254 bytes and implies no zero after it
        while len(chunk) >= 254:
            out.append(0xFF)
            out += chunk[:254]
            chunk = chunk[254:]
            if not chunk and last:
                return bytes(out)
        out.append(len(chunk) + 1)
        out += chunk
    return bytes(out)


def cobs_decode(data: bytes) -> bytes:
    out = bytearray()
    i, n = 0, len(data)
    while i < n:
        code = data[i]
        if code == 0:
            raise CobsError(f"0x00 inside a COBS block at offset {i}")
        block = data[i + 1:i + code]
        if len(block) != code - 1:
            raise CobsError(f"COBS block at offset {i} says {code - 1} bytes, "
                            f"only {len(block)} left")
        if 0 in block:
            raise CobsError(f"0x00 inside a COBS block starting at offset {i}")
        out += block
        i += code
        if code != 0xFF and i < n:
            out.append(0)
    return bytes(out)


# --- frames ----------------------------------------------------------------------------

class FrameErrorKind(enum.Enum):
    """Why a received frame was dropped. Same names as FB_ERR_* in the C parser."""
    COBS = "cobs"           # not valid COBS
    SHORT = "short"         # shorter than header + CRC
    OVERSIZE = "oversize"   # longer than MAX_ENCODED before a delimiter
    CRC = "crc"             # CRC mismatch
    VERSION = "version"     # intact frame of another protocol version
    TYPE = "type"           # intact frame of an unknown message type
    LENGTH = "length"       # intact frame whose body length does not match its type


class FrameError(ValueError):
    """A dropped frame. `header` is (version, type, seq) once the CRC checked out."""

    def __init__(self, kind: FrameErrorKind, detail: str,
                 header: tuple[int, int, int] | None = None) -> None:
        super().__init__(f"{kind.value}: {detail}")
        self.kind = kind
        self.header = header


def encode_raw(msg: Message, seq: int, version: int = PROTOCOL_VERSION) -> bytes:
    if not 0 <= seq <= 0xFFFF:
        raise ValueError(f"seq must be 0..65535, got {seq}")
    raw = HEADER.pack(version, msg.TYPE, seq) + msg.pack()
    return raw + CRC.pack(crc16(raw))


def encode_frame(msg: Message, seq: int, version: int = PROTOCOL_VERSION) -> bytes:
    """The canonical frame: COBS(raw) followed by the 0x00 delimiter."""
    return cobs_encode(encode_raw(msg, seq, version)) + DELIMITER


def decode_raw(raw: bytes) -> Frame:
    if len(raw) < HEADER.size + CRC.size:
        raise FrameError(FrameErrorKind.SHORT, f"{len(raw)} bytes, a frame has at least "
                         f"{HEADER.size + CRC.size}")
    body_end = len(raw) - CRC.size
    (got,) = CRC.unpack_from(raw, body_end)
    want = crc16(raw[:body_end])
    if got != want:
        raise FrameError(FrameErrorKind.CRC, f"CRC 0x{got:04X}, computed 0x{want:04X}")
    version, type_, seq = HEADER.unpack_from(raw)
    header = (version, type_, seq)
    if version != PROTOCOL_VERSION:
        raise FrameError(FrameErrorKind.VERSION, f"protocol version {version}, "
                         f"this side speaks {PROTOCOL_VERSION}", header)
    cls = MESSAGES.get(type_)
    if cls is None:
        raise FrameError(FrameErrorKind.TYPE, f"unknown message type 0x{type_:02X}", header)
    body = raw[HEADER.size:body_end]
    if len(body) != cls.FORMAT.size:
        raise FrameError(FrameErrorKind.LENGTH, f"{cls.__name__} body of {len(body)} bytes, "
                         f"expected {cls.FORMAT.size}", header)
    return Frame(seq, cls.unpack(body), version)


def decode_frame(encoded: bytes) -> Frame:
    """Decode one frame given without its delimiter. Raises FrameError."""
    if len(encoded) > MAX_ENCODED:
        raise FrameError(FrameErrorKind.OVERSIZE, f"{len(encoded)} bytes, at most "
                         f"{MAX_ENCODED}")
    try:
        raw = cobs_decode(encoded)
    except CobsError as e:
        raise FrameError(FrameErrorKind.COBS, str(e)) from None
    return decode_raw(raw)


class Parser:
    """Streaming frame parser. Feed it any bytes; it returns the intact frames and counts
    the rest in `errors` (FrameErrorKind -> count). It never raises on input: after
    garbage it resynchronises on the next 0x00.

    `on_error(error)` is called for every dropped frame, if given.
    """

    def __init__(self, on_error: Callable[[FrameError], None] | None = None) -> None:
        self._buf = bytearray()
        self._discarding = False  # inside an oversize frame: drop until the next 0x00
        self.on_error = on_error
        self.frames = 0
        self.errors: Counter[FrameErrorKind] = Counter()

    def reset(self) -> None:
        self._buf.clear()
        self._discarding = False

    def _error(self, err: FrameError) -> None:
        self.errors[err.kind] += 1
        if self.on_error is not None:
            self.on_error(err)

    def feed(self, data: bytes) -> list[Frame]:
        out: list[Frame] = []
        buf = self._buf
        buf += data
        pos = 0
        while True:
            end = buf.find(0, pos)
            if end < 0:
                break
            chunk = bytes(buf[pos:end])
            pos = end + 1
            if self._discarding:
                self._discarding = False
                continue
            if not chunk:
                continue
            try:
                out.append(decode_frame(chunk))
                self.frames += 1
            except FrameError as e:
                self._error(e)
        del buf[:pos]
        if len(buf) > MAX_ENCODED:
            if not self._discarding:
                self._error(FrameError(FrameErrorKind.OVERSIZE,
                                       f"no delimiter within {MAX_ENCODED} bytes"))
            self._discarding = True
            buf.clear()
        return out


def wire(msg: Message, seq: int) -> bytes:
    """What a transmitter writes: a leading 0x00 (resync after line noise) + the frame."""
    return DELIMITER + encode_frame(msg, seq)

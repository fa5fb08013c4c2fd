"""test_vectors: the shared protocol test vectors (firmware_bridge/test_vectors.txt).

The same file is checked by the Python implementation (tests/test_firmware_protocol.py)
and by the C one (firmware/tests/test_fb.c). One vector per line, space-separated
``key=value`` tokens, the first token naming the kind:

    crc    input=<hex> crc=<hex16>
    cobs   raw=<hex> enc=<hex>
    frame  name=<id> type=<MsgType name> seq=<int> <field>=<value>... wire=<hex>
    error  name=<id> error=<FrameErrorKind value> [hdr_type=<int> hdr_seq=<int>] wire=<hex>

`wire` is the canonical frame, COBS(raw) + 0x00. Floats are written as the shortest
decimal of an exact binary32 value, so both sides parse them to the same bits.

Regenerate (only when the protocol changes on purpose) with
``python -m fleet_coord_bridge.test_vectors > firmware_bridge/test_vectors.txt``.
"""
from __future__ import annotations

import os
import struct
import sys
from dataclasses import fields

from fleet_coord_bridge import protocol as p

PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "test_vectors.txt")


def f32(x: float) -> float:
    return struct.unpack("<f", struct.pack("<f", x))[0]


def load(path: str = PATH) -> list[dict[str, str]]:
    out = []
    with open(path, encoding="ascii") as f:
        for n, line in enumerate(f, 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            kind, *tokens = line.split()
            v = {"kind": kind, "line": str(n)}
            for t in tokens:
                key, sep, value = t.partition("=")
                if not sep:
                    raise ValueError(f"{path}:{n}: token {t!r} is not key=value")
                v[key] = value
            out.append(v)
    return out


def _frame_line(name: str, msg: p.Message, seq: int) -> str:
    vals = " ".join(f"{f.name}={_fmt(getattr(msg, f.name))}" for f in fields(msg))
    wire = p.encode_frame(msg, seq).hex()
    return f"frame name={name} type={msg.TYPE.name} seq={seq} {vals} wire={wire}".replace(
        "  ", " ")


def _fmt(x) -> str:
    if isinstance(x, float):
        assert f32(x) == x, f"{x!r} is not exact in binary32"
        return repr(x)
    return str(x)


def _error_line(name: str, kind: p.FrameErrorKind, encoded: bytes,
                header: tuple[int, int, int] | None = None) -> str:
    hdr = f" hdr_type={header[1]} hdr_seq={header[2]}" if header else ""
    wire = (encoded + p.DELIMITER).hex()
    return f"error name={name} error={kind.value}{hdr} wire={wire}"


def _raw_with_crc(raw: bytes) -> bytes:
    return raw + p.CRC.pack(p.crc16(raw))


def generate() -> str:
    lines = [
        "# Shared protocol test vectors: checked by firmware_bridge (Python) and",
        "# firmware/tests/test_fb.c (C). Format: firmware_bridge/test_vectors.py.",
        "# CRC-16/CCITT-FALSE check value (catalogue of CRC algorithms)",
        "crc input=313233343536373839 crc=29b1",
        "crc input= crc=ffff",
        "crc input=00 crc=e1f0",
        "# COBS examples (Cheshire & Baker 1999 / Wikipedia)",
    ]
    cobs = [b"\x00", b"\x00\x00", bytes([0x00, 0x11, 0x00]), bytes([0x11, 0x22, 0x00, 0x33]),
            bytes([0x11, 0x22, 0x33, 0x44]), bytes([0x11, 0x00, 0x00, 0x00]),
            bytes(range(1, 255)), bytes(range(0, 255)), bytes(range(1, 256)),
            bytes(range(2, 256)) + b"\x00", bytes(range(3, 256)) + b"\x00\x01"]
    for raw in cobs:
        lines.append(f"cobs raw={raw.hex()} enc={p.cobs_encode(raw).hex()}")
    lines.append("# Frames: every message type, limits of every field")
    frames = [
        ("hello", p.Hello(0x12345678), 0),
        ("hello_ack", p.HelloAck(0x12345678, 1, 0, 3, 0, 0xDEADBEEF), 0),
        ("vel_cmd", p.VelCmd(0.5, -0.25, 300), 7),
        ("vel_cmd_stop_default_timeout", p.VelCmd(0.0, 0.0, 0), 65535),
        ("vel_cmd_inexact", p.VelCmd(f32(0.3), f32(-1.1), 65535), 1000),
        ("odometry", p.Odometry(123456789, 1.5, -2.25, f32(3.1415927), f32(0.3),
                                f32(-0.7), 7), 42),
        ("odometry_zero_bytes", p.Odometry(0, 0.0, 0.0, 0.0, 0.0, 0.0, 0), 0),
        ("status", p.Status(4294967295, 12150, 78, 0x0A, 0x0010, 3, 65535), 300),
        ("heartbeat_device", p.Heartbeat(86400000, 0x0B), 9),
        ("heartbeat_host", p.Heartbeat(0, 0), 256),
        ("estop", p.EStop(), 11),
        ("estop_release", p.EStopRelease(), 12),
        ("ack", p.Ack(11, p.MsgType.ESTOP), 13),
        ("nack", p.Nack(14, p.MsgType.VEL_CMD, p.NackReason.ESTOPPED), 15),
        ("set_param", p.SetParam(p.Param.WHEEL_RADIUS, 0.0625), 16),
        ("set_param_ms", p.SetParam(p.Param.CMD_TIMEOUT_MS, 250.0), 17),
        ("reset_odom", p.ResetOdom(1.0, -1.0, f32(1.5707964)), 18),
    ]
    for name, msg, seq in frames:
        lines.append(_frame_line(name, msg, seq))

    lines.append("# Frames to drop, and why")
    good = p.encode_raw(p.VelCmd(0.5, -0.25, 300), 7)
    bad_crc = bytearray(good)
    bad_crc[5] ^= 0x01
    lines.append(_error_line("flipped_body_bit", p.FrameErrorKind.CRC,
                             p.cobs_encode(bytes(bad_crc))))
    bad_crc = bytearray(good)
    bad_crc[-1] ^= 0x80
    lines.append(_error_line("flipped_crc_bit", p.FrameErrorKind.CRC,
                             p.cobs_encode(bytes(bad_crc))))
    lines.append(_error_line("truncated", p.FrameErrorKind.CRC,
                             p.cobs_encode(good[:-3] + good[-2:])))
    enc = bytearray(p.cobs_encode(good))
    enc[0] = 0x30  # first code byte points past the end
    lines.append(_error_line("cobs_overrun", p.FrameErrorKind.COBS, bytes(enc)))
    lines.append(_error_line("short", p.FrameErrorKind.SHORT,
                             p.cobs_encode(bytes([1, 3, 0, 0, 0]))))
    raw = _raw_with_crc(p.HEADER.pack(2, p.MsgType.VEL_CMD, 5) + p.VelCmd(0.5, 0, 0).pack())
    lines.append(_error_line("version_2", p.FrameErrorKind.VERSION, p.cobs_encode(raw),
                             (2, p.MsgType.VEL_CMD, 5)))
    raw = _raw_with_crc(p.HEADER.pack(1, 0x7F, 6) + b"\x01\x02")
    lines.append(_error_line("unknown_type", p.FrameErrorKind.TYPE, p.cobs_encode(raw),
                             (1, 0x7F, 6)))
    raw = _raw_with_crc(p.HEADER.pack(1, p.MsgType.VEL_CMD, 8) + bytes(9))
    lines.append(_error_line("vel_cmd_9_bytes", p.FrameErrorKind.LENGTH, p.cobs_encode(raw),
                             (1, p.MsgType.VEL_CMD, 8)))
    lines.append(_error_line("oversize", p.FrameErrorKind.OVERSIZE,
                             bytes([0xFF]) + bytes(range(1, p.MAX_ENCODED + 1))))
    return "\n".join(lines) + "\n"


def main() -> None:
    sys.stdout.write(generate())


if __name__ == "__main__":
    main()

"""link: one serial link to a fleet_bridge device, kept alive without ROS.

`Link` owns the port and an I/O thread. It opens the port (retrying while it is absent),
handshakes (HELLO / HELLO_ACK, protocol version), pushes the device parameters, then
keeps the link up: heartbeats out, liveness in (any intact frame counts), sequence-gap
loss counting. When the device falls silent for `link_timeout`, the port errors (unplug,
emulator killed), or the device reports it lost our session (reboot), the link says so
through `on_state` and starts over by itself.

Velocity commands, e-stop and odometry reset are the calls the bridge node makes;
odometry and status come back through callbacks, called from the I/O thread.

Time comes from `clock` (monotonic seconds) and the port from `opener`, so tests can
drive the link against fakes as well as against the C emulator over a pty.
"""
from __future__ import annotations

import enum
import logging
import random
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

from fleet_coord_bridge import protocol as p

log = logging.getLogger("fleet_coord_bridge.link")


class LinkState(enum.Enum):
    STOPPED = "stopped"            # not started, or stopped
    DISCONNECTED = "disconnected"  # port closed; opening it again every reconnect_interval
    HANDSHAKE = "handshake"        # port open, HELLO sent, waiting for HELLO_ACK
    CONFIGURING = "configuring"    # pushing parameters, waiting for their ACKs
    UP = "up"                      # commands flow
    INCOMPATIBLE = "incompatible"  # the device speaks another protocol version


class SerialPort(Protocol):
    in_waiting: int

    def read(self, size: int = 1) -> bytes: ...
    def write(self, data: bytes) -> int | None: ...
    def close(self) -> None: ...
    def reset_input_buffer(self) -> None: ...


@dataclass
class LinkConfig:
    port: str
    baud: int = 115200
    heartbeat_period: float = 0.1    # s, host -> device
    link_timeout: float = 0.5        # s without any intact frame: the link is dead
    handshake_timeout: float = 2.5   # s to get HELLO_ACK before reopening the port
    hello_retry: float = 0.25        # s between HELLOs (a board may be booting)
    reconnect_interval: float = 0.5  # s between attempts to open the port
    incompatible_retry: float = 5.0  # s before asking an incompatible device again
    request_timeout: float = 0.5     # s to wait for an ACK
    read_timeout: float = 0.01       # s, granularity of the I/O loop
    #: sent with SET_PARAM after every handshake, in this order
    params: dict[p.Param, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("heartbeat_period", "link_timeout", "handshake_timeout", "hello_retry",
                     "reconnect_interval", "request_timeout", "read_timeout"):
            value = getattr(self, name)
            if not value > 0:
                raise ValueError(f"LinkConfig.{name} must be > 0 seconds, got {value!r}")
        if self.link_timeout <= self.heartbeat_period:
            raise ValueError(f"LinkConfig.link_timeout ({self.link_timeout} s) must exceed "
                             f"heartbeat_period ({self.heartbeat_period} s)")


@dataclass
class LinkStats:
    frames_rx: int = 0
    frames_tx: int = 0
    bytes_rx: int = 0
    lost_rx: int = 0                 # device frames we never saw (sequence gaps)
    rx_errors: Counter = field(default_factory=Counter)  # FrameErrorKind -> count
    nacks: int = 0
    connects: int = 0                # completed handshakes
    link_losses: int = 0             # times an UP link went down
    connect_failures: int = 0        # attempts that did not get UP (port, handshake, version)

    @property
    def corrupt_rx(self) -> int:
        return sum(self.rx_errors.values())


def open_serial(config: LinkConfig) -> SerialPort:
    """Default opener: a device path or any pyserial URL (socket://host:port, rfc2217://)."""
    import serial
    return serial.serial_for_url(config.port, baudrate=config.baud,
                                 # a pty whose reader is descheduled on a loaded
                                 # machine blocks for a moment: not yet a dead link
                                 timeout=config.read_timeout, write_timeout=0.5)


class _Request:
    def __init__(self, seq: int, msg: p.Message) -> None:
        self.seq = seq
        self.msg = msg
        self.done = threading.Event()
        self.ok = False
        self.detail = ""

    def finish(self, ok: bool, detail: str) -> None:
        self.ok, self.detail = ok, detail
        self.done.set()


_PORT_ERRORS: tuple[type[BaseException], ...] = (OSError,)
try:  # pyserial's exceptions derive from OSError (IOError) today; be explicit anyway
    import serial as _serial
    _PORT_ERRORS = (OSError, _serial.SerialException)
except ImportError:  # pragma: no cover - pyserial is a dependency
    pass


class Link:
    def __init__(self, config: LinkConfig, *,
                 on_odometry: Callable[[p.Odometry, float], Any] | None = None,
                 on_status: Callable[[p.Status, float], Any] | None = None,
                 on_state: Callable[[LinkState, str], Any] | None = None,
                 opener: Callable[[LinkConfig], SerialPort] = open_serial,
                 clock: Callable[[], float] = time.monotonic,
                 rng: random.Random | None = None) -> None:
        self.config = config
        self.on_odometry = on_odometry
        self.on_status = on_status
        self.on_state = on_state
        self._opener = opener
        self._clock = clock
        self._rng = rng or random.Random()
        self._lock = threading.RLock()        # state, pending requests
        self._write_lock = threading.Lock()   # the port's write side
        self._changed = threading.Condition(self._lock)
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._ser: SerialPort | None = None
        self._parser = p.Parser(on_error=self._on_frame_error)
        self._state = LinkState.STOPPED
        self._reason = ""
        self._tx_seq = self._rng.randrange(0x10000)
        self._rx_seq: int | None = None
        self._pending: dict[int, _Request] = {}
        self._config_pending: set[int] = set()
        self._nonce = 0
        self._t0 = clock()
        self._opened_at = self._hello_at = self._last_rx = self._last_hb = 0.0
        self._next_open = 0.0
        self._write_error: str | None = None
        self._estop_requested = False
        self.device_info: p.HelloAck | None = None
        self.device_state = p.StateFlag(0)
        self.last_status: p.Status | None = None
        self.stats = LinkStats()

    # --- public --------------------------------------------------------------------------

    @property
    def state(self) -> LinkState:
        return self._state

    @property
    def reason(self) -> str:
        """Why the link is in its state (empty when UP)."""
        return self._reason

    @property
    def estop_requested(self) -> bool:
        return self._estop_requested

    @property
    def running(self) -> bool:
        """Started and not stopped: the link (re)connects by itself."""
        return self._thread is not None

    def last_rx_age(self) -> float | None:
        return None if self._state in (LinkState.STOPPED, LinkState.DISCONNECTED) \
            else self._clock() - self._last_rx

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("Link.start() called twice")
        self._stop.clear()
        self._set_state(LinkState.DISCONNECTED, f"opening {self.config.port}", quiet=True)
        self._thread = threading.Thread(target=self._run, name=f"link {self.config.port}",
                                        daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2.0)
            self._thread = None
        self._close()
        self._fail_pending("link stopped")
        self._set_state(LinkState.STOPPED, "stopped")

    def wait_for(self, state: LinkState, timeout: float) -> bool:
        """Block until the link is in `state` (wall-clock timeout); returns whether it is."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while self._state is not state:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._changed.wait(left)
            return True

    def wait_up(self, timeout: float, failures: int) -> bool:
        """Block until the link is UP (True), or until a connection attempt failed after
        `failures` (the value of `stats.connect_failures` when the caller started the
        attempt) or `timeout` (wall-clock s) passed (False; `reason` says why)."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while self._state is not LinkState.UP:
                left = deadline - time.monotonic()
                if left <= 0 or self.stats.connect_failures > failures:
                    return False
                self._changed.wait(left)
            return True

    def send_velocity(self, v: float, omega: float, timeout_ms: int = 0) -> int | None:
        """Send a VEL_CMD; returns its seq, or None when the link is not UP or an e-stop
        is requested or latched (the device would refuse it)."""
        if (self._state is not LinkState.UP or self._estop_requested
                or p.StateFlag.ESTOP_LATCHED in self.device_state):
            return None
        return self._send(p.VelCmd(float(v), float(omega), int(timeout_ms)))

    def set_estop(self, engage: bool, timeout: float | None = None) -> tuple[bool, str]:
        """Engage (True) or release (False) the device's e-stop latch; waits for the ACK.

        The request is remembered: an engaged e-stop is sent again on every reconnect
        until released, and no velocity command is sent meanwhile."""
        self._estop_requested = engage
        what = "e-stop" if engage else "e-stop release"
        if self._state not in (LinkState.UP, LinkState.CONFIGURING):
            note = (" It will be sent when the device reconnects; without a session the "
                    "device keeps its motors off." if engage else "")
            return False, f"link {self._state.value} ({self._reason}): {what} not " \
                          f"confirmed by the device.{note}"
        ok, detail = self.request(p.EStop() if engage else p.EStopRelease(), timeout)
        return ok, (f"{what} confirmed by the device" if ok else detail)

    def reset_odometry(self, x: float = 0.0, y: float = 0.0, theta: float = 0.0,
                       timeout: float | None = None) -> tuple[bool, str]:
        return self.request(p.ResetOdom(x, y, theta), timeout)

    def request(self, msg: p.Message, timeout: float | None = None) -> tuple[bool, str]:
        """Send a message the device ACKs or NACKs and wait for the answer."""
        with self._lock:
            if self._ser is None:
                return False, f"link {self._state.value}: {self._reason}"
            req = self._send_request(msg)
        if req is None:
            return False, f"could not write to {self.config.port}: {self._write_error}"
        t = self.config.request_timeout if timeout is None else timeout
        if not req.done.wait(t):
            with self._lock:
                self._pending.pop(req.seq, None)
            return False, f"no answer to {type(msg).__name__} within {t * 1000:.0f} ms"
        return req.ok, req.detail

    # --- I/O thread ----------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._step()
            except Exception as e:  # the I/O thread must outlive any bug: start over
                log.exception("%s: internal error in the link's I/O thread",
                              self.config.port)
                self._drop(f"internal error: {e!r}", self._clock())

    def _step(self) -> None:
        """One pass: open the port if due, or read, dispatch and run the timers."""
        now = self._clock()
        if self._ser is None:
            if now >= self._next_open:
                self._open(now)
            else:
                self._stop.wait(min(0.05, self._next_open - now))
            return
        try:
            data = self._ser.read(self._ser.in_waiting or 1)
        except _PORT_ERRORS as e:
            self._drop(f"port error: {e}", self._clock())
            return
        now = self._clock()
        if data:
            self.stats.bytes_rx += len(data)
            for frame in self._parser.feed(data):
                self._on_frame(frame, now)
        self._tick(now)

    def _open(self, now: float) -> None:
        try:
            ser = self._opener(self.config)
            ser.reset_input_buffer()  # stale bytes from before; the device resends
        except (*_PORT_ERRORS, ValueError) as e:  # ValueError: a malformed URL or baud
            self._next_open = now + self.config.reconnect_interval
            self.stats.connect_failures += 1
            self._set_state(LinkState.DISCONNECTED, f"cannot open {self.config.port}: {e}")
            return
        with self._lock:
            self._ser = ser
            self._write_error = None
            self._parser.reset()
            self._rx_seq = None
            self._opened_at = now
        self._hello(now)

    def _hello(self, now: float) -> None:
        with self._lock:
            self._nonce = self._rng.randrange(1, 0xFFFFFFFF)
            self._hello_at = self._opened_at = now
            self._config_pending.clear()
        self._set_state(LinkState.HANDSHAKE, f"HELLO sent to {self.config.port}")
        self._send(p.Hello(self._nonce))

    def _tick(self, now: float) -> None:
        cfg = self.config
        if self._write_error is not None:
            self._drop(f"port error: {self._write_error}", now)
            return
        st = self._state
        if st is LinkState.HANDSHAKE:
            if now - self._opened_at > cfg.handshake_timeout:
                self._drop(f"no HELLO_ACK within {cfg.handshake_timeout:.1f} s: is a device "
                           f"with fleet_bridge firmware on {cfg.port}?", now)
            elif now - self._hello_at >= cfg.hello_retry:
                self._hello_at = now
                self._send(p.Hello(self._nonce))
            return
        if st in (LinkState.UP, LinkState.CONFIGURING):
            if now - self._last_rx > cfg.link_timeout:
                self._drop(f"link lost: no frame from the device for "
                           f"{(now - self._last_rx) * 1000:.0f} ms (link_timeout "
                           f"{cfg.link_timeout * 1000:.0f} ms, missed heartbeats)", now)
                return
            if st is LinkState.CONFIGURING and now - self._hello_at > cfg.handshake_timeout:
                self._drop("device did not acknowledge its parameters", now)
                return
            if now - self._last_hb >= cfg.heartbeat_period:
                self._last_hb = now
                self._send(p.Heartbeat(int((now - self._t0) * 1000) & 0xFFFFFFFF, 0))

    def _on_frame(self, frame: p.Frame, now: float) -> None:
        self.stats.frames_rx += 1
        self._last_rx = now
        if self._rx_seq is not None:
            gap = (frame.seq - self._rx_seq - 1) & 0xFFFF
            if 0 < gap < 0x8000:
                self.stats.lost_rx += gap
        self._rx_seq = frame.seq
        msg = frame.msg
        st = self._state
        if isinstance(msg, p.HelloAck):
            if st is LinkState.HANDSHAKE and msg.nonce == self._nonce:
                self._handshake_done(msg, now)
        elif isinstance(msg, p.Ack):
            self._answer(msg.ref_seq, msg.ref_type, True, "")
        elif isinstance(msg, p.Nack):
            self._on_nack(msg, now)
        elif isinstance(msg, p.Odometry):
            if st in (LinkState.UP, LinkState.CONFIGURING) and self.on_odometry:
                self._callback(self.on_odometry, msg, now)
        elif isinstance(msg, p.Status):
            self.last_status = msg
            self._device_state(p.StateFlag(msg.state), now)
            if st in (LinkState.UP, LinkState.CONFIGURING) and self.on_status:
                self._callback(self.on_status, msg, now)
        elif isinstance(msg, p.Heartbeat):
            self._device_state(p.StateFlag(msg.state), now)

    def _device_state(self, flags: p.StateFlag, now: float) -> None:
        self.device_state = flags
        if self._state is LinkState.UP and p.StateFlag.SESSION not in flags:
            self._lost_session("the device reports no session (it restarted or timed us out)",
                               now)

    def _lost_session(self, why: str, now: float) -> None:
        self.stats.link_losses += 1
        self._fail_pending(why)
        log.warning("%s: %s; handshaking again", self.config.port, why)
        self._hello(now)

    def _handshake_done(self, info: p.HelloAck, now: float) -> None:
        self.device_info = info
        self._last_rx = self._last_hb = now
        msgs: list[p.Message] = [p.SetParam(int(k), float(v))
                                 for k, v in self.config.params.items()]
        if self._estop_requested:
            msgs.append(p.EStop())
        with self._lock:
            for m in msgs:
                req = self._send_request(m)
                if req is not None:
                    self._config_pending.add(req.seq)
        self._set_state(LinkState.CONFIGURING, "setting device parameters")
        self._maybe_up()

    def _maybe_up(self) -> None:
        if self._state is LinkState.CONFIGURING and not self._config_pending:
            self.stats.connects += 1
            info = self.device_info
            self._set_state(LinkState.UP, "")
            log.info("%s: link up (firmware %d.%d.%d, device id %d)", self.config.port,
                     info.fw_major, info.fw_minor, info.fw_patch, info.device_id)

    def _on_nack(self, msg: p.Nack, now: float) -> None:
        self.stats.nacks += 1
        try:
            reason = p.NackReason(msg.reason).name
        except ValueError:
            reason = f"reason {msg.reason}"
        try:
            what = p.MsgType(msg.ref_type).name
        except ValueError:
            what = f"type 0x{msg.ref_type:02X}"
        if msg.reason == p.NackReason.ESTOPPED:
            self.device_state |= p.StateFlag.ESTOP_LATCHED
        req = self._pending.get(msg.ref_seq)
        detail = f"device refused {what}: {reason}"
        if isinstance(req and req.msg, p.SetParam):
            try:
                name = p.Param(req.msg.param).name.lower()
            except ValueError:
                name = str(req.msg.param)
            detail = f"device refused parameter {name}={req.msg.value:g}: {reason}"
        if self._answer(msg.ref_seq, msg.ref_type, False, detail) and \
                self._state is LinkState.CONFIGURING:
            self._drop(detail, now)
        elif msg.reason == p.NackReason.NO_SESSION and self._state is LinkState.UP:
            self._lost_session("the device has no session with us (it restarted?)", now)

    def _answer(self, seq: int, type_: int, ok: bool, detail: str) -> bool:
        """Resolve the request `seq`; returns whether it was part of the configuration."""
        with self._lock:
            req = self._pending.get(seq)
            if req is None or req.msg.TYPE != type_:
                return False
            del self._pending[seq]
            in_config = seq in self._config_pending
            self._config_pending.discard(seq)
        if ok and isinstance(req.msg, (p.EStop, p.EStopRelease)):
            if isinstance(req.msg, p.EStop):
                self.device_state |= p.StateFlag.ESTOP_LATCHED
            else:
                self.device_state &= ~p.StateFlag.ESTOP_LATCHED
        req.finish(ok, detail)
        if ok:
            self._maybe_up()
        return in_config

    def _on_frame_error(self, err: p.FrameError) -> None:
        self.stats.rx_errors[err.kind] += 1
        if err.kind is p.FrameErrorKind.VERSION and err.header is not None:
            version = err.header[0]
            self._close()
            self._fail_pending("incompatible device")
            self._next_open = self._clock() + self.config.incompatible_retry
            self.stats.connect_failures += 1
            self._set_state(LinkState.INCOMPATIBLE,
                            f"the device on {self.config.port} speaks protocol version "
                            f"{version}, this bridge speaks {p.PROTOCOL_VERSION}: flash the "
                            f"matching firmware or update the bridge")

    def _drop(self, reason: str, now: float) -> None:
        if self._state is LinkState.UP:
            self.stats.link_losses += 1
        else:
            self.stats.connect_failures += 1
        self._close()
        self._fail_pending(reason)
        self._next_open = now + self.config.reconnect_interval
        self._set_state(LinkState.DISCONNECTED, reason)

    # --- helpers -------------------------------------------------------------------------

    def _send(self, msg: p.Message) -> int | None:
        with self._write_lock:
            ser = self._ser
            if ser is None:
                return None
            seq = self._tx_seq
            self._tx_seq = (seq + 1) & 0xFFFF
            try:
                ser.write(p.wire(msg, seq))
            except _PORT_ERRORS as e:
                self._write_error = str(e) or type(e).__name__
                return None
            self.stats.frames_tx += 1
            return seq

    def _send_request(self, msg: p.Message) -> _Request | None:
        # the request is registered before the write: the ACK may beat write() returning
        with self._lock, self._write_lock:
            ser = self._ser
            if ser is None:
                return None
            seq = self._tx_seq
            self._tx_seq = (seq + 1) & 0xFFFF
            req = self._pending[seq] = _Request(seq, msg)
            try:
                ser.write(p.wire(msg, seq))
            except _PORT_ERRORS as e:
                self._write_error = str(e) or type(e).__name__
                del self._pending[seq]
                return None
            self.stats.frames_tx += 1
            return req

    def _fail_pending(self, why: str) -> None:
        with self._lock:
            pending = list(self._pending.values())
            self._pending.clear()
            self._config_pending.clear()
        for req in pending:
            req.finish(False, why)

    def _callback(self, fn: Callable, *args: Any) -> None:
        # a failing consumer must not take the link down with it
        try:
            fn(*args)
        except Exception:
            log.exception("%s: callback %s failed", self.config.port,
                          getattr(fn, "__name__", fn))

    def _close(self) -> None:
        with self._write_lock:
            ser, self._ser = self._ser, None
        if ser is not None:
            try:
                ser.close()
            except _PORT_ERRORS:
                pass  # the device is gone already; nothing left to release

    def _set_state(self, state: LinkState, reason: str, quiet: bool = False) -> None:
        with self._changed:
            changed = (state, reason) != (self._state, self._reason)
            self._state, self._reason = state, reason
            self._changed.notify_all()
        if changed:
            if state in (LinkState.DISCONNECTED, LinkState.INCOMPATIBLE) and not quiet:
                log.warning("%s: %s: %s", self.config.port, state.value, reason)
            if self.on_state is not None:
                self._callback(self.on_state, state, reason)

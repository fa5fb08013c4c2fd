"""The Python link against the C firmware emulator over a real pty (pyserial): handshake,
commands -> odometry, the watchdog, e-stop, and recovery from a dead, killed or noisy
device. No ROS here: `Link` is the part of the bridge that owns the serial port."""
import math
import os
import time

import pytest

from fleet_coord_bridge import protocol as p
from fleet_coord_bridge.emulator import Emulator
from fleet_coord_bridge.link import Link, LinkConfig, LinkState


class Recorder:
    """Collects what a Link reports (from its I/O thread)."""

    def __init__(self):
        self.odom = []     # (host time, Odometry)
        self.status = []   # (host time, Status)
        self.states = []   # (LinkState, reason)

    def attach(self, link):
        link.on_odometry = lambda m, t: self.odom.append((t, m))
        link.on_status = lambda m, t: self.status.append((t, m))
        link.on_state = lambda s, r: self.states.append((s, r))
        return link

    def wait(self, cond, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if cond():
                return True
            time.sleep(0.005)
        return cond()

    def latest_state_flags(self):
        return p.StateFlag(self.status[-1][1].state) if self.status else p.StateFlag(0)


@pytest.fixture
def emu(tmp_path):
    e = Emulator(link=str(tmp_path / "robot.pty"), args=["--device-id", "42"])
    e.start()
    yield e
    e.stop()


def make_link(port, **kw):
    cfg = LinkConfig(port=port, **kw)
    rec = Recorder()
    link = rec.attach(Link(cfg))
    return link, rec


@pytest.fixture
def link(emu):
    link, rec = make_link(emu.port)
    link.start()
    assert link.wait_for(LinkState.UP, 5), link.reason
    yield link, rec
    link.stop()


def drive(link, v, w, seconds, rate=50.0, timeout_ms=0):
    sent = 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if link.send_velocity(v, w, timeout_ms) is not None:
            sent += 1
        time.sleep(1.0 / rate)
    return sent


def test_handshake_reports_the_device_and_pushes_parameters(emu):
    link, rec = make_link(emu.port, params={p.Param.TRACK_WIDTH: 0.4,
                                           p.Param.CMD_TIMEOUT_MS: 300})
    link.start()
    try:
        assert link.wait_for(LinkState.UP, 5), link.reason
        info = link.device_info
        assert (info.fw_major, info.device_id) == (1, 42)
        assert [s for s, _ in rec.states][:4] == [LinkState.DISCONNECTED, LinkState.HANDSHAKE,
                                                   LinkState.CONFIGURING, LinkState.UP]
        assert rec.wait(lambda: rec.status, 1)
        assert p.StateFlag.SESSION in rec.latest_state_flags()
    finally:
        link.stop()


def test_a_parameter_the_device_refuses_is_reported_by_name(emu):
    link, rec = make_link(emu.port, params={p.Param.WHEEL_RADIUS: -0.05})
    link.start()
    try:
        assert rec.wait(lambda: any("wheel_radius=-0.05: BAD_VALUE" in r for _, r in rec.states),
                        3), rec.states
        assert link.state is not LinkState.UP
    finally:
        link.stop()


def test_commands_give_odometry_consistent_with_the_kinematics(link):
    link, rec = link
    v, w = 0.3, 0.6
    drive(link, v, w, 1.5)
    steady = [m for t, m in rec.odom if m.t_us > rec.odom[-1][1].t_us - 800_000]
    assert len(steady) > 30
    # the measured twist settles on the command (encoder quantisation: a few %)
    assert sum(m.v for m in steady) / len(steady) == pytest.approx(v, rel=0.03)
    assert sum(m.omega for m in steady) / len(steady) == pytest.approx(w, rel=0.03)
    # and the pose follows it: on an arc, heading change = omega * dt, distance = v * dt
    a, b = steady[0], steady[-1]
    dt = (b.t_us - a.t_us) * 1e-6
    dtheta = math.atan2(math.sin(b.theta - a.theta), math.cos(b.theta - a.theta))
    assert dtheta == pytest.approx(w * dt, rel=0.05)
    chord = math.hypot(b.x - a.x, b.y - a.y)
    radius = v / w
    assert chord == pytest.approx(2 * radius * math.sin(w * dt / 2), rel=0.05)
    # every VEL_CMD was answered by an ODOMETRY frame carrying its seq
    assert len({m.cmd_seq for _, m in rec.odom}) > 50


def test_watchdog_stops_the_motors_within_the_command_timeout(link):
    link, rec = link
    drive(link, 0.5, 0.0, 0.6, timeout_ms=100)
    t_last = time.monotonic()
    last = link.send_velocity(0.5, 0.0, 100)
    assert last is not None
    assert rec.wait(lambda: p.StateFlag.WATCHDOG_TRIPPED in rec.latest_state_flags(), 1)
    t_trip, st = next((t, s) for t, s in rec.status
                      if p.StateFlag.WATCHDOG_TRIPPED in p.StateFlag(s.state))
    assert p.StateFlag.MOTORS_ENABLED not in p.StateFlag(st.state)
    # on the device clock: tripped 100 ms after the last command arrived (its ODOMETRY
    # reply is stamped on arrival), plus at most a few main-loop passes
    reply = next(m for _, m in rec.odom if m.cmd_seq == last)
    assert 0.1 <= (st.t_us - reply.t_us) * 1e-6 < 0.105
    # seen from the host: plus pty and scheduling latency (generous: shared CI machines)
    assert 0.1 <= t_trip - t_last < 0.25
    # the wheels then spin down (simulated motor inertia), and the pose stops changing
    assert rec.wait(lambda: rec.odom[-1][0] > t_trip and rec.odom[-1][1].v == 0.0, 1)
    x = rec.odom[-1][1].x
    time.sleep(0.2)
    assert rec.odom[-1][1].x == x


def test_estop_latches_until_released_and_the_hardware_button_blocks_release(link, emu):
    link, rec = link
    drive(link, 0.4, 0.0, 0.4)
    ok, msg = link.set_estop(True)
    assert ok, msg
    assert link.send_velocity(0.4, 0.0) is None  # not even sent while e-stopped
    assert rec.wait(lambda: rec.odom[-1][1].v == 0.0, 1)
    assert p.StateFlag.ESTOP_LATCHED in rec.latest_state_flags()

    ok, msg = link.set_estop(False)
    assert ok, msg
    time.sleep(0.1)
    assert rec.odom[-1][1].v == 0.0  # released, but still until commanded again
    drive(link, 0.4, 0.0, 0.4)
    assert rec.odom[-1][1].v > 0.2

    emu.toggle_estop_input()  # the red button on the robot
    assert rec.wait(lambda: p.StateFlag.ESTOP_INPUT in rec.latest_state_flags(), 1)
    assert rec.wait(lambda: rec.odom[-1][1].v == 0.0, 1)
    ok, msg = link.set_estop(False)
    assert not ok and "ESTOP_INPUT_ACTIVE" in msg
    emu.toggle_estop_input()
    assert rec.wait(lambda: p.StateFlag.ESTOP_INPUT not in rec.latest_state_flags(), 1)
    ok, msg = link.set_estop(False)
    assert ok, msg
    drive(link, 0.4, 0.0, 0.3)
    assert rec.odom[-1][1].v > 0.1


def test_reconnects_after_the_emulator_is_killed_and_restarted(link, emu):
    link, rec = link
    drive(link, 0.3, 0.0, 0.3)
    emu.kill()  # power cut: the pty disappears, the link dangles
    assert link.wait_for(LinkState.DISCONNECTED, 2)
    assert link.send_velocity(0.3, 0.0) is None
    time.sleep(0.6)  # a few failed reopen attempts
    assert link.state is LinkState.DISCONNECTED and "cannot open" in link.reason
    # an e-stop asked for while the device is away is applied when it comes back
    ok, msg = link.set_estop(True)
    assert not ok and "when the device reconnects" in msg
    emu.start()  # a fresh device: new pty behind the same link path
    assert link.wait_for(LinkState.UP, 5), link.reason
    assert link.stats.connects == 2
    assert rec.wait(lambda: p.StateFlag.ESTOP_LATCHED in rec.latest_state_flags(), 1)
    assert link.set_estop(False)[0]
    odom_before = len(rec.odom)
    drive(link, 0.3, 0.0, 0.5)
    assert len(rec.odom) > odom_before and rec.odom[-1][1].v > 0.1


def test_a_frozen_device_is_declared_lost_after_missed_heartbeats_then_recovers(link, emu):
    link, rec = link
    emu.pause()  # port still there, nothing comes out
    t0 = time.monotonic()
    try:
        assert link.wait_for(LinkState.DISCONNECTED, 2)
        assert time.monotonic() - t0 < link.config.link_timeout + 0.2
        assert "missed heartbeats" in link.reason
    finally:
        emu.resume()
    assert link.wait_for(LinkState.UP, 5), link.reason
    assert link.stats.link_losses == 1


def test_a_port_that_appears_later_is_picked_up(tmp_path):
    path = str(tmp_path / "late.pty")
    link, rec = make_link(path)
    link.start()
    try:
        time.sleep(0.3)
        assert link.state is LinkState.DISCONNECTED and "cannot open" in link.reason
        with Emulator(link=path):
            assert link.wait_for(LinkState.UP, 5), link.reason
    finally:
        link.stop()


def test_noisy_line_with_lost_and_corrupted_frames_still_works(tmp_path):
    path = str(tmp_path / "noisy.pty")
    with Emulator(link=path, args=["--drop-rate", "0.05", "--corrupt-rate", "0.05",
                                   "--boot-garbage", "3000", "--seed", "3"]):
        link, rec = make_link(path)
        link.start()
        try:
            assert link.wait_for(LinkState.UP, 5), link.reason
            drive(link, 0.3, 0.0, 1.0)
            assert rec.odom[-1][1].v == pytest.approx(0.3, rel=0.1)
            assert link.stats.corrupt_rx > 0 and link.stats.lost_rx > 0
            assert link.state is LinkState.UP
        finally:
            link.stop()


class FakeDevice:
    """A serial port whose device answers every frame with a NACK of another protocol
    version."""

    in_waiting = 0

    def __init__(self, version):
        self.version = version
        self.out = b""

    def read(self, size=1):
        time.sleep(0.005)
        data, self.out = self.out, b""
        return data

    def write(self, data):
        for f in p.Parser().feed(data):
            raw = p.HEADER.pack(self.version, p.MsgType.NACK, 1) + \
                p.Nack(f.seq, f.msg.TYPE, p.NackReason.VERSION).pack()
            self.out += b"\x00" + p.cobs_encode(raw + p.CRC.pack(p.crc16(raw))) + b"\x00"

    def reset_input_buffer(self):
        pass

    def close(self):
        pass


def test_a_device_speaking_another_protocol_version_is_named_not_retried_in_a_loop():
    link = Link(LinkConfig(port="fake"), opener=lambda cfg: FakeDevice(version=2))
    link.start()
    try:
        assert link.wait_for(LinkState.INCOMPATIBLE, 2)
        assert "protocol version 2" in link.reason and "speaks 1" in link.reason
    finally:
        link.stop()


def test_config_rejects_a_link_timeout_shorter_than_the_heartbeat():
    with pytest.raises(ValueError, match="link_timeout"):
        LinkConfig(port="x", heartbeat_period=0.5, link_timeout=0.2)


def test_emulator_removes_its_link_on_clean_exit(tmp_path):
    path = str(tmp_path / "gone.pty")
    with Emulator(link=path) as e:
        assert os.path.realpath(path) == e.pty
    assert not os.path.lexists(path)


def test_a_callback_that_raises_does_not_take_the_link_down(emu):
    calls = []

    def bad(m, t):
        calls.append(m)
        raise RuntimeError("consumer bug")
    link = Link(LinkConfig(port=emu.port), on_odometry=bad)
    link.start()
    try:
        assert link.wait_for(LinkState.UP, 5), link.reason
        drive(link, 0.1, 0.0, 0.3)
        assert len(calls) > 10 and link.state is LinkState.UP
    finally:
        link.stop()

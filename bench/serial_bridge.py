"""Serial bridge benchmark: the Python link against the C firmware emulator over a pty.

    .venv/bin/python bench/serial_bridge.py [--seconds 5] [--trials 20]

Measures
  1. command -> odometry round trips: one VEL_CMD in flight, the next sent as soon as the
     ODOMETRY frame carrying its seq arrives; round trips/s and latency percentiles.
     Through `Link` (the bridge's I/O thread, as the node uses it) and, as a floor, a bare
     pyserial loop in one thread;
  2. watchdog stop latency: drive, stop sending, and time (a) the device's reaction after
     the command timeout, on the device clock (STATUS "watchdog tripped" minus the
     ODOMETRY reply to the last command, minus the timeout), (b) the same seen by the
     host, (c) until odometry reports v = 0 (simulated wheel spin-down included).
Results go to stdout as the markdown rows of docs/benchmarks.md ("## Serial bridge").
No ROS 2 is started.
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import serial  # noqa: E402

from fleet_coord_bridge import protocol as p  # noqa: E402
from fleet_coord_bridge.emulator import Emulator  # noqa: E402
from fleet_coord_bridge.link import Link, LinkConfig, LinkState  # noqa: E402


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def round_trips_link(port: str, seconds: float) -> tuple[int, float, list[float]]:
    got = threading.Event()
    want = [None]

    def on_odom(m: p.Odometry, _t: float) -> None:
        if m.cmd_seq == want[0]:
            got.set()

    link = Link(LinkConfig(port=port), on_odometry=on_odom)
    link.start()
    try:
        if not link.wait_for(LinkState.UP, 5):
            raise RuntimeError(f"link not up: {link.reason}")
        lat = []
        t_end = time.perf_counter() + seconds
        t0 = time.perf_counter()
        while time.perf_counter() < t_end:
            got.clear()
            ts = time.perf_counter()
            want[0] = link.send_velocity(0.2, 0.1, 500)
            if not got.wait(1.0):
                raise RuntimeError("no odometry for a command within 1 s")
            lat.append(time.perf_counter() - ts)
        return len(lat), time.perf_counter() - t0, lat
    finally:
        link.stop()


def round_trips_raw(port: str, seconds: float) -> tuple[int, float, list[float]]:
    ser = serial.Serial(port, 115200, timeout=0.5)
    parser = p.Parser()
    seq = 0

    def send(msg):
        nonlocal seq
        ser.write(p.wire(msg, seq))
        seq = (seq + 1) & 0xFFFF
        return seq - 1

    def until(pred, timeout=2.0):
        end = time.perf_counter() + timeout
        while time.perf_counter() < end:
            for f in parser.feed(ser.read(ser.in_waiting or 1)):
                if pred(f.msg):
                    return f.msg
        raise RuntimeError("timed out")

    try:
        ser.reset_input_buffer()
        send(p.Hello(1))
        until(lambda m: isinstance(m, p.HelloAck))
        lat = []
        t_end = time.perf_counter() + seconds
        t0 = time.perf_counter()
        while time.perf_counter() < t_end:
            ts = time.perf_counter()
            s = send(p.VelCmd(0.2, 0.1, 500))
            until(lambda m: isinstance(m, p.Odometry) and m.cmd_seq == s)  # noqa: B023 (called here)
            lat.append(time.perf_counter() - ts)
        return len(lat), time.perf_counter() - t0, lat
    finally:
        ser.close()


def watchdog_trials(port: str, trials: int, timeout_ms: int = 100) -> dict[str, list[float]]:
    odom: list[tuple[float, p.Odometry]] = []
    status: list[tuple[float, p.Status]] = []
    link = Link(LinkConfig(port=port),
                on_odometry=lambda m, t: odom.append((t, m)),
                on_status=lambda m, t: status.append((t, m)))
    link.start()
    out: dict[str, list[float]] = {"device": [], "host": [], "stopped": []}
    try:
        if not link.wait_for(LinkState.UP, 5):
            raise RuntimeError(f"link not up: {link.reason}")
        for _ in range(trials):
            end = time.monotonic() + 0.4
            while time.monotonic() < end:
                link.send_velocity(0.5, 0.0, timeout_ms)
                time.sleep(0.02)
            last_seq = link.send_velocity(0.5, 0.0, timeout_ms)
            t_last = time.monotonic()
            n_status = len(status)
            trip = stop = reply = None
            deadline = t_last + 2.0
            while time.monotonic() < deadline and (trip is None or stop is None):
                time.sleep(0.002)
                if reply is None:
                    reply = next((m for _, m in odom if m.cmd_seq == last_seq), None)
                if trip is None:
                    trip = next(((t, s) for t, s in status[n_status:]
                                 if p.StateFlag.WATCHDOG_TRIPPED in p.StateFlag(s.state)), None)
                if trip is not None and stop is None:
                    stop = next((t for t, m in odom if t > trip[0] and m.v == 0.0), None)
            if trip is None or stop is None or reply is None:
                raise RuntimeError("watchdog did not trip / robot did not stop")
            dev = ((trip[1].t_us - reply.t_us) & 0xFFFFFFFF) * 1e-6 - timeout_ms / 1000
            out["device"].append(dev)
            out["host"].append(trip[0] - t_last - timeout_ms / 1000)
            out["stopped"].append(stop - t_last - timeout_ms / 1000)
            odom.clear()
        return out
    finally:
        link.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--trials", type=int, default=20)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp, \
            Emulator(link=os.path.join(tmp, "bench.pty")) as emu:
        print(f"# {platform.platform()}, {os.cpu_count()} cores, Python "
              f"{platform.python_version()}, pyserial {serial.__version__}")
        print("| measurement | result |")
        print("|---|---|")
        for name, fn in (("Link (bridge I/O thread)", round_trips_link),
                         ("bare pyserial loop", round_trips_raw)):
            n, el, lat = fn(emu.port, args.seconds)
            print(f"| cmd -> odometry round trips, {name} | {n / el:.0f} /s "
                  f"({n} in {el:.1f} s); latency p50 {pct(lat, .5) * 1e3:.3f} ms, "
                  f"p99 {pct(lat, .99) * 1e3:.3f} ms, max {max(lat) * 1e3:.2f} ms |")
        w = watchdog_trials(emu.port, args.trials)
        for key, label in (("device", "watchdog reaction after the 100 ms timeout, device "
                                      "clock"),
                           ("host", "watchdog trip seen by the host after the timeout"),
                           ("stopped", "odometry v = 0 after the timeout (incl. spin-down)")):
            xs = [x * 1e3 for x in w[key]]
            print(f"| {label} ({len(xs)} trials) | median {statistics.median(xs):.1f} ms, "
                  f"max {max(xs):.1f} ms |")


if __name__ == "__main__":
    main()

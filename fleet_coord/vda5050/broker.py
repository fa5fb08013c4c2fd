"""A private MQTT broker for tests and the mixed demo: Mosquitto (Debian's package,
installed by ``scripts/setup.sh``) on a loopback port, with its own config, no
persistence, no other listener, stopped with its owner.

``with Broker() as b: ... b.port`` starts it on a free port of 127.0.0.1 and waits until
it accepts connections.
"""
from __future__ import annotations

import getpass
import os
import shutil
import socket
import subprocess
import tempfile
import time

__all__ = ["BrokerError", "Broker", "mosquitto_path", "free_port"]

INSTALL_HINT = "install it with: apt-get install mosquitto (scripts/setup.sh does as root)"


class BrokerError(RuntimeError):
    """The broker cannot be found or did not start."""


def mosquitto_path() -> str | None:
    """The mosquitto executable (Debian puts it in /usr/sbin, often not on PATH)."""
    found = shutil.which("mosquitto")
    if found:
        return found
    return "/usr/sbin/mosquitto" if os.access("/usr/sbin/mosquitto", os.X_OK) else None


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


class Broker:
    def __init__(self, port: int = 0, host: str = "127.0.0.1", start_timeout: float = 20.0) -> None:
        self.host = host
        self.port = port or free_port(host)
        self.start_timeout = start_timeout
        self.proc: subprocess.Popen | None = None
        self._dir: str | None = None

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self) -> "Broker":
        exe = mosquitto_path()
        if exe is None:
            raise BrokerError(f"mosquitto not found; {INSTALL_HINT}")
        self._dir = tempfile.mkdtemp(prefix="fleet-coord-mqtt-")
        conf = os.path.join(self._dir, "mosquitto.conf")
        with open(conf, "w") as f:
            f.write(f"listener {self.port} {self.host}\n"
                    "allow_anonymous true\n"
                    "persistence false\n"
                    f"user {getpass.getuser()}\n"      # run as root it would switch users
                    "log_dest stderr\n"
                    "log_type error\nlog_type warning\n")
        log = open(os.path.join(self._dir, "mosquitto.log"), "wb")
        from fleet_coord.launcher import die_with_parent
        self.proc = subprocess.Popen([exe, "-c", conf], stdout=log, stderr=subprocess.STDOUT,
                                     start_new_session=True, preexec_fn=die_with_parent)
        log.close()
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise BrokerError(f"mosquitto exited with {self.proc.returncode}: {self.log_tail()}")
            try:
                with socket.create_connection((self.host, self.port), timeout=0.5):
                    return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise BrokerError(f"mosquitto did not listen on {self.address} within "
                          f"{self.start_timeout:g} s: {self.log_tail()}")

    def log_tail(self, n: int = 2000) -> str:
        if self._dir is None:
            return ""
        try:
            with open(os.path.join(self._dir, "mosquitto.log"), "rb") as f:
                return f.read()[-n:].decode(errors="replace")
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        self.proc = None
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def __enter__(self) -> "Broker":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

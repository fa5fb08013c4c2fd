"""emulator: build and run the C firmware emulator (firmware/build/fb_emulator).

The emulator is the real firmware core (firmware/src) against a simulated motor and
encoder model, behind a pseudo-terminal. Tests, benchmarks and demos use this wrapper:

    with Emulator(link="/tmp/robot1.pty") as emu:   # builds it first if needed
        ...  # open emu.link (or emu.pty) with pyserial / point the bridge at it
        emu.kill(); emu.start()                    # "unplug" and "replug"
"""
from __future__ import annotations

import os
import signal
import subprocess
import threading

FIRMWARE_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "firmware")
BUILD_DIR = os.path.join(FIRMWARE_DIR, "build")
EMULATOR = os.path.join(BUILD_DIR, "fb_emulator")
UNIT_TESTS = os.path.join(BUILD_DIR, "test_fb")

_build_lock = threading.Lock()


def build(target: str = "all") -> None:
    """`make -C firmware_bridge/firmware <target>` (incremental; raises with its output)."""
    with _build_lock:
        r = subprocess.run(["make", "-C", FIRMWARE_DIR, "--no-print-directory", target],
                           capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"building the firmware ({target}) failed:\n{r.stdout}{r.stderr}")


class Emulator:
    """One emulated robot. `link` is a symlink path kept pointing at the current pty, so a
    restarted emulator (a new pty) is found at the same path, like a udev rule would."""

    def __init__(self, link: str | None = None, *, args: list[str] | None = None,
                 build_first: bool = True) -> None:
        self.link = link
        self.args = list(args or [])
        self.proc: subprocess.Popen | None = None
        self.pty: str | None = None
        if build_first:
            build()

    def start(self) -> str:
        """Start (or restart) the emulator; returns the pty path once it exists."""
        if self.running:
            raise RuntimeError("emulator already running")
        cmd = [EMULATOR] + (["--link", self.link] if self.link else []) + self.args
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL,
                                     text=True)
        line = self.proc.stdout.readline().strip()
        if not line:
            self.proc.wait(timeout=2)
            raise RuntimeError(f"{' '.join(cmd)} exited ({self.proc.returncode}) without "
                               f"printing its pty")
        self.pty = line
        return line

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def port(self) -> str:
        """The path to open: the link if there is one, else the pty itself."""
        return self.link or self.pty

    def _signal(self, sig: int) -> None:
        if not self.running:
            raise RuntimeError("emulator not running")
        self.proc.send_signal(sig)

    def toggle_estop_input(self) -> None:
        """Press or release the simulated hardware e-stop button."""
        self._signal(signal.SIGUSR1)

    def pause(self) -> None:
        """Freeze the device (SIGSTOP): the port stays, the heartbeats stop."""
        self._signal(signal.SIGSTOP)

    def resume(self) -> None:
        self._signal(signal.SIGCONT)

    def kill(self) -> None:
        """Power cut: SIGKILL, the pty vanishes at once (the link dangles)."""
        if self.proc is not None:
            if self.running:
                self.proc.send_signal(signal.SIGCONT)
                self.proc.kill()
            self.proc.wait(timeout=5)
            self.proc.stdout.close()
            self.proc = None

    def stop(self) -> None:
        """Clean shutdown (SIGTERM): the emulator removes its link."""
        if self.proc is not None:
            if self.running:
                self.proc.send_signal(signal.SIGCONT)
                self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc.stdout.close()
            self.proc = None

    def __enter__(self) -> "Emulator":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

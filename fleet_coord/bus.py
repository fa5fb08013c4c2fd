"""A virtual clock and a message bus that can delay, drop and reorder: the network of the
in-process fleet (fleet_coord.in_process), deterministic for a seed.

The bus is a discrete-event scheduler. `at(t, fn, *args)` runs `fn(*args)` at virtual time
`t`; `every(period, fn)` runs `fn` periodically; `send(src, dst, fn, *args)` delivers a
message from endpoint `src` to endpoint `dst` after the link's latency, or never (a drop).
Events at the same time run in the order they were scheduled, so a run is a pure
function of its seed and inputs.

`Faults` says what the network does to messages: a base latency, a random jitter (which
reorders messages sent close together), a drop probability, and windows during which an
endpoint is cut off (a partition: every best-effort message to or from it is lost; a
message on a reliable channel arrives once the cut is over, as a RELIABLE DDS writer
repeats it, unless the cut outlasts the participants' lease). Nothing here knows what
the messages mean.
"""
from __future__ import annotations

import heapq
import math
import random
from dataclasses import dataclass
from typing import Any, Callable

__all__ = ["Bus", "Cut", "Faults", "Timer"]


@dataclass(frozen=True)
class Cut:
    """`endpoint` hears nothing and is heard by no one over [t0, t1)."""
    endpoint: str
    t0: float
    t1: float


@dataclass(frozen=True)
class Faults:
    latency: float = 0.001       # s, every message
    jitter: float = 0.0          # s, uniform extra delay (reorders close messages)
    drop: float = 0.0            # probability that a message is lost (see Bus: reliable)
    cuts: tuple[Cut, ...] = ()
    #: endpoints whose messages are never dropped at random (e.g. a test's own tap)
    lossless: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        for name in ("latency", "jitter"):
            v = getattr(self, name)
            if not (math.isfinite(v) and v >= 0):
                raise ValueError(f"Faults.{name} must be a finite number of seconds >= 0, "
                                 f"got {v!r}")
        if not 0.0 <= self.drop < 1.0:
            raise ValueError(f"Faults.drop must be a probability in [0, 1), got {self.drop!r}")

    def cut(self, endpoint: str, t: float) -> bool:
        return any(c.endpoint == endpoint and c.t0 <= t < c.t1 for c in self.cuts)


@dataclass
class Timer:
    period: float
    fn: Callable[[], Any]
    cancelled: bool = False

    def cancel(self) -> None:
        self.cancelled = True


@dataclass
class _Stats:
    sent: int = 0
    dropped: int = 0
    delivered: int = 0
    events: int = 0


class Bus:
    """`reliable`: channels (the name before any ':') whose messages are never dropped at
    random and cross a cut late rather than never, as DDS's RELIABLE QoS repeats a sample
    until a matched reader has it; a cut longer than `lease` s (the writer has given the
    reader up) loses them too."""

    def __init__(self, seed: int = 0, faults: Faults | None = None, start: float = 0.0, *,
                 reliable: frozenset[str] = frozenset(), lease: float = 20.0) -> None:
        self.now = float(start)
        self.faults = faults if faults is not None else Faults()
        self.reliable = reliable
        self.lease = lease
        self.rng = random.Random(seed)
        self._queue: list[tuple[float, int, Callable[..., Any], tuple[Any, ...]]] = []
        self._seq = 0
        self.stats = _Stats()
        self._cuts = bool(self.faults.cuts)
        self._last: dict[tuple[str, str, str], float] = {}   # FIFO per channel

    # -- scheduling -----------------------------------------------------------------------

    def at(self, t: float, fn: Callable[..., Any], *args: Any) -> None:
        """Run `fn(*args)` at virtual time `t` (now, if `t` is in the past)."""
        self._seq += 1
        heapq.heappush(self._queue, (max(t, self.now), self._seq, fn, args))

    def every(self, period: float, fn: Callable[[], Any], *, first: float | None = None) -> Timer:
        """Run `fn()` every `period` s from `first` (default: one period from now)."""
        if not (math.isfinite(period) and period > 0):
            raise ValueError(f"timer period must be a finite number of seconds > 0, got "
                             f"{period!r}")
        timer = Timer(period, fn)

        def fire(t: float) -> None:
            if timer.cancelled:
                return
            fn()
            if not timer.cancelled:
                self.at(t + period, fire, t + period)

        start = self.now + period if first is None else first
        self.at(start, fire, start)
        return timer

    def send(self, src: str, dst: str, fn: Callable[..., Any], *args: Any,
             channel: str = "") -> bool:
        """Deliver `fn(*args)` at `dst` after the link's delay; False when it is dropped.
        Messages of one `channel` (a topic, a service) from `src` to `dst` arrive in the
        order they were sent, as DDS delivers one writer's samples; jitter reorders
        messages of different channels or sources only."""
        self.stats.sent += 1
        f = self.faults
        reliable = channel.partition(":")[0] in self.reliable
        delay = f.latency + (self.rng.random() * f.jitter if f.jitter else 0.0)
        when = self.now + delay
        if self._cuts:
            end = self._cut_end((src, dst), self.now)
            if end is not None:
                if not reliable or end - self.now > self.lease:
                    self.stats.dropped += 1
                    return False
                when = end + delay
        if f.drop and not reliable and src not in f.lossless and dst not in f.lossless \
                and self.rng.random() < f.drop:
            self.stats.dropped += 1
            return False
        if f.jitter or self._cuts:
            key = (src, dst, channel)
            when = max(when, self._last.get(key, when))
            self._last[key] = when
        if self._cuts:
            self.at(when, self._arrive, dst, reliable, fn, args)
        else:
            self.at(when, fn, *args)
        return True

    def _cut_end(self, endpoints: tuple[str, ...], t: float) -> float | None:
        """When the cuts of `endpoints` going on at `t` are over (None: none is)."""
        end = None
        while True:
            ends = [c.t1 for c in self.faults.cuts
                    if c.endpoint in endpoints and c.t0 <= (end if end is not None else t) < c.t1]
            if not ends:
                return end
            end = max(ends)

    def _arrive(self, dst: str, reliable: bool, fn: Callable[..., Any],
                args: tuple[Any, ...]) -> None:
        end = self._cut_end((dst,), self.now)   # cut off while the message was on its way
        if end is None:
            fn(*args)
        elif reliable and end - self.now <= self.lease:
            self.at(end, self._arrive, dst, reliable, fn, args)
        else:
            self.stats.dropped += 1

    # -- running --------------------------------------------------------------------------

    def run_until(self, t: float, stop: Callable[[], bool] | None = None) -> bool:
        """Run events up to virtual time `t` (inclusive). With `stop`, return True as soon as
        it holds after an event (checked once per instant of time); else False at `t`."""
        q = self._queue
        while q and q[0][0] <= t:
            when, _, fn, args = heapq.heappop(q)
            if when > self.now and stop is not None and stop():
                heapq.heappush(q, (when, 0, fn, args))
                return True
            self.now = when
            self.stats.events += 1
            fn(*args)
        self.now = max(self.now, t)
        return stop is not None and stop()

    @property
    def pending(self) -> int:
        return len(self._queue)


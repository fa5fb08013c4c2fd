"""Input guards of the fleet's nodes: no message ends a process.

A callback that cannot take a message (a field out of range, a non-finite number, an id
too long: `BadInput` or any `ValueError` the cores raise naming the field) drops it with
one log line naming the topic, the sender and what was wrong; the same kind of drop on
the same topic is logged again at most every `period` s, with how many were dropped
since. Anything else a callback raises is a bug: logged with its traceback (rate-limited
the same way), and the process goes on - `fleet_coord.spin.run_nodes` keeps this as the
last resort around every callback of a node process. docs/reliability.md lists what is
checked where.
"""
from __future__ import annotations

import functools
import math
import time
import traceback
from typing import Any, Callable

from fleet_coord.core.names import ID_MAX_BYTES

#: Errors that mean "this input is unusable" (the message is dropped, no traceback).
INPUT_ERRORS = (ValueError, OverflowError)
#: Most task ids a RobotState may list (current + queued, and finished): far above any
#: robot's queue, far below what makes every state a thousand ledger lookups.
STATE_IDS_MAX = 256


class BadInput(ValueError):
    """A message field outside what the fleet accepts; the text names the field."""


def finite(**fields: float) -> None:
    """Raise BadInput naming the first of `fields` that is not a finite number."""
    for name, value in fields.items():
        if not math.isfinite(value):
            raise BadInput(f"{name} = {value!r}: expected a finite number")


def check_robot_state(msg: Any) -> None:
    """Raise BadInput for a RobotState whose task lists are too long or whose ids are
    not ids (fleet_coord.core.names)."""
    for field in ("queued_task_ids", "done_task_ids"):
        n = len(getattr(msg, field))
        if n > STATE_IDS_MAX:
            raise BadInput(f"robot state of {sender_of(msg)}: {field} lists {n} ids, "
                           f"expected at most {STATE_IDS_MAX}")
    for tid in (msg.task_id, *msg.queued_task_ids, *msg.done_task_ids):
        if len(tid.encode("utf-8", "replace")) > ID_MAX_BYTES:
            raise BadInput(f"robot state of {sender_of(msg)}: task id of "
                           f"{len(tid.encode('utf-8', 'replace'))} bytes, expected at most "
                           f"{ID_MAX_BYTES}")


def sender_of(msg: Any) -> str:
    """Who a message says it is from (its `robot`, else its frame), for the log."""
    for attr in ("robot", "child_frame_id"):
        who = getattr(msg, attr, "")
        if isinstance(who, str) and who:
            return who[:64]
    return "?"


class Guard:
    """Drops what callbacks cannot take, with rate-limited log lines (module doc)."""

    def __init__(self, log: Any, period: float = 10.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.log = log
        self.period = period
        self.clock = clock
        self.dropped = 0                    # messages dropped so far (tests read it)
        self.failures = 0                   # unexpected errors so far
        self._last: dict[tuple[str, str], float] = {}
        self._since: dict[tuple[str, str], int] = {}

    def drop(self, where: str, sender: str, error: BaseException) -> None:
        """Count one dropped input; log it unless the same kind was logged recently."""
        unexpected = not isinstance(error, INPUT_ERRORS)
        if unexpected:
            self.failures += 1
        else:
            self.dropped += 1
        key = (where, type(error).__name__)
        now = self.clock()
        last = self._last.get(key)
        if last is not None and now - last < self.period:
            self._since[key] = self._since.get(key, 0) + 1
            return
        self._last[key] = now
        more = self._since.pop(key, 0)
        tail = f" ({more} more like it in the last {now - last:.0f} s)" if more and last is not None else ""
        text = str(error)
        if len(text) > 300:
            text = text[:300] + "..."
        if unexpected:
            self.log.error(f"{where}: a callback failed on input from {sender} "
                           f"({type(error).__name__}: {text}); dropped, going on{tail}\n"
                           + "".join(traceback.format_exception(error)[-4:]))
        else:
            self.log.warning(f"{where}: dropped a message from {sender}: {text}{tail}")

    def wrap(self, where: str, callback: Callable[..., Any],
             sender: Callable[[Any], str] = sender_of) -> Callable[..., Any]:
        """`callback`, dropping (and logging) what it raises on a message. Keeps its
        signature (rclpy passes the MessageInfo to callbacks that take two arguments)."""
        @functools.wraps(callback)
        def guarded(*args: Any) -> Any:
            try:
                return callback(*args)
            except Exception as e:  # noqa: BLE001 - the guard: nothing a message does ends the process
                self.drop(where, sender(args[0]) if args else "?", e)
                return None
        return guarded

    def subscribe(self, node: Any, msg_type: Any, topic: str, callback: Callable[..., Any],
                  qos: Any, **kwargs: Any) -> Any:
        """`node.create_subscription` with the callback guarded (`wrap`)."""
        return node.create_subscription(msg_type, topic, self.wrap(topic, callback), qos,
                                        **kwargs)

"""Names and ids that travel between fleet processes: what a robot name and a task id may
be, checked in one place.

Every id ends up in ROS strings (cut at a NUL), in every cfp the dispatcher broadcasts,
in the ledger's primary key and in log lines. So ids are bounded and printable: a 1 MB id
would be sent to every robot in every round, and an id with control characters can
rewrite a terminal or a log line. Robot names are also the namespace of a robot's nodes
(`/<robot>/robot_agent`), so they follow ROS's name rules.

Pure core: no rclpy.
"""
from __future__ import annotations

import re
from typing import Any

__all__ = ["ROBOT_NAME", "ROBOT_NAME_MAX", "ID_MAX_BYTES", "robot_name_problem",
           "id_problem", "text_problem", "short_repr"]

#: A robot name: a ROS name token (a letter, then letters, digits or '_').
ROBOT_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*")
#: Longest robot name (characters); ROS topic names built from it must stay readable.
ROBOT_NAME_MAX = 63
#: Longest task id / station name, in bytes of UTF-8 (what goes on the wire).
ID_MAX_BYTES = 128


def short_repr(value: Any, limit: int = 40) -> str:
    """A short repr for an error message: a 1 MB id is named by its start and length."""
    if isinstance(value, str) and len(value) > limit:
        return f"{value[:limit]!r}... ({len(value)} characters)"
    text = repr(value)
    return text if len(text) <= 2 * limit else text[:2 * limit] + "..."


def robot_name_problem(name: Any) -> str | None:
    """None when `name` is a valid robot name, else what is wrong with it."""
    if not isinstance(name, str):
        return f"expected a robot name (a string), got {type(name).__name__}"
    if len(name) > ROBOT_NAME_MAX:
        return f"a robot name has at most {ROBOT_NAME_MAX} characters, got {short_repr(name)}"
    if not ROBOT_NAME.fullmatch(name):
        return (f"{short_repr(name)} is not a valid robot name (a letter, then letters, digits "
                "or '_')")
    return None


def id_problem(value: Any, what: str = "id", noun: str = "string") -> str | None:
    """None when `value` is a valid task id / station name, else what is wrong with it:
    a non-empty string of at most ID_MAX_BYTES bytes (UTF-8) of printable characters,
    without leading or trailing white space."""
    if not isinstance(value, str):
        return f"{what} must be a {noun}, got {type(value).__name__}"
    if not value.strip():
        return f"{what} must be a non-empty {noun}, got {value!r}"
    try:
        size = len(value.encode("utf-8"))
    except UnicodeEncodeError:   # a lone surrogate: no ROS string can carry it
        return f"{what} must be valid Unicode text, got {short_repr(value)}"
    if size > ID_MAX_BYTES:
        return f"{what} must be at most {ID_MAX_BYTES} bytes (UTF-8), got {size}: {short_repr(value)}"
    if not value.isprintable():
        bad = next(c for c in value if not c.isprintable())
        return (f"{what} must contain only printable characters, got {short_repr(value)} "
                f"(U+{ord(bad):04X})")
    if value != value.strip():
        return f"{what} must not start or end with white space, got {value!r}"
    return None


def text_problem(value: Any, what: str, max_chars: int) -> str | None:
    """None when `value` is free text (a reason, a message) of at most `max_chars`
    characters without NUL, else what is wrong with it."""
    if not isinstance(value, str):
        return f"{what} must be a string, got {type(value).__name__}"
    if len(value) > max_chars:
        return f"{what} must be at most {max_chars} characters, got {len(value)}"
    if "\x00" in value:
        return f"{what} must not contain NUL characters"
    return None

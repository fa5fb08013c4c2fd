"""The official VDA 5050 3.0.0 JSON schemas (``schemas/``) and validation against them.

The schema files are the VDA's own (VDA5050/VDA5050, release/3.0.0, MIT, see
``schemas/README.md``), kept byte for byte. Three of them (order, factsheet,
visualization) are not strict JSON: a few objects end in a trailing comma. They are read
with :func:`_strip_trailing_commas`, which drops a comma only where the next token closes
an object or array (outside strings), so the schema's content is exactly what the VDA
wrote.

Errata: where a schema contradicts the specification text, the text applies (spec,
section 7). :data:`ERRATA` lists the places this package validates by the text instead,
each with the text's wording; ``schemas/README.md`` lists them too.

``date-time`` (every header's ``timestamp``) is checked as an ISO 8601 / RFC 3339 UTC time,
which jsonschema only does with an optional package; the check here is our own.
"""
from __future__ import annotations

import datetime as _dt
import functools
import json
import os
from typing import Any

import jsonschema

__all__ = ["TOPICS", "ERRATA", "SchemaError", "errors", "check", "official", "schema"]

#: The topics the specification defines a schema for (section 4.3).
TOPICS = ("order", "instantActions", "state", "connection", "factsheet", "responses",
          "visualization", "zoneSet")

_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "schemas")

_ACTION_ITEM = ("properties", "protocolFeatures", "properties", "mobileRobotActions", "items",
                "properties")
#: (topic, path to a property's schema, the schema the text gives it, why).
ERRATA: tuple[tuple[str, tuple[str, ...], dict[str, Any], str], ...] = (
    ("factsheet", _ACTION_ITEM + ("pauseAllowed",), {"type": "boolean"},
     "7.10 protocolFeatures: pauseAllowed | boolean (the schema says string)"),
    ("factsheet", _ACTION_ITEM + ("cancelAllowed",), {"type": "boolean"},
     "7.10 protocolFeatures: cancelAllowed | boolean (the schema says string)"),
)


class SchemaError(ValueError):
    """A message that does not follow its topic's schema; ``problems`` lists why."""

    def __init__(self, topic: str, problems: list[str]) -> None:
        self.topic, self.problems = topic, problems
        more = f" (+{len(problems) - 3} more)" if len(problems) > 3 else ""
        super().__init__(f"{topic} message does not follow the VDA 5050 {topic} schema: "
                         + "; ".join(problems[:3]) + more)


def _strip_trailing_commas(text: str) -> str:
    """``text`` without the commas that directly precede a ``}`` or ``]`` (whitespace
    between them allowed), leaving string contents untouched."""
    out: list[str] = []
    in_string = escaped = False
    pending_comma = -1   # index in `out` of a comma not yet known to be trailing
    for ch in text:
        if in_string:
            out.append(ch)
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
            continue
        if ch in "}]" and pending_comma >= 0:
            del out[pending_comma]
        if not ch.isspace():
            pending_comma = -1
        if ch == '"':
            in_string = True
        elif ch == ",":
            pending_comma = len(out)
        out.append(ch)
    return "".join(out)


def official(topic: str) -> dict[str, Any]:
    """The official schema file of `topic` (one of :data:`TOPICS`), parsed as published."""
    if topic not in TOPICS:
        raise ValueError(f"no VDA 5050 schema for topic {topic!r}; expected one of "
                         f"{', '.join(TOPICS)}")
    with open(os.path.join(_DIR, f"{topic}.schema"), encoding="utf-8") as f:
        text = f.read()
    try:
        return dict(json.loads(text))
    except json.JSONDecodeError:
        return dict(json.loads(_strip_trailing_commas(text)))


@functools.cache
def schema(topic: str) -> dict[str, Any]:
    """The schema `topic`'s messages are validated against: the official one with
    :data:`ERRATA` applied."""
    s = official(topic)
    for name, path, replacement, _why in ERRATA:
        if name == topic:
            node = s
            for key in path[:-1]:
                node = node[key]
            node[path[-1]] = {**node[path[-1]], **replacement}
    return s


_FORMATS = jsonschema.FormatChecker(formats=())


def _is_date_time(value: object) -> bool:
    if not isinstance(value, str):
        return True   # the "type" keyword reports it
    if "T" not in value and "t" not in value:
        raise ValueError(f"{value!r} has no 'T' between date and time")
    parsed = _dt.datetime.fromisoformat(value.replace("z", "Z"))
    if parsed.tzinfo is None:
        raise ValueError(f"{value!r} has no time zone (expected ...Z for UTC)")
    return True


_FORMATS.checks("date-time", raises=ValueError)(_is_date_time)


@functools.cache
def _validator(topic: str) -> jsonschema.protocols.Validator:
    # every file declares draft 2020-12 (zoneSet's "$schema" with http://, which
    # jsonschema does not recognise: named here rather than looked up)
    s = schema(topic)
    jsonschema.Draft202012Validator.check_schema(s)
    return jsonschema.Draft202012Validator(s, format_checker=_FORMATS)


def _where(error: jsonschema.ValidationError) -> str:
    path = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.absolute_path)
    return f"${path}" if path else "$"


def errors(topic: str, message: Any) -> list[str]:
    """Every way `message` (parsed JSON) breaks the official schema of `topic`, each as
    ``"<JSON path>: <why>"``, sorted by path; empty when it is valid."""
    found = sorted(_validator(topic).iter_errors(message), key=lambda e: list(map(str, e.absolute_path)))
    return [f"{_where(e)}: {e.message}" for e in found]


def check(topic: str, message: Any) -> None:
    """Raise :class:`SchemaError` when `message` breaks the official schema of `topic`."""
    problems = errors(topic, message)
    if problems:
        raise SchemaError(topic, problems)

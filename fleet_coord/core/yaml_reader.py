"""Reading YAML files people write by hand, with errors that name the file, the line and
what was expected. Used by the roadmap loader and the fleet config loader."""
from __future__ import annotations

import difflib
import math
import os
from typing import Any, Callable, Sequence, TypeVar

import yaml

_T = TypeVar("_T")


class FileFormatError(ValueError):
    """A file that cannot be used. ``str(err)`` reads
    ``"<path>:<line>[:<column>]: <what was expected, got what>"``; the parts are kept as
    ``path``, ``line`` (1-based), ``column`` and ``reason``."""

    def __init__(self, reason: str, path: str | os.PathLike[str] | None = None,
                 line: int | None = None, column: int | None = None):
        self.reason, self.line, self.column = reason, line, column
        self.path = None if path is None else os.fspath(path)
        where = ""
        if self.path is not None:
            where = self.path
            if line is not None:
                where += f":{line}" + (f":{column}" if column is not None else "")
            where += ": "
        super().__init__(where + reason)


def line_of(node: yaml.Node) -> int:
    return node.start_mark.line + 1


def describe(node: yaml.Node) -> str:
    if isinstance(node, yaml.ScalarNode):
        return repr(node.value)
    return "a list" if isinstance(node, yaml.SequenceNode) else "a mapping"


def compose_yaml(path: str, error: type[FileFormatError]) -> yaml.Node | None:
    """The composed document (nodes keep their line numbers); syntax errors become
    `error` with the line."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as err:
        raise error(f"cannot read: {err.strerror}", path) from None
    try:
        return yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        raise error(f"invalid YAML: {err.problem or err.context}", path,
                    None if mark is None else mark.line + 1) from None
    except yaml.YAMLError as err:
        raise error(f"invalid YAML: {err}", path) from None


def did_you_mean(name: str, known: Sequence[str]) -> str:
    """'; did you mean 'x'?' for a near miss of `name` among `known`, else ''."""
    close = difflib.get_close_matches(name, list(known), n=1, cutoff=0.6)
    if not close:   # a dropped or added '_' ("lostafter") is a near miss too
        flat = {k.replace("_", ""): k for k in known}
        close = [flat[name.replace("_", "")]] if name.replace("_", "") in flat else []
    return f"; did you mean {close[0]!r}?" if close else ""


class YamlReader:
    """Walks a composed YAML document, keeping line numbers for error messages."""

    def __init__(self, path: str, error: type[FileFormatError] = FileFormatError):
        self.path = path
        self._error = error
        self._constructor = yaml.constructor.SafeConstructor()

    def error(self, node: yaml.Node, reason: str) -> FileFormatError:
        return self._error(reason, self.path, line_of(node))

    def mapping(self, node: yaml.Node, what: str, required: Sequence[str],
                optional: Sequence[str] = ()) -> dict[str, tuple[yaml.Node, yaml.Node]]:
        """The keys of a mapping node as {key: (key_node, value_node)}; refuses missing,
        unknown and duplicate keys."""
        if not isinstance(node, yaml.MappingNode):
            raise self.error(node, f"expected {what} as a mapping with keys "
                                   f"{', '.join(list(required) or list(optional))}, got {describe(node)}")
        allowed = list(required) + list(optional)
        found: dict[str, tuple[yaml.Node, yaml.Node]] = {}
        for key, value in node.value:
            if not isinstance(key, yaml.ScalarNode):
                raise self.error(key, f"expected a key name in {what} ({' / '.join(allowed)}), "
                                      f"got {describe(key)}")
            name = key.value
            if name not in allowed:
                raise self.error(key, f"unknown key {name!r} in {what}"
                                      f"{did_you_mean(str(name), allowed)} (expected "
                                      f"{' / '.join(allowed)})")
            if name in found:
                raise self.error(key, f"duplicate key {name!r} in {what}")
            found[name] = (key, value)
        for name in required:
            if name not in found:
                raise self.error(node, f"missing key {name!r} in {what}")
        return found

    def name(self, node: yaml.Node, what: str) -> str:
        # Names are taken verbatim ('yes', '01' stay strings).
        if not isinstance(node, yaml.ScalarNode) or node.value == "":
            raise self.error(node, f"expected {what}, got {describe(node)}")
        return str(node.value)

    def scalar(self, node: yaml.Node, tags: tuple[str, ...], convert: Callable[[Any], _T]
               ) -> _T | None:
        """`convert` of the scalar `node` if its tag is one of `tags`, else None. None
        also when PyYAML's constructor cannot build what the explicit tag claims
        (`!!int abc`: ValueError, `!!bool maybe`: KeyError, `!!float ''`: IndexError) or
        the number does not fit (a 400-digit float: OverflowError), found by
        tests/test_fuzz_inputs.py."""
        if not (isinstance(node, yaml.ScalarNode) and node.tag in tags):
            return None
        try:
            return convert(self._constructor.construct_object(node))
        except (ValueError, KeyError, IndexError, OverflowError, TypeError):
            return None

    def number(self, node: yaml.Node, what: str, allow_inf: bool = False) -> float:
        value = self.scalar(node, ("tag:yaml.org,2002:int", "tag:yaml.org,2002:float"),
                             float)
        if value is not None and (math.isfinite(value) or (allow_inf and value == math.inf)):
            return value
        raise self.error(node, f"expected {what} as a number, got {describe(node)}")

    def integer(self, node: yaml.Node, what: str) -> int:
        value = self.scalar(node, ("tag:yaml.org,2002:int",), int)
        if value is not None:
            return value
        raise self.error(node, f"expected {what} as an integer, got {describe(node)}")

    def boolean(self, node: yaml.Node, what: str) -> bool:
        value = self.scalar(node, ("tag:yaml.org,2002:bool",), bool)
        if value is not None:
            return value
        raise self.error(node, f"expected {what} as true or false, got {describe(node)}")

    def sequence(self, node: yaml.Node, what: str) -> list[yaml.Node]:
        if not isinstance(node, yaml.SequenceNode):
            raise self.error(node, f"expected {what} as a list, got {describe(node)}")
        return list(node.value)

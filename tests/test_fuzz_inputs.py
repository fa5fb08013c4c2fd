"""Bad input (issue 7): the fleet config loader and the task API fed malformed input.

Every malformed input is refused with an error that names it (a `ConfigError` starting with
the file's path; a `TaskError` naming the field); nothing else escapes; what is accepted
is well-formed. Over real DDS the dispatcher refuses a few hundred malformed requests and
the fleet then still does real work.

The hypothesis tests are derandomized (the same examples every run); set
FLEET_FUZZ_RANDOM=1 to explore new ones and FLEET_FUZZ_EXAMPLES=N for more of them.
"""
from __future__ import annotations

import math
import os
import random
import re
from collections import Counter

import pytest
import yaml
from builtin_interfaces.msg import Time
import rclpy
from fleet_coord_msgs.msg import (CallForProposal, Proposal, ReservationSet, RobotState,
                                  SignedOdometry, SignedTwist)
from fleet_coord_msgs.msg import Task as TaskMsg
from fleet_coord_msgs.msg import TaskStatus
from geometry_msgs.msg import Twist, Vector3
from nav_msgs.msg import Odometry
from fleet_coord_msgs.srv import CancelTask, ListTasks, SubmitTask
from geometry_msgs.msg import Pose
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from rclpy.serialization import deserialize_message, serialize_message

from fleet_coord.auth import UnsendableText
from fleet_coord.core.tasks import KINDS, DuplicateTask, Task, TaskError, TaskLedger
from fleet_coord.dispatcher import task_from_submission, task_to_msg
from fleet_coord.fleet_config import (BACKENDS, DEFAULT_MAP, DISCOVERY_RANGES, NODE_SECTIONS,
                                      RESTART_POLICIES, ConfigError, load_fleet_config,
                                      load_roadmap)
from fleet_coord import convert, qos
from fleet_coord.convert import task_from_msg
from fleet_harness import Fleet
from rosutil import ros_context, spin_until
from test_fleet_config import GOOD

EXAMPLES = int(os.environ.get("FLEET_FUZZ_EXAMPLES", "250"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None,
                derandomize=not os.environ.get("FLEET_FUZZ_RANDOM"),
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

# ---------------------------------------------------------------------------------------
# a. The fleet config loader
# ---------------------------------------------------------------------------------------

# Every key the loader knows, block style (one scalar per line), on the YAML roadmap.
RICH = """\
fleet:
  map: warehouse_small.yaml
  footprint_radius: 0.3
  discovery_range: LOCALHOST
  domain_id: 7
  use_sim_time: false
  backend: ideal
  agents_per_process: 2
  restart: always
  ledger: ledger.sqlite
  event_log: events.jsonl
robots:
  - name: amr_1
    start_station: park_1
    max_speed: 0.5
    max_angular_speed: 1.5
    battery_wh: 100
    payload_kg: 20
  - name: amr_2
    start_station: park_2
    backend: serial
    port: /dev/ttyACM0
    baud: 115200
  - name: amr_3
    start: [8.0, 0.0, 3.14]
nodes:
  traffic: {lost_after: 2.0}
  dispatcher:
    bid_window: 0.3
    retry_max_rounds: 4
  serial_bridge: {cmd_rate_hz: 20.0, link_timeout_ms: 500}
"""
SEEDS = [GOOD, RICH]
KNOWN_KEYS = ["fleet", "robots", "nodes", "map", "footprint_radius", "discovery_range",
              "domain_id", "use_sim_time", "backend", "agents_per_process", "restart",
              "ledger", "event_log", "name", "start", "start_station", "max_speed",
              "max_angular_speed", "battery_wh", "payload_kg", "port", "baud", *NODE_SECTIONS]

# YAML that is the wrong kind of value almost anywhere in a fleet config.
WRONG_YAML = [
    "", "~", "null", "[]", "{}", "[1, 2]", "{a: 1}", "[[1]]", "''", "'x'", "x y", "-1", "0",
    "-0.0", "1.5", ".nan", ".inf", "-.inf", "1.0e+999", "1e999", "0x1F", "0o17", "1_000",
    "99999999999999999999999", "9" * 4400, "yes", "off", "2001-12-14", "<<", "=",
    "!!str", "!!set {a}", "!!omap [a]", "*nowhere", "&a x", '"\\0"', '"\\x01\\x7f"', '"\\ud800"',
    "|\n  block", ">-", "@", "`", "%YAML 1.1", "[", "{", "]", "}", "- x", "? a", "a: b: c",
    "'unterminated", '"bad \\q escape"', "\t", "#", "&x [*x]", "/dev/null", ".", "..",
    "fleet.yaml", "warehouse.map", "park_1", "robot_1", "LOCALHOST", "serial", "never",
]
# Explicit tags: a scalar the tag's constructor cannot build, or a type no config holds.
TAGGED_YAML = ["!!int abc", "!!int ''", "!!int 0x", "!!float x", "!!float ''", "!!bool maybe",
               "!!bool ''", "!!int 1.5", "!!float 1e99999", "!!null x", "!!binary '%%'",
               "!!binary eA==", "!!timestamp nope", "!!python/object:os.system x",
               "!!python/name:os.system", "!custom x", "!!map x"]
_SCALAR_TOKEN = re.compile(r"(?<=: )[^\s,{}\[\]#]+|(?<=\[)[^\s,\]]+|(?<=, )[^\s,\]}]+")
_KEY_TOKEN = re.compile(r"[A-Za-z_][\w]*(?=:)")

chars = st.characters(codec="utf-8")          # incl. control characters, no surrogates
junk_text = st.text(chars, max_size=12)

yaml_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.integers(min_value=2**63),
    st.floats(allow_nan=True, allow_infinity=True), st.text(chars, max_size=20),
    st.sampled_from(["ideal", "serial", "warehouse.map", "park_1", "r1", "LOCALHOST"]))
yaml_trees = st.recursive(
    yaml_scalars,
    lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(st.one_of(st.sampled_from(KNOWN_KEYS), junk_text), inner, max_size=4),
    max_leaves=12)


def _edit_text(draw, text: str) -> str:
    """One textual edit of a config: a wrong value, a renamed key, a line deleted /
    duplicated / swapped / re-indented, a truncation, random characters."""
    op = draw(st.sampled_from(["value"] * 5 + ["key", "del_line", "dup_line", "swap_lines",
                                               "indent", "truncate", "insert", "delete",
                                               "replace_char"]))
    lines = text.split("\n")
    if op in ("value", "key"):
        tokens = list((_SCALAR_TOKEN if op == "value" else _KEY_TOKEN).finditer(text))
        if not tokens:
            return text
        m = draw(st.sampled_from(tokens))
        new = draw(st.one_of(st.sampled_from(WRONG_YAML), st.sampled_from(TAGGED_YAML),
                             junk_text) if op == "value"
                   else st.one_of(st.sampled_from(KNOWN_KEYS), junk_text))
        return text[:m.start()] + new + text[m.end():]
    if op in ("del_line", "dup_line", "indent"):
        i = draw(st.integers(0, len(lines) - 1))
        if op == "del_line":
            del lines[i]
        elif op == "dup_line":
            lines.insert(i, lines[i])
        else:
            lines[i] = " " * draw(st.integers(0, 6)) + lines[i].lstrip(" ")
        return "\n".join(lines)
    if op == "swap_lines":
        i, j = draw(st.integers(0, len(lines) - 1)), draw(st.integers(0, len(lines) - 1))
        lines[i], lines[j] = lines[j], lines[i]
        return "\n".join(lines)
    i = draw(st.integers(0, len(text)))
    if op == "truncate":
        return text[:i]
    if op == "insert":
        return text[:i] + draw(st.text(chars, min_size=1, max_size=6)) + text[i:]
    if op == "delete":
        return text[:i] + text[i + draw(st.integers(1, 8)):]
    return text[:i] + draw(chars) + text[i + 1:]


def _set_at(draw, tree, value_strategy):
    """`tree` (a parsed config) with one value, picked along a random path, replaced."""
    if not isinstance(tree, (dict, list)) or not tree:
        return draw(value_strategy)
    if isinstance(tree, dict):
        key = draw(st.sampled_from(sorted(tree, key=str)))
        if draw(st.booleans()):
            tree[key] = draw(value_strategy)
        else:
            tree[key] = _set_at(draw, tree[key], value_strategy)
        return tree
    i = draw(st.integers(0, len(tree) - 1))
    tree[i] = draw(value_strategy) if draw(st.booleans()) else _set_at(draw, tree[i],
                                                                       value_strategy)
    return tree


def _rename_key(draw, tree):
    dicts, stack = [], [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            dicts.append(node)
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    dicts = [d for d in dicts if d]
    if dicts:
        d = draw(st.sampled_from(dicts))
        old = draw(st.sampled_from(sorted(d, key=str)))
        d[draw(st.one_of(st.sampled_from(KNOWN_KEYS), junk_text))] = d.pop(old)
    return tree


@st.composite
def config_files(draw) -> bytes:
    """The bytes of a fleet config, most of them malformed."""
    how = draw(st.sampled_from(["text", "text", "tree", "tree", "random", "skeleton", "bytes"]))
    seed = draw(st.sampled_from(SEEDS))
    if how == "text":
        text = seed
        for _ in range(draw(st.integers(1, 2))):
            text = _edit_text(draw, text)
        return text.encode()
    if how == "tree":
        tree = yaml.safe_load(seed)
        for _ in range(draw(st.integers(1, 2))):
            tree = (_rename_key(draw, tree) if draw(st.integers(0, 3)) == 0
                    else _set_at(draw, tree, yaml_trees))
        return yaml.safe_dump(tree, allow_unicode=draw(st.booleans())).encode()
    if how == "random":
        return yaml.safe_dump(draw(yaml_trees)).encode()
    if how == "skeleton":   # the right top-level keys around random insides
        doc = {"fleet": draw(st.one_of(st.just({"map": "warehouse.map"}), yaml_trees)),
               "robots": draw(yaml_trees)}
        if draw(st.booleans()):
            doc["nodes"] = draw(yaml_trees)
        return yaml.safe_dump(doc).encode()
    data = bytearray(seed.encode())   # byte-level: invalid UTF-8, NUL, ...
    for _ in range(draw(st.integers(1, 4))):
        data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
    return bytes(data)


# The message names what is wrong: a key, a quoted value, or the YAML / encoding problem.
_NAMES_SOMETHING = re.compile(r"'[^']*'|\b(" + "|".join(KNOWN_KEYS) + r")\b|fleet config|"
                              r"unknown key|invalid YAML: \S|not UTF-8 text|nested too deeply")


def _check_params(value, where):
    """An accepted `nodes` section is something a ROS params file can hold."""
    if isinstance(value, dict):
        for k, v in value.items():
            assert isinstance(k, str) and k, where
            _check_params(v, f"{where}.{k}")
    elif isinstance(value, list):
        assert len({type(v) for v in value}) <= 1, (where, value)
        assert all(isinstance(v, (bool, int, float, str)) for v in value), (where, value)
    else:
        assert isinstance(value, (bool, int, float, str)), (where, value)


def load_or_refuse(path: str, data: bytes) -> str:
    """Write `data` to `path` and load it: "accepted" (and the config is well-formed) or
    "refused" (a ConfigError naming the file and what is wrong); anything else fails."""
    with open(path, "wb") as f:
        f.write(data)
    try:
        cfg = load_fleet_config(path)
    except ConfigError as e:
        msg = str(e)
        assert msg.startswith(path + ":"), msg
        assert e.reason.strip() and _NAMES_SOMETHING.search(e.reason), msg
        if e.line is not None:
            assert 1 <= e.line <= data.count(b"\n") + 1, msg
        return "refused"
    assert os.path.isfile(cfg.map)
    assert math.isfinite(cfg.footprint_radius) and cfg.footprint_radius > 0
    assert cfg.discovery_range in DISCOVERY_RANGES and cfg.restart in RESTART_POLICIES
    assert cfg.domain_id is None or 0 <= cfg.domain_id <= 232
    assert isinstance(cfg.use_sim_time, bool) and cfg.agents_per_process >= 1
    assert cfg.robots and len({r.name for r in cfg.robots}) == len(cfg.robots)
    for r in cfg.robots:
        assert re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", r.name), r.name
        assert r.backend in BACKENDS
        assert len(r.start) == 3 and all(math.isfinite(v) for v in r.start), r.start
        assert math.isfinite(r.max_speed) and r.max_speed > 0
        assert math.isfinite(r.max_angular_speed) and r.max_angular_speed > 0
        assert r.battery_wh > 0 and r.payload_kg > 0 and r.baud > 0
        assert r.backend != "serial" or r.port
    assert set(cfg.nodes) <= set(NODE_SECTIONS)
    for section, params in cfg.nodes.items():
        _check_params(params, f"nodes.{section}")
    return "accepted"


@pytest.fixture(scope="module")
def cfg_path(tmp_path_factory):
    return str(tmp_path_factory.mktemp("fuzz_config") / "fleet.yaml")


def test_seed_configs_load(cfg_path):
    for seed in SEEDS:
        assert load_or_refuse(cfg_path, seed.encode()) == "accepted"


@pytest.mark.timeout(300)   # a hang would otherwise stall the suite
def test_malformed_configs_are_refused_with_a_config_error_naming_file_and_key(cfg_path):
    outcomes: Counter[str] = Counter()

    @FUZZ
    @given(data=config_files())
    @example(data=GOOD.replace("0.5}", "!!int abc}").encode())
    @example(data=GOOD.replace("[2, 18]", "[2, " + "1" * 400 + "]").encode())
    @example(data=GOOD.encode().replace(b"r1", b"r\xff1"))
    @example(data=GOOD.replace("{lost_after: 1.0}", "[" * 3000 + "]" * 3000).encode())
    def run(data):
        outcomes[load_or_refuse(cfg_path, data)] += 1

    run()
    # the fuzz reached past the parser: some variants were still good configs
    assert outcomes["refused"] > EXAMPLES // 4 and outcomes["accepted"] > 0, outcomes


# What the fuzz found, and cases next to it; before the fix in fleet_coord/fleet_config.py
# each escaped as the exception named or was accepted ("accepted: ...").
# (before, the edit of GOOD, the line, words of the message)
FOUND = [
    ("ValueError", ("0.5}", "!!int abc}"), 6, ["'robots[1].max_speed'", "number", "'abc'"]),
    ("ValueError", ("0.5}", "!!float x}"), 6, ["'robots[1].max_speed'", "as a number"]),
    ("IndexError", ("1.57]", "!!float '']"), 6, ["'robots[1].start'", "as a number"]),
    ("OverflowError", ("0.5}", "1" + "0" * 400 + "}"), 6, ["'robots[1].max_speed'"]),
    ("KeyError", ("backend: ideal", "use_sim_time: !!bool maybe"), 3,
     ["'fleet.use_sim_time'", "true or false", "'maybe'"]),
    ("ValueError", ("backend: ideal", "domain_id: " + "9" * 5000), 3,
     ["'fleet.domain_id'", "as an integer"]),
    ("ConstructorError", ("{lost_after: 1.0}", "{lost_after: !!python/object:os.system x}"),
     8, ["'nodes.traffic.lost_after'", "ROS parameter value"]),
    ("AttributeError", ("{lost_after: 1.0}", "{lost_after: !!timestamp nope}"), 8,
     ["'nodes.traffic.lost_after'"]),
    ("accepted: bytes", ("{lost_after: 1.0}", "{lost_after: !!binary eA==}"), 8,
     ["'nodes.traffic.lost_after'", "ROS parameter value"]),
    ("accepted: None", ("{lost_after: 1.0}", "{lost_after: ~}"), 8,
     ["'nodes.traffic.lost_after'"]),
    ("accepted: rcl refuses mixed lists", ("{lost_after: 1.0}", "{lost_after: [1, 2.5]}"), 8,
     ["'nodes.traffic.lost_after'", "one type"]),
    ("accepted: a list of lists", ("{lost_after: 1.0}", "{lost_after: [[1]]}"), 8,
     ["'nodes.traffic.lost_after[0]'"]),
    ("accepted: rcl refuses aliases", ("{lost_after: 1.0}", "&a {lost_after: *a}"), 8,
     ["'nodes.traffic.lost_after'", "aliases"]),
    ("accepted: an int name", ("{lost_after: 1.0}", "{1: x}"), 8,
     ["'nodes.traffic'", "parameter name"]),
    ("IsADirectoryError", ("map: warehouse.map", "map: ."), 2, ["'fleet.map'", "not a file"]),
    ("MapError", ("map: warehouse.map", "map: fleet.yaml"), 2,
     ["'fleet.map'", "not a usable map"]),
    ("accepted: baud -5", ("0.5}", "0.5, baud: -5}"), 6, ["'robots[1].baud'", "> 0"]),
    ("accepted: speed inf", ("0.5}", ".inf}"), 6, ["'robots[1].max_speed'", "as a number"]),
    ("RecursionError", ("{lost_after: 1.0}", "[" * 3000 + "]" * 3000), None,
     ["nested too deeply"]),
]


@pytest.mark.parametrize("before, edit, line, words", FOUND,
                         ids=[f"{i}-{f[0].split(':')[0]}" for i, f in enumerate(FOUND)])
def test_fuzz_findings_are_refused_naming_key_and_line(cfg_path, before, edit, line,
                                                        words):
    bad = GOOD.replace(*edit)
    assert bad != GOOD
    with open(cfg_path, "w") as f:
        f.write(bad)
    with pytest.raises(ConfigError) as e:
        load_fleet_config(cfg_path)
    msg = str(e.value)
    assert msg.startswith(cfg_path + ":") and e.value.line == line, msg
    for w in words:
        assert w in msg, msg


def test_config_that_is_not_utf8_is_refused_naming_the_line(cfg_path):   # UnicodeDecodeError
    with open(cfg_path, "wb") as f:
        f.write(GOOD.encode().replace(b"name: r2", b"name: r\xff2"))
    with pytest.raises(ConfigError, match=r"not UTF-8 text: byte 0xff") as e:
        load_fleet_config(cfg_path)
    assert e.value.line == 6


# ---------------------------------------------------------------------------------------
# b. The task API: SubmitTask's task -> core Task (fleet_coord.dispatcher), the task dict
# ---------------------------------------------------------------------------------------

GRID = load_roadmap("")                       # the bundled warehouse grid: stations "x,y"
YAML_MAP = load_roadmap("warehouse_small.yaml")
ROADMAPS = {"grid": (GRID, set(GRID.names)), "yaml": (YAML_MAP, set(YAML_MAP.names))}
INT32 = (-2**31, 2**31 - 1)
NOW = 1234.5

ids = st.one_of(
    st.sampled_from(["", " ", "\t\n", "t1", "task-ä", "\x00", "a\x00b", "\x1b[31mred"]),
    st.text(chars, max_size=10), st.text(chars, min_size=500, max_size=3000))


def names_of(roadmap_key):
    roadmap, _ = ROADMAPS[roadmap_key]
    return st.one_of(st.sampled_from(roadmap.names), st.sampled_from(["", " ", "9,9 ", "0,0"]),
                     st.text(chars, max_size=8))


def coords(roadmap_key):
    roadmap, _ = ROADMAPS[roadmap_key]
    vertex = st.sampled_from([tuple(map(float, p)) for p in roadmap.pos])
    any_float = st.floats(allow_nan=True, allow_infinity=True)
    near = vertex.flatmap(lambda p: st.tuples(
        st.sampled_from([p[0], p[0] + 1e-7, p[0] + 0.4, -p[0]]),
        st.sampled_from([p[1], p[1] - 1e-7, p[1] + 0.5, 1e300])))
    return st.one_of(vertex, near, st.tuples(any_float, any_float))


def on_the_wire(msg):
    """`msg` as a subscriber gets it (rclpy does not range-check fields: an int32 field
    wraps and a string ends at a NUL only when serialized)."""
    return deserialize_message(serialize_message(msg), type(msg))


def pose(xy):
    p = Pose()
    p.position.x, p.position.y = xy
    return p


@st.composite
def task_msgs(draw):
    """(roadmap key, a SubmitTask task): a valid task with up to 3 fields made malformed."""
    key = draw(st.sampled_from(sorted(ROADMAPS)))
    roadmap, _ = ROADMAPS[key]
    kind = draw(st.sampled_from(sorted(KINDS)))
    n = KINDS[kind][0]
    m = TaskMsg(id=draw(st.one_of(st.sampled_from(["t1", "task-ä", "a\x00b", "\x1b[31mred"]),
                                  st.text(chars, min_size=1, max_size=10).filter(str.strip))),
                kind=kind, stations=draw(st.lists(st.sampled_from(roadmap.names),
                                                  min_size=n, max_size=n)),
                priority=draw(st.integers(*INT32)), payload_kg=draw(st.floats(0, 1e6)),
                requester=draw(st.text(chars, max_size=5)))
    m.deadline = draw(st.one_of(st.just(Time()), st.builds(
        Time, sec=st.integers(0, 2**31 - 2), nanosec=st.integers(0, 999_999_999))))
    m.submitted_at = Time(sec=draw(st.integers(*INT32)))   # ignored by the dispatcher
    if key == "grid" and draw(st.booleans()):   # by poses instead of station names
        m.stations = []
        m.poses = [pose(tuple(map(float, roadmap.pos[roadmap.vertex(s)])))
                   for s in draw(st.lists(st.sampled_from(roadmap.names), min_size=n,
                                          max_size=n))]
    for field in draw(st.lists(st.sampled_from(["id", "kind", "stations", "poses", "priority",
                                                "deadline", "payload_kg"]),
                               max_size=3, unique=True)):
        if field == "id":
            m.id = draw(ids)
        elif field == "kind":
            m.kind = draw(st.one_of(st.sampled_from([*KINDS, "", "GOTO", "charge ", "pick"]),
                                    st.text(chars, max_size=8)))
        elif field == "stations":
            m.stations = draw(st.lists(names_of(key), max_size=3))
        elif field == "poses":
            m.poses = [pose(xy) for xy in draw(st.lists(coords(key), max_size=2))]
        elif field == "priority":
            m.priority = draw(st.sampled_from([*INT32, -1]))
        elif field == "deadline":
            m.deadline = draw(st.one_of(
                st.builds(Time, sec=st.integers(*INT32), nanosec=st.integers(0, 2**32 - 1)),
                st.builds(Time, sec=st.sampled_from([-2**31, -1, 0, 1, 2**31 - 2, 2**31 - 1]),
                          nanosec=st.sampled_from([0, 1, 999_999_999, 10**9, 2**32 - 1]))))
        else:
            m.payload_kg = draw(st.floats(allow_nan=True, allow_infinity=True))
    return key, m


# A TaskError names the field that is wrong.
_NAMES_FIELD = re.compile(r"task id|poses\[\d+\]|\b(kind|stations?|priority|deadline|"
                          r"payload_kg)\b")


@pytest.fixture(scope="module")
def ledger(tmp_path_factory):
    with TaskLedger(str(tmp_path_factory.mktemp("fuzz_ledger") / "ledger.db")) as led:
        yield led


def submit_or_refuse(ledger, key, m) -> str:
    """What the dispatcher's SubmitTask handler does with `m` (convert, validate, store):
    "accepted" (a well-formed task, stored) or "refused" (a TaskError naming the field, or
    DuplicateTask for an id stored before)."""
    roadmap, stations = ROADMAPS[key]
    try:
        task = task_from_submission(m, roadmap, NOW, stations)
    except TaskError as e:
        assert str(e).strip() and _NAMES_FIELD.search(str(e)), str(e)
        return "refused"
    count = KINDS[task.kind][0]
    assert task.id == m.id and task.id.strip() and task.kind == m.kind
    assert len(task.stations) == count and all(s in stations for s in task.stations)
    assert task.stations[:len(m.stations)] == list(m.stations)
    for p, s in zip(m.poses, task.stations[len(m.stations):]):
        x, y = p.position.x, p.position.y
        assert math.isfinite(x) and math.isfinite(y)
        assert tuple(roadmap.pos[roadmap.vertex(s)]) == pytest.approx((x, y), abs=1e-6)
    assert INT32[0] <= task.priority <= INT32[1]
    assert task.deadline is None or (math.isfinite(task.deadline) and task.deadline > 0)
    assert math.isfinite(task.payload_kg) and task.payload_kg >= 0
    assert task.submitted_at == NOW
    # it can be announced: a robot reads the same task out of the serialized cfp
    back = task_from_msg(on_the_wire(task_to_msg(task)))
    assert (back.id, back.kind, back.stations, back.priority, back.payload_kg) == \
        (task.id, task.kind, task.stations, task.priority, task.payload_kg)
    assert (back.deadline is None) == (task.deadline is None)
    if task.deadline is not None:
        assert back.deadline == pytest.approx(task.deadline, abs=1e-6)
    try:
        ledger.submit(task, NOW)
    except DuplicateTask as e:
        assert repr(task.id) in str(e)
        return "refused"
    assert ledger.get(task.id).task == task
    return "accepted"


@pytest.mark.timeout(300)
def test_malformed_submissions_are_refused_with_a_task_error_naming_the_field(ledger):
    outcomes: Counter[str] = Counter()

    @FUZZ
    @given(km=task_msgs())
    # deadline 2**31 s or later: accepted before, the int32 sec then wrapped in the cfp
    @example(km=("grid", TaskMsg(id="d1", kind="goto", stations=["9,9"],
                                 deadline=Time(sec=2**31 - 1, nanosec=2**32 - 1))))
    @example(km=("grid", TaskMsg(id="d2", kind="goto", stations=["9,9"],
                                 deadline=Time(sec=2**31 - 1, nanosec=999_999_999))))
    def run(km):
        outcomes[submit_or_refuse(ledger, *km)] += 1

    run()
    assert outcomes["refused"] > EXAMPLES // 4 and outcomes["accepted"] > 0, outcomes


@pytest.mark.parametrize("sec, nanosec, ok", [
    (2**31 - 1, 2**32 - 1, False), (2**31 - 1, 999_999_999, False), (5, 10**9, False),
    (-1, 0, False), (2**31 - 1, 0, True), (2**31 - 2, 999_999_999, True), (0, 0, True),
    (100, 5, True)])
def test_deadline_must_fit_a_ros_time_to_be_accepted(sec, nanosec, ok):
    m = TaskMsg(id="t", kind="goto", stations=["9,9"], deadline=Time(sec=sec, nanosec=nanosec))
    if ok:
        task = task_from_submission(m, GRID, NOW)
        back = task_from_msg(on_the_wire(task_to_msg(task)))
        assert back.deadline == (pytest.approx(task.deadline) if task.deadline else None)
    else:
        with pytest.raises(TaskError, match=r"task 't': deadline"):
            task_from_submission(m, GRID, NOW)


json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.integers(min_value=2**1100),
              st.floats(allow_nan=True, allow_infinity=True), st.text(chars, max_size=6)),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner,
                                                                max_size=3),
    max_leaves=6)
@st.composite
def task_dicts(draw):
    """A task dict: a valid one with up to 3 keys replaced, dropped or added; or any JSON."""
    if draw(st.integers(0, 9)) == 0:
        return draw(json_values)
    kind = draw(st.sampled_from(sorted(KINDS)))
    d = {"id": draw(st.sampled_from(["t1", "x"])), "kind": kind,
         "stations": ["a", "b"][:KINDS[kind][0]]}
    for key in draw(st.lists(st.sampled_from(["priority", "deadline", "payload_kg",
                                              "submitted_at"]), unique=True)):
        d[key] = draw(st.integers(0, 10) if key == "priority" else st.floats(1, 1e9))
    for key in draw(st.lists(st.sampled_from(["id", "kind", "stations", "priority",
                                              "deadline", "payload_kg", "submitted_at",
                                              "extra"]), max_size=3, unique=True)):
        if key in d and draw(st.integers(0, 4)) == 0:
            del d[key]
        else:
            d[key] = draw(st.one_of(st.integers(min_value=2**31), st.integers(max_value=-1),
                                    json_values))
    return d


@pytest.mark.timeout(300)
def test_malformed_task_dicts_and_fields_raise_task_error_only():
    """The core task API (what the ledger reads back, what a client may send as JSON):
    Task.from_dict, and Task.validate on fields of any type."""
    outcomes: Counter[str] = Counter()

    @FUZZ
    @given(d=task_dicts(), known=st.sampled_from([None, {"a", "b"}]))
    @example(d={"id": "t", "kind": ["goto"], "stations": ["a"]}, known=None)  # TypeError
    @example(d={"id": "t", "kind": "goto", "stations": ["a"], "payload_kg": 10**400},
             known=None)                                                   # OverflowError
    @example(d={"id": "t", "kind": "goto", "stations": ["a"], "priority": 2**40},
             known=None)                              # accepted; wrapped in the cfp's int32
    @example(d={"id": "a\x00b", "kind": "goto", "stations": ["a"]},
             known=None)                              # accepted; robots would hear of 'a'
    def run(d, known):
        try:
            task = Task.from_dict(d)
        except TaskError as e:
            assert str(e).strip()
            outcomes["refused"] += 1
        else:
            task.validate()
            back = task_from_msg(on_the_wire(task_to_msg(task)))
            assert (back.id, back.kind, back.stations, back.priority) == \
                (task.id, task.kind, task.stations, task.priority)
            outcomes["accepted"] += 1
        if isinstance(d, dict) and {"id", "kind", "stations"} <= set(d):
            # the same fields, unchecked, straight into a Task
            fields = {k: d[k] for k in ("id", "kind", "stations", "priority", "deadline",
                                        "payload_kg", "submitted_at") if k in d}
            try:
                Task(**fields).validate(known)
            except TaskError as e:
                assert str(e).strip()

    run()
    assert outcomes["refused"] > 0 and outcomes["accepted"] > 0, outcomes


# ---------------------------------------------------------------------------------------
# c. Over real DDS: hundreds of malformed requests, then the fleet still works
# ---------------------------------------------------------------------------------------

def _weird_id(rng: random.Random) -> str:
    """An unusual but valid task id (printable, at most 128 bytes of UTF-8)."""
    return rng.choice([
        lambda: f"m{rng.randrange(10**6)}",
        lambda: "u" + "".join(c for c in (chr(rng.randrange(33, 0x2FFF))
                                          for _ in range(rng.randint(1, 12)))
                              if c.isprintable()),
        lambda: "x" * rng.randint(60, 128),
        lambda: "tâche-" + str(rng.random()),
    ])()


def malformed_requests(rng: random.Random, station_names: set[str], n: int):
    """(category, expected word in the error, SubmitTask.Request): each one malformed."""
    good = sorted(station_names)
    out = []
    for _ in range(n):
        tid = _weird_id(rng)
        kind = rng.choice(list(KINDS))
        m = TaskMsg(id=tid, kind=kind,
                    stations=[rng.choice(good) for _ in range(KINDS[kind][0])])
        cat = rng.choice(["id", "kind", "count", "station", "empty_station", "pose",
                          "deadline", "payload"])
        word = {"id": "task id", "kind": "kind", "count": "station", "station": "station",
                "empty_station": "stations[", "pose": "poses[", "deadline": "deadline",
                "payload": "payload_kg"}[cat]
        if cat == "id":
            m.id = rng.choice(["", " ", "\t", "\n \r", " " * 300, "x" * rng.randint(129, 4000),
                               "ctl" + "".join(chr(rng.randrange(1, 32)) for _ in range(3)),
                               "\x1b[31mred", " padded", "a\u200bb"])
        elif cat == "kind":
            m.kind = rng.choice(["", "GOTO", "pick", "charge ", "fly",
                                 "".join(chr(rng.randrange(32, 0x2FF)) for _ in range(6))])
        elif cat == "count":
            n_st = rng.choice([c for c in range(5) if c != KINDS[kind][0]])
            m.stations = [rng.choice(good) for _ in range(n_st)]
        elif cat == "station":
            bad = rng.choice(["0,0", "-1,5", "999,999", "9,9 ", "shelf_1", "\x00",
                              "".join(chr(rng.randrange(1, 0x2FF)) for _ in range(5))])
            assert bad not in station_names
            m.stations[rng.randrange(len(m.stations))] = bad
        elif cat == "empty_station":
            m.stations[rng.randrange(len(m.stations))] = ""
        elif cat == "pose":
            m.stations = []
            x, y = rng.choice([(math.nan, 5.0), (5.0, math.inf), (-math.inf, 1.0),
                               (0.0, 0.0), (9.5, 9.0), (1e300, 1e300), (-3.0, 9.0),
                               (9.0 + 1e-3, 9.0)])
            m.poses = [pose((x, y))] * KINDS[kind][0]
        elif cat == "deadline":
            m.deadline = rng.choice([Time(sec=-1), Time(sec=-2**31, nanosec=5),
                                     Time(sec=10, nanosec=10**9),
                                     Time(sec=2**31 - 1, nanosec=2**32 - 1),
                                     Time(sec=2**31 - 1, nanosec=999_999_999)])
        else:
            m.payload_kg = rng.choice([math.nan, math.inf, -math.inf, -1.0, -1e-9])
        req = SubmitTask.Request()
        req.task = m
        out.append((cat, word, req))
    return out


def _dropped(fleet) -> int:
    """Input dropped by the nodes' guards, and - when the fleet authenticates - by their
    signature checks (unsigned input is dropped before any guard sees it)."""
    nodes = [fleet.dispatcher, fleet.traffic, fleet.driver]
    ios = {id(a.io): a.io for a in fleet.agents.values()}.values()
    auths = [n.auth for n in nodes] + [io.auth for io in ios]
    return sum(n.guard.dropped for n in nodes) + sum(io.guard.dropped for io in ios) + sum(
        sum(a.verifier.dropped.values()) for a in auths if a.verifier is not None)


def malformed_messages(fleet):
    """(type, topic, QoS, messages): each malformed or out-of-range message of issue #15."""
    epoch, version = fleet.traffic.authority.epoch, fleet.traffic.authority.table.version
    seg = convert.segment_msg
    yield TaskStatus, "/fleet/task_status", qos.PROTOCOL, [
        TaskStatus(task_id="ok_1", robot="ghost", state=TaskStatus.ACTIVE, lamport=lamport)
        for lamport in (2**63 - 2, 2**64 - 1)]
    yield ReservationSet, "/traffic/updates", qos.TABLE, [
        # deltas with non-finite times and an unknown resource (dropped), and one naming
        # robot a with a path (not a grant: only the authority's answer is)
        ReservationSet(version=version + 1, epoch=epoch, robot="a",
                       added=[seg("a", 1, math.nan, 1.0)]),
        ReservationSet(version=version + 1, epoch=epoch, robot="a",
                       added=[seg("a", 10**9, 0.0, 1.0)]),
        ReservationSet(version=version + 1, epoch=epoch, robot="a",
                       added=[seg("a", 3, 0.0, 1e9)]),
        # then a forged snapshot of the current epoch with the largest version there is
        ReservationSet(version=2**64 - 1, epoch=epoch, is_snapshot=True,
                       added=[seg("x", 0, 0.0, math.inf)])]
    odom = Odometry()
    odom.pose.pose.position.x = math.nan
    odom.twist.twist.linear.x = math.inf
    twist = Twist(linear=Vector3(x=math.nan), angular=Vector3(z=math.inf))
    if fleet.auth_keys:   # an authenticating fleet reads the link's signed topics only
        yield SignedOdometry, "/a/odom_signed", qos.ODOM, [SignedOdometry(odom=odom)]
        yield SignedTwist, "/b/cmd_vel_signed", qos.COMMAND, [SignedTwist(twist=twist)]
    else:
        yield Odometry, "/a/odom", qos.ODOM, [odom]
        yield Twist, "/b/cmd_vel", qos.COMMAND, [twist]
    yield CallForProposal, "/fleet/cfp", qos.PROTOCOL, [
        CallForProposal(task=TaskMsg(id="x" * 1_000_000, kind="goto", stations=["2,5"]),
                        round=1)]
    yield Proposal, "/fleet/proposals", qos.PROTOCOL, [
        Proposal(task_id="ok_1", round=1, robot="a", cost=math.nan)]
    yield RobotState, "/fleet/robot_states", qos.state_qos(), [
        RobotState(robot="ghost", resource=2**32 - 2, table_epoch=2**64 - 1,
                   lamport=2**64 - 1, queued_task_ids=["q" * 1000] * 1000)]


@pytest.mark.timeout(300)
def test_fleet_refuses_hundreds_of_malformed_requests_over_dds_and_keeps_working(tmp_path):
    rng = random.Random(7)
    # one short task near each robot
    valid = {"ok_1": ("goto", ["2,5"]), "ok_2": ("pick_and_drop", ["12,5", "13,5"])}
    with ros_context() as (ctx, ex):
        fleet = Fleet(ctx, ex, DEFAULT_MAP, {"a": (2, 1), "b": (12, 1)},
                      str(tmp_path / "ledger.db"))
        node = fleet.dispatcher
        cancel_client = node.create_client(CancelTask, "/fleet/cancel_task")
        list_client = node.create_client(ListTasks, "/fleet/list_tasks")

        def call(client, req):
            fut = client.call_async(req)
            assert spin_until(ex, fut.done, 5.0), f"{client.srv_name} did not answer"
            return fut.result()

        assert spin_until(ex, fleet.ready, 15.0), "fleet did not come up"
        assert cancel_client.wait_for_service(5.0) and list_client.wait_for_service(5.0)

        refused: Counter[str] = Counter()
        for cat, word, req in malformed_requests(rng, set(GRID.names), 300):
            try:
                resp = fleet.call(req)
            except UnsendableText as e:
                # signed (FLEET_COORD_TEST_AUTH=enforce): a string DDS would cut at a NUL
                # is refused by the signer, naming the field, before anything is sent
                assert fleet.operator is not None and word in str(e), (cat, str(e))
                refused[cat] += 1
                continue
            assert not resp.accepted, (cat, req.task)
            assert resp.error.strip() and word in resp.error, (cat, resp.error)
            refused[cat] += 1
        for task_id in ["", " ", "never-submitted", _weird_id(rng), "x" * 3000, "\x00"]:
            req = CancelTask.Request(task_id=task_id, reason="fuzz")
            try:
                req = fleet.sign(req, "fleet/cancel_task")
            except UnsendableText as e:   # as above
                assert "task_id" in str(e), str(e)
                continue
            resp = call(cancel_client, req)
            assert not resp.ok and resp.error.strip(), task_id

        for tid, (kind, stations) in valid.items():
            resp = fleet.submit(tid, stations, kind=kind)
            assert resp.accepted, resp.error
        # the same ids with other content are duplicates
        for tid in valid:
            resp = fleet.submit(tid, ["19,10"], kind="goto")
            assert not resp.accepted and "already submitted" in resp.error, resp.error
        # while they run, a plain node publishes what no fleet process may die of
        dropped_before = _dropped(fleet)
        intruder = rclpy.create_node("intruder", context=ctx)
        ex.add_node(intruder)
        for msg_type, topic, profile, msgs in malformed_messages(fleet):
            pub = intruder.create_publisher(msg_type, topic, profile)
            # sent once the fleet's readers are matched (else DDS drops them unheard)
            assert spin_until(ex, lambda p=pub: p.get_subscription_count() >= 1, 10.0), topic
            for m in msgs:
                pub.publish(m)
        # dropped where they arrive: a's odometry, b's cmd_vel, the cfp (both agents), the
        # robot state (dispatcher, traffic); the rest are harmless or may come too late
        assert spin_until(ex, lambda: _dropped(fleet) - dropped_before >= 6, 10.0), \
            _dropped(fleet) - dropped_before
        # the forged snapshot (version 2**64-1) holds the replicas only until the next one
        table = fleet.traffic.authority.table
        assert spin_until(ex, lambda: fleet.dispatcher.replica.core.version == table.version
                          and not fleet.dispatcher.replica.core.stale, 12.0), \
            (fleet.dispatcher.replica.core.version, table.version)
        assert all(math.isfinite(c) for a in fleet.agents.values() for c in a.core.pose)
        # generous: other jobs may load the machine (a limit, not a measurement)
        assert spin_until(ex, lambda: all(fleet.final(t) for t in valid), 120.0), \
            {t: fleet.final(t) for t in valid}
        assert all(fleet.final(t).state == TaskStatus.DONE for t in valid), \
            {t: fleet.final(t) for t in valid}
        for tid in valid:   # a finished task cannot be cancelled
            resp = call(cancel_client, fleet.sign(CancelTask.Request(task_id=tid),
                                                  "fleet/cancel_task"))
            assert not resp.ok and "already ended" in resp.error, resp.error

        # nothing malformed got into the ledger; every node is still up and answering
        listed = call(list_client, ListTasks.Request(include_finished=True))
        assert sorted(t.id for t in listed.tasks) == sorted(valid)
        assert spin_until(ex, fleet.ready, 10.0), "a robot did not park again or was lost"
        assert set(refused) == {"id", "kind", "count", "station", "empty_station", "pose",
                                "deadline", "payload"}, refused

"""fleet_coord.auth: signing and verifying real fleet_coord_msgs messages (their real CDR
serialisation; no DDS needed): every way a message is refused, and that a valid one
counts exactly once."""
import math

import pytest

pytest.importorskip("rclpy", reason="rclpy is installed by `make setup`; run via `make test`")
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey  # noqa: E402
from fleet_coord_msgs.msg import (Auth, Proposal, ReservationSegment,  # noqa: E402
                                  ReservationSet, RobotState, SignedTwist, TaskStatus)
from fleet_coord_msgs.srv import Reserve  # noqa: E402

from fleet_coord.auth import (LinkSigner, Signer, UnsendableText, Verifier,  # noqa: E402
                              canonical, sendable_problem)
from fleet_coord.core.trust import Keyring, KeyRecord, Refusal, Role  # noqa: E402


class Clock:
    def __init__(self, t=1_000_000.0):
        self.t = t

    def __call__(self):
        return self.t


def identity(name, role, robots=()):
    key = Ed25519PrivateKey.generate()
    return key, KeyRecord(name, role, key.public_key().public_bytes_raw(), tuple(robots))


@pytest.fixture
def fleet():
    clock = Clock()
    keys, recs = {}, {}
    for name, role, robots in (("operator", Role.OPERATOR, ()), ("traffic", Role.TRAFFIC, ()),
                               ("dispatcher", Role.DISPATCHER, ()),
                               ("robot_1", Role.AGENT, ["robot_1"]),
                               ("robot_2", Role.AGENT, ["robot_2"])):
        keys[name], recs[name] = identity(name, role, robots)
    ring = Keyring(1, recs)
    signers = {n: Signer(n, k, clock=clock) for n, k in keys.items()}
    links = {"robot_1": b"\x01" * 32}
    logged = []
    verifier = Verifier(ring, started=clock.t - 10, clock=clock, link_key=links.get,
                        log=logged.append)
    return signers, verifier, clock, logged, keys, recs


def proposal(robot="robot_1"):
    return Proposal(task_id="t1", round=1, robot=robot, cost=12.5)


def test_a_signed_message_counts_once(fleet):
    signers, v, clock, logged, *_ = fleet
    msg = signers["robot_1"].sign(proposal(), "fleet/proposals")
    assert len(msg.auth.signature) == 64
    assert v.verify(msg, "fleet/proposals", subjects=[msg.robot]) is None
    # the same message again: a replay
    again = v.verify(msg, "fleet/proposals", subjects=[msg.robot])
    assert again.reason is Refusal.REPLAY and again.claimed == "robot_1"
    assert logged and "robot_1" in logged[-1] and "replayed" in logged[-1]


def test_unsigned_input_is_dropped_naming_the_claimed_sender(fleet):
    _, v, _, logged, *_ = fleet
    d = v.verify(proposal("robot_2"), "fleet/proposals", subjects=["robot_2"])
    assert d.reason is Refusal.UNSIGNED and d.claimed == "robot_2"
    assert "'robot_2'" in logged[-1] and "unsigned" in logged[-1]


def test_a_robot_key_cannot_speak_for_another_robot(fleet):
    signers, v, *_ = fleet
    forged = signers["robot_1"].sign(proposal("robot_2"), "fleet/proposals")
    assert v.verify(forged, "fleet/proposals", subjects=["robot_2"]).reason \
        is Refusal.WRONG_SUBJECT
    state = signers["robot_1"].sign(RobotState(robot="robot_2"), "fleet/robot_states")
    assert v.verify(state, "fleet/robot_states", subjects=["robot_2"], op="IDLE").reason \
        is Refusal.WRONG_SUBJECT


def test_a_robot_key_cannot_make_a_grant_or_a_task_done_for_the_dispatcher(fleet):
    signers, v, *_ = fleet
    table = signers["robot_1"].sign(ReservationSet(version=5), "traffic/updates")
    assert v.verify(table, "traffic/updates").reason is Refusal.NOT_ALLOWED
    done = signers["robot_1"].sign(TaskStatus(task_id="t", robot="robot_1", reporter="dispatcher",
                                              state=TaskStatus.CANCELLED), "fleet/task_status")
    assert v.verify(done, "fleet/task_status", subjects=["robot_1", "dispatcher"],
                    op="CANCELLED").reason is Refusal.WRONG_SUBJECT


def test_a_changed_field_breaks_the_signature(fleet):
    signers, v, *_ = fleet
    msg = signers["robot_1"].sign(proposal(), "fleet/proposals")
    msg.cost = 0.0
    assert v.verify(msg, "fleet/proposals", subjects=["robot_1"]).reason is Refusal.BAD_SIGNATURE


def test_precheck_refuses_all_but_a_bad_signature_and_remembers_nothing(fleet):
    signers, v, clock, *_ = fleet
    msg = signers["robot_1"].sign(proposal(), "fleet/proposals")
    assert v.precheck(msg, "fleet/proposals", subjects=["robot_1"]) is None
    assert v.precheck(proposal("robot_2"), "fleet/proposals", subjects=["robot_2"]).reason \
        is Refusal.UNSIGNED
    assert v.precheck(msg, "fleet/proposals", subjects=["robot_2"]).reason \
        is Refusal.WRONG_SUBJECT
    # a tampered cost passes the precheck: its signature is checked if it is used
    msg.cost = 0.0
    assert v.precheck(msg, "fleet/proposals", subjects=["robot_1"]) is None
    assert v.verify(msg, "fleet/proposals", subjects=["robot_1"]).reason \
        is Refusal.BAD_SIGNATURE
    # a precheck remembers nothing: the verify after it is not a replay
    ok = signers["robot_1"].sign(proposal(), "fleet/proposals")
    assert v.precheck(ok, "fleet/proposals", subjects=["robot_1"]) is None
    assert v.verify(ok, "fleet/proposals", subjects=["robot_1"]) is None
    clock.t += 100.0
    assert v.precheck(ok, "fleet/proposals", subjects=["robot_1"]).reason is Refusal.STALE


def test_a_message_moved_to_another_channel_breaks_the_signature(fleet):
    signers, v, *_ = fleet
    from fleet_coord_msgs.msg import RobotNotice
    lost = signers["traffic"].sign(RobotNotice(robot="robot_1"), "fleet/robot_lost")
    assert v.verify(lost, "fleet/robot_removed").reason is Refusal.BAD_SIGNATURE
    assert v.verify(lost, "fleet/robot_lost") is None


def test_unknown_signer_unknown_key_and_revoked_key(fleet):
    signers, v, clock, _, keys, recs = fleet
    ghost = Signer("ghost", Ed25519PrivateKey.generate(), clock=clock)
    assert v.verify(ghost.sign(proposal("ghost"), "fleet/proposals"), "fleet/proposals",
                    subjects=["ghost"]).reason is Refusal.UNKNOWN_SIGNER
    imposter = Signer("robot_1", Ed25519PrivateKey.generate(), clock=clock)
    assert v.verify(imposter.sign(proposal(), "fleet/proposals"), "fleet/proposals",
                    subjects=["robot_1"]).reason is Refusal.UNKNOWN_KEY
    # revocation reaches the verifier as a newer keyring
    assert v.update_keyring(v.keyring.without_identity("robot_1"))
    assert not v.update_keyring(v.keyring)                      # not newer: ignored
    assert v.verify(signers["robot_1"].sign(proposal(), "fleet/proposals"), "fleet/proposals",
                    subjects=["robot_1"]).reason is Refusal.REVOKED


def test_stale_and_future_messages(fleet):
    signers, v, clock, *_ = fleet
    msg = signers["robot_1"].sign(proposal(), "fleet/proposals")
    clock.t += 31.0
    assert v.verify(msg, "fleet/proposals", subjects=["robot_1"]).reason is Refusal.STALE
    clock.t -= 40.0
    fresh = signers["robot_1"].sign(proposal(), "fleet/proposals")
    clock.t -= 5.0
    assert v.verify(fresh, "fleet/proposals", subjects=["robot_1"]).reason is Refusal.FUTURE


def test_a_restarted_receiver_refuses_what_was_signed_before_it_started(fleet):
    signers, v, clock, _, _, recs = fleet
    captured = signers["robot_1"].sign(proposal(), "fleet/proposals")
    clock.t += 5.0
    restarted = Verifier(v.keyring, clock=clock)        # started now
    assert restarted.verify(captured, "fleet/proposals", subjects=["robot_1"]).reason \
        is Refusal.STALE


def test_a_latched_table_history_older_than_the_window_still_counts(fleet):
    signers, v, clock, *_ = fleet
    snap = signers["traffic"].sign(ReservationSet(version=3, is_snapshot=True), "traffic/updates")
    clock.t += 600.0
    assert v.verify(snap, "traffic/updates") is None


def test_a_response_is_bound_to_its_request(fleet):
    signers, v, *_ = fleet
    seg = ReservationSegment(robot="robot_1", resource=3, t_start=1.0, t_end=math.inf)
    req1 = signers["robot_1"].sign(Reserve.Request(robot="robot_1", segments=[seg]),
                                   "traffic/reserve")
    req2 = signers["robot_1"].sign(Reserve.Request(robot="robot_1", segments=[seg]),
                                   "traffic/reserve")
    assert v.verify(req1, "traffic/reserve", subjects=["robot_1"]) is None
    resp = signers["traffic"].sign(Reserve.Response(ok=True, version=9),
                                   "traffic/reserve#response", request=req1.auth)
    assert v.verify(resp, "traffic/reserve#response", request=req2.auth).reason \
        is Refusal.BAD_SIGNATURE                                 # not an answer to req2
    assert v.verify(resp, "traffic/reserve#response", request=req1.auth) is None
    # a rogue server's grant without the authority's key
    fake = signers["robot_2"].sign(Reserve.Response(ok=True), "traffic/reserve#response",
                                   request=req2.auth)
    assert v.verify(fake, "traffic/reserve#response", request=req2.auth).reason \
        is Refusal.NOT_ALLOWED


def test_a_string_dds_would_cut_is_refused_by_the_signer_naming_the_field(fleet):
    from fleet_coord_msgs.msg import Task
    from fleet_coord_msgs.srv import SubmitTask
    from rclpy.serialization import deserialize_message, serialize_message
    signers, v, *_ = fleet
    # what the premise is: rclpy hands strings to DDS as C strings (cut at the first NUL)
    req = SubmitTask.Request(task=Task(id="t1", kind="goto", stations=["2,5", "a\x00b"]))
    assert deserialize_message(serialize_message(req), SubmitTask.Request).task.stations \
        == ["2,5", "a"]
    # so a signature over the whole string could never verify: the signer refuses it
    with pytest.raises(UnsendableText) as e:
        signers["operator"].sign(req, "fleet/submit_task")
    text = str(e.value)
    assert e.value.path == "SubmitTask_Request.task.stations[1]", text
    assert "NUL" in text and "fleet/submit_task" in text and "'a'" in text, text
    assert not req.auth.signature and not req.auth.signer          # nothing half-signed
    assert sendable_problem(req).startswith("SubmitTask_Request.task.stations[1]: ")
    req.task.stations = ["2,5"]
    req.task.requester = "\ud800"                                  # no UTF-8 form at all
    assert "task.requester" in sendable_problem(req) and "Unicode" in sendable_problem(req)
    # other control characters cross DDS intact (the dispatcher's validation judges them)
    req.task.requester = "ctl\x01\x1b[31m"
    assert sendable_problem(req) is None
    signed = signers["operator"].sign(req, "fleet/submit_task")
    assert v.verify(deserialize_message(serialize_message(signed), SubmitTask.Request),
                    "fleet/submit_task") is None
    # a receiver given one in process (never over DDS) refuses it, it does not raise
    odd = signers["robot_1"].sign(proposal(), "fleet/proposals")
    odd.task_id = "t\x001"
    assert v.verify(odd, "fleet/proposals", subjects=["robot_1"]).reason \
        is Refusal.BAD_SIGNATURE


def test_link_messages_use_the_robots_link_key(fleet):
    _, v, clock, *_ = fleet
    good = LinkSigner("robot_1", b"\x01" * 32, clock=clock)
    cmd = good.sign(SignedTwist(), "robot_1/cmd_vel_signed")
    assert len(cmd.auth.signature) == 32
    assert v.verify_link(cmd, "robot_1", "robot_1/cmd_vel_signed") is None
    assert v.verify_link(cmd, "robot_1", "robot_1/cmd_vel_signed").reason is Refusal.REPLAY
    wrong = LinkSigner("robot_1", b"\x02" * 32, clock=clock).sign(SignedTwist(),
                                                                   "robot_1/cmd_vel_signed")
    assert v.verify_link(wrong, "robot_1", "robot_1/cmd_vel_signed").reason \
        is Refusal.UNKNOWN_KEY
    other = good.sign(SignedTwist(), "robot_1/cmd_vel_signed")
    assert v.verify_link(other, "robot_2", "robot_2/cmd_vel_signed").reason \
        is Refusal.WRONG_SUBJECT
    tampered = good.sign(SignedTwist(), "robot_1/cmd_vel_signed")
    tampered.twist.linear.x = 5.0
    assert v.verify_link(tampered, "robot_1", "robot_1/cmd_vel_signed").reason \
        is Refusal.BAD_SIGNATURE
    # a revoked robot has no link either
    v.update_keyring(v.keyring.without_identity("robot_1"))
    late = good.sign(SignedTwist(), "robot_1/cmd_vel_signed")
    assert v.verify_link(late, "robot_1", "robot_1/cmd_vel_signed").reason \
        is Refusal.UNKNOWN_SIGNER


def test_a_link_message_taken_raw_reads_as_its_envelope(fleet):
    """A link message taken raw (auth.unpack_link: rclpy reads the body, the Auth is read
    after it) gives what rclpy's reading of the whole envelope gives, for every alignment
    the body's strings leave; it counts once; a changed byte of the body or of the Auth
    breaks it; bytes that do not read are dropped, not raised into the subscriber."""
    import struct

    from fleet_coord_msgs.msg import SignedOdometry
    from nav_msgs.msg import Odometry
    from rclpy.serialization import deserialize_message, serialize_message

    from fleet_coord.auth import _encoder, unpack_link
    _, v, clock, *_ = fleet
    link = LinkSigner("robot_1", b"\x01" * 32, clock=clock)
    channel = "robot_1/odom_signed"

    def same(a, b):
        x: list[bytes] = []
        y: list[bytes] = []
        _encoder(type(a))(a, x)
        _encoder(type(b))(b, y)
        return x == y
    for n in range(10):   # frame ids of every length mod 8: every padding before the doubles
        odom = Odometry(child_frame_id="b" * n)
        odom.header.frame_id = "robot_1/odom"[:n]
        odom.pose.pose.position.x = 0.25 + n
        odom.twist.covariance[3] = -1.5
        env = link.sign(SignedOdometry(odom=odom), channel)
        data = serialize_message(env)
        whole = deserialize_message(data, SignedOdometry)
        body, auth = unpack_link(data, SignedOdometry)
        assert same(body, whole.odom) and same(body, odom)
        a = whole.auth
        assert auth == (a.signer, a.key_id, a.session, a.counter, a.wall_stamp.sec,
                        a.wall_stamp.nanosec, bytes(a.signature))
        got, dropped = v.verify_link_raw(data, SignedOdometry, "robot_1", channel)
        assert dropped is None and same(got, odom)
        assert v.verify_link_raw(data, SignedOdometry, "robot_1", channel)[1].reason \
            is Refusal.REPLAY
    cmd = SignedTwist()
    cmd.twist.linear.x, cmd.twist.angular.z = 0.5, -0.25
    data = serialize_message(link.sign(cmd, "robot_1/cmd_vel_signed"))
    twist, dropped = v.verify_link_raw(data, SignedTwist, "robot_1", "robot_1/cmd_vel_signed")
    assert dropped is None and (twist.linear.x, twist.angular.z) == (0.5, -0.25)
    # one changed byte: of the body (position.x), of the Auth (its counter)
    env = link.sign(SignedOdometry(odom=odom), channel)
    data = serialize_message(env)
    for old, new in ((struct.pack("<d", 9.25), struct.pack("<d", 9.5)),
                     (struct.pack("<Q", env.auth.counter), struct.pack("<Q", 1))):
        assert data.count(old) == 1
        got, dropped = v.verify_link_raw(data.replace(old, new), SignedOdometry, "robot_1",
                                         channel)
        assert dropped.reason is Refusal.BAD_SIGNATURE
    assert v.verify_link_raw(data, SignedOdometry, "robot_1", channel)[1] is None
    # cut short, or not CDR at all: dropped as malformed
    for bad in (data[:40], data[:-40], b"\x00\x01\x00\x00" + b"\xff" * 64):
        got, dropped = v.verify_link_raw(bad, SignedOdometry, "robot_1", channel)
        assert got is None and dropped.reason is Refusal.MALFORMED, bad


def test_a_link_message_serialised_raw_is_the_envelope_with_its_mac(fleet):
    """LinkSigner.sign_raw (the driver's odometry, the agent's commands: the envelope is
    never built) gives the bytes of the envelope `sign` would make, for every padding the
    body leaves before the Auth: rclpy reads them as the envelope and both checks take it."""
    from fleet_coord_msgs.msg import SignedOdometry
    from geometry_msgs.msg import Twist
    from nav_msgs.msg import Odometry
    from rclpy.serialization import deserialize_message

    from fleet_coord.auth import _encoder
    _, v, clock, *_ = fleet
    link = LinkSigner("robot_1", b"\x01" * 32, clock=clock)
    channel = "robot_1/odom_signed"
    for n in range(10):
        odom = Odometry(child_frame_id="c" * n)
        odom.header.frame_id = "f" * (9 - n)
        odom.pose.pose.position.y = -2.5 * n
        for raw in (True, False):
            data = link.sign_raw(odom, SignedOdometry, channel)
            msg = deserialize_message(data, SignedOdometry)
            x: list[bytes] = []
            y: list[bytes] = []
            _encoder(Odometry)(msg.odom, x)
            _encoder(Odometry)(odom, y)
            assert x == y and msg.auth.signer == "robot_1" and len(msg.auth.signature) == 32
            dropped = v.verify_link_raw(data, SignedOdometry, "robot_1", channel)[1] if raw \
                else v.verify_link(msg, "robot_1", channel)
            assert dropped is None
    twist = Twist()
    twist.angular.z = 0.75
    data = link.sign_raw(twist, SignedTwist, "robot_1/cmd_vel_signed")
    msg = deserialize_message(data, SignedTwist)
    assert msg.twist.angular.z == 0.75
    assert v.verify_link(msg, "robot_1", "robot_1/cmd_vel_signed") is None
    odom = Odometry(child_frame_id="base\x00link")
    with pytest.raises(UnsendableText, match=r"SignedOdometry\.odom\.child_frame_id: contains a NUL"):
        link.sign_raw(odom, SignedOdometry, channel)


def test_canonical_form_ignores_the_auth_field_and_restores_it(fleet):
    signers, *_ = fleet
    msg = signers["robot_1"].sign(proposal(), "fleet/proposals")
    a = canonical(msg, "fleet/proposals", msg.auth)
    assert len(msg.auth.signature) == 64                       # restored
    other = Proposal(task_id="t1", round=1, robot="robot_1", cost=12.5, auth=Auth())
    assert canonical(other, "fleet/proposals", msg.auth) == a


def test_canonical_form_packs_number_arrays_little_endian():
    import struct

    from fleet_coord_msgs.msg import KeyEntry, SignedOdometry
    from nav_msgs.msg import Odometry
    odom = Odometry()
    odom.pose.covariance[:] = [i * 0.5 - 3.0 for i in range(36)]   # a numpy array
    odom.twist.covariance[7] = math.nan
    form = canonical(SignedOdometry(odom=odom), "a/odom_signed", Auth())
    assert struct.pack("<I36d", 36, *[i * 0.5 - 3.0 for i in range(36)]) in form
    assert struct.pack("<I7dd", 36, *[0.0] * 7, math.nan) in form
    key = KeyEntry(identity="k", public_key=bytes(range(32)))    # an array.array('B')
    assert struct.pack("<I32B", 32, *range(32)) in canonical(key, "x", Auth())


def _filled(cls, rng):
    """An instance of `cls` with random values in every field (sequences of 0-2)."""
    import numpy as np

    from fleet_coord.auth import _PRIM, _type_class
    msg = cls()
    for name, t in cls.get_fields_and_field_types().items():
        seq = t.startswith("sequence<") or t.endswith("]")
        inner = (t[len("sequence<"):-1] if t.startswith("sequence<") else t[:t.rindex("[")]) \
            if seq else t
        n = int(t[t.rindex("[") + 1:-1]) if t.endswith("]") else rng.randint(0, 2)

        def one(inner=inner):
            f = _PRIM.get(inner)
            if f in ("f", "d"):
                return rng.uniform(-1e3, 1e3)
            if f == "?":
                return rng.random() < 0.5
            if f is not None:
                return rng.randint(0, 100)
            if inner.startswith("string"):
                return rng.choice(["", "a", "robot_3", "tâche-ü"])
            return _filled(_type_class(inner), rng)
        value = [one() for _ in range(n)] if seq else one()
        if seq and t.endswith("]"):
            value = np.array(value, dtype=getattr(msg, name).dtype)
        setattr(msg, name, value)
    return msg


def test_canonical_form_is_the_field_by_field_encoding_for_every_message_type():
    import importlib
    import random
    import struct

    from fleet_coord.auth import _PRIM, _encoder

    def reference(msg, out):   # the definition (auth's module docstring), field by field
        for name, t in type(msg).get_fields_and_field_types().items():
            v = getattr(msg, name)
            seq = t.startswith("sequence<") or t.endswith("]")
            inner = (t[len("sequence<"):-1] if t.startswith("sequence<")
                     else t[:t.rindex("[")]) if seq else t
            if seq:
                out.append(struct.pack("<I", len(v)))
            for item in (v if seq else [v]):
                if inner in _PRIM:
                    out.append(struct.pack("<" + _PRIM[inner], item))
                elif inner.startswith("string"):
                    out.append(struct.pack("<I", len(item.encode())) + item.encode())
                else:
                    reference(item, out)
        return out

    rng = random.Random(3)
    types = []
    for module in ("fleet_coord_msgs.msg", "fleet_coord_msgs.srv"):
        mod = importlib.import_module(module)
        for name in dir(mod):
            cls = getattr(mod, name)
            # a service: its request and response (what is signed), not its event type
            for c in (cls, getattr(cls, "Request", None), getattr(cls, "Response", None)):
                if hasattr(c, "get_fields_and_field_types") and \
                        not c.__name__.endswith("_Event"):
                    types.append(c)
    from geometry_msgs.msg import Twist
    from nav_msgs.msg import Odometry
    types += [Odometry, Twist]
    assert len(types) > 30
    for cls in types:
        for _ in range(3):
            msg = _filled(cls, rng)
            got: list[bytes] = []
            _encoder(cls)(msg, got)
            assert b"".join(got) == b"".join(reference(msg, [])), cls.__name__


def test_drop_log_is_rate_limited(fleet):
    _, v, clock, logged, *_ = fleet
    for _ in range(100):
        v.verify(proposal("robot_2"), "fleet/proposals", subjects=["robot_2"])
    assert len(logged) == 1 and v.dropped[Refusal.UNSIGNED] == 100
    clock.t += 6.0
    v.verify(proposal("robot_2"), "fleet/proposals", subjects=["robot_2"])
    assert len(logged) == 2 and "+99 more" in logged[-1]

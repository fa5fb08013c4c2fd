"""fleet_coord.node_auth: a real rclpy node's signing and checking under each auth_mode
(no traffic needed: messages are handed over in-process)."""
import pytest

rclpy = pytest.importorskip("rclpy", reason="rclpy is installed by `make setup`; run via `make test`")
from fleet_coord_msgs.msg import Proposal, SignedTwist  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from rclpy.serialization import serialize_message  # noqa: E402

from fleet_coord.fleet_config import load_fleet_config  # noqa: E402
from fleet_coord.keys import KeyDir, KeyFileError, fleet_identities  # noqa: E402
from fleet_coord.node_auth import NodeAuth  # noqa: E402
from test_auth_launch import CONFIG  # noqa: E402


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    p = tmp_path_factory.mktemp("na") / "fleet_n.yaml"
    p.write_text(CONFIG % "")
    cfg = load_fleet_config(str(p))
    KeyDir(cfg.auth.keys).init(fleet_identities(cfg))
    return cfg.auth.keys


@pytest.fixture
def make_node():
    ctx = rclpy.Context()
    rclpy.init(context=ctx)
    nodes = []

    def make(name, **params):
        node = rclpy.create_node(name, context=ctx, parameter_overrides=[
            Parameter(k, value=v) for k, v in params.items()])
        nodes.append(node)
        return node
    yield make
    for n in nodes:
        n.destroy_node()
    rclpy.shutdown(context=ctx)


def test_off_signs_nothing_and_accepts_everything(make_node):
    auth = NodeAuth(make_node("n_off"), identities=["r1"])
    msg = auth.sign(Proposal(robot="r2"), "fleet/proposals")
    assert msg.auth.signer == "" and auth.check(msg, "fleet/proposals", subjects=["r2"])


def test_enforce_takes_its_peers_signed_messages_and_drops_forgeries(make_node, keys):
    agent = NodeAuth(make_node("n_r1", auth_mode="enforce", auth_keys=keys),
                     identities=["r1"], links=["r1"])
    dispatcher = NodeAuth(make_node("n_disp", auth_mode="enforce", auth_keys=keys),
                          identities=["dispatcher"])
    bid = agent.sign(Proposal(robot="r1", cost=2.0), "fleet/proposals")
    assert dispatcher.check(bid, "fleet/proposals", subjects=["r1"])
    forged = agent.sign(Proposal(robot="r2", cost=0.0), "fleet/proposals")
    assert not dispatcher.check(forged, "fleet/proposals", subjects=["r2"])
    assert not dispatcher.check(Proposal(robot="r2"), "fleet/proposals", subjects=["r2"])
    # the link: the agent's HMAC for its robot, checked by a world that looks the key up
    world = NodeAuth(make_node("n_world", auth_mode="enforce", auth_keys=keys),
                     identities=["ideal_driver"])
    cmd = agent.link_sign(SignedTwist(), "r1", "r1/cmd_vel_signed")
    assert world.check_link(cmd, "r1", "r1/cmd_vel_signed")
    assert not world.check_link(SignedTwist(), "r1", "r1/cmd_vel_signed")
    # ... as the nodes send and take it: raw bytes
    twist = SignedTwist().twist
    twist.linear.x = 0.5
    data = agent.link_sign_raw(twist, SignedTwist, "r1", "r1/cmd_vel_signed")
    assert world.take_link(data, SignedTwist, "r1", "r1/cmd_vel_signed").linear.x == 0.5
    assert world.take_link(data, SignedTwist, "r1", "r1/cmd_vel_signed") is None   # replayed
    assert world.take_link(data[:30], SignedTwist, "r1", "r1/cmd_vel_signed") is None


def test_permissive_checks_and_logs_but_drops_nothing(make_node, keys):
    auth = NodeAuth(make_node("n_perm", auth_mode="permissive", auth_keys=keys),
                    identities=["dispatcher"])
    assert auth.check(Proposal(robot="r2"), "fleet/proposals", subjects=["r2"])
    assert sum(auth.verifier.dropped.values()) == 1
    # a link message taken raw: used though unsigned; what does not read reaches nobody
    unsigned = serialize_message(SignedTwist())
    assert auth.take_link(unsigned, SignedTwist, "r1", "r1/cmd_vel_signed") is not None
    assert auth.take_link(unsigned[:30], SignedTwist, "r1", "r1/cmd_vel_signed") is None
    assert sum(auth.verifier.dropped.values()) == 3


def test_bad_settings_are_named(make_node, keys, tmp_path):
    with pytest.raises(ValueError, match="auth_mode: expected one of off, permissive, enforce"):
        NodeAuth(make_node("n_bad", auth_mode="strict"))
    with pytest.raises(KeyFileError, match="no key directory is set"):
        NodeAuth(make_node("n_nokeys", auth_mode="enforce"))
    with pytest.raises(KeyFileError, match="nowhere: key directory not found"):
        NodeAuth(make_node("n_nodir", auth_mode="enforce", auth_keys=str(tmp_path / "nowhere")))
    with pytest.raises(KeyFileError, match="ghost.key: private key of 'ghost' not found"):
        NodeAuth(make_node("n_ghost", auth_mode="enforce", auth_keys=keys), identities=["ghost"])


def test_an_agents_process_checks_only_the_awards_and_rejections_of_its_robots(make_node, keys):
    """FleetIO: an award or rejection naming a robot none of its agents is reaches no agent
    and costs no signature check; one naming its robot is checked (a forgery dropped)."""
    from fleet_coord_msgs.msg import Award, Rejection

    from fleet_coord.fleet_io import FleetIO
    host = make_node("n_agents", auth_mode="enforce", auth_keys=keys)
    io = FleetIO(host)
    heard = []

    class Stub:
        robot = "r1"
        replica = None

        def _on_award(self, m):
            heard.append(("award", m.robot))

        def _on_rejection(self, m):
            heard.append(("rejection", m.robot))
    io.add(Stub(), 10.0, 10.0)
    dispatcher = NodeAuth(make_node("n_disp2", auth_mode="enforce", auth_keys=keys),
                          identities=["dispatcher"])
    take = {s.topic_name.rsplit("/", 1)[-1]: s.callback for s in host.subscriptions}
    dropped = io.auth.verifier.dropped
    for kind, cls in (("award", Award), ("rejection", Rejection)):
        channel = f"fleet/{kind}s"
        take[f"{kind}s"](dispatcher.sign(cls(task_id="t", round=1, robot="r1"), channel))
        take[f"{kind}s"](dispatcher.sign(cls(task_id="t", round=1, robot="r2"), channel))
        take[f"{kind}s"](cls(task_id="t", round=1, robot="r2"))   # unsigned, not ours
        assert sum(dropped.values()) == 0
        take[f"{kind}s"](cls(task_id="t", round=2, robot="r1"))   # unsigned, ours
        assert sum(dropped.values()) == 1
        dropped.clear()
    assert heard == [("award", "r1"), ("rejection", "r1")]


def test_an_exact_copy_of_a_robots_last_state_counts_unchecked_for_a_second_only(
        make_node, keys, monkeypatch):
    """A parked robot's agent sends its last signed state again between signatures
    (core/pacing.py): the copy counts without a second signature check, within
    REPEAT_WINDOW_S of the original; a later one is not taken, an older state is a
    replay, and anything changed in a copy is checked (and refused)."""
    import copy

    from fleet_coord import node_auth
    from fleet_coord_msgs.msg import RobotState
    agent = NodeAuth(make_node("n_rep_r1", auth_mode="enforce", auth_keys=keys),
                     identities=["r1"])
    traffic = NodeAuth(make_node("n_rep_t", auth_mode="enforce", auth_keys=keys),
                       identities=["traffic"])
    checks = []
    verify = traffic.verifier.verify
    monkeypatch.setattr(traffic.verifier, "verify",
                        lambda *a, **k: checks.append(a[1]) or verify(*a, **k))
    clock = [1000.0]
    monkeypatch.setattr(node_auth.time, "monotonic", lambda: clock[0])
    state = agent.sign(RobotState(robot="r1", task_id=""), "fleet/robot_states")
    assert traffic.check_state(state) and len(checks) == 1
    for dt in (0.1, 0.5, 0.9):          # its copies: taken, not checked again
        clock[0] = 1000.0 + dt
        assert traffic.check_state(copy.deepcopy(state))
    assert len(checks) == 1
    forged = copy.deepcopy(state)       # the same auth on another content
    forged.task_id = "t9"
    assert not traffic.check_state(forged) and len(checks) == 2
    clock[0] = 1001.2                   # past the window: not taken (a late copy or a
    assert not traffic.check_state(copy.deepcopy(state)) and len(checks) == 2   # replay)
    fresh = agent.sign(RobotState(robot="r1"), "fleet/robot_states")
    assert traffic.check_state(fresh) and len(checks) == 3
    assert not traffic.check_state(copy.deepcopy(state)) and len(checks) == 4   # replayed

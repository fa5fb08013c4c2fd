"""The VDA 5050 master control in an authenticated fleet (docs/security.md): it is robot
N's driver (`bridge_<robot>`). Only robot N's agent hands it a path (a forged, unsigned,
tampered, replayed or older path, one of another robot's agent or of the driver itself
is refused, naming the claimed sender), only the authority's table releases orders, only
N's driver's status counts at the agent, and an e-stop release needs an operator.
Real rclpy nodes; the plan checks are called directly, the agent's end over DDS. No
broker: nothing here reaches MQTT."""
from __future__ import annotations

import time

import pytest

rclpy = pytest.importorskip("rclpy", reason="rclpy is installed by `make setup`")
pytest.importorskip("fleet_coord_msgs.msg", reason="fleet_coord_msgs is built by `make setup`")
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey  # noqa: E402
from diagnostic_msgs.msg import DiagnosticStatus  # noqa: E402
from fleet_coord_msgs.msg import ReservationSet, SignedDiagnosticStatus, SignedPath  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from std_srvs.srv import SetBool  # noqa: E402

from fleet_coord import qos  # noqa: E402
from fleet_coord.auth import Signer  # noqa: E402
from fleet_coord.convert import segment_msg, timed_path_msg, to_time  # noqa: E402
from fleet_coord.core.trust import Refusal  # noqa: E402
from fleet_coord.fleet_config import load_fleet_config, load_roadmap_and_exclusion  # noqa: E402
from fleet_coord.keys import KeyDir, fleet_identities  # noqa: E402
from fleet_coord.node_auth import NodeAuth  # noqa: E402
from fleet_coord.robot_link import FollowerAgentLink  # noqa: E402
from fleet_coord.vda5050.master import Vda5050Master  # noqa: E402
from rosutil import ros_context, spin_until  # noqa: E402

CONFIG = """fleet: {map: warehouse.map, discovery_range: LOCALHOST}
robots:
  - {name: v1, start: [2, 18], backend: vda5050, manufacturer: acme, broker: '127.0.0.1:9'}
  - {name: r2, start: [6, 18], backend: vda5050, manufacturer: acme, broker: '127.0.0.1:9'}
auth: {mode: enforce}
"""


def test_only_robot_ns_agent_moves_its_vehicle(tmp_path):
    p = tmp_path / "fleet_v.yaml"
    p.write_text(CONFIG)
    cfg = load_fleet_config(str(p))
    kd = KeyDir(cfg.auth.keys)
    kd.init(fleet_identities(cfg))
    signer = {n: Signer(n, kd.private_key(n))
              for n in ("v1", "r2", "bridge_v1", "bridge_r2", "traffic")}
    roadmap, _, rid = load_roadmap_and_exclusion("", 0.15)
    a, b, c = roadmap.vertex_at(1, 1), roadmap.vertex_at(2, 1), roadmap.vertex_at(3, 1)
    auth = [Parameter("auth_mode", value="enforce"), Parameter("auth_keys", value=kd.path)]

    def plan(*vertices, by="v1"):
        now = time.time()
        path = timed_path_msg(roadmap, [(v, now + 2.0 * k) for k, v in enumerate(vertices)],
                              to_time(now))
        msg = SignedPath(path=path)
        return signer[by].sign(msg, "v1/plan_signed") if by else msg

    with ros_context() as (ctx, ex):
        master = Vda5050Master(context=ctx, namespace="v1", parameter_overrides=[
            Parameter("manufacturer", value="acme"), Parameter("broker", value="127.0.0.1:9"),
            *auth])
        dropped = master.auth.verifier.dropped
        taken = master.link.on_signed_plan

        # refused: unsigned, another robot's agent, the driver itself, a key not in the
        # keyring, a path changed after signing
        assert not taken(plan(a, b, by=""))
        assert not taken(plan(a, b, by="r2"))
        assert not taken(plan(a, b, by="bridge_v1"))
        rogue = Signer("v1", Ed25519PrivateKey.generate())
        assert not taken(rogue.sign(SignedPath(path=plan(a, b, by="").path), "v1/plan_signed"))
        tampered = plan(a, b)
        tampered.path.poses[1].pose.position.x += 1.0
        assert not taken(tampered)
        assert master.book.pending_route is None
        assert {r: dropped.get(r, 0) for r in (Refusal.UNSIGNED, Refusal.WRONG_SUBJECT,
                                               Refusal.NOT_ALLOWED, Refusal.UNKNOWN_KEY,
                                               Refusal.BAD_SIGNATURE)} == {
            Refusal.UNSIGNED: 1, Refusal.WRONG_SUBJECT: 1, Refusal.NOT_ALLOWED: 1,
            Refusal.UNKNOWN_KEY: 1, Refusal.BAD_SIGNATURE: 1}
        # robot v1's agent: taken; the same message again (a replay) and an older path
        # signed before it (delayed or replayed) are not
        older, newer = plan(a, b, c), plan(a, b)
        assert taken(newer) and master.book.pending_route is not None
        assert not taken(newer) and dropped[Refusal.REPLAY] == 1
        assert not taken(older)
        assert master.book._plan_vertices == [a, b]

        # the table: only the authority's updates count
        def update(version, by):
            msg = ReservationSet(version=version, robot="v1", roadmap_id=rid, is_snapshot=True,
                                 added=[segment_msg("v1", 0, 0.0, 1e9)])
            return signer[by].sign(msg, "traffic/updates") if by else msg
        master._on_update(update(5, ""))
        master._on_update(update(5, "v1"))
        assert master.replica.version != 5
        master._on_update(update(5, "traffic"))
        assert master.replica.version == 5

        # over DDS: the agent's end signs the path and takes only v1's driver's status
        agent_node = rclpy.create_node("v1_agent", context=ctx, parameter_overrides=auth)
        agent_auth = NodeAuth(agent_node, identities=["v1"])
        statuses = []
        agent = FollowerAgentLink(agent_node, agent_auth, "v1", statuses.append)
        rogue_node = rclpy.create_node("rogue", context=ctx)
        forged = {}   # one publisher per forgery: the topic keeps only the last message
        estop = rogue_node.create_client(SetBool, "/v1/estop")
        for n in (master, agent_node, rogue_node):
            ex.add_node(n)
        assert spin_until(ex, lambda: statuses, 20), "no signed status from the master"
        assert statuses[-1].name == "v1/vda5050"
        master.book.reset()
        agent.publish_plan(plan(a, b, c, by="").path)
        assert spin_until(ex, lambda: master.book.pending_route is not None, 20), \
            "the agent's signed path did not reach the master"
        heard = len(statuses)
        agent_dropped = agent_auth.verifier.dropped
        for by in ("", "bridge_r2", "v1"):   # unsigned, another robot's driver, the agent
            status = SignedDiagnosticStatus(status=DiagnosticStatus(
                level=DiagnosticStatus.OK, name="forged", message="available"))
            if by:
                signer[by].sign(status, "v1/vehicle_signed")
            pub = rogue_node.create_publisher(SignedDiagnosticStatus, "/v1/vehicle_signed",
                                              qos.PLAN)
            forged[by] = pub
            want = sum(agent_dropped.values()) + 1
            pub.publish(status)
            assert spin_until(ex, lambda w=want: sum(agent_dropped.values()) >= w, 20), \
                f"the forged status ({by or 'unsigned'}) was not refused"
        assert [agent_dropped.get(r, 0) for r in (Refusal.UNSIGNED, Refusal.WRONG_SUBJECT,
                                                   Refusal.NOT_ALLOWED)] == [1, 1, 1]
        assert all(s.name != "forged" for s in statuses[heard:])
        # the plain e-stop engages, never releases (set_estop: an operator's signature)
        assert spin_until(ex, estop.service_is_ready, 20)
        fut = estop.call_async(SetBool.Request(data=False))
        assert spin_until(ex, fut.done, 20)
        assert not fut.result().success and "operator" in fut.result().message

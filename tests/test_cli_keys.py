"""`fleet-coord keys`: provisioning from a config, errors that name the file, and a
revocation that reaches a running node as an operator-signed keyring over real DDS."""
import os
import threading

import pytest

from fleet_coord.cli import main
from fleet_coord.keys import KeyDir

from test_auth_launch import CONFIG  # noqa: E402  (one small authenticated fleet)


@pytest.fixture
def config(tmp_path):
    p = tmp_path / "fleet_t.yaml"
    p.write_text(CONFIG % "")
    return str(p)


def test_init_list_and_refusing_to_overwrite(config, tmp_path, capsys):
    assert main(["keys", "init", config]) == 0
    kd = KeyDir(str(tmp_path / "fleet_t.keys"))
    assert set(kd.keyring().keys) == {"operator", "traffic", "dispatcher", "fleet_monitor",
                                      "ideal_driver", "r1", "r2", "r3"}
    assert main(["keys", "list", config]) == 0
    assert "ideal_driver" in capsys.readouterr().out
    assert main(["keys", "init", config]) == 2
    assert "fleet_t.keys: a key directory is already there" in capsys.readouterr().err


def test_errors_name_the_file(config, tmp_path, capsys):
    assert main(["keys", "list", config]) == 2
    assert "fleet_t.keys: key directory not found" in capsys.readouterr().err
    main(["keys", "init", config])
    assert main(["keys", "revoke", config, "ghost", "--no-publish"]) == 2
    err = capsys.readouterr().err
    assert "keyring.yaml: no identity 'ghost'" in err and "r1" in err


def test_add_rotate_revoke_change_the_keyring(config, tmp_path):
    main(["keys", "init", config])
    kd = KeyDir(str(tmp_path / "fleet_t.keys"))
    assert main(["keys", "add", config, "r4", "--no-publish"]) == 0
    assert kd.keyring().keys["r4"].robots == ("r4",) and kd.link_key("r4")
    assert main(["keys", "add", config, "web_operator", "--role", "operator",
                 "--no-publish"]) == 0
    old = kd.keyring().keys["r1"].key_id
    assert main(["keys", "rotate", config, "r1", "--no-publish"]) == 0
    assert old in kd.keyring().revoked
    assert main(["keys", "revoke", config, "r2", "--no-publish"]) == 0
    assert "r2" not in kd.keyring().keys and not os.path.exists(kd.key_path("r2"))


def test_a_revocation_reaches_a_running_node_signed_by_the_operator(config, tmp_path):
    rclpy = pytest.importorskip("rclpy", reason="rclpy is installed by `make setup`")
    from fleet_coord_msgs.msg import Keyring as KeyringMsg
    from rosutil import ros_context, spin_until

    from fleet_coord import qos
    from fleet_coord.auth import Verifier
    from fleet_coord.convert import keyring_from_msg

    main(["keys", "init", config])
    kd = KeyDir(str(tmp_path / "fleet_t.keys"))
    verifier = Verifier(kd.keyring())
    got = []
    with ros_context() as (ctx, ex):
        node = rclpy.create_node("keyring_listener", context=ctx)
        ex.add_node(node)
        node.create_subscription(KeyringMsg, "/fleet/keyring", got.append, qos.KEYRING)
        rc = []
        cli = threading.Thread(target=lambda: rc.append(
            main(["keys", "revoke", config, "r2", "--timeout", "10"])))
        cli.start()
        try:
            assert spin_until(ex, lambda: got, 15.0), "no keyring received"
        finally:
            while cli.is_alive():
                ex.spin_once(timeout_sec=0.05)
            cli.join()
    assert rc == [0]
    msg = got[0]
    assert msg.auth.signer == "operator" and "revoked r2" in msg.reason
    assert verifier.verify(msg, "fleet/keyring") is None
    # which robots a world drives is not on the wire: a node keeps its local keyring's
    received = keyring_from_msg(msg, {n: r.robots for n, r in verifier.keyring.keys.items()})
    assert received == kd.keyring()
    assert verifier.update_keyring(received)
    assert "r2" not in verifier.keyring.keys


def _serve_and_run(argv, answer):
    """Run `fleet-coord argv` in a thread against a /fleet/remove_robot server in this
    process whose handler is answer(request) -> response."""
    from fleet_coord_msgs.srv import RemoveRobot
    from rosutil import ros_context

    seen, rc = [], []
    with ros_context() as (ctx, ex):
        node = rclpy_mod().create_node("fake_authority", context=ctx)
        ex.add_node(node)
        node.create_service(RemoveRobot, "/fleet/remove_robot",
                            lambda req, resp: (seen.append(req), answer(req))[1])
        cli = threading.Thread(target=lambda: rc.append(main(argv)))
        cli.start()
        while cli.is_alive():
            ex.spin_once(timeout_sec=0.05)
        cli.join()
    return rc[0], seen


def rclpy_mod():
    return pytest.importorskip("rclpy", reason="rclpy is installed by `make setup`")


def test_cli_signs_as_the_operator_and_takes_only_the_authoritys_answer(config, tmp_path,
                                                                          capsys):
    rclpy_mod()
    from fleet_coord_msgs.srv import RemoveRobot

    from fleet_coord.auth import Signer, Verifier
    main(["keys", "init", config])
    kd = KeyDir(str(tmp_path / "fleet_t.keys"))
    verifier = Verifier(kd.keyring())
    traffic = Signer("traffic", kd.private_key("traffic"))
    robot = Signer("r1", kd.private_key("r1"))

    def authority(req):
        resp = RemoveRobot.Response(ok=verifier.verify(req, "fleet/remove_robot") is None)
        return traffic.sign(resp, "fleet/remove_robot#response", request=req.auth)
    argv = ["remove-robot", "r2", "--keys", kd.path, "--timeout", "10"]
    rc, seen = _serve_and_run(argv, authority)
    assert rc == 0 and seen[-1].auth.signer == "operator"
    assert "removed r2" in capsys.readouterr().out
    # a rogue server answering in its own name (a robot's key) or unsigned: not believed
    for rogue in (lambda req: robot.sign(RemoveRobot.Response(ok=True),
                                         "fleet/remove_robot#response", request=req.auth),
                  lambda req: RemoveRobot.Response(ok=True)):
        rc, _ = _serve_and_run(argv, rogue)
        assert rc == 2
        assert "the answer on /fleet/remove_robot does not count" in capsys.readouterr().err

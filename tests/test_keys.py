"""fleet_coord.keys: a fleet's identities provisioned from its config into a key directory;
rotation, revocation, a robot added; every bad key file is an error naming the file."""
import os
import stat

import pytest

from fleet_coord.core.trust import Refusal, Role
from fleet_coord.fleet_config import default_key_dir, load_fleet_config
from fleet_coord.keys import (KeyDir, KeyFileError, fleet_identities, keyring_from_yaml,
                              robot_identities)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEMO = os.path.join(REPO, "config", "fleet_demo.yaml")
HARDWARE = os.path.join(REPO, "config", "fleet_hardware.yaml")


@pytest.fixture(scope="module")
def demo_cfg():
    return load_fleet_config(DEMO)


@pytest.fixture
def keydir(tmp_path, demo_cfg):
    kd = KeyDir(str(tmp_path / "fleet_demo.keys"))
    kd.init(fleet_identities(demo_cfg))
    return kd


def test_identities_of_a_config_cover_every_node_and_robot(demo_cfg):
    names = {s.name: s for s in fleet_identities(demo_cfg)}
    assert {"operator", "traffic", "dispatcher", "fleet_monitor", "ideal_driver"} <= set(names)
    for r in demo_cfg.robots:
        assert names[r.name].role is Role.AGENT and names[r.name].robots == (r.name,)
    hw = {s.name: s for s in fleet_identities(load_fleet_config(HARDWARE))}
    serial = [r.name for r in load_fleet_config(HARDWARE).robots if r.backend == "serial"]
    assert serial and all(hw[f"bridge_{r}"].role is Role.DRIVER for r in serial)


def test_init_writes_a_keyring_and_owner_only_private_keys(keydir, demo_cfg):
    kr = keydir.keyring()
    assert kr.serial == 1 and set(kr.keys) == {s.name for s in fleet_identities(demo_cfg)}
    assert stat.S_IMODE(os.stat(keydir.path).st_mode) == 0o700
    for name in kr.keys:
        assert stat.S_IMODE(os.stat(keydir.key_path(name)).st_mode) == 0o600
        key = keydir.private_key(name)
        assert key.public_key().public_bytes_raw() == kr.keys[name].public_key
    for r in demo_cfg.robots:
        assert stat.S_IMODE(os.stat(keydir.link_path(r.name)).st_mode) == 0o600
        assert len(keydir.link_key(r.name)) == 32
    assert keyring_from_yaml(keydir.keyring_path) == kr     # round trip


def test_init_refuses_to_overwrite_without_force(keydir, demo_cfg):
    with pytest.raises(KeyFileError, match="already there"):
        keydir.init(fleet_identities(demo_cfg))
    old = keydir.keyring()
    new = keydir.init(fleet_identities(demo_cfg), force=True)
    assert new.serial == old.serial + 1 and new.keys["robot_1"] != old.keys["robot_1"]


def test_default_key_dir_is_next_to_the_config():
    assert default_key_dir("/x/y/fleet_a.yaml") == "/x/y/fleet_a.keys"


def test_rotate_gives_a_new_key_and_revokes_the_old(keydir):
    before = keydir.keyring()
    old_link = keydir.link_key("robot_2")
    after = keydir.rotate("robot_2")
    assert after.serial == before.serial + 1
    assert after.lookup("robot_2", before.keys["robot_2"].key_id) is Refusal.REVOKED
    assert keydir.private_key("robot_2").public_key().public_bytes_raw() \
        == after.keys["robot_2"].public_key
    assert keydir.link_key("robot_2") != old_link


def test_revoke_a_stolen_robot_removes_all_its_identities_and_files(tmp_path):
    cfg = load_fleet_config(HARDWARE)
    kd = KeyDir(str(tmp_path / "hw.keys"))
    kd.init(fleet_identities(cfg))
    robot = next(r.name for r in cfg.robots if r.backend == "serial")
    before = kd.keyring()
    after, names = kd.revoke(robot)
    assert names == [robot, f"bridge_{robot}"]
    assert after.serial == before.serial + 1
    for n in names:
        assert after.lookup(n, before.keys[n].key_id) is Refusal.REVOKED
        assert not os.path.exists(kd.key_path(n))
    assert not os.path.exists(kd.link_path(robot))
    with pytest.raises(KeyFileError, match="no identity 'ghost'"):
        kd.revoke("ghost")


def test_add_a_robot_at_run_time(keydir):
    before = keydir.keyring()
    after = keydir.add(robot_identities("robot_9", "ideal"))
    assert after.serial > before.serial and after.keys["robot_9"].robots == ("robot_9",)
    assert len(keydir.link_key("robot_9")) == 32
    with pytest.raises(KeyFileError, match="already provisioned"):
        keydir.add(robot_identities("robot_9", "ideal"))


# -- bad key files: an error naming the file --------------------------------------------

def test_missing_key_directory_and_key_file_are_named(tmp_path, keydir):
    with pytest.raises(KeyFileError, match="key directory not found") as e:
        KeyDir(str(tmp_path / "nowhere")).keyring()
    assert "nowhere" in str(e.value)
    os.unlink(keydir.key_path("robot_1"))
    with pytest.raises(KeyFileError, match="robot_1.key: private key of 'robot_1' not found"):
        keydir.private_key("robot_1")


def test_a_key_readable_by_others_is_refused(keydir):
    os.chmod(keydir.key_path("traffic"), 0o644)
    with pytest.raises(KeyFileError, match=r"traffic.key: .*chmod 600"):
        keydir.private_key("traffic")


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads a file whatever its mode")
def test_an_unreadable_key_is_named(keydir):
    os.chmod(keydir.key_path("traffic"), 0o000)
    with pytest.raises(KeyFileError, match="traffic.key: cannot read"):
        keydir.private_key("traffic")


def test_a_mismatched_key_file_is_named(keydir):
    # robot_1's file holds robot_2's key: the keyring says otherwise
    with open(keydir.key_path("robot_2"), "rb") as f:
        other = f.read()
    with open(keydir.key_path("robot_1"), "wb") as f:
        f.write(other)
    with pytest.raises(KeyFileError, match=r"robot_1.key: key \w+ does not match"):
        keydir.private_key("robot_1")


def test_a_garbage_key_file_and_keyring_are_named(keydir):
    with open(keydir.key_path("dispatcher"), "wb") as f:
        f.write(b"not a key")
    with pytest.raises(KeyFileError, match="dispatcher.key: not a PEM private key"):
        keydir.private_key("dispatcher")
    with open(keydir.link_path("robot_1"), "wb") as f:
        f.write(b"zz\n")
    with pytest.raises(KeyFileError, match="robot_1.link: expected 64 hex digits"):
        keydir.link_key("robot_1")
    with open(keydir.keyring_path, "w") as f:
        f.write("serial: 0\nidentities: {}\n")
    with pytest.raises(KeyFileError, match=r"keyring.yaml: not a valid keyring: 'serial'"):
        keydir.keyring()


def test_a_tampered_keyring_entry_is_named(keydir):
    text = open(keydir.keyring_path).read()
    kid = keydir.keyring().keys["robot_3"].key_id
    with open(keydir.keyring_path, "w") as f:
        f.write(text.replace(kid, "deadbeefdeadbeef"))
    with pytest.raises(KeyFileError, match="'robot_3': key_id 'deadbeefdeadbeef' does not match"):
        keydir.keyring()


# -- the config's auth section ----------------------------------------------------------

def _config(tmp_path, auth_yaml):
    p = tmp_path / "fleet_x.yaml"
    p.write_text("fleet: {map: warehouse.map}\nrobots:\n  - {name: r1, start: [2, 18]}\n"
                 + auth_yaml)
    return str(p)


def test_auth_section_defaults_and_values(tmp_path):
    cfg = load_fleet_config(_config(tmp_path, ""))
    assert cfg.auth.mode == "off" and not cfg.auth.enabled
    assert cfg.auth.keys == str(tmp_path / "fleet_x.keys")
    cfg = load_fleet_config(_config(tmp_path, "auth: {mode: enforce, keys: k, window: 10, "
                                              "sros2: true}\n"))
    assert (cfg.auth.mode, cfg.auth.keys, cfg.auth.window, cfg.auth.sros2) \
        == ("enforce", str(tmp_path / "k"), 10.0, True)


@pytest.mark.parametrize("auth_yaml,message", [
    ("auth: {mode: strict}\n", "'auth.mode': expected one of off, permissive, enforce"),
    ("auth: {window: -1}\n", "'auth.window' (s) must be > 0"),
    ("auth: {keyz: k}\n", "unknown key 'keyz' in 'auth'"),
])
def test_auth_section_errors_name_the_key(tmp_path, auth_yaml, message):
    from fleet_coord.fleet_config import ConfigError
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_fleet_config(_config(tmp_path, auth_yaml))

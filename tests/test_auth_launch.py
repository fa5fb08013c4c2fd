"""Starting an authenticated fleet: the node set carries the key directory to every node,
a bad key file stops `fleet-coord launch`, the launcher and the launch files before any
process starts (naming the file), and `auth.sros2` puts each process in its enclave."""
import os
import shutil

import pytest

from fleet_coord.cli import main
from fleet_coord.fleet_config import load_fleet_config
from fleet_coord.keys import KeyDir, KeyFileError, check_fleet, fleet_identities
from fleet_coord.launch_support import resolve
from fleet_coord.node_set import environment, fleet_nodes, ros_arguments
from fleet_coord.sros2 import dds_security_available, write_keystore

CONFIG = """fleet:
  map: warehouse.map
  discovery_range: LOCALHOST
robots:
  - {name: r1, start: [2, 18]}
  - {name: r2, start: [6, 18]}
  - {name: r3, start: [10, 18]}
auth: {mode: enforce%s}
"""


def _config(tmp_path, extra=""):
    p = tmp_path / "fleet_a.yaml"
    p.write_text(CONFIG % extra)
    return str(p)


@pytest.fixture
def provisioned(tmp_path):
    cfg = load_fleet_config(_config(tmp_path))
    KeyDir(cfg.auth.keys).init(fleet_identities(cfg))
    return cfg


def test_every_node_gets_the_key_directory_and_mode(provisioned):
    for spec in fleet_nodes(provisioned):
        p = spec.parameters
        assert (p["auth_mode"], p["auth_keys"]) == ("enforce", provisioned.auth.keys)
        assert p["auth_window"] == 30.0 and p["auth_tolerance"] == 2.0
    check_fleet(provisioned, fleet_nodes(provisioned))          # all there: no error


def test_without_auth_nothing_changes(tmp_path):
    p = tmp_path / "plain.yaml"
    p.write_text((CONFIG % "").replace("auth: {mode: enforce}\n", ""))
    cfg = load_fleet_config(str(p))
    assert all("auth_mode" not in s.parameters for s in fleet_nodes(cfg))
    check_fleet(cfg, fleet_nodes(cfg))                          # no keys needed
    assert "ROS_SECURITY_ENABLE" not in environment(cfg, base={})


def test_a_missing_or_mismatched_key_stops_the_launch_naming_every_file(provisioned):
    kd = KeyDir(provisioned.auth.keys)
    os.unlink(kd.key_path("dispatcher"))
    with open(kd.key_path("r1"), "wb") as f:
        f.write(open(kd.key_path("r2"), "rb").read())
    os.chmod(kd.key_path("r1"), 0o600)
    with pytest.raises(KeyFileError) as e:
        check_fleet(provisioned, fleet_nodes(provisioned))
    text = str(e.value)
    assert "dispatcher.key: private key of 'dispatcher' not found" in text
    assert "r1.key: key" in text and "does not match" in text


def test_fleet_coord_launch_refuses_before_starting_anything(tmp_path, capsys):
    path = _config(tmp_path)                  # auth on, no keys provisioned
    assert main(["launch", path]) == 2
    err = capsys.readouterr().err
    assert "fleet_a.keys: key directory not found" in err and "keys init" in err


def test_the_launcher_starts_no_process_with_a_bad_key(provisioned):
    from fleet_coord.launcher import FleetLauncher
    os.unlink(KeyDir(provisioned.auth.keys).link_path("r3"))
    launcher = FleetLauncher(provisioned, out=open(os.devnull, "w"))
    try:
        with pytest.raises(KeyFileError, match="r3.link: link key of 'r3' not found"):
            launcher.start()
        assert launcher.children == []
    finally:
        launcher.shutdown()


def test_launch_files_check_keys_too(tmp_path):
    path = _config(tmp_path)
    with pytest.raises(KeyFileError, match="key directory not found"):
        resolve({"config": path}, path)


def test_sros2_enclave_per_process_and_security_environment(tmp_path):
    cfg = load_fleet_config(_config(tmp_path, ", sros2: true"))
    specs = fleet_nodes(cfg)
    enclaves = [s.enclave for s in specs]
    assert len(set(enclaves)) == len(enclaves)
    env = environment(cfg, base={})
    assert env["ROS_SECURITY_KEYSTORE"] == os.path.join(cfg.auth.keys, "sros2")
    assert env["ROS_SECURITY_ENABLE"] == "true" and env["ROS_SECURITY_STRATEGY"] == "Enforce"
    args = ros_arguments(specs[0], "/tmp/p.yaml", sros2=True)
    assert args[:3] == ["--ros-args", "--enclave", specs[0].enclave]
    assert "--enclave" not in ros_arguments(specs[0], "/tmp/p.yaml")


def test_sros2_needs_every_enclave_and_a_dds_with_security(tmp_path):
    cfg = load_fleet_config(_config(tmp_path, ", sros2: true"))
    specs = fleet_nodes(cfg)
    KeyDir(cfg.auth.keys).init(fleet_identities(cfg))
    with pytest.raises(KeyFileError, match="enclave /fleet_coord/traffic is not in the SROS2"):
        check_fleet(cfg, specs)
    write_keystore(os.path.join(cfg.auth.keys, "sros2"), specs)
    if dds_security_available() is not False:
        pytest.skip("this ROS 2 install's DDS may have DDS Security: nothing to refuse")
    with pytest.raises(KeyFileError, match="no DDS Security plugins"):
        check_fleet(cfg, specs)
    shutil.rmtree(cfg.auth.keys)

"""fleet_coord.sros2: the SROS2 keystore of a fleet. Enforcement needs a DDS with the
Security plugins, which this install does not have (docs/security.md); tested here: the
layout, the governance and permissions documents against the DDS Security XML schemas,
their S/MIME signatures and the certificate chains (with `openssl`), least privilege."""
import os
import shutil
import subprocess

import pytest

from fleet_coord.fleet_config import load_fleet_config
from fleet_coord.node_set import fleet_nodes
from fleet_coord.sros2 import OPERATOR_ENCLAVE, enclave_of, fleet_grants, write_keystore

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCHEMAS = os.path.join(REPO, "tests", "data", "dds_security")
OPENSSL = shutil.which("openssl")
needs_openssl = pytest.mark.skipif(OPENSSL is None, reason="openssl CLI not installed "
                                   "(apt-get install openssl) - the chain checks need it")


@pytest.fixture(scope="module")
def keystore(tmp_path_factory):
    cfg = load_fleet_config(os.path.join(REPO, "config", "fleet_hardware.yaml"))
    specs = fleet_nodes(cfg)
    path = str(tmp_path_factory.mktemp("ks") / "sros2")
    enclaves = write_keystore(path, specs, domain_id=7)
    return path, specs, enclaves


def openssl(*args):
    return subprocess.run([OPENSSL, *args], capture_output=True, text=True, timeout=30)


def test_one_enclave_per_process_plus_the_operator(keystore):
    path, specs, enclaves = keystore
    assert sorted(enclaves) == sorted([enclave_of(s) for s in specs] + [OPERATOR_ENCLAVE])
    assert len(set(enclaves)) == len(enclaves)
    for e in enclaves:
        d = os.path.join(path, "enclaves", e.lstrip("/"))
        for f in ("cert.pem", "key.pem", "identity_ca.cert.pem", "permissions_ca.cert.pem",
                  "governance.p7s", "permissions.xml", "permissions.p7s"):
            assert os.path.isfile(os.path.join(d, f)), (e, f)
        assert os.stat(os.path.join(d, "key.pem")).st_mode & 0o077 == 0
    for f in ("identity_ca.key.pem", "permissions_ca.key.pem"):
        assert os.stat(os.path.join(path, "private", f)).st_mode & 0o077 == 0


def test_documents_are_valid_against_the_dds_security_schemas(keystore):
    etree = pytest.importorskip("lxml.etree", reason="lxml is installed by `make setup`")
    path, _, enclaves = keystore
    gov = etree.XMLSchema(etree.parse(os.path.join(SCHEMAS, "governance.xsd")))
    perm = etree.XMLSchema(etree.parse(os.path.join(SCHEMAS, "permissions.xsd")))
    gov.assertValid(etree.parse(os.path.join(path, "enclaves", "governance.xml")))
    for e in enclaves:
        doc = etree.parse(os.path.join(path, "enclaves", e.lstrip("/"), "permissions.xml"))
        perm.assertValid(doc)
        assert doc.findtext("permissions/grant/subject_name") == f"CN={e}"
        assert doc.findtext("permissions/grant/allow_rule/domains/id") == "7"
        assert doc.findtext("permissions/grant/default") == "DENY"


@needs_openssl
def test_signatures_verify_and_certificates_chain_to_the_keystore_cas(keystore, tmp_path):
    path, _, enclaves = keystore
    id_ca = os.path.join(path, "public", "identity_ca.cert.pem")
    perm_ca = os.path.join(path, "public", "permissions_ca.cert.pem")
    out = tmp_path / "content"
    r = openssl("smime", "-verify", "-purpose", "any", "-text", "-CAfile", perm_ca,
                "-in", os.path.join(path, "enclaves", "governance.p7s"), "-out", str(out))
    assert r.returncode == 0, r.stderr
    # S/MIME text mode signs the CRLF form of the lines
    assert out.read_bytes().replace(b"\r\n", b"\n") \
        == open(os.path.join(path, "enclaves", "governance.xml"), "rb").read()
    for e in enclaves:
        d = os.path.join(path, "enclaves", e.lstrip("/"))
        r = openssl("smime", "-verify", "-purpose", "any", "-text", "-CAfile", perm_ca,
                    "-in", os.path.join(d, "permissions.p7s"), "-out", str(out))
        assert r.returncode == 0, (e, r.stderr)
        assert out.read_bytes().replace(b"\r\n", b"\n") \
            == open(os.path.join(d, "permissions.xml"), "rb").read()
        r = openssl("verify", "-CAfile", id_ca, os.path.join(d, "cert.pem"))
        assert r.returncode == 0 and ": OK" in r.stdout, (e, r.stdout, r.stderr)
        subject = openssl("x509", "-noout", "-subject", "-in", os.path.join(d, "cert.pem"))
        assert subject.stdout.strip().replace(" ", "") == f"subject=CN={e}"


@needs_openssl
def test_a_tampered_permissions_document_and_a_foreign_ca_are_refused(keystore, tmp_path):
    path, specs, _ = keystore
    d = os.path.join(path, "enclaves", enclave_of(specs[0]).lstrip("/"))
    signed = open(os.path.join(d, "permissions.p7s")).read()
    forged = tmp_path / "forged.p7s"
    forged.write_text(signed.replace("<default>DENY</default>", "<default>ALLOW</default>"))
    perm_ca = os.path.join(path, "public", "permissions_ca.cert.pem")
    assert openssl("smime", "-verify", "-purpose", "any", "-CAfile", perm_ca,
                   "-in", str(forged), "-out", os.devnull).returncode != 0
    # an identity certificate does not chain to the permissions CA (two separate CAs)
    r = openssl("verify", "-CAfile", perm_ca, os.path.join(d, "cert.pem"))
    assert r.returncode != 0


def test_permissions_are_least_privilege(keystore):
    _, specs, _ = keystore
    grants = {g.enclave: g for g in fleet_grants(specs)}
    by_exe = {}
    for s in specs:
        by_exe.setdefault(s.executable, []).append((s, grants[enclave_of(s)]))
    # only the traffic authority writes the table and announces losses / removals
    writers = {e for e, g in grants.items() if "rt/traffic/updates" in g.publish}
    assert writers == {enclave_of(by_exe["traffic"][0][0])}
    for topic in ("rt/fleet/robot_lost", "rt/fleet/robot_removed"):
        assert {e for e, g in grants.items() if topic in g.publish} == writers
    # only the authority hears resync requests (agents and the dispatcher ask; the answer
    # is a snapshot on /traffic/updates, which only it writes)
    assert {e for e, g in grants.items() if "rt/traffic/resync" in g.subscribe} == writers
    assert {e for e, g in grants.items() if "rt/traffic/resync" in g.publish} == {
        enclave_of(s) for s in specs
        if s.executable in ("robot_agent", "dispatcher", "vda5050_master")}
    # only the dispatcher announces and awards
    assert {e for e, g in grants.items() if "rt/fleet/awards" in g.publish} \
        == {enclave_of(by_exe["dispatcher"][0][0])}
    # a robot's agent commands its own robot only, and serves no reservation
    agents = by_exe["robot_agent"]
    assert len(agents) >= 2
    (a_spec, a), (b_spec, _) = agents[0], agents[1]
    mine, other = a_spec.robots[0], b_spec.robots[0]
    assert f"rt/{mine}/cmd_vel_signed" in a.publish
    assert f"rt/{other}/cmd_vel_signed" not in a.publish
    assert "rq/traffic/reserveRequest" in a.publish and "rr/traffic/reserveReply" in a.subscribe
    assert "rr/traffic/reserveReply" not in a.publish
    # a serial bridge serves its own robot's e-stop
    bridges = by_exe["serial_bridge"]
    robot = bridges[0][0].robots[0]
    assert f"rq/{robot}/set_estopRequest" in bridges[0][1].subscribe
    # ... and its lifecycle services (a managed node); the operator may call them
    assert f"rq/{robot}/serial_bridge/change_stateRequest" in bridges[0][1].subscribe
    assert f"rt/{robot}/serial_bridge/transition_event" in bridges[0][1].publish
    assert "rq/*/serial_bridge/change_stateRequest" in grants[OPERATOR_ENCLAVE].publish
    # the operator submits and may publish a keyring; no node but the operator and the
    # authority's relay publishes one
    op = grants[OPERATOR_ENCLAVE]
    assert "rq/fleet/submit_taskRequest" in op.publish
    assert {e for e, g in grants.items() if "rt/fleet/keyring" in g.publish} \
        == {OPERATOR_ENCLAVE, enclave_of(by_exe["traffic"][0][0])}


def test_every_executable_of_the_node_set_has_interfaces():
    from fleet_coord.node_set import EXECUTABLES
    from fleet_coord.sros2 import INTERFACES
    assert set(INTERFACES) == set(EXECUTABLES)

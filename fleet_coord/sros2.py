"""An SROS2 keystore for a fleet: DDS Security for ROS 2 installs that have it.

`fleet-coord keys sros2 CONFIG` writes `<key directory>/sros2/`, laid out as `ros2
security create_keystore` / `create_enclave` do (so `ros2 security list_enclaves` reads
it), with one enclave per process of the fleet's node set:

    public/identity_ca.cert.pem, public/permissions_ca.cert.pem     two CAs (P-256)
    private/identity_ca.key.pem, private/permissions_ca.key.pem     0600
    enclaves/governance.xml, enclaves/governance.p7s                signed by the permissions CA
    enclaves/fleet_coord/<process>/                                 one per process:
        cert.pem, key.pem (0600)          its identity, issued by the identity CA
        permissions.xml, permissions.p7s  what it may publish / subscribe, signed
        identity_ca.cert.pem, permissions_ca.cert.pem, governance.p7s   copies

Permissions are least privilege, derived from the node set (fleet_coord.node_set) and
`INTERFACES` (the topics and services each executable publishes, subscribes, serves and
calls): a robot's agent may publish only its own robot's command topic, the dispatcher
may not write the reservation table, and so on. Topics of robots that join at run time
are covered by wildcards where a node serves any robot (the traffic authority, the
ideal driver, the monitor).

Enforcement needs a DDS with the Security plugins; the PyPI Fast DDS has none, so this
install tests only that the documents are well-formed (XML Schema), signed and chain to
the keystore's CAs (tests/test_sros2.py, with `openssl`). See docs/security.md.
"""
from __future__ import annotations

import datetime
import glob
import os
import shutil
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from xml.sax.saxutils import escape

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import pkcs7
from cryptography.x509.oid import NameOID

from fleet_coord.keys import KeyFileError, write_private, write_public
from fleet_coord.node_set import NodeSpec

ENCLAVE_ROOT = "/fleet_coord"
VALID_DAYS = 3650

#: Infrastructure every ROS 2 node uses: rosout, parameter events, the rmw graph topic,
#: its own parameter and type-description services (with "~" for the node's name).
_COMMON_PUB = ("/rosout", "/parameter_events")
_COMMON_SUB = ("/parameter_events",)
#: under the fleet's namespace like the fleet's own names (the node set remaps /clock)
_FLEET_SUB = ("/clock",)
_NODE_SERVICES = ("~/describe_parameters", "~/get_parameter_types", "~/get_parameters",
                  "~/list_parameters", "~/set_parameters", "~/set_parameters_atomically",
                  "~/get_type_description")

# What the fleet's messages travel on (docs/security.md and the README's node graph).
FLEET = ("/fleet/cfp", "/fleet/awards", "/fleet/rejections", "/fleet/proposals",
         "/fleet/refusals", "/fleet/task_status", "/fleet/robot_states", "/fleet/robot_lost",
         "/fleet/robot_removed", "/traffic/updates", "/fleet/keyring")


@dataclass
class Interfaces:
    """What one process publishes, subscribes, serves and calls. "{robot}" stands for
    each robot the process serves; "*" for any robot (a DDS topic-expression wildcard)."""
    publish: set[str] = field(default_factory=set)
    subscribe: set[str] = field(default_factory=set)
    serve: set[str] = field(default_factory=set)
    call: set[str] = field(default_factory=set)


def _ifc(pub: Iterable[str] = (), sub: Iterable[str] = (), serve: Iterable[str] = (),
         call: Iterable[str] = ()) -> Interfaces:
    return Interfaces(set(pub), set(sub), set(serve), set(call))


#: A managed (lifecycle) node's services (rclpy.lifecycle / rcl_lifecycle), "{node}" its
#: full name; it publishes "{node}/transition_event".
_LIFECYCLE = ("change_state", "get_state", "get_available_states",
              "get_available_transitions", "get_transition_graph")


def _lifecycle(node: str) -> tuple[str, ...]:
    return tuple(f"{node}/{s}" for s in _LIFECYCLE)


_ROBOT_LINK_IN = ("/{robot}/cmd_vel", "/{robot}/cmd_vel_signed")
_ROBOT_LINK_OUT = ("/{robot}/odom", "/{robot}/odom_signed")
# a robot that follows paths by itself (drive: follow, a VDA 5050 vehicle)
_FOLLOW_IN = ("/{robot}/plan", "/{robot}/plan_signed")
_FOLLOW_OUT = ("/{robot}/vehicle", "/{robot}/vehicle_signed")

#: executable (fleet_coord.node_set.EXECUTABLES) -> its interfaces
INTERFACES: dict[str, Interfaces] = {
    "traffic": _ifc(pub=("/traffic/updates", "/fleet/robot_lost", "/fleet/robot_removed",
                         "/fleet/keyring"),
                    sub=("/fleet/robot_states", "/fleet/keyring", "/*/odom", "/*/odom_signed",
                         "/traffic/resync"),
                    serve=("/traffic/reserve", "/traffic/release", "/fleet/remove_robot")),
    "dispatcher": _ifc(pub=("/fleet/cfp", "/fleet/awards", "/fleet/rejections",
                            "/fleet/task_status", "/traffic/resync"),
                       sub=("/fleet/proposals", "/fleet/refusals", "/fleet/task_status",
                            "/fleet/robot_states", "/fleet/robot_lost", "/fleet/robot_removed",
                            "/traffic/updates", "/fleet/keyring"),
                       serve=("/fleet/submit_task", "/fleet/cancel_task", "/fleet/list_tasks",
                              "/fleet/execute_task")),
    "fleet_monitor": _ifc(pub=("/fleet/state", "/fleet/markers"),
                          sub=FLEET),
    "robot_agent": _ifc(pub=("/fleet/proposals", "/fleet/refusals", "/fleet/task_status",
                             "/fleet/robot_states", "/traffic/resync", *_FOLLOW_IN,
                             *_ROBOT_LINK_IN),
                        sub=("/fleet/cfp", "/fleet/awards", "/fleet/rejections",
                             "/traffic/updates", "/fleet/task_status", "/fleet/robot_lost",
                             "/fleet/robot_removed", "/fleet/keyring", *_FOLLOW_OUT,
                             *_ROBOT_LINK_OUT),
                        call=("/traffic/reserve", "/fleet/list_tasks")),
    "ideal_driver": _ifc(pub=("/*/odom", "/*/odom_signed", "/clock"),
                         sub=("/*/cmd_vel", "/*/cmd_vel_signed", "/fleet/robot_removed",
                              "/fleet/keyring"),
                         serve=("/ideal_driver/spawn_robot", "/*/estop", "/*/set_estop")),
    "sim": _ifc(pub=(*_ROBOT_LINK_OUT, "/clock", "/sim/contacts/robot_robot",
                     "/sim/contacts/robot_obstacle", "/diagnostics"),
                sub=(*_ROBOT_LINK_IN, "/fleet/robot_states", "/fleet/keyring"),
                serve=("/{robot}/estop", "/{robot}/set_estop")),
    "serial_bridge": _ifc(pub=(*_ROBOT_LINK_OUT, "/{robot}/battery", "/diagnostics",
                               "/{robot}/serial_bridge/transition_event"),
                          sub=(*_ROBOT_LINK_IN, "/fleet/keyring"),
                          serve=("/{robot}/estop", "/{robot}/set_estop", "/{robot}/reset_odom",
                                 *_lifecycle("/{robot}/serial_bridge"))),
    # the web operator view: the fleet's state in, the operator's calls out
    # (fleet_coord/web/operator_node.py)
    "operator_view": _ifc(sub=("/fleet/state", "/traffic/updates", "/fleet/task_status",
                               "/fleet/robot_removed"),
                          call=("/fleet/submit_task", "/fleet/cancel_task", "/fleet/list_tasks",
                                "/fleet/remove_robot", "/*/estop", "/*/set_estop")),
    # the MCAP recorder subscribes to every topic it discovers (fleet_coord/recorder.py)
    "recorder": _ifc(sub=("/*",)),
    # VDA 5050 master control: the vehicle's odometry and status from MQTT, orders from
    # the agent's plan and the table (fleet_coord/vda5050/master.py)
    "vda5050_master": _ifc(pub=(*_ROBOT_LINK_OUT, *_FOLLOW_OUT, "/traffic/resync"),
                           sub=(*_FOLLOW_IN, "/traffic/updates", "/fleet/keyring"),
                           serve=("/{robot}/estop", "/{robot}/set_estop",
                                  "/{robot}/cancel_order")),
}

#: The operator's tools (fleet-coord submit / cancel / tasks / status / add-robot /
#: remove-robot / keys, the web view): not a node of the node set.
OPERATOR = _ifc(pub=("/fleet/keyring",),
                sub=("/fleet/state", "/fleet/task_status", "/traffic/updates",
                     "/fleet/robot_states", "/*/odom", "/*/odom_signed",
                     "/*/serial_bridge/transition_event"),
                call=("/fleet/submit_task", "/fleet/cancel_task", "/fleet/list_tasks",
                      "/fleet/remove_robot", "/traffic/release", "/ideal_driver/spawn_robot",
                      "/*/estop",
                      "/*/set_estop", "/fleet/execute_task",
                      *_lifecycle("/*/serial_bridge")))   # ros2 lifecycle get/set


def enclave_of(spec: NodeSpec) -> str:
    """The enclave of one process of the node set (NodeSpec.enclave)."""
    return spec.enclave


OPERATOR_ENCLAVE = f"{ENCLAVE_ROOT}/operator"


@dataclass(frozen=True)
class Grant:
    """One enclave's DDS permissions: DDS topic names (rt/, rq/, rr/ prefixes)."""
    enclave: str
    publish: tuple[str, ...]
    subscribe: tuple[str, ...]


def _node_names(spec: NodeSpec) -> list[str]:
    """Fully qualified names of the process's nodes (for its "~/" services)."""
    if spec.executable == "robot_agent":   # the agents and the process's host node
        fleet = spec.fleet_namespace
        return ([f"{fleet}/{r}/robot_agent" for r in spec.robots]
                + [f"{fleet}/robot_agents_{spec.robots[0]}"] if spec.robots else [])
    ns = f"/{spec.namespace}" if spec.namespace else ""
    return [f"{ns}/{spec.name or spec.executable}"]


def grant_for(enclave: str, ifc: Interfaces, robots: Iterable[str], nodes: Iterable[str],
              actions: Iterable[str] = ("/fleet/execute_task",), namespace: str = "") -> Grant:
    """The grant of one process; `namespace`: the fleet's (every fleet name under it)."""
    robots = list(robots)

    def expand(names: Iterable[str]) -> set[str]:
        out: set[str] = set()
        for n in names:
            n = namespace + n
            out.update(n.replace("{robot}", r) for r in robots) if "{robot}" in n else out.add(n)
        return out

    actions = {namespace + a for a in actions}
    pub = {f"rt{t}" for t in expand(ifc.publish) | set(_COMMON_PUB)}
    sub = {f"rt{t}" for t in expand((*ifc.subscribe, *_FLEET_SUB)) | set(_COMMON_SUB)}
    pub.add("ros_discovery_info")
    sub.add("ros_discovery_info")
    served = expand(ifc.serve) | {s.replace("~", n) for n in nodes for s in _NODE_SERVICES}
    # where request and reply topics go: a server subscribes to requests and publishes
    # replies (and an action's feedback and status); a client the other way round
    for names, requests, replies in ((served, sub, pub), (expand(ifc.call), pub, sub)):
        for s in names:
            if s in actions:
                for part in ("send_goal", "cancel_goal", "get_result"):
                    requests.add(f"rq{s}/_action/{part}Request")
                    replies.add(f"rr{s}/_action/{part}Reply")
                replies.update({f"rt{s}/_action/feedback", f"rt{s}/_action/status"})
            else:
                requests.add(f"rq{s}Request")
                replies.add(f"rr{s}Reply")
    return Grant(enclave, tuple(sorted(pub)), tuple(sorted(sub)))


def fleet_grants(specs: Iterable[NodeSpec]) -> list[Grant]:
    """One grant per process of the node set, plus the operator's."""
    grants = []
    specs = list(specs)
    for spec in specs:
        robots = spec.robots if spec.executable != "ideal_driver" else []
        grants.append(grant_for(enclave_of(spec), INTERFACES[spec.executable], robots,
                                _node_names(spec), namespace=spec.fleet_namespace))
    grants.append(grant_for(OPERATOR_ENCLAVE, OPERATOR, [], [],
                            namespace=specs[0].fleet_namespace if specs else ""))
    return grants


# -- documents ----------------------------------------------------------------------------

def governance_xml(domain_id: int) -> str:
    """Authenticated, encrypted, access-controlled: unauthenticated participants are not
    admitted and every topic needs a grant (as sros2's default governance)."""
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<dds xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"
    xsi:noNamespaceSchemaLocation="http://www.omg.org/spec/DDS-SECURITY/20170901/omg_shared_ca_governance.xsd">
  <domain_access_rules>
    <domain_rule>
      <domains>
        <id>{domain_id}</id>
      </domains>
      <allow_unauthenticated_participants>false</allow_unauthenticated_participants>
      <enable_join_access_control>true</enable_join_access_control>
      <discovery_protection_kind>ENCRYPT</discovery_protection_kind>
      <liveliness_protection_kind>ENCRYPT</liveliness_protection_kind>
      <rtps_protection_kind>SIGN</rtps_protection_kind>
      <topic_access_rules>
        <topic_rule>
          <topic_expression>*</topic_expression>
          <enable_discovery_protection>true</enable_discovery_protection>
          <enable_liveliness_protection>true</enable_liveliness_protection>
          <enable_read_access_control>true</enable_read_access_control>
          <enable_write_access_control>true</enable_write_access_control>
          <metadata_protection_kind>ENCRYPT</metadata_protection_kind>
          <data_protection_kind>ENCRYPT</data_protection_kind>
        </topic_rule>
      </topic_access_rules>
    </domain_rule>
  </domain_access_rules>
</dds>
"""


def _topics(names: Iterable[str]) -> str:
    return "".join(f"\n            <topic>{escape(n)}</topic>" for n in names)


def permissions_xml(grant: Grant, domain_id: int, not_before: datetime.datetime,
                    not_after: datetime.datetime) -> str:
    fmt = "%Y-%m-%dT%H:%M:%S"
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<dds xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"
    xsi:noNamespaceSchemaLocation="http://www.omg.org/spec/DDS-SECURITY/20170901/omg_shared_ca_permissions.xsd">
  <permissions>
    <grant name="{escape(grant.enclave)}">
      <subject_name>CN={escape(grant.enclave)}</subject_name>
      <validity>
        <not_before>{not_before.strftime(fmt)}</not_before>
        <not_after>{not_after.strftime(fmt)}</not_after>
      </validity>
      <allow_rule>
        <domains>
          <id>{domain_id}</id>
        </domains>
        <publish>
          <topics>{_topics(grant.publish)}
          </topics>
        </publish>
        <subscribe>
          <topics>{_topics(grant.subscribe)}
          </topics>
        </subscribe>
      </allow_rule>
      <default>DENY</default>
    </grant>
  </permissions>
</dds>
"""


# -- certificates and signing -------------------------------------------------------------

def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _cert(subject: str, key: ec.EllipticCurvePrivateKey, issuer: x509.Name,
          issuer_key: ec.EllipticCurvePrivateKey, ca: bool, now: datetime.datetime
          ) -> x509.Certificate:
    builder = (x509.CertificateBuilder()
               .subject_name(_name(subject)).issuer_name(issuer)
               .public_key(key.public_key())
               .serial_number(x509.random_serial_number())
               # a day early: peers whose clocks lag must not see it as not yet valid
               .not_valid_before(now - datetime.timedelta(days=1))
               .not_valid_after(now + datetime.timedelta(days=VALID_DAYS))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=0 if ca else None),
                              critical=True))
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(digital_signature=True, content_commitment=False,
                          key_encipherment=False, data_encipherment=False, key_agreement=False,
                          key_cert_sign=True, crl_sign=True, encipher_only=False,
                          decipher_only=False), critical=True)
    return builder.sign(issuer_key, hashes.SHA256())


def smime_sign(cert: x509.Certificate, key: ec.EllipticCurvePrivateKey, data: bytes) -> bytes:
    """Detached S/MIME (text) signature, as DDS Security expects governance and
    permissions documents."""
    return (pkcs7.PKCS7SignatureBuilder().set_data(data)
            .add_signer(cert, key, hashes.SHA256())
            .sign(serialization.Encoding.SMIME,
                  [pkcs7.PKCS7Options.Text, pkcs7.PKCS7Options.DetachedSignature]))


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _pem_cert(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def write_keystore(path: str, specs: Iterable[NodeSpec], domain_id: int = 0) -> list[str]:
    """(Re)write the SROS2 keystore at `path` for the node set `specs`; returns the
    enclaves. An existing keystore there is replaced (new CAs: every enclave is new)."""
    grants = fleet_grants(specs)
    if os.path.isdir(path):
        shutil.rmtree(path)
    for sub in ("public", "private", "enclaves"):
        os.makedirs(os.path.join(path, sub), mode=0o700 if sub == "private" else 0o755)
    now = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
    cas = {}
    for which in ("identity_ca", "permissions_ca"):
        key = ec.generate_private_key(ec.SECP256R1())
        name = f"fleet_coord {which.replace('_', ' ')}"
        cert = _cert(name, key, _name(name), key, True, now)
        cas[which] = (cert, key)
        write_public(os.path.join(path, "public", f"{which}.cert.pem"), _pem_cert(cert))
        write_private(os.path.join(path, "private", f"{which}.key.pem"), _pem_key(key))
    id_cert, id_key = cas["identity_ca"]
    perm_cert, perm_key = cas["permissions_ca"]
    gov = governance_xml(domain_id).encode()
    enclaves_dir = os.path.join(path, "enclaves")
    write_public(os.path.join(enclaves_dir, "governance.xml"), gov.decode())
    gov_p7s = smime_sign(perm_cert, perm_key, gov)
    write_public(os.path.join(enclaves_dir, "governance.p7s"), gov_p7s.decode())
    for g in grants:
        d = os.path.join(enclaves_dir, g.enclave.lstrip("/"))
        os.makedirs(d, exist_ok=True)
        key = ec.generate_private_key(ec.SECP256R1())
        cert = _cert(g.enclave, key, id_cert.subject, id_key, False, now)
        write_public(os.path.join(d, "cert.pem"), _pem_cert(cert))
        write_private(os.path.join(d, "key.pem"), _pem_key(key))
        for which, (c, _k) in cas.items():
            write_public(os.path.join(d, f"{which}.cert.pem"), _pem_cert(c))
        write_public(os.path.join(d, "governance.p7s"), gov_p7s.decode())
        perms = permissions_xml(g, domain_id, cert.not_valid_before_utc,
                                cert.not_valid_after_utc).encode()
        write_public(os.path.join(d, "permissions.xml"), perms.decode())
        write_public(os.path.join(d, "permissions.p7s"),
                      smime_sign(perm_cert, perm_key, perms).decode())
    return [g.enclave for g in grants]


# -- before launching ---------------------------------------------------------------------

def dds_security_available() -> bool | None:
    """Whether the Fast DDS this process would load has the DDS Security plugins: False
    when its library has no PKI-DH authentication plugin (the PyPI wheels), None when that
    cannot be told (another RMW, the library not found)."""
    if os.environ.get("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp") not in (
            "rmw_fastrtps_cpp", "rmw_fastrtps_dynamic_cpp"):
        return None
    prefixes = [sys.prefix, *os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep)]
    for prefix in filter(None, prefixes):
        for lib in sorted(glob.glob(os.path.join(prefix, "lib", "libfastdds.so*"))
                          + glob.glob(os.path.join(prefix, "lib", "libfastrtps.so*"))):
            try:
                with open(lib, "rb") as f:
                    return b"DDS:Auth:PKI-DH" in f.read()
            except OSError:
                continue
    return None


def check_keystore(keystore: str, specs: Iterable[NodeSpec]) -> None:
    """Before a fleet starts with `auth.sros2`: the keystore has every process's enclave,
    and the DDS can enforce it. Raises KeyFileError naming what is missing."""
    for spec in specs:
        d = os.path.join(keystore, "enclaves", spec.enclave.lstrip("/"))
        for f in ("cert.pem", "key.pem", "permissions.p7s", "governance.p7s"):
            if not os.path.isfile(os.path.join(d, f)):
                raise KeyFileError(os.path.join(d, f), f"enclave {spec.enclave} is not in the "
                                   "SROS2 keystore (write it with `fleet-coord keys sros2 "
                                   "CONFIG`)")
    if dds_security_available() is False:
        raise KeyFileError(keystore, "auth.sros2 is on, but this ROS 2 install's Fast DDS has "
                           "no DDS Security plugins (no PKI-DH in libfastdds): SROS2 cannot "
                           "be enforced here - the PyPI wheels are built without them. Use "
                           "auth.mode (the fleet's own signatures) and auth.sros2: false")

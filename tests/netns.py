"""A multi-host network for tests: hosts are Linux network namespaces joined by veth
pairs to a bridge that lives in a namespace of its own.

    bridge ns  fc<run>-br : bridge br0 <- ports p<host> (one veth end per host)
    host ns    fc<run>-<h>: lo, eth0 (the other veth end) = 10.231.0.<i>/24
    host /dev/shm          : /dev/shm/fc<run>-<h>, bind-mounted on /dev/shm for the host's
                             processes (each `exec_argv` process in a mount namespace of its own)

Nothing can leave: the bridge namespace has no uplink, a host has only its /24 and a
multicast route (Fast DDS discovery, 239.255.0.1) on eth0 — no default route, so any
other destination is unreachable. Processes run in a host with `ip netns exec`; DDS
there may use `ROS_AUTOMATIC_DISCOVERY_RANGE=SUBNET` (the subnet is this topology).
Each host has a /dev/shm of its own, as separate machines do: Fast DDS's shared-memory
transport then connects the processes of one host (a robot's agent and its driver) as it
does on a robot, and never processes of different hosts (it would, behind the network's
back, through one shared /dev/shm: shared-memory port files are named by port number,
and every namespace's first participant takes the same ports). Between hosts Fast DDS
uses UDP (a host's id is derived from its IPv4 addresses, distinct per namespace, and
shared-memory locators of another host are ignored).

Faults: `link_down/link_up` (the host's bridge port: the host keeps its address and
routes, packets are dropped as on a pulled cable), `packet_loss` (an nftables
`numgen random` drop rule inside the host's namespace, both directions on eth0).

Names are unique per run (`fc<pid><rand>-...`), `close()` kills what was started in the
hosts and deletes every namespace (a namespace's veth ends go with it), also when the
test failed; use it as a context manager. `skip_reason()` says why a machine cannot run
this (not root, no `ip`, namespaces not permitted).
"""
from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field

SUBNET = "10.231.0"


def _run(*argv: str, check: bool = True, input: str | None = None) -> subprocess.CompletedProcess:
    r = subprocess.run(list(argv), capture_output=True, text=True, input=input)
    if check and r.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({r.returncode}): {r.stderr.strip()}")
    return r


def skip_reason() -> str | None:
    """Why multi-host tests cannot run here, or None when they can."""
    if os.geteuid() != 0:
        return "multi-host tests build network namespaces with `ip netns`: they need root"
    if shutil.which("ip") is None:
        return "multi-host tests need iproute2's `ip` (apt-get install iproute2)"
    probe = f"fcprobe{os.getpid()}"
    r = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if r.returncode != 0:
        return f"`ip netns add` is not permitted here: {r.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return None


def nft_skip_reason() -> str | None:
    if shutil.which("nft") is None:
        return ("packet-loss test needs nftables' `nft` (apt-get install -y nftables; "
                "tc netem is not available in these kernels)")
    return None


@dataclass
class Host:
    name: str
    netns: str
    address: str
    port: str                      # its veth end on the bridge (in the bridge namespace)
    shm: str = ""                  # its /dev/shm (a directory of the machine's /dev/shm)
    procs: list[subprocess.Popen] = field(default_factory=list)


class Topology:
    """`hosts` named hosts on one bridge. Use as `with Topology(["a", "b"]) as net:`."""

    def __init__(self, hosts: list[str], *, tag: str | None = None) -> None:
        if len(hosts) > 200:
            raise ValueError(f"at most 200 hosts on {SUBNET}.0/24, got {len(hosts)}")
        self.tag = tag or f"fc{os.getpid() % 100000}{random.randrange(16 ** 3):03x}"
        self.bridge_ns = f"{self.tag}-br"
        self.hosts: dict[str, Host] = {}
        self._names = list(hosts)
        self._made: list[str] = []
        self._shm: list[str] = []

    # -- building ---------------------------------------------------------------------
    def __enter__(self) -> Topology:
        try:
            self.build()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def build(self) -> None:
        br = self.bridge_ns
        _run("ip", "netns", "add", br)
        self._made.append(br)
        _run("ip", "-n", br, "link", "add", "br0", "type", "bridge", "mcast_snooping", "0")
        _run("ip", "-n", br, "link", "set", "br0", "up")
        for i, h in enumerate(self._names):
            ns = f"{self.tag}-{h}"
            port = f"p{i}"
            host = Host(h, ns, f"{SUBNET}.{i + 1}", port, shm=f"/dev/shm/{ns}")
            os.makedirs(host.shm)
            self._shm.append(host.shm)
            _run("ip", "netns", "add", ns)
            self._made.append(ns)
            _run("ip", "-n", br, "link", "add", port, "type", "veth", "peer", "name", "eth0",
                 "netns", ns)
            _run("ip", "-n", br, "link", "set", port, "master", "br0")
            _run("ip", "-n", br, "link", "set", port, "up")
            _run("ip", "-n", ns, "link", "set", "lo", "up")
            _run("ip", "-n", ns, "addr", "add", f"{host.address}/24", "dev", "eth0")
            _run("ip", "-n", ns, "link", "set", "eth0", "up")
            # multicast (DDS discovery) goes out on eth0; there is no default route
            _run("ip", "-n", ns, "route", "add", "224.0.0.0/4", "dev", "eth0")
            self.hosts[h] = host

    def close(self) -> None:
        """Stop every process started in the hosts, delete every namespace made."""
        for host in self.hosts.values():
            for p in host.procs:
                _kill(p, signal.SIGINT)
        deadline = time.monotonic() + 5.0
        for host in self.hosts.values():
            for p in host.procs:
                try:
                    p.wait(timeout=max(0.05, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    _kill(p, signal.SIGKILL)
                    p.wait(timeout=5)
        for ns in reversed(self._made):
            # a process someone else left in the namespace keeps it alive; the name goes
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        self._made.clear()
        for d in self._shm:
            shutil.rmtree(d, ignore_errors=True)
        self._shm.clear()

    def namespaces(self) -> list[str]:
        return list(self._made)

    # -- running ----------------------------------------------------------------------
    def exec_argv(self, host: str, argv: list[str]) -> list[str]:
        """`argv` run in `host`: its network namespace, and its /dev/shm (bind-mounted in
        the mount namespace `ip netns exec` gives every process it starts)."""
        h = self.hosts[host]
        return ["ip", "netns", "exec", h.netns, "sh", "-c",
                'mount --bind "$0" /dev/shm && exec "$@"', h.shm, *argv]

    def popen(self, host: str, argv: list[str], **kwargs) -> subprocess.Popen:
        """Start `argv` in `host` (its own session, so signals reach only it)."""
        kwargs.setdefault("start_new_session", True)
        kwargs.setdefault("stdin", subprocess.DEVNULL)
        p = subprocess.Popen(self.exec_argv(host, argv), **kwargs)
        self.hosts[host].procs.append(p)
        return p

    def run(self, host: str, argv: list[str], **kwargs) -> subprocess.CompletedProcess:
        return subprocess.run(self.exec_argv(host, argv), capture_output=True, text=True,
                              **kwargs)

    # -- faults -----------------------------------------------------------------------
    def link_down(self, host: str) -> None:
        """Pull the host's cable: its bridge port goes down (eth0 loses carrier)."""
        _run("ip", "-n", self.bridge_ns, "link", "set", self.hosts[host].port, "down")

    def link_up(self, host: str) -> None:
        _run("ip", "-n", self.bridge_ns, "link", "set", self.hosts[host].port, "up")

    def packet_loss(self, host: str, percent: int) -> None:
        """Drop `percent` % of the packets the host sends and receives on eth0, at random
        (nftables `numgen random`, inside the host's namespace: nothing else affected)."""
        if not 0 <= percent <= 100:
            raise ValueError(f"percent must be 0..100, got {percent}")
        rules = f"""
table inet fcloss {{
  chain in  {{ type filter hook input  priority 0; iifname "eth0" numgen random mod 100 < {percent} drop; }}
  chain out {{ type filter hook output priority 0; oifname "eth0" numgen random mod 100 < {percent} drop; }}
}}
"""
        _run("ip", "netns", "exec", self.hosts[host].netns, "nft", "-f", "-", input=rules)

    def clear_packet_loss(self, host: str) -> None:
        _run("ip", "netns", "exec", self.hosts[host].netns, "nft", "delete", "table", "inet",
             "fcloss", check=False)

    def counters(self, host: str) -> dict[str, int]:
        """rx/tx packet counters of the host's eth0."""
        base = "/sys/class/net/eth0/statistics"
        r = self.run(host, ["sh", "-c", f"cat {base}/rx_packets {base}/tx_packets"])
        rx, tx = (int(x) for x in r.stdout.split())
        return {"rx_packets": rx, "tx_packets": tx}


def ros_env(domain_id: int, log_dir: str) -> dict[str, str]:
    """Environment for ROS 2 processes inside the topology's hosts."""
    return {"ROS_AUTOMATIC_DISCOVERY_RANGE": "SUBNET", "ROS_DOMAIN_ID": str(domain_id),
            "ROS_LOG_DIR": log_dir, "PYTHONUNBUFFERED": "1"}


def _kill(p: subprocess.Popen, sig: int) -> None:
    if p.poll() is not None:
        return
    try:
        os.killpg(p.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass

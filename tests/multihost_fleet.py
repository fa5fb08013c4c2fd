"""A fleet spread over the hosts of a `netns.Topology`, for the multi-host fault tests.

Host "a" (the fleet server) runs traffic, dispatcher and fleet_monitor; every other host
is a robot: one ideal driver for its robots and one agent process per robot, as on a
real robot. All nodes come from `fleet_coord.node_set.fleet_nodes` (the launcher's node
set), started with `FleetLauncher` through `ip netns exec <host>`, with the environment
the config gives a deployment (`node_set.environment`: discovery SUBNET, so Fast DDS's
default transports with non-blocking UDP sends; each host has its own /dev/shm, so shared
memory within a host, UDP between hosts, as on separate machines). Each host also runs a
`mh_observer.py` (odometry of its own robots; on "a" also the table updates, task
statuses, losses, and task submission), whose JSONL logs `analyse` checks offline:

- conflicts: replaying the authority's updates in version order, a segment added that
  clashes with another robot's live reservation;
- excursions: a robot's footprint outside the resources it held at that moment in the
  authority's table (odometry stamp vs. the update's arrival time on host "a", one clock);
- min_distance: the closest two robots ever came (odometry samples 50 ms apart).
"""
from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field

from fleet_coord.core.reservations import ReservationTable
from fleet_coord.fleet_config import load_fleet_config, load_roadmap_and_exclusion
from fleet_coord.launcher import FleetLauncher
from fleet_coord.node_set import NodeSpec, environment, fleet_nodes
from fleet_coord_msgs.msg import TaskStatus

from fleet_checks import Containment
from netns import Topology, ros_env

HERE = os.path.dirname(os.path.abspath(__file__))
SERVER = "a"
FAST = "max_acc: 40.0, max_alpha: 400.0"

DONE, FAILED = TaskStatus.DONE, TaskStatus.FAILED


def fleet_yaml(robots: dict[str, tuple[int, int]], *, ledger: str, table: str,
               lost_after: float = 1.5, restart: str = "never", agents_per_process: int = 1,
               agile: bool = True) -> str:
    """`agile`: robots at 3 m/s and 40 m/s^2, which a 20 Hz control loop drives
    stop-and-turn (~0.4 m/s, a stop at every vertex); else at the default limits (1 m/s,
    2 m/s^2), driven on the real time model: shorter trips in time."""
    lines = ["fleet:", "  map: warehouse.map", "  discovery_range: SUBNET", "  backend: ideal",
             f"  restart: {restart}", f"  ledger: {ledger}", f"  table_log: {table}",
             f"  agents_per_process: {agents_per_process}", "robots:"]
    for r, (x, y) in robots.items():
        speed = ", max_speed: 3.0, max_angular_speed: 20.0" if agile else ""
        lines.append(f"  - {{name: {r}, start: [{x}, {y}]{speed}}}")
    # bid_window: a round closes as soon as every live robot answered, so 2 s only
    # matters for a late bid (at 0.3 s a late bid on a loaded machine gave the task to
    # the farther robot and the test waited on the wrong one)
    lines += ["nodes:",
              f"  robot_agent: {{{FAST}, turn_margin: 0.2}}" if agile else "  robot_agent: {}",
              f"  ideal_driver: {{{FAST + ', ' if agile else ''}rate_hz: 100.0}}",
              "  dispatcher: {bid_window: 2.0, retry_base: 0.5}",
              f"  traffic: {{lost_after: {lost_after}}}"]
    return "\n".join(lines) + "\n"


def host_specs(config, layout: dict[str, list[str]]) -> list[tuple[str, NodeSpec]]:
    """(host, spec) for every process: fleet services on SERVER, each robot host its own
    driver (renamed ideal_driver_<host>) and agents."""
    out = []
    for spec in fleet_nodes(config):
        if spec.executable in ("traffic", "dispatcher", "fleet_monitor"):
            out.append((SERVER, spec))
    for host, robots in layout.items():
        if not robots:
            continue
        for spec in fleet_nodes(config):
            if spec.executable == "ideal_driver":
                keep = [i for i, r in enumerate(spec.parameters["robots"]) if r in robots]
                spec.parameters["robots"] = [spec.parameters["robots"][i] for i in keep]
                poses = spec.parameters["start_poses"]
                spec.parameters["start_poses"] = [poses[3 * i + k] for i in keep for k in range(3)]
                spec.robots = list(spec.parameters["robots"])
                spec.name = f"ideal_driver_{host}"
                out.append((host, spec))
            elif spec.executable == "robot_agent" and spec.robots[0] in robots:
                if not set(spec.robots) <= set(robots):
                    raise ValueError(f"agent process {spec.process_name} groups robots of "
                                     f"several hosts: {spec.robots}")
                out.append((host, spec))
    return out


class NetnsLauncher(FleetLauncher):
    """FleetLauncher whose children run in the topology's hosts."""

    def __init__(self, net: Topology, placed: list[tuple[str, NodeSpec]], config, **kw) -> None:
        self.net = net
        self.host_of = {spec.process_name: host for host, spec in placed}
        super().__init__(config, [s for _, s in placed], **kw)

    def _argv(self, spec: NodeSpec) -> list[str]:
        return self.net.exec_argv(self.host_of[spec.process_name], super()._argv(spec))

    def child(self, process_name: str):
        return next(c for c in self.children if c.spec.process_name == process_name)

    def kill(self, process_name: str, sig: int = signal.SIGKILL) -> None:
        c = self.child(process_name)
        os.killpg(c.proc.pid, sig)
        c.proc.wait(timeout=10)

    def restart(self, process_name: str) -> None:
        c = self.child(process_name)
        c.restarts += 1
        self._start(c)


@dataclass
class Events:
    lines: list[dict] = field(default_factory=list)

    def of(self, kind: str) -> list[dict]:
        return [e for e in self.lines if e["k"] == kind]

    def final(self, task: str) -> dict | None:
        """The robot's DONE, or the dispatcher's final FAILED."""
        for e in self.of("status"):
            if e["task"] == task and (e["state"] == DONE or (e["state"] == FAILED and not e["robot"])):
                return e
        return None

    def done_by(self, task: str) -> list[str]:
        return [e["robot"] for e in self.of("status") if e["task"] == task and e["state"] == DONE]


class MultiHostFleet:
    def __init__(self, net: Topology, workdir: str, layout: dict[str, list[str]],
                 starts: dict[str, tuple[int, int]], *, domain_id: int = 42,
                 lost_after: float = 1.5, restart: str = "never",
                 agents_per_process: int = 1, agile: bool = True) -> None:
        """`restart`: the config's policy (the tests kill and restart by hand: "never"; a
        caller that wants the launcher to restart calls `launcher.poll()` as it runs).
        `agile`: the robots' limits (`fleet_yaml`)."""
        self.net, self.workdir, self.layout = net, workdir, layout
        self.robots = [r for rs in layout.values() for r in rs]
        self.lost_after = lost_after
        cfg_path = os.path.join(workdir, "fleet.yaml")
        with open(cfg_path, "w") as f:
            f.write(fleet_yaml({r: starts[r] for r in self.robots}, ledger="ledger.sqlite",
                               table=os.path.join(workdir, "table.jsonl"),
                               lost_after=lost_after, restart=restart,
                               agents_per_process=agents_per_process, agile=agile))
        self.config = load_fleet_config(cfg_path)
        self.config.domain_id = domain_id
        self.env = ros_env(domain_id, os.path.join(workdir, "roslog"))
        self.log = open(os.path.join(workdir, "fleet.log"), "w")
        self.launcher = NetnsLauncher(net, host_specs(self.config, layout), self.config,
                                      out=self.log, grace_s=2.0, extra_env=self.env)
        self.observers: dict[str, subprocess.Popen] = {}
        self._events = Events()
        self._offsets: dict[str, int] = {}

    def obs_path(self, host: str) -> str:
        return os.path.join(self.workdir, f"observer_{host}.jsonl")

    def start(self, timeout: float = 60.0) -> float:
        """Start everything; returns the seconds until every robot was parked and known to
        the dispatcher (its first bid-able state)."""
        t0 = time.monotonic()
        # the observers run with the fleet's environment too (its DDS transports)
        env = {**os.environ, **environment(self.config), **self.env}
        for host in self.net.hosts:
            robots = ",".join(self.layout.get(host, []))
            argv = [sys.executable, os.path.join(HERE, "mh_observer.py"), "--out",
                    self.obs_path(host), "--robots", robots] + (["--fleet"] if host == SERVER else [])
            self.observers[host] = self.net.popen(
                host, argv, env=env, stdout=self.log, stderr=subprocess.STDOUT,
                stdin=subprocess.PIPE if host == SERVER else subprocess.DEVNULL, text=True)
        self.launcher.start()
        ok = self.wait(lambda ev: self._parked(ev) == set(self.robots)
                       and {e["robot"] for e in ev.of("state")} >= set(self.robots), timeout)
        if not ok:
            raise AssertionError(f"fleet did not come up in {timeout:g} s; parked: "
                                 f"{sorted(self._parked(self.events()))}\n{self.tail()}")
        # the dispatcher learns robots from their states too (10 Hz; best effort)
        time.sleep(1.0)
        return time.monotonic() - t0

    @staticmethod
    def _parked(ev: Events) -> set[str]:
        # the agent's state says it holds a granted spot; a hold in the table alone is not
        # that (the authority holds configured robots' start vertices from its start)
        return {e["robot"] for e in ev.of("state") if e.get("epoch")}

    def submit(self, task: str, kind: str, *stations: str) -> None:
        p = self.observers[SERVER]
        p.stdin.write(f"submit {task} {kind} {' '.join(stations)}\n")
        p.stdin.flush()

    def events(self) -> Events:
        for host in self.net.hosts:
            path = self.obs_path(host)
            if not os.path.exists(path):
                continue
            with open(path) as f:
                f.seek(self._offsets.get(host, 0))
                data = f.read()
            end = data.rfind("\n") + 1
            self._offsets[host] = self._offsets.get(host, 0) + len(data[:end].encode())
            for line in data[:end].splitlines():
                e = json.loads(line)
                e["host"] = host
                self._events.lines.append(e)
        return self._events

    def wait(self, cond, timeout: float, period: float = 0.2) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if cond(self.events()):
                return True
            time.sleep(period)
        return bool(cond(self.events()))

    def tail(self, n: int = 6000) -> str:
        self.log.flush()
        with open(os.path.join(self.workdir, "fleet.log")) as f:
            return f.read()[-n:]

    def stop(self) -> None:
        self.launcher.shutdown()
        for p in self.observers.values():
            if p.poll() is None:
                p.send_signal(signal.SIGINT)
        for p in self.observers.values():
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                p.kill()
        self.events()
        self.log.flush()


def analyse(ev: Events, *, slack_t: float = 0.05, tolerance_m: float = 0.1) -> dict:
    """Offline checks of a run's logs (see module doc)."""
    roadmap, exclusion, _ = load_roadmap_and_exclusion(
        os.path.join(os.path.dirname(HERE), "config", "maps", "warehouse.map"), 0.15)
    table = ReservationTable(exclusion.of, roadmap.num_resources)

    def res(seg):
        robot, r, t0, t1 = seg
        return {"robot": robot, "resource": r, "t_start": t0,
                "t_end": math.inf if t1 == "inf" else t1, "lease_expiry": math.inf}

    updates = sorted((e for e in ev.of("upd") if e["host"] == SERVER and not e["snap"]),
                     key=lambda e: e["version"])
    # after a missed delta (a gap) the replay resynchronises on the authority's next
    # periodic snapshot, as the fleet's replicas do; meanwhile nobody is judged
    snaps = sorted((e for e in ev.of("upd") if e["host"] == SERVER and e["snap"]),
                   key=lambda e: e["w"])
    si, stale, unchecked = 0, False, 0
    seen, ordered = set(), []
    for u in updates:
        if u["version"] not in seen:
            seen.add(u["version"])
            ordered.append(u)
    odom = sorted((e for e in ev.of("odom")), key=lambda e: e["t"])
    conflicts, excursions, gaps = [], [], []
    # merge: an update applies from the moment host "a" received it
    ui = 0
    version = None
    last_pos: dict[str, tuple[float, float, float]] = {}
    min_d = (math.inf, None)
    containment = Containment(exclusion, tolerance_m, slack_t)
    for o in odom:
        while si < len(snaps) and snaps[si]["w"] <= o["t"]:
            sn = snaps[si]
            si += 1
            if stale and version is not None and sn["version"] >= version:
                table = ReservationTable.from_snapshot(
                    {"version": sn["version"], "reservations": [res(x) for x in sn["added"]]},
                    exclusion.of, roadmap.num_resources)
                version, stale = sn["version"], False
        while ui < len(ordered) and ordered[ui]["w"] <= o["t"]:
            u = ordered[ui]
            ui += 1
            if version is not None and u["version"] <= version:
                continue
            if version is not None and u["version"] != version + 1:
                if not stale:
                    gaps.append((version, u["version"]))
                stale = True
            if stale:
                continue
            table.apply_update({"version": u["version"], "robot": u["robot"],
                                "removed": [res(s) for s in u["removed"]],
                                "added": [res(s) for s in u["added"]]})
            version = u["version"]
            for s in u["added"]:
                r = res(s)
                hit = table.first_conflict(r["resource"], r["t_start"], r["t_end"], robot=r["robot"])
                if hit is not None:
                    conflicts.append((s, str(hit)))
        if stale:
            unchecked += 1
        else:
            holds = [(r.resource, r.t_start, r.t_end) for r in table.reservations(o["robot"])]
            err = containment.error(o["robot"], holds, o["x"], o["y"], o["t"])
            if err > tolerance_m:
                excursions.append((o["robot"], round(o["t"], 2), round(o["x"], 2),
                                   round(o["y"], 2), err))
        last_pos[o["robot"]] = (o["t"], o["x"], o["y"])
        for r, (t, x, y) in last_pos.items():
            if r != o["robot"] and abs(t - o["t"]) < 0.06:
                d = math.hypot(x - o["x"], y - o["y"])
                if d < min_d[0]:
                    min_d = (d, (r, o["robot"], round(o["t"], 2)))
    return {"conflicts": conflicts, "excursions": excursions, "version_gaps": gaps,
            "min_distance": min_d, "odom_samples": len(odom), "updates": len(ordered),
            "unchecked": unchecked}

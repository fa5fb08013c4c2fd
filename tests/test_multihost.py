"""A fleet across hosts (network namespaces joined by a bridge, SUBNET discovery only
there): the fleet server on host a, robots b1, b2 on host b, c1 on host c, each robot
host running its own driver and one agent process per robot. Faults: a robot agent
killed, a host's link cut, the traffic authority killed and restarted, 30% packet loss.
Every run is checked offline from what crossed the network (multihost_fleet.analyse):
no reservation conflict, no robot outside its reservations, no two robots closer than
their footprints. Figures: docs/reliability.md, "Multi-host faults"."""
import os
import time

import pytest

pytest.importorskip("fleet_coord_msgs.msg", reason="fleet_coord_msgs is built by `make setup`")

from netns import Topology, nft_skip_reason, skip_reason  # noqa: E402

_why = skip_reason()
pytestmark = pytest.mark.skipif(_why is not None, reason=_why or "")

from multihost_fleet import DONE, MultiHostFleet, analyse  # noqa: E402

LAYOUT = {"a": [], "b": ["b1", "b2"], "c": ["c1"]}
STARTS = {"b1": (2, 18), "b2": (10, 18), "c1": (18, 18)}
FOOTPRINT_M = 0.3   # two discs of radius 0.15


def report(name, **figures):
    """Figures for docs/reliability.md, printed with -s and kept in the run's folder."""
    print(f"\n[multihost] {name}: " + ", ".join(f"{k}={v}" for k, v in figures.items()))


@pytest.fixture
def fleet(tmp_path):
    with Topology(list(LAYOUT)) as net:
        f = MultiHostFleet(net, str(tmp_path), LAYOUT, STARTS,
                           domain_id=100 + os.getpid() % 100)
        try:
            yield f
        finally:
            f.stop()


def all_done(tasks):
    return lambda ev: all(ev.final(t) for t in tasks)


def test_fleet_across_hosts_completes_tasks(fleet):
    up = fleet.start()
    tasks = {"t1": ("pick_and_drop", "2,14", "6,14"), "t2": ("goto", "20,15"),
             "t3": ("goto", "12,15")}
    t0 = time.monotonic()
    for tid, (kind, *st) in tasks.items():
        fleet.submit(tid, kind, *st)
    assert fleet.wait(all_done(tasks), 60), fleet.tail()
    took = time.monotonic() - t0
    ev = fleet.events()
    assert all(ev.final(t)["state"] == DONE for t in tasks), [ev.final(t) for t in tasks]
    fleet.stop()
    a = analyse(fleet.events())
    report("across hosts", startup_s=round(up, 1), tasks=len(tasks), all_done_s=round(took, 1),
           conflicts=len(a["conflicts"]), excursions=len(a["excursions"]),
           min_distance_m=round(a["min_distance"][0], 2), samples=a["odom_samples"])
    assert a["odom_samples"] > 100 and a["updates"] > 5
    assert a["conflicts"] == [] and a["version_gaps"] == []
    assert a["excursions"] == [], a["excursions"][:10]
    assert a["min_distance"][0] > FOOTPRINT_M, a["min_distance"]

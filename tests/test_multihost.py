"""A fleet across hosts (network namespaces joined by a bridge, SUBNET discovery only
there): the fleet server on host a, robots b1, b2 on host b, c1 on host c, each robot
host running its own driver and one agent process per robot. Faults: a robot agent
killed, a host's link cut, the traffic authority killed and restarted, 30% packet loss.
Every run is checked offline from what crossed the network (multihost_fleet.analyse):
no reservation conflict, no robot outside its reservations, no two robots closer than
their footprints. There is no separate fault-free run: each test starts the same fleet
and has it complete its tasks across the hosts before, during or after its fault, under
the same checks. Figures: docs/reliability.md, "Multi-host faults"."""
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
def agile():
    """The robots' limits (multihost_fleet.fleet_yaml): the default ones, driven at ~1 m/s
    on the real time model, unless a test asks for agile robots (stop-and-turn, ~0.4 m/s)
    with `@pytest.mark.parametrize("agile", [True])`."""
    return False


@pytest.fixture
def fleet(tmp_path, agile):
    with Topology(list(LAYOUT)) as net:
        f = MultiHostFleet(net, str(tmp_path), LAYOUT, STARTS,
                           domain_id=100 + os.getpid() % 100, agile=agile)
        try:
            yield f
        finally:
            f.stop()


def all_done(tasks):
    return lambda ev: all(ev.final(t) for t in tasks)


def not_done(ev, tasks):
    """The status history of each task that did not end DONE (an assertion's message)."""
    return {t: [(e["robot"], e["state"], e["reason"]) for e in ev.of("status") if e["task"] == t]
            for t in tasks if (ev.final(t) or {}).get("state") != DONE}


def _active_moving(ev, task, robot):
    return any(e["task"] == task and e["robot"] == robot and e["state"] == 4 for e in ev.of("status")) \
        and any(e["robot"] == robot and abs(e.get("v", 0)) > 0.05 for e in ev.of("odom"))


def _lost_at(ev, robot):
    return next((e["w"] for e in ev.of("lost") if e["robot"] == robot), None)


def _blocked_for_good(ev, robot):
    """Resources `robot` holds until further notice in the authority's last updates."""
    held = {}
    for u in sorted((e for e in ev.of("upd") if e["host"] == "a" and not e["snap"]),
                    key=lambda e: e["version"]):
        for s in u["removed"]:
            if s[0] == robot:
                held.pop((s[1], s[2]), None)
        for s in u["added"]:
            if s[0] == robot:
                held[(s[1], s[2])] = s[3]
    return sorted(r for (r, _), end in held.items() if end == "inf")


# Agile: the dead robot's open gap below grows with its speed (0.22 m of the 0.25 m bound
# at 1 m/s, measured).
@pytest.mark.parametrize("agile", [True], ids=["agile"])
def test_killed_agent_on_host_b_is_lost_in_bound_its_task_redone_its_spot_blocked(fleet):
    fleet.start()
    # b1 (at 2,18) is the cheapest bidder; b2 redoes it from 10,18 (12 m, 2,10 was 16 m)
    fleet.submit("k1", "goto", "2,14")
    assert fleet.wait(lambda ev: _active_moving(ev, "k1", "b1"), 30), fleet.tail()
    time.sleep(1.0)
    killed = time.time()
    fleet.launcher.kill("agent_b1")
    assert fleet.wait(lambda ev: _lost_at(ev, "b1") is not None, 10), fleet.tail()
    assert fleet.wait(all_done(["k1"]), 60), fleet.tail()
    ev = fleet.events()
    detected = _lost_at(ev, "b1") - killed
    done = ev.final("k1")
    assert done["state"] == DONE and done["robot"] in ("b2", "c1"), done
    fleet.stop()
    ev = fleet.events()
    a = analyse(ev)
    spot = _blocked_for_good(ev, "b1")
    b1 = [x for x in a["excursions"] if x[0] == "b1"]
    report("kill -9 agent", detection_s=round(detected, 2),
           recovery_s=round(done["w"] - killed, 1), tasks_lost=0, conflicts=len(a["conflicts"]),
           blocked=spot, excursions=len(a["excursions"]), b1_excursions=len(b1),
           min_distance_m=round(a["min_distance"][0], 2))
    assert detected <= fleet.lost_after + 1.0
    assert spot, "the lost robot's spot must stay blocked"
    # every robot, the dead one too: it stopped inside what it held, which stays held.
    # Open gap (docs/reliability.md): between the kill and its loss detection the dead
    # robot stands where its driver stopped it while the time windows of the lane it was
    # on run out; a clean-clone CI saw it 0.11 m (tolerance 0.1) outside for 0.2 s. Until
    # the authority keeps a silent robot's current hold, those samples are bounded, not 0.
    lost_w = _lost_at(ev, "b1")
    late = [x for x in b1 if not (killed <= x[1] <= lost_w and x[4] <= 0.25)]
    others = [x for x in a["excursions"] if x[0] != "b1"]
    assert a["conflicts"] == [] and others == [] and late == [], (
        a["conflicts"], others[:5], late[:5])
    assert a["min_distance"][0] > FOOTPRINT_M, a["min_distance"]


def test_cut_off_host_c_robot_stays_in_its_reservations_others_go_on_it_rejoins(fleet):
    fleet.start()
    fleet.submit("p1", "goto", "18,10")      # c1 (at 18,18)
    assert fleet.wait(lambda ev: _active_moving(ev, "p1", "c1"), 30), fleet.tail()
    time.sleep(0.5)
    cut = time.time()
    fleet.net.link_down("c")
    assert fleet.wait(lambda ev: _lost_at(ev, "c1") is not None, 10), fleet.tail()
    fleet.submit("p2", "goto", "14,14")      # b robots work on while c1 is away
    fleet.submit("p3", "goto", "6,14")
    assert fleet.wait(all_done(["p2", "p3"]), 60), fleet.tail()
    time.sleep(max(0.0, 8.0 - (time.time() - cut)))
    fleet.net.link_up("c")
    back = time.time()
    assert fleet.wait(lambda ev: any(e["robot"] == "c1" and e["w"] > back for e in ev.of("state")),
                      30), fleet.tail()
    rejoined = time.time() - back
    fleet.submit("p4", "goto", "20,14")      # c1 is the closest: it resumes work
    assert fleet.wait(all_done(["p1", "p4"]), 60), fleet.tail()
    ev = fleet.events()
    fleet.stop()
    ev = fleet.events()
    a = analyse(ev)
    report("link cut", detection_s=round(_lost_at(ev, "c1") - cut, 2),
           rejoin_s=round(rejoined, 1), p1_by=ev.final("p1")["robot"], p4_by=ev.final("p4")["robot"],
           conflicts=len(a["conflicts"]), excursions=len(a["excursions"]),
           min_distance_m=round(a["min_distance"][0], 2))
    assert not not_done(ev, ("p1", "p2", "p3", "p4")), not_done(ev, ("p1", "p2", "p3", "p4"))
    assert a["conflicts"] == [], a["conflicts"]
    assert a["excursions"] == [], a["excursions"][:10]
    assert a["min_distance"][0] > FOOTPRINT_M, a["min_distance"]


def test_traffic_killed_and_restarted_keeps_its_table_and_grants_no_conflict(fleet):
    fleet.start()
    # 8 m each, straight up the aisles: at 1 m/s still driving through the restart
    fleet.submit("r1", "goto", "2,10")
    fleet.submit("r2", "goto", "18,10")
    assert fleet.wait(lambda ev: _active_moving(ev, "r1", "b1") or _active_moving(ev, "r2", "c1"),
                      30), fleet.tail()
    version_before = max(e["version"] for e in fleet.events().of("upd"))
    killed = time.time()
    fleet.launcher.kill("traffic")
    time.sleep(1.0)
    fleet.launcher.restart("traffic")
    # the restarted authority publishes a snapshot that continues the versions
    assert fleet.wait(lambda ev: any(e["snap"] and e["w"] > killed + 1.0 and e["version"] >= version_before
                                     for e in ev.of("upd")), 30), fleet.tail()
    recovered = time.time() - killed
    fleet.submit("r3", "goto", "10,14")       # new grants after the restart
    assert fleet.wait(all_done(["r1", "r2", "r3"]), 60), fleet.tail()
    ev = fleet.events()
    fleet.stop()
    ev = fleet.events()
    a = analyse(ev)
    report("traffic kill -9 + restart", recovery_s=round(recovered, 1),
           version_before=version_before, conflicts=len(a["conflicts"]),
           excursions=len(a["excursions"]), gaps=a["version_gaps"])
    assert not not_done(ev, ("r1", "r2", "r3")), not_done(ev, ("r1", "r2", "r3"))
    assert a["odom_samples"] > 100 and a["updates"] > 5   # the checks below saw the run
    assert a["conflicts"] == [] and a["version_gaps"] == []
    assert a["excursions"] == [], a["excursions"][:10]


# Agile: under loss the run is the network's (tasks done 62 s after submission at either
# speed, measured), and the loss figures of docs/reliability.md are for these robots.
@pytest.mark.parametrize("agile", [True], ids=["agile"])
@pytest.mark.skipif(nft_skip_reason() is not None, reason=nft_skip_reason() or "")
def test_thirty_percent_packet_loss_on_host_b_fleet_still_completes(fleet):
    fleet.net.packet_loss("b", 30)
    up = fleet.start(timeout=90)
    tasks = {"l1": ("pick_and_drop", "2,14", "6,14"), "l2": ("goto", "12,15"),
             "l3": ("goto", "20,15")}
    t0 = time.monotonic()
    for tid, (kind, *st) in tasks.items():
        fleet.submit(tid, kind, *st)
    # generous: under loss the b robots' bids often miss the 0.3 s bid window, so c1
    # (on a clean host) may win all three tasks and do them one after the other; and the
    # traffic authority's service answers to a b robot can go missing for tens of seconds
    # (rmw: "failed to send response (timeout)"; a clean-clone run: b2's reserve calls
    # unanswered for 40 s at start and 60 s mid-task, the test 194 s in all)
    assert fleet.wait(all_done(tasks), 300), fleet.tail()
    took = time.monotonic() - t0
    ev = fleet.events()
    lost = [e["robot"] for e in ev.of("lost")]
    fleet.stop()
    a = analyse(fleet.events())
    report("30% loss on host b", startup_s=round(up, 1), all_done_s=round(took, 1),
           false_losses=lost, done_by={t: ev.final(t)["robot"] for t in tasks},
           conflicts=len(a["conflicts"]), excursions=len(a["excursions"]))
    assert not not_done(ev, tasks), (not_done(ev, tasks), fleet.tail(3000))
    assert lost == [], f"robots declared lost under 30 % loss (none was): {lost}"
    assert a["conflicts"] == []
    assert a["excursions"] == [], a["excursions"][:10]

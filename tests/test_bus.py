"""The in-process fleet's network (fleet_coord.bus): a virtual clock and a bus that delays,
drops, reorders across channels and cuts endpoints off, reproducibly from a seed."""
import pytest

from fleet_coord.bus import Bus, Cut, Faults


def test_the_bus_delays_drops_reorders_and_cuts_reproducibly():
    def run(seed):
        bus = Bus(seed, Faults(latency=0.01, jitter=0.05, drop=0.2,
                               cuts=(Cut("b", 1.0, 2.0),)))
        got = []
        for i in range(200):
            bus.at(i * 0.01, lambda i=i: bus.send("a", "b" if i % 2 else "c", got.append, i,
                                                  channel=str(i % 3)))
        bus.run_until(5.0)
        return got, bus.stats
    got, stats = run(3)
    assert got == run(3)[0]                          # a pure function of the seed
    assert got != sorted(got)                        # jitter reorders across channels
    assert 0 < stats.dropped < 200 and len(got) == stats.sent - stats.dropped
    assert not [i for i in got if i % 2 and 100 <= i < 200]   # b was cut off over [1, 2)
    for dst in ("b", "c"):                           # ... but one channel keeps its order
        for ch in range(3):
            seq = [i for i in got if (i % 2 == (dst == "b")) and i % 3 == ch]
            assert seq == sorted(seq)
    with pytest.raises(ValueError, match="drop"):
        Faults(drop=1.5)


def test_timers_run_on_the_virtual_clock_until_cancelled():
    bus = Bus()
    ticks = []
    timer = bus.every(0.5, lambda: ticks.append(bus.now), first=0.0)
    bus.run_until(2.0)
    assert ticks == [0.0, 0.5, 1.0, 1.5, 2.0]
    timer.cancel()
    bus.run_until(5.0)
    assert len(ticks) == 5 and bus.now == 5.0
    assert bus.run_until(6.0, stop=lambda: bus.now >= 5.5) is True


def test_reliable_channels_lose_nothing_to_drops_and_cross_a_short_cut_late():
    """As DDS's RELIABLE QoS: no random loss, and a partition delays the samples (the
    writer repeats them) unless it outlasts the lease; best effort loses both ways."""
    bus = Bus(1, Faults(drop=0.5, cuts=(Cut("b", 1.0, 2.0), Cut("b", 3.0, 30.0))),
              reliable=frozenset({"status"}), lease=20.0)
    got = []
    for i in range(400):
        ch = ("status:a", "state")[i % 2]
        bus.at(i * 0.01, lambda i=i, ch=ch: bus.send(
            "a", "b", lambda i=i: got.append((i, bus.now)), channel=ch))
    bus.run_until(40.0)
    reliable = [(i, t) for i, t in got if i % 2 == 0]
    assert [i for i, _ in reliable] == [i for i in range(0, 300, 2)]   # in order, none lost
    assert all(t >= 2.0 for i, t in reliable if 100 <= i < 200)        # ... late across the cut
    assert not [i for i, _ in got if i >= 300]      # a cut longer than the lease loses them
    best_effort = [i for i, _ in got if i % 2]
    assert 0 < len(best_effort) < 100 and not [i for i in best_effort if 100 <= i < 200]

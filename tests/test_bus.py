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


def test_random_drops_spare_reliable_channels_but_cuts_do_not():
    bus = Bus(1, Faults(drop=0.5, cuts=(Cut("b", 1.0, 2.0),)), reliable=frozenset({"status"}))
    got = []
    for i in range(300):
        ch = ("status:a", "state")[i % 2]
        bus.at(i * 0.01, lambda i=i, ch=ch: bus.send("a", "b", got.append, i, channel=ch))
    bus.run_until(5.0)
    reliable = [i for i in got if i % 2 == 0]
    assert reliable == [i for i in range(0, 300, 2) if not 100 <= i < 200]
    assert 0 < len([i for i in got if i % 2]) < 100   # best effort: some of the 100 outside the cut

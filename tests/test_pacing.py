"""Pacing (core/pacing.py): a parked robot signs a new state and sends odometry less often,
any change or command brings them back at once; a loss timeout needs several messages."""
import dataclasses
import math

import pytest

from fleet_coord.core.execution import Activity, StateReport
from fleet_coord.core.pacing import (MIN_STATES_PER_LOSS, OdomPacer, StatePacer,
                                     rate_problem)

PARKED = StateReport("r1", (1.0, 2.0, 0.5), (0.0, 0.0), Activity.IDLE, "", (), 3, lamport=1,
                     table_epoch=7, done=("t0",))


def sent_times(pacer: StatePacer, reports, t0=0.0, period=0.1):
    """Tick the pacer at `period` with each report in turn; the times it lets through."""
    out = []
    for i, rep in enumerate(reports):
        t = t0 + i * period
        if pacer.due(t, rep):
            out.append(round(t, 3))
    return out


def test_a_parked_robot_reports_at_the_idle_rate_and_every_tick_once_it_has_work():
    pacer = StatePacer(0.1, 2.0)
    # 3 s parked, a new counter every tick (the counter alone is no news)
    parked = [dataclasses.replace(PARKED, lamport=i) for i in range(30)]
    sent = sent_times(pacer, parked)
    assert sent[0] == 0.0 and len(sent) == 6, sent        # 2 Hz, not 10
    assert all(b - a == pytest.approx(0.5) for a, b in zip(sent, sent[1:])), sent
    # awarded a task: every tick from the first one that says so
    busy = [dataclasses.replace(PARKED, activity=Activity.WAITING, task_id="t1")] * 10
    assert sent_times(pacer, busy, t0=3.0) == [round(3.0 + 0.1 * i, 3) for i in range(10)]


@pytest.mark.parametrize("change", [
    dict(task_id="t9"), dict(queued=("t9",)), dict(activity=Activity.WAITING),
    dict(vertex=4), dict(vertex=None), dict(table_epoch=8), dict(done=("t1", "t0")),
    dict(pose=(1.02, 2.0, 0.5)), dict(pose=(1.0, 2.0, 0.52)), dict(pose=None),
    dict(twist=(0.05, 0.0)), dict(twist=(0.0, -0.2)),
])
def test_any_change_goes_out_at_the_next_tick(change):
    pacer = StatePacer(0.1, 2.0)
    assert pacer.due(0.0, PARKED)
    assert not pacer.due(0.1, PARKED)
    assert pacer.due(0.2, dataclasses.replace(PARKED, **change))


def test_jitter_below_the_tolerance_is_no_news_and_the_idle_period_survives_timer_jitter():
    pacer = StatePacer(0.1, 2.0)
    assert pacer.due(0.0, PARKED)
    jitter = dataclasses.replace(PARKED, pose=(1.004, 1.997, 0.505), twist=(1e-4, -1e-4))
    assert not pacer.due(0.1, jitter)
    assert not pacer.due(0.3, jitter)
    assert pacer.due(0.47, jitter)      # a tick a little early still makes the 2 Hz
    assert not pacer.due(0.58, jitter)


def test_idle_rate_zero_or_above_the_state_rate_is_every_tick():
    for idle in (0.0, 50.0):
        pacer = StatePacer(0.1, idle)
        assert all(pacer.due(0.1 * i, PARKED) for i in range(20))


@pytest.mark.parametrize("bad", [-1.0, math.nan, math.inf])
def test_a_bad_idle_rate_is_refused_naming_it(bad):
    with pytest.raises(ValueError, match="idle_state_rate"):
        StatePacer(0.1, bad)
    with pytest.raises(ValueError, match="idle odometry rate"):
        OdomPacer(0.02, bad)


def test_a_loss_timeout_needs_several_messages_of_a_parked_robot():
    assert rate_problem(1.5, 10.0, 2.0, "lost_after", "state_rate", "idle_state_rate") == ""
    assert rate_problem(1.0, 10.0, 0.0, "lost_after", "state_rate", "idle_state_rate") == ""
    problem = rate_problem(1.0, 10.0, 2.0, "lost_after", "state_rate", "idle_state_rate")
    assert f"fewer than {MIN_STATES_PER_LOSS}" in problem
    assert "idle_state_rate 2 Hz" in problem and ">= 3 Hz" in problem and ">= 1.5 s" in problem
    assert "state_rate 1 Hz" in rate_problem(1.5, 1.0, 2.0, "lost_after", "state_rate",
                                             "idle_state_rate")


def odom_times(pacer, steps, cmd_at=(), moving_at=(), dt=0.02):
    """Step the pacer every `dt`; commanded at the step indices in `cmd_at`, moving at
    those in `moving_at`; the indices it publishes at."""
    return [i for i in range(steps)
            if pacer.due(i * dt, (0.3, 0.0) if i in cmd_at else (0.0, 0.0),
                         (0.3, 0.0) if i in moving_at else (0.0, 0.0))]


def test_odometry_slows_after_idle_after_and_is_back_at_full_rate_at_the_first_command():
    pacer = OdomPacer(0.02, 2.0, idle_after=1.0)
    # driving for 1 s, then standing: full rate for idle_after, then 2 Hz
    drive = set(range(50))
    sent = odom_times(pacer, 250, cmd_at=drive, moving_at=drive)
    assert sent[:99] == list(range(99))       # to idle_after past the last move: every step
    slow = [i for i in sent if i >= 98]
    assert len(slow) == 7 and all(b - a == 25 for a, b in zip(slow, slow[1:])), slow  # 2 Hz
    # the first non-zero command: published at that very step, and every step on
    pacer2 = OdomPacer(0.02, 2.0, idle_after=1.0)
    sent = odom_times(pacer2, 300, cmd_at=set(range(213, 300)))
    assert 213 in sent and all(i in sent for i in range(213, 300))
    assert len([i for i in sent if i < 213]) < 50 + 5 + 2


def test_a_robot_still_rolling_or_stopped_by_its_watchdog_reports_at_full_rate():
    pacer = OdomPacer(0.02, 2.0, idle_after=0.5)
    # no command (the watchdog or an e-stop) but still moving: every step
    assert odom_times(pacer, 100, moving_at=set(range(100))) == list(range(100))
    assert OdomPacer(0.02, 0.0).due(5.0, (0.0, 0.0), (0.0, 0.0))   # 0: off

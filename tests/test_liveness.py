import pytest

from fleet_coord.core.liveness import LivenessTracker


def test_silent_robot_is_declared_lost_once_after_the_bound():
    lv = LivenessTracker(lost_after=1.0)
    assert lv.heard("a", 0.0) is True
    assert lv.heard("b", 0.0) is True
    assert lv.heard("a", 0.5) is False
    assert lv.check(1.0) == []
    lv.heard("a", 1.2)
    assert lv.check(1.01) == ["b"]          # b: age 1.01 > 1.0; a spoke at 1.2
    assert lv.check(5.0) == ["a"]          # b is not reported twice
    assert lv.alive() == []


def test_lost_robot_that_speaks_again_rejoins():
    lv = LivenessTracker(lost_after=1.0)
    lv.heard("a", 0.0)
    assert lv.check(2.0) == ["a"]
    assert lv.heard("a", 2.1) is True
    assert lv.alive() == ["a"] and not lv.lost


def test_removed_robot_is_forgotten_and_bad_bound_rejected():
    lv = LivenessTracker(lost_after=1.0)
    lv.heard("a", 0.0)
    lv.forget("a")
    assert lv.check(10.0) == [] and lv.alive() == []
    with pytest.raises(ValueError, match="lost_after"):
        LivenessTracker(lost_after=0)

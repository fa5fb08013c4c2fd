import math

import pytest

from fleet_coord.core.kinematics import Limits, UnicycleState, step


def test_straight_line_moves_v_times_dt():
    s = step(UnicycleState(theta=math.pi / 2), 0.5, 0.0, 2.0, Limits())
    assert s.x == pytest.approx(0.0, abs=1e-12)
    assert s.y == pytest.approx(1.0)


def test_arc_integration_is_exact_over_a_full_circle():
    s = UnicycleState()
    for _ in range(1000):
        s = step(s, 1.0, 1.0, 2 * math.pi / 1000, Limits(max_v=2, max_w=2))
    assert (s.x, s.y) == pytest.approx((0.0, 0.0), abs=1e-9)
    assert s.theta == pytest.approx(0.0, abs=1e-9)


def test_commands_are_clipped_and_ramped():
    lim = Limits(max_v=1.0, max_w=1.0, max_acc=0.5)
    s = step(UnicycleState(), 5.0, -5.0, 1.0, lim)
    assert s.v == pytest.approx(0.5)  # ramp limited
    assert s.w == pytest.approx(-1.0)  # clipped


def test_non_finite_command_stops_instead_of_integrating():
    s = step(UnicycleState(v=1.0), float("nan"), 0.0, 0.1, Limits())
    assert s.v == 0.0 and math.isfinite(s.x)


def test_bad_dt_and_limits_are_rejected_with_the_name():
    with pytest.raises(ValueError, match="dt"):
        step(UnicycleState(), 0, 0, -1, Limits())
    with pytest.raises(ValueError, match="max_v"):
        Limits(max_v=0)

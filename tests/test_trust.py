"""fleet_coord.core.trust: who may say what, and whether a signed message is new. Pure
logic (no crypto, no ROS): the policy table, the keyring's rotate / revoke rules, the
replay window and the log rate limit."""
import pytest

from fleet_coord.core.trust import (POLICY, REPLAY_WINDOW, Keyring, KeyRecord, RateLimiter,
                                    Refusal, ReplayGuard, Role, authorize, key_id, rule_of)


def rec(name, role, robots=(), key=None):
    return KeyRecord(name, role, key or name.encode().ljust(32, b"."), tuple(robots))


OPERATOR = rec("operator", Role.OPERATOR)
DISPATCHER = rec("dispatcher", Role.DISPATCHER)
TRAFFIC = rec("traffic", Role.TRAFFIC)
MONITOR = rec("fleet_monitor", Role.MONITOR)
R1 = rec("robot_1", Role.AGENT, ["robot_1"])
R2 = rec("robot_2", Role.AGENT, ["robot_2"])
BRIDGE1 = rec("bridge_robot_1", Role.DRIVER, ["robot_1"])
WORLD = rec("ideal_driver", Role.SIM, ["*"])


def ring(*recs, serial=1, revoked=()):
    return Keyring(serial, {r.identity: r for r in recs}, frozenset(revoked))


# -- policy ------------------------------------------------------------------------------

def test_only_the_authority_makes_a_grant_or_announces_losses():
    for ch in ("traffic/updates", "traffic/reserve#response", "fleet/robot_lost",
               "fleet/robot_removed"):
        assert authorize(rule_of(ch), TRAFFIC) is None
        for other in (OPERATOR, DISPATCHER, MONITOR, R1, WORLD):
            assert authorize(rule_of(ch), other) is Refusal.NOT_ALLOWED, (ch, other.identity)


def test_a_robot_speaks_only_for_itself():
    for ch in ("fleet/proposals", "fleet/refusals", "traffic/reserve", "traffic/release"):
        assert authorize(rule_of(ch), R1, ["robot_1"]) is None
        assert authorize(rule_of(ch), R1, ["robot_2"]) is Refusal.WRONG_SUBJECT
    state = rule_of("fleet/robot_states")
    assert authorize(state, R1, ["robot_1"], "MOVING") is None
    assert authorize(state, R2, ["robot_1"], "MOVING") is Refusal.WRONG_SUBJECT
    assert authorize(state, R1, ["robot_1"], "LOST") is Refusal.OPERATION  # the monitor's word
    assert authorize(state, TRAFFIC, ["robot_1"], "IDLE") is Refusal.NOT_ALLOWED


def test_a_robot_reports_only_its_own_execution_not_the_dispatchers_states():
    st = rule_of("fleet/task_status")
    for op in ("ACTIVE", "DONE", "FAILED"):
        assert authorize(st, R1, ["robot_1", "robot_1"], op) is None
        assert authorize(st, R2, ["robot_1", "robot_2"], op) is Refusal.WRONG_SUBJECT
    for op in ("QUEUED", "AWARDED", "CANCELLED"):
        assert authorize(st, R1, ["robot_1", "robot_1"], op) is Refusal.OPERATION
        assert authorize(st, DISPATCHER, ["robot_1", "dispatcher"], op) is None


def test_only_an_operator_submits_cancels_removes_and_releases_an_estop():
    for ch in ("fleet/submit_task", "fleet/cancel_task", "fleet/remove_robot",
               "ideal_driver/spawn_robot", "fleet/keyring", "fleet/execute_task"):
        assert authorize(rule_of(ch), OPERATOR) is None
        for other in (DISPATCHER, TRAFFIC, MONITOR, R1, BRIDGE1, WORLD):
            assert authorize(rule_of(ch), other) is not None, (ch, other.identity)
    estop = rule_of("{robot}/set_estop")
    assert authorize(estop, OPERATOR, op="release") is None
    for anyone in (DISPATCHER, TRAFFIC, MONITOR, R1, R2, BRIDGE1, WORLD, OPERATOR):
        assert authorize(estop, anyone, op="engage") is None  # stopping is always safe
    for other in (DISPATCHER, TRAFFIC, R1, BRIDGE1, WORLD):
        assert authorize(estop, other, op="release") is Refusal.OPERATION


def test_a_driver_speaks_for_its_robot_and_a_world_for_any_robot():
    odom = rule_of("{robot}/odom_signed")
    assert authorize(odom, BRIDGE1, ["robot_1"]) is None
    assert authorize(odom, BRIDGE1, ["robot_2"]) is Refusal.WRONG_SUBJECT
    assert authorize(odom, WORLD, ["robot_7"]) is None


def test_every_service_request_channel_has_a_response_rule_where_replies_matter():
    for ch in ("traffic/reserve", "traffic/release", "fleet/remove_robot", "fleet/submit_task",
               "fleet/cancel_task", "ideal_driver/spawn_robot", "{robot}/set_estop"):
        assert ch + "#response" in POLICY


def test_an_unknown_channel_is_an_error_naming_it():
    with pytest.raises(KeyError, match="fleet/nonsense"):
        rule_of("fleet/nonsense")


# -- keyring -----------------------------------------------------------------------------

def test_keyring_lookup_names_why_a_key_does_not_count():
    kr = ring(OPERATOR, R1)
    assert kr.lookup("robot_1", R1.key_id) is R1
    assert kr.lookup("ghost", R1.key_id) is Refusal.UNKNOWN_SIGNER
    assert kr.lookup("robot_1", "0" * 16) is Refusal.UNKNOWN_KEY
    assert kr.lookup("robot_1", OPERATOR.key_id) is Refusal.UNKNOWN_KEY  # another's key


def test_rotation_revokes_the_old_key_and_bumps_the_serial():
    kr = ring(OPERATOR, R1)
    new = rec("robot_1", Role.AGENT, ["robot_1"], key=b"n" * 32)
    kr2 = kr.with_identity(new)
    assert kr2.serial == 2
    assert kr2.lookup("robot_1", new.key_id) is new
    assert kr2.lookup("robot_1", R1.key_id) is Refusal.REVOKED


def test_revoking_a_stolen_robot_refuses_it_from_then_on():
    kr = ring(OPERATOR, R1, R2).without_identity("robot_1")
    assert kr.lookup("robot_1", R1.key_id) is Refusal.REVOKED
    assert kr.lookup("robot_2", R2.key_id) is R2
    with pytest.raises(KeyError, match="ghost"):
        kr.without_identity("ghost")


def test_a_keyring_cannot_list_a_current_key_as_revoked():
    with pytest.raises(ValueError, match="robot_1"):
        ring(R1, revoked=[R1.key_id])


def test_key_id_is_a_stable_fingerprint():
    assert key_id(b"\0" * 32) == key_id(b"\0" * 32) != key_id(b"\1" * 32)
    assert len(key_id(b"x")) == 16


# -- replay ------------------------------------------------------------------------------

def test_replay_of_a_taken_message_is_refused_and_reordering_within_the_window_is_not():
    g = ReplayGuard(started=100.0)
    assert g.accept("robot_1", 7, "fleet/proposals", 5, 100.0, 100.0) is None
    assert g.accept("robot_1", 7, "fleet/proposals", 5, 100.0, 100.1) is Refusal.REPLAY
    assert g.accept("robot_1", 7, "fleet/proposals", 9, 100.0, 100.1) is None
    assert g.accept("robot_1", 7, "fleet/proposals", 7, 100.0, 100.1) is None  # late, new
    assert g.accept("robot_1", 7, "fleet/proposals", 7, 100.0, 100.1) is Refusal.REPLAY
    # another channel, another session: their own counters
    assert g.accept("robot_1", 7, "fleet/refusals", 5, 100.0, 100.1) is None
    assert g.accept("robot_1", 8, "fleet/proposals", 5, 100.0, 100.1) is None


def test_newest_is_the_latest_stamp_taken_from_a_signer_on_any_channel():
    g = ReplayGuard(started=0.0)
    assert g.newest("robot_1") is None
    g.accept("robot_1", 7, "fleet/proposals", 1, 5.0, 5.0)
    g.accept("robot_1", 8, "fleet/robot_states", 1, 6.5, 6.5)
    g.accept("robot_1", 7, "fleet/proposals", 2, 6.0, 6.6)
    g.accept("robot_2", 1, "fleet/proposals", 1, 9.0, 9.0)
    assert g.newest("robot_1") == 6.5 and g.newest("robot_2") == 9.0


def test_a_counter_older_than_the_window_is_refused():
    g = ReplayGuard(started=0.0)
    g.accept("a", 1, "c", 1000, 1.0, 1.0)
    assert g.accept("a", 1, "c", 1000 - REPLAY_WINDOW, 1.0, 1.0) is Refusal.REPLAY
    assert g.accept("a", 1, "c", 1000 - REPLAY_WINDOW + 1, 1.0, 1.0) is None
    g.accept("a", 1, "c", 1000 + 10 * REPLAY_WINDOW, 1.0, 1.0)   # a big jump clears the map
    assert g.accept("a", 1, "c", 1000 + 10 * REPLAY_WINDOW - 1, 1.0, 1.0) is None


def test_freshness_window_future_and_before_this_receiver_started():
    g = ReplayGuard(started=1000.0, window=30.0, tolerance=2.0)
    assert g.fresh(1010.0, 1010.0) is None
    assert g.fresh(1013.0, 1010.0) is Refusal.FUTURE
    assert g.fresh(1030.0, 1061.0) is Refusal.STALE                 # older than the window
    assert g.fresh(997.0, 1005.0) is Refusal.STALE                  # captured before I started
    assert g.fresh(999.0, 1005.0) is None                           # in flight while I started
    # a latched channel's history is older than both; its content order protects it
    assert g.fresh(500.0, 1005.0, latched=True) is None
    assert g.fresh(1013.0, 1010.0, latched=True) is Refusal.FUTURE


def test_silent_sessions_are_forgotten_after_the_window():
    g = ReplayGuard(started=0.0, window=10.0)
    for s in range(50):
        g.accept("robot_1", s, "fleet/robot_states", 1, 1.0, 1.0)
    assert len(g) == 50
    g.accept("robot_1", 999, "fleet/robot_states", 1, 30.0, 30.0)
    assert len(g) == 1


def test_replay_guard_refuses_a_nonsense_window():
    with pytest.raises(ValueError, match="window"):
        ReplayGuard(started=0.0, window=0.0)


# -- log rate limit ----------------------------------------------------------------------

def test_rate_limiter_reports_once_per_period_and_counts_what_it_held_back():
    rl = RateLimiter(period=5.0)
    assert rl.allow(("ghost", "unsigned"), 0.0) == 0
    assert all(rl.allow(("ghost", "unsigned"), t) is None for t in (1.0, 2.0, 3.0))
    assert rl.allow(("robot_1", "replayed"), 3.0) == 0               # another key
    assert rl.allow(("ghost", "unsigned"), 5.5) == 3

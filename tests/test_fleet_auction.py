"""Contract Net over real DDS: 5 robot agents bid, the dispatcher awards the cheapest."""

import pytest

from fleet_coord_msgs.msg import TaskStatus

from fleet_harness import Fleet
from rosutil import ros_context, spin_until

# A room with a walled-in pocket at (8, 5): no robot can ever reach it.
MAP = """type octile
height 8
width 12
map
@@@@@@@@@@@@
@..........@
@..........@
@..........@
@......@@@.@
@......@.@.@
@......@@@.@
@@@@@@@@@@@@
"""
ROBOTS = {"r0": (1, 1), "r1": (4, 1), "r2": (7, 1), "r3": (10, 1), "r4": (1, 6)}


@pytest.fixture
def room(tmp_path):
    path = tmp_path / "room.map"
    path.write_text(MAP)
    return str(path)


@pytest.mark.parametrize("grouped", [False, True], ids=["node-per-agent", "agent-group"])
def test_auction_awards_cheapest_bidder_and_unreachable_task_fails_with_reason(
        room, tmp_path, grouped):
    with ros_context() as (ctx, ex):
        fleet = Fleet(ctx, ex, room, ROBOTS, str(tmp_path / "ledger.db"), retry_max_rounds=1,
                      grouped=grouped)
        assert spin_until(ex, fleet.ready, 15.0), "fleet did not come up"

        # (9, 3) is 3 lanes from r3 at (10, 1), 4 from r2: r3 bids lowest.
        resp = fleet.submit("near-r3", ["9,3"])
        assert resp.accepted, resp.error
        assert spin_until(ex, lambda: fleet.first("near-r3", TaskStatus.AWARDED), 5.0)
        assert fleet.first("near-r3", TaskStatus.AWARDED).robot == "r3"
        init_bids = [s for s in fleet.statuses if s.task_id == "near-r3"]
        assert init_bids  # the auction was visible on /fleet/task_status

        resp = fleet.submit("pocket", ["8,5"])
        assert resp.accepted, resp.error
        assert spin_until(ex, lambda: fleet.final("pocket") is not None, 5.0)
        failed = fleet.final("pocket")
        assert failed.state == TaskStatus.FAILED
        assert "8,5" in failed.reason and "reach" in failed.reason, failed.reason

        # The awarded task is driven to completion meanwhile.
        assert spin_until(ex, lambda: fleet.final("near-r3") is not None, 20.0)
        assert fleet.final("near-r3").state == TaskStatus.DONE
        x, y, _ = fleet.agents["r3"].core.pose
        assert abs(x - 9) < 0.1 and abs(y - 3) < 0.1

        # tasks that ended (done, or given up) leave nothing behind in the agents: a
        # fleet running for days must not grow with the tasks it has seen
        def forgotten():
            return all(not a.core.task_stations and not a.core.active
                       and a.core.participant.open_proposals() == 0
                       for a in fleet.agents.values())
        assert spin_until(ex, forgotten, 5.0), {
            r: (sorted(a.core.task_stations), a.core.participant.open_proposals())
            for r, a in fleet.agents.items()}

"""An authenticating dispatcher checks a proposal's signature only when it is about to win
(docs/security.md): a tampered cheaper bid is dropped at the award and the next best
wins, and the tampered one gets no answer; a forged second bid cannot displace a robot's
genuine one. A real Dispatcher node over DDS; the test's node speaks as robots r1 and r2
(it holds their keys) and tampers with r2's bids."""
import pytest

rclpy = pytest.importorskip("rclpy", reason="rclpy is installed by `make setup`")
from builtin_interfaces.msg import Time  # noqa: E402
from fleet_coord_msgs.msg import (Award, CallForProposal, Proposal,  # noqa: E402
                                  Rejection, RobotState)
from fleet_coord_msgs.msg import Task as TaskMsg  # noqa: E402
from fleet_coord_msgs.srv import SubmitTask  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402

from fleet_coord import qos  # noqa: E402
from fleet_coord.auth import Signer  # noqa: E402
from fleet_coord.core.tasks import TaskState  # noqa: E402
from fleet_coord.core.trust import Refusal  # noqa: E402
from fleet_coord.dispatcher import Dispatcher  # noqa: E402
from fleet_coord.fleet_config import DEFAULT_MAP  # noqa: E402
from fleet_coord.keys import KeyDir  # noqa: E402
from fleet_harness import provision_keys  # noqa: E402
from rosutil import ros_context, spin_until  # noqa: E402


def test_a_tampered_winning_bid_is_dropped_at_the_award_and_the_next_best_wins(tmp_path):
    kd = KeyDir(provision_keys(["r1", "r2"], str(tmp_path)))
    signer = {n: Signer(n, kd.private_key(n)) for n in ("operator", "r1", "r2")}
    with ros_context() as (ctx, ex):
        disp = Dispatcher(context=ctx, parameter_overrides=[
            Parameter("map", value=DEFAULT_MAP), Parameter("ledger", value=str(tmp_path / "l.db")),
            Parameter("bid_window", value=5.0), Parameter("auth_mode", value="enforce"),
            Parameter("auth_keys", value=kd.path)])
        node = rclpy.create_node("robots_r1_r2", context=ctx)
        for n in (disp, node):
            ex.add_node(n)
        states = node.create_publisher(RobotState, "/fleet/robot_states", qos.state_qos())
        bids = node.create_publisher(Proposal, "/fleet/proposals", qos.PROTOCOL)
        heard = {"cfp": [], "award": [], "reject": []}
        node.create_subscription(CallForProposal, "/fleet/cfp", heard["cfp"].append,
                                 qos.PROTOCOL)
        node.create_subscription(Award, "/fleet/awards", heard["award"].append, qos.PROTOCOL)
        node.create_subscription(Rejection, "/fleet/rejections", heard["reject"].append,
                                 qos.PROTOCOL)

        def alive():
            for r in ("r1", "r2"):
                states.publish(signer[r].sign(RobotState(robot=r, mode=RobotState.IDLE),
                                              "fleet/robot_states"))
            return disp.alive_robots(disp.now()) == ["r1", "r2"]
        assert spin_until(ex, alive, 15.0, step=0.1)
        client = node.create_client(SubmitTask, "/fleet/submit_task")
        assert client.wait_for_service(timeout_sec=10.0)
        req = signer["operator"].sign(SubmitTask.Request(task=TaskMsg(
            id="t", kind="goto", stations=["9,9"])), "fleet/submit_task")
        fut = client.call_async(req)
        assert spin_until(ex, lambda: fut.done() and heard["cfp"], 15.0, step=0.1)
        assert fut.result().accepted, fut.result().error
        cfp = heard["cfp"][-1]
        # r2's genuine bid, its cost lowered in flight (the signature no longer fits), then
        # r1's: every participant answered, the round closes at once
        tampered = signer["r2"].sign(Proposal(task_id="t", round=cfp.round, robot="r2",
                                              cost=9.0, eta=Time(sec=9)), "fleet/proposals")
        tampered.cost = 0.5
        bids.publish(tampered)
        bids.publish(signer["r1"].sign(Proposal(task_id="t", round=cfp.round, robot="r1",
                                                cost=5.0, eta=Time(sec=5)), "fleet/proposals"))
        assert spin_until(ex, lambda: heard["award"], 10.0), disp.auth.verifier.dropped
        assert [(a.robot, a.round) for a in heard["award"]] == [("r1", cfp.round)]
        assert disp.ledger.get("t").state is TaskState.AWARDED
        assert disp.ledger.get("t").robot == "r1"
        assert disp.auth.verifier.dropped.get(Refusal.BAD_SIGNATURE) == 1
        spin_until(ex, lambda: False, 0.3)
        assert [r.robot for r in heard["reject"]] == [], "the tampered bid got an answer"

        # a robot's second bid in a round is checked at once: a forged one after r2's
        # genuine bid is dropped and r2's bid stands (had it displaced it, r2 would lose t2)
        req = signer["operator"].sign(SubmitTask.Request(task=TaskMsg(
            id="t2", kind="goto", stations=["9,9"])), "fleet/submit_task")
        fut = client.call_async(req)
        assert spin_until(ex, lambda: fut.done() and len(heard["cfp"]) == 2, 15.0, step=0.1)
        cfp = heard["cfp"][-1]
        genuine = signer["r2"].sign(Proposal(task_id="t2", round=cfp.round, robot="r2",
                                             cost=3.0, eta=Time(sec=3)), "fleet/proposals")
        forged = signer["r2"].sign(Proposal(task_id="t2", round=cfp.round, robot="r2",
                                            cost=9.0, eta=Time(sec=9)), "fleet/proposals")
        forged.cost = 0.5
        for m in (genuine, forged):
            bids.publish(m)
        assert spin_until(ex, lambda: disp.auth.verifier.dropped.get(Refusal.BAD_SIGNATURE)
                          == 2, 10.0, step=0.05)
        bids.publish(signer["r1"].sign(Proposal(task_id="t2", round=cfp.round, robot="r1",
                                                cost=5.0, eta=Time(sec=5)), "fleet/proposals"))
        assert spin_until(ex, lambda: len(heard["award"]) == 2, 10.0)
        assert heard["award"][-1].robot == "r2" and disp.ledger.get("t2").robot == "r2"

"""`fleet-coord demo` end to end: a small simulated fleet (PyBullet kinematic, every node a
process, sim time) completes its pick-and-drop tasks with no collision and no
reservation violation, writes its report, and leaves no process behind."""
import json
import os

import pytest

pytest.importorskip("fleet_coord_msgs.msg", reason="fleet_coord_msgs is built by `make setup`")
pytest.importorskip("pybullet")
from fleet_coord.cli import main  # noqa: E402


def _children():
    me = str(os.getpid())
    kids = []
    for p in os.listdir("/proc"):
        if p.isdigit():
            try:
                with open(f"/proc/{p}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if fields[1] == me and fields[0] != "Z":
                kids.append(p)
    return kids


def test_small_fleet_demo_completes_safely_and_writes_its_report(tmp_path, capsys):
    out = tmp_path / "report"
    before = set(_children())
    code = main(["demo", "--robots", "3", "--tasks", "3", "--seed", "12", "--out", str(out),
                 "--timeout", "150"])
    printed = capsys.readouterr().out
    metrics = json.loads((out / "metrics.json").read_text())
    assert code in (0, 1), printed
    assert metrics["done"] == 3 and metrics["failed"] == 0
    assert metrics["robot_robot_collisions"] == 0
    assert metrics["reservation_conflicts"] == 0
    assert metrics["monitor_samples"] > 50
    assert metrics["auction_rounds"] >= 3 and metrics["bids"] >= 3
    for name in ("trajectories.png", "timeline.png", "events.jsonl", "fleet.log"):
        assert (out / name).stat().st_size > 0, name
    from PIL import Image
    with Image.open(out / "run.gif") as gif:
        assert gif.n_frames > 10
    assert "tasks: 3/3 done" in printed
    # secure by default: the demo's own keys; a genuine fleet has nothing dropped
    assert "authentication: on" in printed
    dropped = [ln for ln in (out / "fleet.log").read_text().splitlines()
               if "claiming to be from" in ln]
    assert not dropped, dropped[:5]
    assert set(_children()) <= before, "fleet processes left behind"
    _check_recording(out, metrics, capsys)
    if metrics["excursions"] and metrics["excursions"] == metrics["reservation_violations"]:
        # Known open issue (docs/benchmarks.md, "Demo (full fleet)"): a few odometry
        # samples of a robot outside its held resources, 0.1-0.3 m, no contact.
        pytest.xfail(f"{metrics['excursions']} excursions: {metrics['first_excursions']}")
    assert code == 0, printed


@pytest.mark.parametrize("signame", ["SIGINT", "SIGTERM"])
def test_ctrl_c_stops_the_demo_and_its_fleet(tmp_path, signame):
    """SIGINT (a Ctrl-C in the terminal) or SIGTERM ends `fleet-coord demo` with exit 130
    and a one-line message, and takes every fleet process down with it. (Under CPU load a
    KeyboardInterrupt raised inside the events executor once hung the demo, or broke it
    with a pybind11 RuntimeError: the signal may only set a flag.)"""
    import signal
    import subprocess
    import sys
    import time

    from rosutil import descendants
    proc = subprocess.Popen([sys.executable, "-m", "fleet_coord.cli", "demo", "--robots", "2",
                             "--tasks", "4", "--no-gif", "--out", str(tmp_path / "report")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while len(descendants(proc.pid)) < 5 and time.monotonic() < deadline:
            time.sleep(0.5)   # the fleet's processes are up (sim, traffic, dispatcher, ...)
        assert len(descendants(proc.pid)) >= 5, "the demo's fleet did not start"
        time.sleep(3.0)
        kids = descendants(proc.pid)
        proc.send_signal(getattr(signal, signame))
        try:
            _, err = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            # where is it stuck? the events executor enabled faulthandler: SIGABRT dumps
            # every thread's Python stack to stderr
            proc.send_signal(signal.SIGABRT)
            try:
                _, err = proc.communicate(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                _, err = proc.communicate()
            pytest.fail(f"the demo did not exit within 60 s of {signame}:\n{err[-6000:]}")
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err[-2000:]
    assert "interrupted" in err and "Traceback" not in err, err[-2000:]
    time.sleep(0.5)
    assert not (kids & {int(p) for p in os.listdir("/proc") if p.isdigit()}), \
        "fleet processes outlived the demo"


@pytest.mark.parametrize("how", ["timeout", "stalled"])
def test_a_run_that_does_not_finish_stops_with_a_partial_report(tmp_path, capsys,
                                                                 monkeypatch, how):
    """--timeout, or the stall guard (no task ended for STALL_SIM_S of sim time, made 2 s
    here), stops the run; the report is still written, with the safety counts, the tasks
    that did not end, and how the run ended; the exit code is 1."""
    out = tmp_path / "report"
    args = ["demo", "--robots", "2", "--tasks", "6", "--seed", "3", "--no-gif",
            "--out", str(out)]
    if how == "timeout":
        args += ["--timeout", "2"]
    else:
        monkeypatch.setattr("fleet_coord.demo.STALL_SIM_S", 2.0)
    before = set(_children())
    code = main(args)
    captured = capsys.readouterr()
    metrics = json.loads((out / "metrics.json").read_text())
    assert code == 1, captured.out
    assert metrics["ended"] == how, metrics["stop_reason"]
    assert metrics["unfinished"] >= 1 and metrics["done"] + metrics["failed"] == 6
    assert metrics["robot_robot_collisions"] == 0 and metrics["reservation_conflicts"] == 0
    assert metrics["monitor_samples"] > 0
    assert (out / "trajectories.png").stat().st_size > 0
    assert f"run STOPPED ({how})" in captured.out
    assert "partial report" in captured.err
    assert set(_children()) <= before, "fleet processes left behind"


#: metrics `fleet-coord report RECORDING` must rebuild exactly from the demo's recording
SAME = ("tasks", "done", "failed", "unfinished", "makespan_s", "mean_task_time_s",
        "p95_task_time_s", "tasks_per_robot", "auction_rounds", "bids", "refusals", "awards",
        "tasks_given_back", "reservation_commits", "parking_commits", "path_commits", "replans",
        "robot_robot_collisions", "robot_obstacle_contacts", "reservation_conflicts",
        "outcomes", "robots", "mode", "seed")


def _check_recording(out, metrics, capsys):
    """The demo's MCAP recording opens with the mcap reader, holds the fleet's topics with
    plausible counts, decodes as Foxglove would (mcap_ros2, from the schemas in the file
    alone), and `fleet-coord report` rebuilds the demo's metrics from it."""
    from mcap.reader import make_reader
    from mcap_ros2.decoder import DecoderFactory

    path = out / "fleet.mcap"
    with open(path, "rb") as f:
        reader = make_reader(f, decoder_factories=[DecoderFactory()])
        summary = reader.get_summary()
        counts = {summary.channels[c].topic: n
                  for c, n in summary.statistics.channel_message_counts.items()}
        schemas = {summary.channels[c].topic: summary.schemas[summary.channels[c].schema_id].name
                   for c in summary.channels}
        decoded = {}
        for _schema, channel, _msg, ros in reader.iter_decoded_messages(
                topics=["/fleet/task_status", "/tf_static", "/robot_1/odom"]):
            decoded.setdefault(channel.topic, []).append(ros)
    assert summary.statistics.message_count == sum(counts.values()) > 1000
    assert schemas["/robot_1/odom"] == "nav_msgs/msg/Odometry"
    assert schemas["/tf"] == "tf2_msgs/msg/TFMessage"
    for topic in ("/fleet/state", "/fleet/robot_states", "/traffic/updates", "/fleet/cfp",
                  "/fleet/proposals", "/fleet/awards", "/sim/contacts/robot_robot"):
        assert counts.get(topic, 0) > 0, (topic, sorted(counts))
    assert "/clock" not in counts          # excluded by default (docs/recording.md)
    for r in ("robot_1", "robot_2", "robot_3"):
        assert counts[f"/{r}/odom"] > 100    # 20 Hz of sim time for the whole run
    done = [m for m in decoded["/fleet/task_status"] if m.state == 5]
    assert len({m.task_id for m in done}) == 3
    assert decoded["/robot_1/odom"][-1].header.frame_id == "robot_1/odom"
    assert {t.child_frame_id for m in decoded["/tf_static"] for t in m.transforms} >= {
        "robot_1/odom", "robot_2/odom", "robot_3/odom"}
    # the report, rebuilt from the recording alone
    rebuilt_dir = out / "rebuilt"
    capsys.readouterr()
    assert main(["report", str(path), "--out", str(rebuilt_dir)]) == 0
    rebuilt = json.loads((rebuilt_dir / "metrics.json").read_text())
    assert {k: rebuilt[k] for k in SAME} == {k: metrics[k] for k in SAME}
    assert rebuilt["monitor_samples"] > 50 and rebuilt["excursions"] <= metrics["excursions"] + 2
    assert "tasks: 3/3 done" in capsys.readouterr().out

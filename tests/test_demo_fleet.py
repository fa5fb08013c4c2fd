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
    assert set(_children()) <= before, "fleet processes left behind"
    if metrics["excursions"] and metrics["excursions"] == metrics["reservation_violations"]:
        # Known open issue (docs/benchmarks.md, "Demo (full fleet)"): a few odometry
        # samples of a robot outside its held resources, 0.1-0.3 m, no contact.
        pytest.xfail(f"{metrics['excursions']} excursions: {metrics['first_excursions']}")
    assert code == 0, printed

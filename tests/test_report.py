"""The demo report's pictures without a fleet: the animated GIF (fleet_coord.report)."""
import types

import numpy as np
import pytest

pytest.importorskip("matplotlib")
from PIL import Image  # noqa: E402

from fleet_coord import report  # noqa: E402
from fleet_coord.fleet_config import load_roadmap  # noqa: E402


def _near(img, rgb, tol=12) -> int:
    a = np.asarray(img.convert("RGB")).astype(int)
    return int((np.abs(a - np.array(rgb)).max(axis=2) <= tol).sum())


def test_the_gif_draws_each_robot_and_its_trail_in_its_colour(tmp_path):
    roadmap = load_roadmap("")
    # three robots driving up the open area of the warehouse, 20 s
    rec = types.SimpleNamespace(t_submit=0.0, t_end=20.0, traces={
        f"r{i}": [(t * 0.1, 2.0 + 4 * i + 0.05 * t, 18.0 - 0.02 * t) for t in range(201)]
        for i in range(3)})
    path = tmp_path / "run.gif"
    n = report.render_gif(rec, roadmap, [], str(path), max_frames=20)
    assert n == 20
    with Image.open(path) as gif:
        assert gif.n_frames == 20
        gif.seek(0)
        first = gif.convert("RGB")
        gif.seek(19)
        last = gif.convert("RGB")
    assert first.tobytes() != last.tobytes()           # they moved
    for c in report._colors(3):
        rgb = [round(255 * v) for v in c[:3]]
        trail = [round(255 * (0.6 * v + 0.4)) for v in c[:3]]   # alpha 0.6 over the floor
        assert _near(last, rgb) > 8, rgb                        # the body
        assert _near(last, trail, tol=16) > 10, trail           # its trail, not grey

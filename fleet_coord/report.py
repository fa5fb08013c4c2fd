"""The demo's report: metrics from a recorded fleet run, and pictures of it.

- ``metrics(recording, ...)``: task outcomes and times, auction and planning statistics
  (from the causal event log the fleet_monitor wrote, see core/event_log.py), safety
  counts (the sim's contacts, the independent monitor's violations), real-time factor.
- ``plot_trajectories``: every robot's odometry over the map.
- ``plot_timeline``: robots x sim time; bars per task, solid while moving, hatched while
  waiting (planning, a refused commit, a held station), grey when idle.
- ``render_gif``: the run as an animated GIF rendered headless from the recorded
  odometry (matplotlib + Pillow), at most ``max_frames`` frames.

Matplotlib is imported inside the functions, with the Agg backend (no display needed).
"""
from __future__ import annotations

import json
import math
from collections import Counter
from typing import Any

import numpy as np

# fleet_coord_msgs constants, repeated so this module needs no ROS import
DONE, FAILED, CANCELLED = 5, 6, 7
QUEUED, ANNOUNCED, AWARDED, ACTIVE = 1, 2, 3, 4
IDLE, MOVING, WAITING = 0, 1, 2


def _percentile(values, q: float) -> float:
    return float(np.percentile(values, q)) if len(values) else 0.0


def auction_stats(events: list[dict], statuses: list[dict]) -> dict:
    """Rounds and awards from the dispatcher's task statuses (ANNOUNCED, AWARDED), bids,
    refusals and reservation commits from the event log."""
    kinds = Counter(e["event"] for e in events)
    rounds = max(kinds.get("cfp", 0), sum(1 for s in statuses if s["state"] == ANNOUNCED))
    awards = max(kinds.get("award", 0), sum(1 for s in statuses if s["state"] == AWARDED))
    refusals = Counter(e.get("reason", "").split(":")[0] for e in events
                       if e["event"] == "refusal")
    given_back = sum(1 for s in statuses if s["state"] == FAILED and s["robot"])
    commits, replans, parks = 0, 0, 0
    for e in events:
        if e["event"] != "reservation" or not e.get("added"):
            continue
        commits += 1
        added, removed = e["added"], e.get("removed") or []
        if len(added) == 1 and added[0][2] == "inf":
            parks += 1
        # a committed path replaced before it ended (finite holds still in the future)
        t = float(e.get("t", 0.0))
        if any(r[2] != "inf" and float(r[2]) > t + 1e-6 and float(r[1]) < float(r[2])
               for r in removed):
            replans += 1
    return {"auction_rounds": rounds, "bids": kinds.get("proposal", 0),
            "refusals": kinds.get("refusal", 0),
            "refusal_reasons": dict(refusals.most_common()),
            "awards": awards, "tasks_given_back": given_back,
            "reservation_commits": commits, "parking_commits": parks,
            "path_commits": commits - parks, "replans": replans}


def metrics(rec, tasks, spec, events: list[dict]) -> dict:
    """The metrics JSON of a run (times in sim seconds)."""
    queued = {}
    for s in rec.statuses:
        if s["state"] == QUEUED:
            queued.setdefault(s["task_id"], s["t"])
    done = {tid: f for tid, f in rec.final.items() if f["state"] == DONE}
    failed = {tid: f["reason"] for tid, f in rec.final.items() if f["state"] != DONE}
    missing = [t.id for t in tasks if t.id not in rec.final]
    for tid in missing:
        failed[tid] = "did not finish"
    times = [f["t"] - queued.get(tid, rec.t_submit) for tid, f in done.items()]
    by_robot = Counter(f["robot"] for f in done.values())
    # from the first task the dispatcher accepted (its QUEUED stamp): the same in a live
    # run and in its recording (fleet_coord.report_mcap)
    t0 = min(queued.values(), default=rec.t_submit)
    makespan = max((f["t"] for f in done.values()), default=t0) - t0
    out = {
        "ended": rec.ended, "stop_reason": rec.stop_reason,
        "robots": len(rec.robots), "tasks": len(tasks), "done": len(done),
        "failed": len(failed), "unfinished": len(missing), "failed_tasks": failed,
        "makespan_s": round(makespan, 2),
        "mean_task_time_s": round(float(np.mean(times)), 2) if times else 0.0,
        "p95_task_time_s": round(_percentile(times, 95), 2),
        "tasks_per_robot": dict(sorted(by_robot.items())),
        **auction_stats(events, rec.statuses),
        "robot_robot_collisions": rec.contacts_robot_robot,
        "robot_obstacle_contacts": rec.contacts_robot_obstacle,
        "reservation_conflicts": len(rec.conflicts),
        "excursions": len(rec.excursions),
        "reservation_violations": len(rec.conflicts) + len(rec.excursions),
        "monitor_samples": rec.monitor_samples, "monitor_gaps": rec.monitor_gaps,
        "first_conflicts": [list(map(str, c)) for c in rec.conflicts[:5]],
        "first_excursions": [list(c) for c in rec.excursions[:5]],
        "real_time_factor": round(rec.sim_rtf, 2),
        "real_time_factor_cap": spec.real_time_factor,
        "wall_run_s": round(rec.wall_run_s, 1), "wall_startup_s": round(rec.wall_startup_s, 1),
        "mode": spec.mode, "seed": spec.seed, "map": spec.map or "warehouse.map",
        "agents_per_process": spec.agents_per_process or len(rec.robots),
        "outcomes": {tid: ("DONE" if f["state"] == DONE else "FAILED")
                     for tid, f in sorted(rec.final.items())},
    }
    return out


def write_metrics(m: dict, path: str) -> None:
    with open(path, "w", encoding="utf-8") as f:
        json.dump(m, f, indent=2)
        f.write("\n")


# ----------------------------------------------------------------------------- pictures
def _mpl():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _colors(n: int):
    plt = _mpl()
    cmap = plt.get_cmap("tab10" if n <= 10 else "tab20" if n <= 20 else "hsv")
    return [cmap(i / max(1, n) if n > 20 else i) for i in range(n)]


def _map_axes(grid, scale: float = 3.0, extra_h: float = 0.6):
    plt = _mpl()
    fig, ax = plt.subplots(figsize=(max(4.0, grid.width / scale),
                                    max(3.0, grid.height / scale + extra_h)))
    ax.imshow(~grid.free, cmap="Greys", origin="upper", vmin=0, vmax=1.6,
              extent=(-0.5, grid.width - 0.5, grid.height - 0.5, -0.5))
    ax.set_xlim(-0.5, grid.width - 0.5)
    ax.set_ylim(grid.height - 0.5, -0.5)
    ax.set_aspect("equal")
    ax.tick_params(labelsize=6)
    return fig, ax


def _stations(roadmap, tasks):
    picks = {tuple(roadmap.pos[roadmap.vertex(t.stations[0])]) for t in tasks}
    drops = {tuple(roadmap.pos[roadmap.vertex(t.stations[-1])]) for t in tasks}
    return np.array(sorted(picks)), np.array(sorted(drops))


def plot_trajectories(rec, roadmap, tasks, path: str, title: str = "") -> None:
    plt = _mpl()
    fig, ax = _map_axes(roadmap.grid)
    picks, drops = _stations(roadmap, tasks)
    if len(picks):
        ax.scatter(picks[:, 0], picks[:, 1], marker="s", s=14, color="#f39c12", zorder=2,
                   label="pick")
    if len(drops):
        ax.scatter(drops[:, 0], drops[:, 1], marker="v", s=16, color="#27ae60", zorder=2,
                   label="drop")
    for (robot, trace), color in zip(rec.traces.items(), _colors(len(rec.traces))):
        if not trace:
            continue
        xy = np.array([(x, y) for _, x, y, _ in trace])
        ax.plot(xy[:, 0], xy[:, 1], color=color, lw=1.0, alpha=0.7)
        ax.plot(xy[0, 0], xy[0, 1], "o", color=color, ms=5, mec="k", mew=0.5,
                label=robot if len(rec.traces) <= 20 else None)
    ax.set_title(title, fontsize=8)
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def timeline_segments(states: list[tuple[float, int, str]], t_end: float):
    """[(t0, t1, mode, task_id)] from a robot's state samples: a segment per run of
    samples with the same (mode, task)."""
    segs = []
    for (t, mode, task), nxt in zip(states, states[1:] + [(t_end, None, None)]):
        t1 = min(nxt[0], t_end)
        if t1 <= t:
            continue
        if segs and segs[-1][2] == mode and segs[-1][3] == task and abs(segs[-1][1] - t) < 0.5:
            segs[-1] = (segs[-1][0], t1, mode, task)
        else:
            segs.append((t, t1, mode, task))
    return segs


def plot_timeline(rec, path: str, title: str = "") -> None:
    plt = _mpl()
    from matplotlib.patches import Patch

    robots = list(rec.robots)
    t0 = rec.t_submit
    t_end = max(rec.t_end, t0 + 1.0)
    task_ids = sorted({task for st in rec.states.values() for _, _, task in st if task})
    cmap = plt.get_cmap("tab20")
    color = {tid: cmap(i % 20) for i, tid in enumerate(task_ids)}
    fig, ax = plt.subplots(figsize=(11, 1.2 + 0.32 * len(robots)))
    for row, robot in enumerate(robots):
        for a, b, mode, task in timeline_segments(rec.states.get(robot, []), t_end):
            a, b = max(a, t0) - t0, b - t0
            if b <= 0:
                continue
            if not task or mode == IDLE:
                ax.broken_barh([(a, b - a)], (row - 0.3, 0.6), color="#dddddd", lw=0)
            elif mode == MOVING:
                ax.broken_barh([(a, b - a)], (row - 0.38, 0.76), color=color[task], lw=0)
            else:
                ax.broken_barh([(a, b - a)], (row - 0.38, 0.76), facecolor="white",
                               edgecolor=color[task], hatch="////", lw=0.0)
        # task labels at the middle of each task's span
        spans: dict[str, list[float]] = {}
        for a, b, _mode, task in timeline_segments(rec.states.get(robot, []), t_end):
            if task:
                s = spans.setdefault(task, [a, b])
                s[0], s[1] = min(s[0], a), max(s[1], b)
        for task, (a, b) in spans.items():
            if b - a > 0.04 * (t_end - t0):
                ax.text((a + b) / 2 - t0, row, task, ha="center", va="center", fontsize=5)
    ax.set_yticks(range(len(robots)))
    ax.set_yticklabels(robots, fontsize=6)
    ax.invert_yaxis()
    ax.set_xlim(0, t_end - t0)
    ax.set_xlabel("sim time since the first task was submitted (s)", fontsize=7)
    ax.tick_params(axis="x", labelsize=6)
    ax.legend(handles=[Patch(color="#888888", label="moving (colour: task)"),
                       Patch(facecolor="white", edgecolor="#888888", hatch="////",
                             label="waiting (planning / reserved wait / held station)"),
                       Patch(color="#dddddd", label="idle")],
              loc="upper center", bbox_to_anchor=(0.5, -0.25 if len(robots) < 6 else -0.08),
              ncol=3, fontsize=6, frameon=False)
    ax.set_title(title, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def render_gif(rec, roadmap, tasks, path: str, max_frames: int = 200, fps: int = 12) -> int:
    """Animate the recorded odometry; returns the number of frames written."""
    plt = _mpl()
    from PIL import Image

    t0 = min((tr[0][0] for tr in rec.traces.values() if tr), default=0.0)
    t1 = max((tr[-1][0] for tr in rec.traces.values() if tr), default=t0)
    t0 = max(t0, rec.t_submit - 1.0)
    t1 = min(t1, rec.t_end + 2.0) if rec.t_end > t0 else t1
    n = int(max(2, min(max_frames, math.ceil((t1 - t0) / 0.25))))
    ts = np.linspace(t0, t1, n)
    robots = [r for r in rec.traces if rec.traces[r]]
    xs, ys = [], []
    for r in robots:
        tr = np.array(rec.traces[r])
        xs.append(np.interp(ts, tr[:, 0], tr[:, 1]))
        ys.append(np.interp(ts, tr[:, 0], tr[:, 2]))
    xs, ys = np.array(xs), np.array(ys)
    colors = _colors(len(robots))
    fig, ax = _map_axes(roadmap.grid, scale=4.0, extra_h=0.4)
    fig.set_dpi(72)
    picks, drops = _stations(roadmap, tasks)
    if len(picks):
        ax.scatter(picks[:, 0], picks[:, 1], marker="s", s=6, color="#f39c12", alpha=0.6)
    if len(drops):
        ax.scatter(drops[:, 0], drops[:, 1], marker="v", s=8, color="#27ae60", alpha=0.6)
    trail_len = 12
    trails = [ax.plot([], [], color=c, lw=1.2, alpha=0.6)[0] for c in colors]
    bodies = ax.scatter(xs[:, 0], ys[:, 0], s=40, c=colors, edgecolors="k", linewidths=0.4,
                        zorder=3)
    title = ax.set_title("", fontsize=8)
    fig.tight_layout()
    # the map, stations and axes are drawn once; each frame redraws only what moves on a
    # copy of them (a full figure draw per frame, three of them through matplotlib's
    # animation writer, cost ~70 ms a frame: 14 CPU s for the demo's 200 frames)
    moving = [*trails, bodies, title]
    for a in moving:
        a.set_animated(True)
    canvas = fig.canvas
    canvas.draw()
    background = canvas.copy_from_bbox(fig.bbox)

    def draw(i: int, lo: int) -> Any:
        canvas.restore_region(background)
        bodies.set_offsets(np.column_stack([xs[:, i], ys[:, i]]))
        for k, line in enumerate(trails):
            line.set_data(xs[k, lo:i + 1], ys[k, lo:i + 1])
        title.set_text(f"t = {ts[i] - rec.t_submit:6.1f} s (sim)")
        for a in moving:
            fig.draw_artist(a)
        return Image.fromarray(np.asarray(canvas.buffer_rgba())[..., :3])
    # one palette for every frame (one of its own per frame cost more than drawing it),
    # from a picture with every colour the frames use: the map, each robot, whole trails
    palette = draw(n - 1, 0).quantize(colors=256)
    frames = [draw(i, max(0, i - trail_len)).quantize(palette=palette,
                                                      dither=Image.Dither.NONE)
              for i in range(n)]
    plt.close(fig)
    frames[0].save(path, save_all=True, append_images=frames[1:],
                   duration=int(1000 / fps), loop=0)
    return n

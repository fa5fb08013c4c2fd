"""Source of docs/img/architecture.png (docs/architecture.md): the layers, and the message
flow of one task. Render: .venv/bin/python docs/img/architecture.py"""
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import FancyBboxPatch  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
CORE, NODE, INPROC, BACK = "#dbe9f6", "#fde7c8", "#e2f0d9", "#eeeeee"


def box(ax, x, y, w, h, text, color, size=8.5, weight="normal"):
    ax.add_patch(FancyBboxPatch((x, y), w, h, boxstyle="round,pad=0.01,rounding_size=0.015",
                                fc=color, ec="#555555", lw=0.8))
    ax.text(x + w / 2, y + h / 2, text, ha="center", va="center", fontsize=size,
            weight=weight, wrap=True)


def layers(ax):
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.axis("off")
    ax.set_title("Layers: data flows one way, down", fontsize=11, weight="bold")
    # runtimes
    box(ax, 0.02, 0.70, 0.56, 0.22, "", NODE)
    ax.text(0.04, 0.895, "ROS 2 nodes (the product): translate messages <-> core calls",
            fontsize=8, va="top", style="italic")
    for i, name in enumerate(["dispatcher", "traffic", "robot_agent",
                              "fleet_monitor /\nrun_monitor"]):
        box(ax, 0.04 + i * 0.135, 0.72, 0.11, 0.12, name, "#fff6e8", 7.5)
    box(ax, 0.62, 0.70, 0.36, 0.22, "", INPROC)
    ax.text(0.64, 0.895, "in-process fleet (tests, benchmarks)", fontsize=8, va="top",
            style="italic")
    box(ax, 0.64, 0.72, 0.145, 0.12, "in_process\n(wiring)", "#f1f8ec", 7.5)
    box(ax, 0.815, 0.72, 0.145, 0.12, "bus: virtual clock,\ndelay / drop /\nreorder / cut",
        "#f1f8ec", 7)
    # core
    box(ax, 0.02, 0.30, 0.96, 0.34, "", CORE)
    ax.text(0.04, 0.625, "core (fleet_coord/core): pure Python, time is a parameter, "
                         "no ROS - the same code under both runtimes", fontsize=8,
            va="top", style="italic")
    row1 = ["dispatch\n(auctions, ledger)", "traffic\n(authority)", "execution\n(one robot)",
            "monitor\n(independent)"]
    row2 = ["contract_net", "reservations", "sipp / planner", "tracking",
            "tasks (ledger)", "replica", "yielding", "roadmap"]
    for i, t in enumerate(row1):
        box(ax, 0.045 + i * 0.235, 0.47, 0.2, 0.10, t, "#eef5fb", 8, "bold")
    for i, t in enumerate(row2):
        box(ax, 0.045 + i * 0.1175, 0.33, 0.095, 0.09, t, "#eef5fb", 6.5)
    # backends
    box(ax, 0.02, 0.04, 0.96, 0.20, "", BACK)
    ax.text(0.04, 0.225, "robot backends: one driver interface (cmd_vel in, odom out)",
            fontsize=8, va="top", style="italic")
    for i, t in enumerate(["ideal driver\n(core.kinematics)", "PyBullet sim",
                           "serial bridge +\nC firmware"]):
        box(ax, 0.06 + i * 0.31, 0.06, 0.26, 0.11, t, "#f8f8f8", 8)
    for x in (0.30, 0.80):
        ax.annotate("", xy=(x, 0.64), xytext=(x, 0.70),
                    arrowprops=dict(arrowstyle="->", color="#333333"))
    ax.annotate("", xy=(0.5, 0.24), xytext=(0.5, 0.30),
                arrowprops=dict(arrowstyle="<->", color="#333333"))


def flow(ax):
    actors = ["client", "dispatcher", "robot agents\n(all)", "winning\nagent", "traffic",
              "driver"]
    xs = [0.07 + i * 0.17 for i in range(len(actors))]
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.axis("off")
    ax.set_title("One task: cfp -> award -> reserve -> drive -> done", fontsize=11,
                 weight="bold")
    for x, a in zip(xs, actors):
        box(ax, x - 0.065, 0.90, 0.13, 0.07, a, "#fff6e8", 8, "bold")
        ax.plot([x, x], [0.04, 0.90], color="#999999", lw=0.8, ls="--")
    steps = [
        (0, 1, "SubmitTask (ledger: QUEUED)"),
        (1, 2, "cfp (task, round, bid deadline)"),
        (2, 1, "propose (marginal cost) / refuse (reason)"),
        (1, 3, "award (accept-proposal; ledger: AWARDED)"),
        (3, 4, "Reserve: SIPP path's segments (atomic)"),
        (4, 3, "granted (or refused: replan)"),
        (4, 2, "/traffic/updates (every replica)"),
        (3, 5, "cmd_vel (tracks the timed path)"),
        (5, 3, "odom"),
        (3, 1, "TaskStatus ACTIVE ... DONE (ledger: DONE)"),
        (3, 4, "Reserve: park at the last station"),
    ]
    for k, (a, b, text) in enumerate(steps):
        y = 0.84 - k * 0.072
        ax.annotate("", xy=(xs[b], y), xytext=(xs[a], y),
                    arrowprops=dict(arrowstyle="->", color="#1f5f99", lw=1.2))
        ax.text((xs[a] + xs[b]) / 2, y + 0.012, text, ha="center", va="bottom", fontsize=7)


def main() -> None:
    fig, (a, b) = plt.subplots(1, 2, figsize=(15, 6.2), gridspec_kw={"width_ratios": [1, 1.1]})
    layers(a)
    flow(b)
    fig.tight_layout()
    out = os.path.join(HERE, "architecture.png")
    fig.savefig(out, dpi=110)
    print(out)


if __name__ == "__main__":
    main()

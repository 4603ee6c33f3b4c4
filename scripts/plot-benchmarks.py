#!/usr/bin/env python3
"""Draws the scale benchmarks' charts for docs/benchmarks.md.

Reads the JSON Lines that the agent's and the controller's scale benches
append to $AMBIT_BENCH_JSON (one object per scenario or run; the fields are
documented in agent/benches/scale/json.rs and controller/benches/scale/json.rs)
and writes PNGs into an output folder (docs/plots/ unless told otherwise):

    agent-convergence-devices.png   scenario A: convergence vs devices, with the floor
    agent-convergence-nodes.png     scenario B: convergence vs nodes, with the floor
    agent-writes.png                agent writes per device per node vs devices (A) and nodes (B)
    agent-rss.png                   scenario A: agent VmRSS (settled, idle) vs devices
    controller-convergence.png      controller start -> pods Running vs Devices, with the floor
    controller-rss.png              controller VmRSS (and peak) vs Devices

A chart whose points are not in the data is skipped, with a note. Lines
from different commits are drawn as separate series; for the same commit and
the same point, the latest line counts.

Run it with matplotlib from scripts/plot-requirements.txt, in a virtualenv
of its own (not in scripts/setup-pip.txt: CI does not draw charts):

    python3 -m venv ~/.cache/ambit/plot-venv
    ~/.cache/ambit/plot-venv/bin/pip install -r scripts/plot-requirements.txt
    ~/.cache/ambit/plot-venv/bin/python scripts/plot-benchmarks.py target/bench-sweep.jsonl

scripts/bench-sweep.sh does all of that after its sweeps
(`scripts/bench-sweep.sh --plot-only` only draws). It needs no display
(matplotlib's Agg backend).
"""

import argparse
import json
import sys
from pathlib import Path

try:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
except ImportError:
    sys.exit(
        "matplotlib is missing: install scripts/plot-requirements.txt into a "
        "virtualenv (see this script's docstring, or run scripts/bench-sweep.sh --plot-only)"
    )

REPO = Path(__file__).resolve().parent.parent

# The x axes.
DEVICES_A = ("devices", "devices (one node)")
NODES_B = ("nodes", "nodes (one agent each, the same devices on every node)")
DEVICES_CONTROLLER = ("devices", "Devices in all (one broker pod each)")


def load(paths):
    """The objects of every line of every file, in order."""
    lines = []
    for path in paths:
        with open(path, encoding="utf-8") as f:
            for number, text in enumerate(f, start=1):
                if not text.strip():
                    continue
                try:
                    lines.append(json.loads(text))
                except json.JSONDecodeError as e:
                    sys.exit(f"{path}:{number}: not JSON: {e}")
    return lines


def series_name(line, with_commit):
    """A series per commit (named when there are several); scenario B's also
    per device count."""
    parts = []
    if line.get("scenario") == "B":
        parts.append(f"{line['devices']} devices")
    if with_commit:
        parts.append(line.get("commit", "unknown"))
    return ", ".join(parts)


def series(lines, x):
    """{series name: [line, ...] sorted by x}, one line per x: the latest."""
    with_commit = len({line.get("commit") for line in lines}) > 1
    latest = {}
    for line in lines:
        if line.get(x) is None:
            continue
        slot = (series_name(line, with_commit), line[x])
        if slot not in latest or line.get("timestamp", "") >= latest[slot].get("timestamp", ""):
            latest[slot] = line
    groups = {}
    for (name, _), line in sorted(latest.items()):
        groups.setdefault(name, []).append(line)
    return groups


def commits(lines):
    names = sorted({line.get("commit", "unknown") for line in lines})
    return ("commit " if len(names) == 1 else "commits ") + ", ".join(names)


def value(line, field):
    """A figure, NaN where the line lacks it (JSON has no NaN: the benches write null)."""
    number = line.get(field)
    return float("nan") if number is None else number


def draw(ax, groups, x, curves, xlabel, ylabel):
    """Each curve of each series: (field, what, style, (min field, max field) or None).
    A series keeps one colour; error bars span min to max where they differ."""
    for name, points in groups.items():
        color = None
        for field, what, style, spread in curves:
            xs = [p[x] for p in points]
            ys = [value(p, field) for p in points]
            label = f"{what}, {name}" if name else what
            if spread and any(value(p, spread[0]) != value(p, spread[1]) for p in points):
                low = [value(p, field) - value(p, spread[0]) for p in points]
                high = [value(p, spread[1]) - value(p, field) for p in points]
                drawn = ax.errorbar(xs, ys, yerr=[low, high], fmt=style, color=color,
                                    capsize=3, label=label).lines[0]
            else:
                (drawn,) = ax.plot(xs, ys, style, color=color, label=label)
            color = drawn.get_color()
    ax.set_xticks(sorted({p[x] for points in groups.values() for p in points}))
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_ylim(bottom=0)
    ax.grid(True, alpha=0.3)
    ax.legend()


def drawable(name, panels):
    """Whether any panel has points; says so when none has, or when no
    series has a curve (one point each)."""
    sizes = [len(points) for groups in panels for points in groups.values()]
    if not sizes:
        print(f"skipped {name}: the data has no points for it")
        return False
    if max(sizes) < 2:
        print(f"note: {name} has one point per series; a sweep draws the curve")
    return True


def chart(out, name, title, lines, axis, curves, ylabel):
    """One chart in its own PNG; False (with a note) when there is nothing to draw."""
    x, xlabel = axis
    groups = series(lines, x)
    if not drawable(name, [groups]):
        return False
    fig, ax = plt.subplots(figsize=(8, 5))
    draw(ax, groups, x, curves, xlabel, ylabel)
    ax.set_title(f"{title}\n({commits(lines)})")
    save(fig, out, name)
    return True


def save(fig, out, name):
    fig.tight_layout()
    path = out / name
    fig.savefig(path, dpi=100)
    plt.close(fig)
    print(f"wrote {path}")


def agent_charts(lines, out):
    a = [line for line in lines if line.get("scenario") == "A"]
    b = [line for line in lines if line.get("scenario") == "B"]
    spread = ("convergence_min_s", "convergence_max_s")
    convergence = [
        ("convergence_median_s", "convergence", "-o", spread),
        ("floor_s", "floor (the same writes, one plain client)", "--s", None),
    ]
    drawn = [
        chart(out, "agent-convergence-devices.png",
              "Agent, scenario A: DeviceSet created → every Device present",
              a, DEVICES_A, convergence, "time (s)"),
        chart(out, "agent-convergence-nodes.png",
              "Agent, scenario B: DeviceSet created → every Device has every node's entry",
              b, NODES_B, convergence, "time (s)"),
        writes_chart(out, a, b),
        chart(out, "agent-rss.png", "Agent memory, scenario A (max over agents)",
              a, DEVICES_A,
              [("agent_rss_settled_mib", "VmRSS after the load", "-o", None),
               ("agent_rss_idle_mib", "VmRSS idle", "--s", None)],
              "memory (MiB)"),
    ]
    return any(drawn)


def writes_chart(out, a, b):
    """Writes per device per node: a panel for each scenario that has points."""
    name = "agent-writes.png"
    writes = [("writes_per_device_node", "agent writes", "-o", None)]
    ylabel = "API writes per device per node"
    panels = [(series(a, DEVICES_A[0]), DEVICES_A), (series(b, NODES_B[0]), NODES_B)]
    panels = [(groups, axis) for groups, axis in panels if groups]
    if not drawable(name, [groups for groups, _ in panels]):
        return False
    fig, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 5), squeeze=False)
    for ax, (groups, (x, xlabel)) in zip(axes[0], panels):
        draw(ax, groups, x, writes, xlabel, ylabel)
    fig.suptitle(f"Agent API writes per device per node, DeviceSet created → settled\n"
                 f"({commits(a + b)})")
    save(fig, out, name)
    return True


def controller_charts(lines, out):
    drawn = [
        chart(out, "controller-convergence.png",
              "Controller: controller start → every broker pod Running",
              lines, DEVICES_CONTROLLER,
              [("convergence_s", "convergence", "-o", None),
               ("floor_s", "floor (the same writes, one plain client)", "--s", None)],
              "time (s)"),
        chart(out, "controller-rss.png", "Controller memory at convergence",
              lines, DEVICES_CONTROLLER,
              [("controller_rss_mib", "VmRSS", "-o", None),
               ("controller_hwm_mib", "VmHWM (peak)", "--s", None)],
              "memory (MiB)"),
    ]
    return any(drawn)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("jsonl", nargs="+", type=Path, help="JSON Lines files from the benches")
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "plots",
                        help="folder for the PNGs (default: docs/plots/)")
    args = parser.parse_args()

    lines = load(args.jsonl)
    args.out.mkdir(parents=True, exist_ok=True)
    agent = [line for line in lines if line.get("bench") == "agent"]
    controller = [line for line in lines if line.get("bench") == "controller"]
    drawn = agent_charts(agent, args.out)
    drawn = controller_charts(controller, args.out) or drawn
    if not drawn:
        sys.exit("no chart drawn: the files hold no points for any of them")


if __name__ == "__main__":
    main()

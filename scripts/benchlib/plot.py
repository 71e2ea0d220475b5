#!/usr/bin/env python3
"""Plot the worker's throughput against its number of processes.

    .venv-bench/bin/python scripts/benchlib/plot.py IN.json OUT.png

IN.json: {"date": "...", "machine": "...", "series": [{"label": "1 wallet", "points":
[{"workers": 1, "jobs_per_s": 350.0, "db_cpu_share": 0.4}, ...]}, ...]}. One solid line of
jobs/s per series (left axis), and the same series' database CPU share dashed on the right
axis; worker processes on a log2 x axis. db_cpu_share may be missing or null in a point.
"""

from __future__ import annotations

import json
import sys

import matplotlib

matplotlib.use("Agg")  # no display on the benchmark machines
import matplotlib.pyplot as plt  # noqa: E402  (after the backend is chosen)
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.ticker import FixedLocator, NullLocator, PercentFormatter, ScalarFormatter  # noqa: E402


def main() -> int:
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    with open(sys.argv[1]) as f:
        data = json.load(f)

    fig, jobs_ax = plt.subplots(figsize=(8, 5), dpi=120)
    share_ax = jobs_ax.twinx()
    workers: set[int] = set()
    top_share = 1.0
    for i, series in enumerate(data["series"]):
        color = f"C{i}"  # one colour per series on both axes, so a dashed line reads with its solid one
        points = sorted(series["points"], key=lambda p: p["workers"])
        workers.update(p["workers"] for p in points)
        jobs_ax.plot([p["workers"] for p in points], [p["jobs_per_s"] for p in points],
                     color=color, marker="o", label=series["label"])
        shared = [p for p in points if p.get("db_cpu_share") is not None]
        if shared:
            share_ax.plot([p["workers"] for p in shared], [p["db_cpu_share"] for p in shared],
                          color=color, marker="s", markersize=4, linestyle="--", alpha=0.8)
            top_share = max(top_share, max(p["db_cpu_share"] for p in shared) * 1.1)

    jobs_ax.set_xscale("log", base=2)
    # Ticks at the measured process counts only (1, 2, 4, 8), written as plain numbers.
    jobs_ax.xaxis.set_major_locator(FixedLocator(sorted(workers)))
    jobs_ax.xaxis.set_major_formatter(ScalarFormatter())
    jobs_ax.xaxis.set_minor_locator(NullLocator())
    jobs_ax.set_xlabel("worker processes")
    jobs_ax.set_ylabel("jobs/s (solid)")
    jobs_ax.set_ylim(bottom=0)
    jobs_ax.grid(True, alpha=0.3)
    share_ax.set_ylabel("database CPU share (dashed)")
    share_ax.set_ylim(0, top_share)
    share_ax.yaxis.set_major_formatter(PercentFormatter(xmax=1))

    handles, labels = jobs_ax.get_legend_handles_labels()
    handles += [Line2D([], [], color="gray", marker="o"), Line2D([], [], color="gray", linestyle="--", marker="s", markersize=4)]
    labels += ["jobs/s", "database CPU share"]
    jobs_ax.legend(handles, labels, loc="upper left", fontsize="small")
    jobs_ax.set_title(f"crynux-worker throughput by worker processes\n{data.get('date', '')}, {data.get('machine', '')}")

    fig.tight_layout()
    fig.savefig(sys.argv[2])
    return 0


if __name__ == "__main__":
    sys.exit(main())

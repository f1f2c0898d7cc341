"""Plots of the run report: throughput over time with the worker count, per-worker events and
bytes, and the chunk-duration distribution. Rendered off-screen (Agg) in the mplhep CMS style."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib as mpl

mpl.use("Agg")

import matplotlib.pyplot as plt
import mplhep
import numpy as np

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from intccms.outputs.report import RunReport

PLOTS = ("throughput.png", "workers.png", "chunk_durations.png")


def _save(fig: Figure, path: Path) -> Path:
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_throughput(report: RunReport, path: Path) -> Path:
    """Events/s over the run, and the number of workers on a second axis."""
    fig, ax = plt.subplots(figsize=(10, 6), layout="constrained")
    if report.throughput:
        t, rate = zip(*report.throughput, strict=True)
        ax.plot(t, rate, drawstyle="steps-mid", color="C0", label="events/s")
    ax.set_xlabel("time since start [s]")
    ax.set_ylabel("events/s")
    ax.set_ylim(bottom=0)
    if report.workers_timeline:
        twin = ax.twinx()
        t, n = zip(*report.workers_timeline, strict=True)
        if t[-1] < report.wall_time_s:  # hold the last count to the end of the run
            t, n = (*t, report.wall_time_s), (*n, n[-1])
        twin.plot(t, n, drawstyle="steps-post", color="C1", label="workers")
        twin.set_ylabel("workers")
        twin.set_ylim(0, max(n) * 1.2 + 1)
    ax.set_title(f"{report.events_per_s:,.0f} events/s, {report.gbps_read:.3f} Gbit/s read", fontsize=14)
    return _save(fig, path)


def plot_workers(report: RunReport, path: Path) -> Path:
    """Events read and bytes read per worker (bars)."""
    names = sorted(report.per_worker)
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(10, 8), sharex=True, layout="constrained")
    x = np.arange(len(names))
    top.bar(x, [report.per_worker[n].events_read for n in names], color="C0")
    top.set_ylabel("events read")
    bottom.bar(x, [report.per_worker[n].bytes_read / 1e6 for n in names], color="C2")
    bottom.set_ylabel("MB read")
    bottom.set_xticks(x, [n.rsplit("/", 1)[-1] for n in names], rotation=30, ha="right", fontsize=10)
    return _save(fig, path)


def plot_chunk_durations(report: RunReport, path: Path) -> Path:
    """Distribution of chunk durations."""
    fig, ax = plt.subplots(figsize=(10, 6), layout="constrained")
    durations = np.asarray(report.chunk_durations_s, dtype=float)
    if durations.size:
        counts, edges = np.histogram(durations, bins=min(40, max(durations.size, 1)))
        mplhep.histplot(counts, edges, ax=ax, histtype="fill", alpha=0.6)
    ax.set_xlabel("chunk duration [s]")
    ax.set_ylabel("chunks")
    return _save(fig, path)


def write_plots(report: RunReport, output_dir: Path) -> list[Path]:
    """Write the three report PNGs into ``output_dir``; returns their paths."""
    with plt.style.context(mplhep.style.CMS):
        return [
            plot_throughput(report, output_dir / PLOTS[0]),
            plot_workers(report, output_dir / PLOTS[1]),
            plot_chunk_durations(report, output_dir / PLOTS[2]),
        ]

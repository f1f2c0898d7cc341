"""Plots of an inspection (off-screen, Agg): file sizes and event counts per dataset, top
branches by bytes, compression ratio by branch group, and bytes the analysis reads vs. total."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib as mpl

mpl.use("Agg")

import matplotlib.pyplot as plt
import numpy as np

from intccms.inspect.outputs import human_bytes

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from intccms.inspect.run import InspectResult
    from intccms.inspect.sample import Estimate

PLOTS = ("file_sizes.png", "event_counts.png", "top_branches.png", "compression_by_group.png",
         "bytes_read.png")
MAX_ROWS = 40


def _save(fig: Figure, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _per_dataset(result: InspectResult, attr: str) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {}
    for f in result.files:
        if f.ok:
            out.setdefault(f.dataset, []).append(float(getattr(f, attr)))
    return dict(sorted(out.items())[:MAX_ROWS])


def _distribution(values: dict[str, list[float]], xlabel: str, title: str, path: Path, scale: float = 1.0) -> Path:
    names = list(values)
    fig, ax = plt.subplots(figsize=(8, 1.5 + 0.35 * max(len(names), 1)))
    if names:
        ax.boxplot([np.asarray(values[n]) / scale for n in names], vert=False, whis=(0, 100))
        ax.set_yticks(range(1, len(names) + 1), names, fontsize=7)
    ax.set_xlabel(xlabel)
    ax.set_title(title)
    return _save(fig, path)


def _top_branches(result: InspectResult, path: Path) -> Path:
    totals = result.bytes_by("name")
    read = result.branches_read()
    top = sorted(totals.items(), key=lambda kv: -kv[1][0])[: result.config.top_branches][::-1]
    fig, ax = plt.subplots(figsize=(8, 1.5 + 0.3 * max(len(top), 1)))
    if top:
        y = np.arange(len(top))
        ax.barh(y + 0.2, [t[1][1] / 1e6 for t in top], height=0.4, label="uncompressed", color="#bbbbbb")
        ax.barh(y - 0.2, [t[1][0] / 1e6 for t in top], height=0.4, label="compressed (on storage)",
                color=["#d62728" if t[0] in read else "#1f77b4" for t in top])
        ax.set_yticks(y, [t[0] + (" *" if t[0] in read else "") for t in top], fontsize=7)
        ax.legend(loc="lower right", fontsize=8)
    ax.set_xlabel("MB over the inspected files")
    ax.set_title("top branches by bytes (* red: read by the analysis)")
    return _save(fig, path)


def _groups(result: InspectResult, path: Path) -> Path:
    groups = result.bytes_by("group")
    top = sorted(groups.items(), key=lambda kv: -kv[1][0])[:MAX_ROWS][::-1]
    fig, ax = plt.subplots(figsize=(8, 1.5 + 0.3 * max(len(top), 1)))
    if top:
        y = np.arange(len(top))
        ax.barh(y, [u / c if c else 1.0 for _, (c, u) in top], color="#2ca02c")
        ax.set_yticks(y, [f"{n} ({human_bytes(c)})" for n, (c, _) in top], fontsize=7)
    ax.axvline(1.0, color="black", lw=0.8)
    ax.set_xlabel("compression ratio (uncompressed / compressed)")
    ax.set_title("compression ratio by branch group (largest groups)")
    return _save(fig, path)


def _gb(estimate: Estimate | None) -> float:
    """The estimated total in GB (0 without an estimate)."""
    return estimate.total / 1e9 if estimate else 0.0


def _bytes_read(result: InspectResult, path: Path) -> Path:
    names = list(result.datasets)[:MAX_ROWS][::-1]
    stages = sorted({s for d in result.datasets.values() for s in d.reads})
    fig, ax = plt.subplots(figsize=(8, 1.5 + 0.35 * max(len(names), 1)))
    if names:
        y = np.arange(len(names))
        height = 0.8 / (1 + len(stages))
        sizes = [_gb(result.datasets[n].size) for n in names]
        ax.barh(y, sizes, height=height, label="total size", color="#bbbbbb")
        for i, s in enumerate(stages, start=1):
            vals = [_gb(result.datasets[n].reads[s].expected_bytes_total) if s in result.datasets[n].reads else 0.0
                    for n in names]
            used = s in result.trace.input_stages
            ax.barh(y - i * height, vals, height=height,
                    label=f"read by {s}" + ("" if used else " (not run on these inputs by this workflow)"))
        ax.set_yticks(y - 0.4 + height / 2, names, fontsize=7)
        ax.legend(loc="lower right", fontsize=8)
    ax.set_xlabel("GB (full listing, extrapolated)")
    ax.set_title("bytes read by the analysis vs. total")
    return _save(fig, path)


def plot_all(result: InspectResult, out_dir: Path) -> list[Path]:
    """Write the five plots; returns their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    return [
        _distribution(_per_dataset(result, "size"), "file size [MB]", "file sizes per dataset",
                      out_dir / PLOTS[0], scale=1e6),
        _distribution(_per_dataset(result, "events"), "events per file", "event counts per dataset",
                      out_dir / PLOTS[1]),
        _top_branches(result, out_dir / PLOTS[2]),
        _groups(result, out_dir / PLOTS[3]),
        _bytes_read(result, out_dir / PLOTS[4]),
    ]

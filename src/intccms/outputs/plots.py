"""CMS-style stacked plots: simulation stacked by group, data with errors, data/MC ratio."""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, cast

import hist
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import mplhep
import numpy as np


def _process(h: hist.Hist[Any], process: str) -> hist.Hist[Any]:
    """One process of a histogram (selecting a category value keeps the other axes)."""
    return cast(hist.Hist[Any], h[{"process": process}])


def _variances(h: hist.Hist[Any]) -> np.ndarray:
    """Sums of squared weights (present: the histograms have Weight storage)."""
    var = h.variances()
    assert var is not None
    return var


def _group(processes: Sequence[str], groups: Mapping[str, Sequence[str]],
           signals: Sequence[str]) -> tuple[dict[str, list[str]], list[str]]:
    signal = [p for p in processes if any(fnmatch.fnmatchcase(p, s) for s in signals)]
    background = [p for p in processes if p != "data" and p not in signal]
    out: dict[str, list[str]] = {}
    used: set[str] = set()
    for label, patterns in groups.items():
        members = [p for p in background if any(fnmatch.fnmatchcase(p, pat) for pat in patterns)]
        members = [p for p in members if p not in used]
        if members:
            out[label] = members
            used.update(members)
    for p in background:
        if p not in used:
            out[p] = [p]
    return out, signal


def stacked_plot(
    h: hist.Hist[Any],
    path: Path,
    *,
    channel: str,
    groups: Mapping[str, Sequence[str]],
    signals: Sequence[str],
    log_y: bool = True,
    lumi_fb: float | None = None,
) -> Path:
    """Draw the nominal histograms of ``h`` (process × variation × observable) into ``path``.

    The CMS style applies to this figure only: a style set globally would change every later
    figure of the process (a notebook's, or another tool's in the same job).
    """
    with plt.style.context(mplhep.style.CMS):
        return _stacked_plot(h, path, channel=channel, groups=groups, signals=signals, log_y=log_y,
                             lumi_fb=lumi_fb)


def _stacked_plot(
    h: hist.Hist[Any],
    path: Path,
    *,
    channel: str,
    groups: Mapping[str, Sequence[str]],
    signals: Sequence[str],
    log_y: bool,
    lumi_fb: float | None,
) -> Path:
    processes = list(h.axes["process"])
    nominal = cast(hist.Hist[Any], h[{"variation": "nominal"}])
    stack_groups, signal = _group(processes, groups, signals)
    axis = h.axes[-1]
    edges = axis.edges
    zeros = np.zeros(len(edges) - 1)
    stacks = {label: sum((_process(nominal, p).values() for p in members), zeros)
              for label, members in stack_groups.items()}
    stack_vars = sum((_variances(_process(nominal, p)) for members in stack_groups.values() for p in members),
                     zeros)
    order = sorted(stacks, key=lambda k: stacks[k].sum())
    fig, (ax, rax) = plt.subplots(2, 1, figsize=(10, 10), gridspec_kw={"height_ratios": (3, 1)}, sharex=True)
    if order:
        mplhep.histplot([stacks[k] for k in order], edges, stack=True, histtype="fill", label=order, ax=ax)
    total = sum(stacks.values(), zeros)
    ax.stairs(total + np.sqrt(stack_vars), edges, baseline=total - np.sqrt(stack_vars),
              fill=True, alpha=0.3, hatch="///", color="grey", label="MC stat. unc.", linewidth=0)
    for p in signal:
        mplhep.histplot(_process(nominal, p).values(), edges, histtype="step", label=p, ax=ax, linewidth=2)
    has_data = "data" in processes
    if has_data:
        data = _process(nominal, "data").values()
        mplhep.histplot(data, edges, histtype="errorbar", yerr=np.sqrt(data), color="black", label="Data", ax=ax)
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.where(total > 0, data / total, np.nan)
            err = np.where(total > 0, np.sqrt(data) / total, np.nan)
        mplhep.histplot(ratio, edges, yerr=err, histtype="errorbar", color="black", ax=rax)
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = np.where(total > 0, np.sqrt(stack_vars) / total, 0.0)
    rax.stairs(1 + rel, edges, baseline=1 - rel, fill=True, alpha=0.3, color="grey", linewidth=0)
    rax.axhline(1.0, color="black", linestyle="--", linewidth=1)
    rax.set_ylim(0.0, 2.0)
    rax.set_ylabel("Data / MC")
    rax.set_xlabel(axis.label or axis.name)
    ax.set_ylabel("Events / bin")
    ax.set_xlabel("")
    if log_y and np.any(total > 0):
        ax.set_yscale("log")
        ax.set_ylim(max(total[total > 0].min() * 0.1, 1e-3), total.max() * 100)
    ax.legend(ncol=2, fontsize="small", title=channel)
    mplhep.cms.label("Simulation" if not has_data else "Preliminary", data=has_data,
                     lumi=round(lumi_fb, 1) if lumi_fb else None, ax=ax)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def plot_all(
    hists: Mapping[str, Mapping[str, hist.Hist[Any]]],
    directory: Path,
    *,
    groups: Mapping[str, Sequence[str]],
    signals: Sequence[str],
    log_y: bool = True,
    lumi_fb: float | None = None,
) -> list[Path]:
    """One PNG per channel and observable: ``{directory}/{channel}__{observable}.png``."""
    paths = []
    for channel, per_obs in hists.items():
        for obs, h in per_obs.items():
            paths.append(stacked_plot(h, directory / f"{channel}__{obs}.png", channel=channel,
                                      groups=groups, signals=signals, log_y=log_y, lumi_fb=lumi_fb))
    return paths

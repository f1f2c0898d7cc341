"""PNG plots of the statistics results in CMS style (mplhep), non-interactive backend."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # batch jobs and workers have no display

import matplotlib.pyplot as plt
import mplhep as hep
import numpy as np


@contextmanager
def _cms(path: Path, figsize: tuple[float, float] = (10, 10), **kw: Any) -> Iterator[Any]:
    """Create a figure in CMS style, yield (fig, axes), save it to ``path`` and close it."""
    with plt.style.context(hep.style.CMS):
        fig, axes = plt.subplots(figsize=figsize, **kw)
        try:
            yield fig, axes
            path.parent.mkdir(parents=True, exist_ok=True)
            fig.savefig(path, dpi=80)
        finally:
            plt.close(fig)


def _label(ax: Any, data: bool, lumi: float | None) -> None:
    hep.cms.label(ax=ax, text="Preliminary" if data else "Simulation", data=data,
                  lumi=None if lumi is None else round(lumi, 1), loc=0)


def distribution(
    path: Path,
    edges: np.ndarray,
    samples: dict[str, np.ndarray],
    total_stdev: np.ndarray,
    observed: np.ndarray | None,
    *,
    title: str,
    xlabel: str,
    lumi_fb: float | None,
    data_label: str = "Data",
) -> list[str]:
    """Stacked prediction with its uncertainty band, data, and data/prediction ratio.

    ``data_label`` names the points: "Data" only for observed data; Asimov or toy
    pseudo-data carry their own label and the plot is then marked as simulation.

    Returns:
        list[str]: the legend entries, top to bottom as drawn.
    """
    with _cms(path, (10, 10), nrows=2, sharex=True,
              gridspec_kw={"height_ratios": [3, 1], "hspace": 0.05}) as (_, (ax, rax)):
        names = sorted(samples, key=lambda s: samples[s].sum())
        hep.histplot([samples[s] for s in names], edges, stack=True, histtype="fill",
                     label=names, ax=ax)
        total = np.sum([samples[s] for s in names], axis=0)
        ax.stairs(total + total_stdev, edges, baseline=total - total_stdev, fill=True,
                  hatch="///", alpha=0.0, label="Uncertainty", edgecolor="grey")
        safe = np.where(total > 0, total, 1.0)
        rax.stairs(1 + total_stdev / safe, edges, baseline=1 - total_stdev / safe, fill=True,
                   color="grey", alpha=0.4)
        rax.axhline(1.0, color="black", lw=1)
        if observed is not None:
            centers = 0.5 * (edges[1:] + edges[:-1])
            err = np.sqrt(np.clip(observed, 0, None))
            ax.errorbar(centers, observed, yerr=err, fmt="ko", label=data_label)
            rax.errorbar(centers, observed / safe, yerr=err / safe, fmt="ko")
        ax.set_yscale("log")
        ax.set_ylim(max(total.min() * 0.1, 1e-2), total.max() * 100)
        ax.set_ylabel("Events")
        ax.set_title(title, loc="right", fontsize=14, pad=25)
        ax.legend(ncol=2, fontsize=13)
        rax.set_ylim(0.5, 1.5)
        rax.set_ylabel("Data / Pred." if data_label == "Data" else "Pseudo / Pred.")
        rax.set_xlabel(xlabel)
        _label(ax, observed is not None and data_label == "Data", lumi_fb)
        return [text.get_text() for text in ax.get_legend().get_texts()]


def pulls(path: Path, entries: list[dict[str, Any]]) -> None:
    """Pulls (theta_hat - theta_0)/sigma_prefit with constraints as error bars."""
    rows = [e for e in entries if "pull" in e]
    n = max(len(rows), 1)
    # Constrained layout sizes the margins to the parameter names (CMS style's fixed left
    # margin cut long ones off).
    with _cms(path, (10, max(4.0, 0.3 * n + 2)), layout="constrained") as (_, ax):
        y = np.arange(len(rows))
        ax.axvspan(-2, 2, color="yellow", alpha=0.5)
        ax.axvspan(-1, 1, color="limegreen", alpha=0.5)
        ax.errorbar([e["pull"] for e in rows], y, xerr=[e["constraint"] for e in rows],
                    fmt="ko")
        ax.set_yticks(y, [e["name"] for e in rows], fontsize=9)
        ax.set_xlim(-3, 3)
        ax.set_ylim(-0.5, n - 0.5)
        ax.set_xlabel(r"$(\hat\theta - \theta_0)/\Delta\theta$")


def correlation(path: Path, labels: list[str], corr: np.ndarray, max_pars: int = 40) -> None:
    """Correlation matrix of the parameters most correlated with others (at most max_pars)."""
    c = np.asarray(corr)
    strength = np.max(np.abs(c - np.eye(len(c))), axis=1) if len(c) else np.array([])
    keep = np.sort(np.argsort(-strength)[:max_pars])
    sub = c[np.ix_(keep, keep)]
    with _cms(path, (12, 11)) as (fig, ax):
        im = ax.imshow(sub, vmin=-1, vmax=1, cmap="RdBu_r")
        ax.set_xticks(range(len(keep)), [labels[i] for i in keep], rotation=90, fontsize=8)
        ax.set_yticks(range(len(keep)), [labels[i] for i in keep], fontsize=8)
        fig.colorbar(im, ax=ax)
        fig.tight_layout()


def ranking(path: Path, rank: Any, poi_name: str) -> None:
    """Pre-fit and post-fit impacts of the top parameters on the POI."""
    n = max(len(rank.labels), 1)
    with _cms(path, (10, max(4.0, 0.4 * n + 2)), layout="constrained") as (_, ax):  # see pulls
        y = np.arange(len(rank.labels))[::-1]
        ax.barh(y, rank.prefit_up, color="none", edgecolor="C0", label="pre-fit up")
        ax.barh(y, rank.prefit_down, color="none", edgecolor="C1", label="pre-fit down")
        ax.barh(y, rank.postfit_up, color="C0", alpha=0.7, label="post-fit up")
        ax.barh(y, rank.postfit_down, color="C1", alpha=0.7, label="post-fit down")
        ax.set_yticks(y, list(rank.labels), fontsize=9)
        ax.set_xlabel(rf"$\Delta {poi_name}$")
        ax.legend(fontsize=10)


_MASS = re.compile(r"_M-?(\d+(?:p\d+)?)")


def signal_mass(name: str) -> float | None:
    """Mass in GeV parsed from a signal name such as ``ZPrimeToTT_M2000_W200``."""
    m = _MASS.search(name)
    return float(m.group(1).replace("p", ".")) if m else None


def limit_scan(path: Path, points: list[dict[str, Any]], ylabel: str) -> None:
    """Observed and expected limits versus mass with +-1/2 sigma bands."""
    pts = sorted((p for p in points if p.get("mass") is not None), key=lambda p: p["mass"])
    with _cms(path, (10, 8)) as (_, ax):
        if pts:
            x = np.array([p["mass"] for p in pts])
            band = np.array([[p["expected_band"][k] for k in ("-2", "-1", "0", "+1", "+2")]
                             for p in pts])
            ax.fill_between(x, band[:, 0], band[:, 4], color="#F5BB54", label=r"95% expected")
            ax.fill_between(x, band[:, 1], band[:, 3], color="#607641", label=r"68% expected")
            ax.plot(x, band[:, 2], "k--", label="Median expected")
            obs = [p["observed"] for p in pts]
            if all(o is not None for o in obs):
                ax.plot(x, obs, "ko-", label="Observed")
            ax.set_yscale("log")
        ax.set_xlabel("Signal mass [GeV]")
        ax.set_ylabel(ylabel)
        ax.legend(fontsize=13)
        _label(ax, False, None)

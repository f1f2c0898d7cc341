"""The analysis's end: normalise the file-grouped sums, write histograms (pickle + ROOT), plot.

Simulation was filled with ``norm = 1`` per file; here each dataset gets ``σ·L/Σw`` with the
``Σw`` of the files actually kept (a file skipped at any stage is left out whole), and the
histogram metadata records what a later statistics run checks (variations, eras, yields).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hist

from intccms.outputs.histograms import AxisSpec, FileGroupedAccumulator, save_pickle, save_root
from intccms.outputs.provenance import config_hash
from intccms.physics.normalisation import normalisation_factor
from intccms.plan.metadata import DatasetMetadata
from intccms.plan.run import RunPlan


@dataclass
class FinalHistograms:
    """The normalised histograms, their metadata and where they were written."""

    hists: dict[str, dict[str, hist.Hist[Any]]]
    meta: dict[str, Any]
    pickle_path: Path
    root_path: Path
    plots: list[Path] = field(default_factory=list)


def finalise_histograms(
    plan: RunPlan, grouped: FileGroupedAccumulator, metadata: Mapping[str, DatasetMetadata],
    skipped: Mapping[str, str], out: Path,
) -> FinalHistograms:
    """Normalise per dataset, write ``histograms/histograms.{pkl,root}`` under ``out`` and, with
    ``workflow.run_plots``, the stacked plots under ``plots/``."""
    datasets = plan.datasets
    norms: dict[str, float] = {}
    era_yields: dict[str, dict[str, float]] = {}
    for name, ds in datasets.items():
        kept = sum(fm.sum_genweight for f, fm in metadata[name].files.items()
                   if fm.error is None and f not in skipped)
        norms[name] = 1.0 if ds.is_data or name not in grouped.totals else normalisation_factor(
            ds.xsec or 0.0, plan.eras[ds.era].luminosity, kept)
        if name in grouped.totals:
            era_yields.setdefault(ds.process, {}).setdefault(ds.era, 0.0)
            era_yields[ds.process][ds.era] += grouped.nominal_sum(name) * norms[name]
    processes = sorted({ds.process for ds in datasets.values()}, key=lambda p: (p == "data", p))
    axes = {name: AxisSpec(name, a.bins, a.start, a.stop, a.label) for name, a in plan.observables.items()}
    acc = grouped.normalised(norms, {n: d.process for n, d in datasets.items()}, plan.variations, axes)
    hists = acc.to_hists(processes)
    eras = sorted({ds.era for ds in datasets.values()})
    meta = {
        "config_hash": config_hash(plan.config_yaml),
        "name": plan.name,
        "eras": eras,
        "variations": list(plan.variations),
        "processes": {p: {"is_data": p == "data",
                          "datasets": sorted(n for n, d in datasets.items() if d.process == p)}
                      for p in processes},
        "era_yields": era_yields,
        "luminosity": {e: plan.eras[e].luminosity for e in eras},
    }
    hist_dir = out / "histograms"
    final = FinalHistograms(hists, meta, save_pickle(hist_dir / "histograms.pkl", hists, meta),
                            save_root(hist_dir / "histograms.root", hists))
    if plan.workflow.run_plots:
        from intccms.outputs.plots import plot_all  # matplotlib and mplhep: only when plotting

        lumi_fb = sum(plan.eras[e].luminosity for e in eras) / 1000.0
        final.plots = plot_all(hists, out / "plots", groups={k: list(v) for k, v in plan.plot.groups.items()},
                               signals=list(plan.plot.signals), log_y=plan.plot.log_y, lumi_fb=lumi_fb)
    return final

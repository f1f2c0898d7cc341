"""The statistics stage as a step of the job: start-up checks, and the check that the
histograms were made by a compatible configuration.

The full configuration hash of the analysis run cannot be compared (it changes with the
output folder, the cluster, the name of the run); what the fit depends on is compared
instead: the fitted channels exist in the file, the observable's binning is the one of
``analysis.observables``, and the variations are those the corrections produce for the
configured datasets (``workflow.variations`` applied). This works for ROOT files too, which
carry no metadata: binning and variation names are in the histograms themselves.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from intccms.config.statistics import StatisticsConfig
from intccms.core.errors import ConfigError
from intccms.plan.run import RunPlan
from intccms.stats.errors import StatisticsInputError
from intccms.stats.inputs import NOMINAL, HistogramSet, load_histograms
from intccms.stats.run import run_statistics


def statistics_config(plan: RunPlan) -> StatisticsConfig:
    """The plan's statistics configuration.

    Raises:
        ConfigError: no statistics group is selected.
    """
    if plan.statistics is None:
        msg = ("workflow.run_statistics is true but no statistics group is selected; add "
               "'statistics=demo' (or run2) to the overrides")
        raise ConfigError(msg)
    return plan.statistics


def check_statistics(plan: RunPlan) -> StatisticsConfig | None:
    """Start-up checks of the statistics stage (None when it does not run).

    Raises:
        ConfigError: the stage runs alone (``workflow.run_analysis=false``) without
            ``statistics.input.path``, or fits a channel/observable the analysis does not make.
    """
    if not plan.workflow.run_statistics:
        return None
    scfg = statistics_config(plan)
    if not plan.workflow.run_analysis and not scfg.input.path:
        msg = ("workflow.run_statistics=true with workflow.run_analysis=false needs "
               "statistics.input.path: the histograms.pkl or histograms.root of an earlier run "
               "(a local path, s3:// or root:// URL), e.g. "
               "statistics.input.path=outputs/demo/histograms/histograms.pkl")
        raise ConfigError(msg)
    assert plan.analysis is not None
    channels = plan.analysis.channels
    for ch in scfg.input.channels:
        if ch not in channels:
            msg = (f"statistics.input.channels: '{ch}' is not a channel of the analysis "
                   f"(analysis.channels: {sorted(channels)})")
            raise ConfigError(msg)
        if scfg.input.observable not in channels[ch].observables:
            msg = (f"statistics.input.observable: '{scfg.input.observable}' is not filled in "
                   f"channel '{ch}' (analysis.channels.{ch}.observables: "
                   f"{list(channels[ch].observables)})")
            raise ConfigError(msg)
    return scfg


def expected_edges(plan: RunPlan, observable: str) -> np.ndarray:
    """Bin edges the analysis stage of ``plan`` gives ``observable``."""
    axis = plan.observables[observable]
    return np.linspace(axis.start, axis.stop, axis.bins + 1)


def check_compatible(hset: HistogramSet, plan: RunPlan) -> None:
    """The histograms were made by a configuration compatible with ``plan``: the fitted
    channels exist, the binning and the variations (``nominal`` first) are the plan's.

    Args:
        hset: the loaded histograms.
        plan: the run plan.

    Raises:
        StatisticsInputError: a fitted channel is missing, the binning or the variations
            differ; the message names the file and what differs.
    """
    scfg = statistics_config(plan)
    obs = scfg.input.observable
    fix = ("rerun the analysis with this configuration, or point statistics.input.path at the "
           "histograms of this configuration")
    want_vars = set(plan.variations) | {NOMINAL}
    for ch in scfg.input.channels:
        obsh = hset.get(ch, obs)
        want = expected_edges(plan, obs)
        if obsh.edges.shape != want.shape or not np.allclose(obsh.edges, want, rtol=1e-9):
            msg = (f"histograms in {hset.source} were made by another configuration: {ch}/{obs} "
                   f"has {obsh.edges.size - 1} bins from {obsh.edges[0]:g} to {obsh.edges[-1]:g}, "
                   f"but analysis.observables.{obs}.binning gives {want.size - 1} bins from "
                   f"{want[0]:g} to {want[-1]:g}; {fix}")
            raise StatisticsInputError(msg)
        meta_procs = hset.meta.get("processes", {})
        mc = [p for p in obsh.contents
              if not (meta_procs.get(p, {}).get("is_data", p == "data"))]
        have = {v for p in mc for v in obsh.contents[p]}
        missing, extra = sorted(want_vars - have), sorted(have - want_vars)
        if missing or extra:
            msg = (f"histograms in {hset.source} were made by another configuration: {ch}/{obs} "
                   f"lacks variations {missing[:5]}{' ...' if len(missing) > 5 else ''} "
                   f"({len(missing)}) and has unexpected ones {extra[:5]}"
                   f"{' ...' if len(extra) > 5 else ''} ({len(extra)}) compared with the "
                   f"corrections and workflow.variations of this configuration; {fix}")
            raise StatisticsInputError(msg)


def run_stage(plan: RunPlan, histograms: Any, output_dir: Path, *, client: Any = None) -> dict[str, Any]:  # noqa: ANN401
    """Run the statistics stage of the job on fresh or saved histograms.

    Args:
        plan: the run plan (its statistics group, binning and variations).
        histograms: the in-memory histograms of the analysis stage, or None to read
            ``statistics.input.path``.
        output_dir: where the results go.
        client: Dask client for the signal scan.

    Returns:
        dict: the content of results.json.
    """
    scfg = statistics_config(plan)
    source = histograms if histograms is not None else scfg.input.path
    if source is None:
        msg = "statistics.input.path is not set and no histograms were made in this run"
        raise StatisticsInputError(msg)
    hset = load_histograms(source, plan.storage)
    check_compatible(hset, plan)
    return run_statistics(hset, scfg, output_dir, client=client)

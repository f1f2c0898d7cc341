"""Entry points: one signal hypothesis end to end, and limit scans over signal points."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, cast

import cabinetry
import numpy as np
import pyhf
from distributed import get_worker
from omegaconf import OmegaConf

from intccms.config.statistics import StatisticsConfig
from intccms.stats import plots
from intccms.stats.errors import StatisticsInputError
from intccms.stats.fit import fit_dataset, mle_fit, pars_at_bounds, pulls
from intccms.stats.inputs import HistogramSet, load_histograms
from intccms.stats.limits import upper_limits
from intccms.stats.model import ModelBuild, build_model, histogram_eras
from intccms.stats.optimize import Objective, single_threaded_blas
from intccms.stats.ranking import ranking as rank_parameters
from intccms.stats.report import print_summary, write_results

log = logging.getLogger(__name__)


def as_config(cfg: Any) -> StatisticsConfig:
    """Accept the dataclass itself or an OmegaConf/Hydra node of it."""
    if isinstance(cfg, StatisticsConfig):
        return cfg

    if OmegaConf.is_config(cfg):  # resolved where it sits (e.g. ${eras.2017.luminosity})
        cfg = OmegaConf.to_container(cfg, resolve=True)
    node = OmegaConf.merge(OmegaConf.structured(StatisticsConfig), cfg)
    return cast(StatisticsConfig, OmegaConf.to_object(node))


def make_workspace(build: ModelBuild, validate: bool = True) -> pyhf.Workspace:
    """The workspace of ``build``, validated against pyhf's schema unless ``validate`` is
    False (schema validation of the full Run-2 spec takes about a second: done once, on
    the file that is saved)."""
    try:
        return pyhf.Workspace(build.spec, validate=validate)
    except pyhf.exceptions.InvalidSpecification as err:
        msg = f"workspace for signal {build.signal!r} does not follow pyhf's schema: {err}"
        raise StatisticsInputError(msg) from err


def make_model(workspace: pyhf.Workspace) -> pyhf.pdf.Model:
    """The pyhf model of the workspace's only measurement (the spec is already checked)."""
    return workspace.model(validate=False)


def _with_observations(spec: dict[str, Any], model: pyhf.pdf.Model, data: list[float]) -> dict[str, Any]:
    """The spec with the fitted main data as observations, so that the saved workspace
    refits to the same result with plain pyhf."""
    main = model.config.nmaindata
    obs, start = [], 0
    for ch in model.config.channels:
        n = model.config.channel_nbins[ch]
        obs.append({"name": ch, "data": [float(x) for x in data[start : start + n]]})
        start += n
    assert start == main
    return {**spec, "observations": obs}


def _lumi_fb(hset: HistogramSet, cfg: StatisticsConfig) -> float:
    eras = histogram_eras(hset.meta, cfg)
    return sum(cfg.luminosity.eras.get(e, 0.0) for e in eras) / 1000.0


def _plots(out: Path, build: ModelBuild, model: pyhf.pdf.Model, fit: Any, rank: Any,
           cfg: StatisticsConfig, hset: HistogramSet, blind: bool, data: list[float],
           label: str) -> list[str]:
    files = []
    lumi = _lumi_fb(hset, cfg)
    # only the observed data is "Data"; Asimov and toy datasets are labelled as what they are
    data_label = {"observed": "Data", "asimov": "Asimov data"}.get(label.split(" ")[0], "Pseudo-data")
    preds = {
        "prefit": cabinetry.model_utils.prediction(model),
        "postfit": cabinetry.model_utils.prediction(model, fit_results=fit),
    }
    start = 0
    for chm in build.channels:
        n = len(chm.edges) - 1
        shown = None if blind else np.asarray(data[start : start + n])
        start += n
        for stage, pred in preds.items():
            ich = model.config.channels.index(chm.name)
            samples = {s: np.asarray(pred.model_yields[ich][k])
                       for k, s in enumerate(model.config.samples)}
            path = out / f"{chm.name}_{cfg.input.observable}_{stage}.png"
            plots.distribution(
                path, chm.edges, samples, np.asarray(pred.total_stdev_model_bins[ich][-1]),
                shown, title=f"{chm.name} {stage}", xlabel=cfg.input.observable, lumi_fb=lumi,
                data_label=data_label,
            )
            files.append(path.name)
    entries = pulls(model, fit)
    plots.pulls(out / "pulls.png", entries)
    plots.correlation(out / "correlation.png", list(fit.labels), fit.corr_mat)
    files += ["pulls.png", "correlation.png"]
    if rank is not None and len(rank.labels):
        plots.ranking(out / "ranking.png", rank, cfg.poi_name)
        files.append("ranking.png")
    return files


def run_statistics(
    histograms_source: str | Mapping[str, Any] | HistogramSet,
    cfg: StatisticsConfig,
    output_dir: str | Path,
    *,
    client: Any = None,
) -> dict[str, Any]:
    """Fit, rank, set limits and plot for ``cfg.signal``; scan ``cfg.signal_scan`` if set.

    Args:
        histograms_source: path/URL of histograms.pkl or histograms.root, or the dict.
        cfg: statistics configuration (dataclass or OmegaConf node).
        output_dir: where workspace.json, results.json and the PNG plots go.
        client: optional ``distributed.Client`` for the signal scan.

    Returns:
        dict: the content of results.json.
    """
    with single_threaded_blas():
        return _run_statistics(histograms_source, as_config(cfg), Path(output_dir), client)


def _run_statistics(histograms_source: str | Mapping[str, Any] | HistogramSet,
                    cfg: StatisticsConfig, out: Path, client: Any) -> dict[str, Any]:
    out.mkdir(parents=True, exist_ok=True)
    timing: dict[str, float] = {}
    t0 = t = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal t
        now = time.perf_counter()
        timing[name] = now - t
        t = now

    hset = load_histograms(histograms_source)
    lap("load")
    build = build_model(hset, cfg)
    ws = make_workspace(build, validate=False)
    model = make_model(ws)
    blind = bool(cfg.data.blind)
    data, label = fit_dataset(model, ws, cfg, any(c.observed is not None for c in build.channels))
    spec = _with_observations(build.spec, model, data)
    make_workspace(ModelBuild(spec, [], build.signal, []))  # the saved file validates
    (out / "workspace.json").write_text(json.dumps(spec, indent=1))
    objective = Objective(model, maxiter=cfg.fit.maxiter)
    lap("model")
    fit = mle_fit(model, data, cfg, objective)
    objective.set_scale(fit.uncertainty)
    poi = model.config.poi_index
    at_bounds = pars_at_bounds(model, np.asarray(fit.bestfit))
    lap("fit")
    rank = None
    if cfg.ranking and cfg.top_n_ranking > 0:
        rank = rank_parameters(model, data, fit, cfg.top_n_ranking, objective)
        lap("ranking")
    limits = None
    if cfg.limits.enabled:
        limits = upper_limits(
            model, data, confidence_level=cfg.limits.confidence_level,
            rtol=cfg.limits.rtol, observed=not blind,
            init_pars=[float(x) for x in fit.bestfit], sigma_guess=float(fit.uncertainty[poi]),
            objective=objective,
        ).as_dict()
        lap("limits")
    results: dict[str, Any] = {
        "signal": build.signal,
        "poi_name": cfg.poi_name,
        "data": label,
        "blind": blind,
        "input": {"source": hset.source, "config_hash": hset.meta.get("config_hash")},
        "fit": {
            "poi": {"value": float(fit.bestfit[poi]), "uncertainty": float(fit.uncertainty[poi])},
            "twice_nll": float(fit.best_twice_nll),
            "parameters": pulls(model, fit),
            "correlation": {"labels": list(fit.labels), "matrix": np.asarray(fit.corr_mat)},
            "at_bounds": at_bounds,
            "likelihood": objective.backend,
        },
        "ranking": _ranking_dict(rank),
        "limits": limits,
        "model": {
            "n_parameters": int(model.config.npars),
            "parameters": list(model.config.parameters),
            "channels": [c.name for c in build.channels],
            "samples": {s: ps for s, ps in build.channels[0].processes.items()},
            "systematics": build.systematics,
        },
        "pruned": build.pruned,
        "pruned_parameters": build.pruned_parameters,
        "notes": build.notes + (limits or {}).get("notes", []),
        "timing": timing,
    }
    if cfg.plots:
        results["plots"] = _plots(out, build, model, fit, rank, cfg, hset, blind, data, label)
        lap("plots")
    if cfg.signal_scan:
        results["scan"] = run_limit_scan(hset, cfg, cfg.signal_scan, client=client,
                                         output_dir=out if cfg.plots else None)
        lap("scan")
    timing["total"] = time.perf_counter() - t0
    write_results(results, out / "results.json")
    if cfg.show_table:
        print_summary(results)
    return results


def _ranking_dict(rank: Any) -> list[dict[str, Any]] | None:
    if rank is None:
        return None
    keys = ("bestfit", "uncertainty", "prefit_up", "prefit_down", "postfit_up", "postfit_down")
    return [
        {"name": name, **{k: float(getattr(rank, k)[i]) for k in keys}}
        for i, name in enumerate(rank.labels)
    ]


def limit_for_signal(hset: HistogramSet, cfg: StatisticsConfig, signal: str) -> dict[str, Any]:
    """Build the model for one signal point and compute its limits (a Dask task)."""
    with single_threaded_blas():
        return _limit_for_signal(hset, cfg, signal)


def _limit_for_signal(hset: HistogramSet, cfg: StatisticsConfig, signal: str) -> dict[str, Any]:
    t = time.perf_counter()
    build = build_model(hset, cfg, signal)
    ws = make_workspace(build, validate=False)
    model = make_model(ws)
    data, _ = fit_dataset(model, ws, cfg, any(c.observed is not None for c in build.channels))
    res = upper_limits(model, data, confidence_level=cfg.limits.confidence_level,
                       rtol=cfg.limits.rtol, observed=not cfg.data.blind,
                       objective=Objective(model, maxiter=cfg.fit.maxiter)).as_dict()
    res.update(signal=signal, mass=plots.signal_mass(signal), seconds=time.perf_counter() - t,
               worker=_worker_address())
    return res


def _worker_address() -> str | None:
    """The Dask worker running this task (None outside a worker): shows the spread."""
    try:
        return str(get_worker().address)
    except (ImportError, ValueError):
        return None


def run_limit_scan(
    histograms: str | Mapping[str, Any] | HistogramSet,
    cfg: StatisticsConfig,
    signals: list[str],
    client: Any = None,
    *,
    output_dir: str | Path | None = None,
) -> dict[str, Any]:
    """Upper limits for each signal point, one Dask task per point when a client is given.

    The histograms are loaded once and scattered once to the workers.

    Args:
        histograms: histogram source (see :func:`run_statistics`).
        cfg: statistics configuration.
        signals: signal process names, e.g. ``ZPrimeToTT_M2000_W200``.
        client: optional ``distributed.Client``.
        output_dir: where ``limit_scan.png`` goes (no plot when None).

    Returns:
        dict: ``points`` (one dict per signal) and ``plot`` (file name or None).
    """
    cfg = as_config(cfg)
    hset = load_histograms(histograms)
    if client is None:
        points = [limit_for_signal(hset, cfg, s) for s in signals]
    else:
        remote = client.scatter(hset, broadcast=False)
        futures = [
            client.submit(limit_for_signal, remote, cfg, s, pure=False)
            for s in signals
        ]
        points = client.gather(futures)
    plot = None
    if output_dir is not None:
        path = Path(output_dir) / "limit_scan.png"
        plots.limit_scan(path, points, f"95% CL upper limit on {cfg.poi_name}")
        plot = path.name
    return {"points": points, "plot": plot}

"""Dataset choice and the maximum-likelihood fit.

The fit runs on the analytic likelihood (:mod:`.optimize`) when the model allows it and
through cabinetry (iminuit, MIGRAD + HESSE) otherwise; both return cabinetry's
``FitResults`` so that its prediction and plotting conventions hold.
"""

from __future__ import annotations

import logging
from typing import Any, Literal, cast

import cabinetry
import numpy as np
import pyhf

from intccms.config.statistics import DataMode, StatisticsConfig
from intccms.stats.errors import FitConvergenceError, StatisticsInputError
from intccms.stats.optimize import MinimizationError, Objective

log = logging.getLogger(__name__)


def nominal_pars(model: pyhf.pdf.Model, poi: float) -> list[float]:
    """Suggested initial parameters with the POI set to ``poi``."""
    pars = list(model.config.suggested_init())
    pars[model.config.poi_index] = float(poi)
    return pars


def fit_dataset(
    model: pyhf.pdf.Model, workspace: pyhf.Workspace, cfg: StatisticsConfig, has_data: bool
) -> tuple[list[float], str]:
    """The dataset (main + auxiliary measurements) the model is fitted to.

    Returns:
        (data, label) with label ``observed``, ``asimov (mu=...)`` or ``toy (seed=...)``.
    """
    mode = DataMode(cfg.data.mode)
    if mode is DataMode.data and not cfg.data.blind:
        if not has_data:
            msg = (
                "statistics.data.mode is 'data' but the histograms hold no data process "
                "('data' or is_data in meta.processes); use mode 'asimov' or blind: true"
            )
            raise StatisticsInputError(msg)
        return [float(x) for x in workspace.data(model)], "observed"
    asimov = model.expected_data(nominal_pars(model, cfg.data.asimov_poi))
    if mode is DataMode.toy:
        rng = np.random.default_rng(cfg.data.seed)
        n_main = model.config.nmaindata
        main = rng.poisson(np.asarray(asimov[:n_main], dtype=float)).astype(float)
        data = np.concatenate([main, np.asarray(model.config.auxdata, dtype=float)])
        return data.tolist(), f"toy (seed={cfg.data.seed}, mu={cfg.data.asimov_poi:g})"
    return [float(x) for x in asimov], f"asimov (mu={cfg.data.asimov_poi:g})"


def pars_at_bounds(
    model: pyhf.pdf.Model, pars: np.ndarray, bounds: list[tuple[float, float]] | None = None
) -> list[str]:
    """Parameters within 0.1% of the bound range from a bound (free parameters only)."""
    bounds = bounds or model.config.suggested_bounds()
    fixed = model.config.suggested_fixed()
    out = []
    for i, name in enumerate(model.config.par_names):
        lo, hi = bounds[i]
        tol = 1e-3 * (hi - lo)
        if not fixed[i] and (pars[i] - lo < tol or hi - pars[i] < tol):
            out.append(name)
    return out


def _not_converged(model: pyhf.pdf.Model, err: Exception, x: Any) -> FitConvergenceError:
    at = pars_at_bounds(model, np.asarray(x)) if x is not None else []
    msg = (
        f"maximum-likelihood fit did not converge ({err}); parameters at their bounds: "
        f"{at or 'none'}. Try statistics.fit.strategy: 2, a larger maxiter, wider "
        "statistics.poi_bounds, or check these parameters' templates"
    )
    return FitConvergenceError(msg, at)


def mle_fit(
    model: pyhf.pdf.Model, data: list[float], cfg: StatisticsConfig,
    objective: Objective | None = None,
) -> cabinetry.fit.FitResults:
    """Unconditional maximum-likelihood fit with Hesse uncertainties and correlations.

    Args:
        model: the pyhf model.
        data: main + auxiliary data.
        cfg: statistics configuration (``fit`` options).
        objective: the model's :class:`.optimize.Objective`; its analytic likelihood, when
            available, replaces cabinetry's MIGRAD with numerical gradients.

    Raises:
        FitConvergenceError: the fit did not converge; names the parameters at bounds.
    """
    if objective is not None and objective.fast is not None:
        try:
            best, twice_nll = objective.minimize(data)
        except MinimizationError as err:
            raise _not_converged(model, err, err.pars) from err
        cov = objective.covariance(best, data)
        sigma = np.sqrt(np.clip(np.diag(cov), 0.0, None))
        safe = np.where(sigma > 0, sigma, 1.0)
        corr = cov / np.outer(safe, safe)
        np.fill_diagonal(corr, np.where(sigma > 0, 1.0, 0.0))
        return cabinetry.fit.FitResults(best, sigma, list(model.config.par_names), corr,
                                        float(twice_nll))
    try:
        return cabinetry.fit.fit(
            model,
            data,
            strategy=cast("Literal[0, 1, 2] | None", cfg.fit.strategy),  # MINUIT checks the value
            maxiter=cfg.fit.maxiter,
            tolerance=cfg.fit.tolerance,
        )
    except pyhf.exceptions.FailedMinimization as err:
        raise _not_converged(model, err, getattr(err.result, "x", None)) from err


def pulls(model: pyhf.pdf.Model, fit: Any) -> list[dict[str, Any]]:
    """Per parameter: best fit, uncertainty, pull and constraint w.r.t. the pre-fit values."""
    init = np.asarray(model.config.suggested_init(), dtype=float)
    prefit = np.asarray(cabinetry.model_utils.prefit_uncertainties(model), dtype=float)
    out = []
    for i, name in enumerate(fit.labels):
        entry: dict[str, Any] = {
            "name": name,
            "value": float(fit.bestfit[i]),
            "uncertainty": float(fit.uncertainty[i]),
        }
        if prefit[i] > 0:
            entry["pull"] = float((fit.bestfit[i] - init[i]) / prefit[i])
            entry["constraint"] = float(fit.uncertainty[i] / prefit[i])
        out.append(entry)
    return out

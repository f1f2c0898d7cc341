"""Nuisance-parameter ranking by impact on the POI.

cabinetry's ``fit.ranking`` refits four times for every parameter with MIGRAD+HESSE;
for ~100 parameters that is hundreds of fits. Here the linearised post-fit impact
cov(POI, theta) / sigma_theta from the full fit preselects the candidates, and only those
are refitted (the model's :class:`.optimize.Objective`, warm start, no Hesse). The output
is cabinetry's RankingResults so that its conventions (pre-fit/post-fit, up/down) hold.
"""

from __future__ import annotations

import cabinetry
import numpy as np
import pyhf

from intccms.stats.errors import FitConvergenceError
from intccms.stats.optimize import MinimizationError, Objective


def ranking(
    model: pyhf.pdf.Model, data: list[float], fit: cabinetry.fit.FitResults, top_n: int,
    objective: Objective | None = None,
) -> cabinetry.fit.RankingResults:
    """Impacts of the ``top_n`` most important parameters (plus a safety margin).

    Args:
        model: the fitted model.
        data: main + auxiliary data of the fit.
        fit: the unconditional fit result (best fit, uncertainties, correlations).
        top_n: number of parameters to report.
        objective: the model's objective (built here when None).

    Returns:
        cabinetry.fit.RankingResults: sorted by the largest post-fit impact.
    """
    poi = model.config.poi_index
    prefit = np.asarray(cabinetry.model_utils.prefit_uncertainties(model), dtype=float)
    sigma = np.asarray(fit.uncertainty, dtype=float)
    linear = np.abs(np.asarray(fit.corr_mat)[poi]) * sigma[poi]
    linear[poi] = -1.0
    linear[sigma == 0] = -1.0
    order = [int(i) for i in np.argsort(-linear) if linear[i] >= 0]
    candidates = order[: top_n + max(5, top_n // 2)]
    objective = objective or Objective(model)
    bounds = model.config.suggested_bounds()
    best = np.asarray(fit.bestfit, dtype=float)
    impacts = []
    for i in candidates:
        row = []
        for shift in (prefit[i], -prefit[i], sigma[i], -sigma[i]):
            if shift == 0:
                row.append(0.0)
                continue
            lo, hi = bounds[i]
            try:
                pars, _ = objective.minimize(data, best, {i: min(max(best[i] + shift, lo), hi)})
            except MinimizationError as err:
                msg = (f"impact fit with {model.config.par_names[i]} shifted by {shift:+.3g} "
                       f"did not converge ({err}); set statistics.ranking: false to skip it")
                raise FitConvergenceError(msg) from err
            row.append(float(pars[poi] - best[poi]))
        impacts.append(row)
    imp = np.asarray(impacts, dtype=float).reshape(-1, 4)
    order2 = np.argsort(-np.max(np.abs(imp[:, 2:]), axis=1), kind="stable")[:top_n]
    sel = [candidates[k] for k in order2]
    imp = imp[order2]
    return cabinetry.fit.RankingResults(
        best[sel],
        sigma[sel],
        [model.config.par_names[k] for k in sel],
        imp[:, 0],
        imp[:, 1],
        imp[:, 2],
        imp[:, 3],
    )

"""The nuisance-parameter ranking agrees with cabinetry's full refits; its plot (and the pulls
plot) show every parameter name whole."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cabinetry
import numpy as np
import pyhf
import pytest
from matplotlib.figure import Figure
from test_stats import simple_cfg

from intccms.stats import plots
from intccms.stats.fit import mle_fit
from intccms.stats.optimize import Objective
from intccms.stats.ranking import ranking


def _model() -> tuple[pyhf.pdf.Model, list[float]]:
    """Two bins, eight nuisance parameters of very different size on the background and
    signal, so that the top 3 differ clearly from the rest."""
    sizes = {"a": 0.20, "b": 0.12, "c": 0.07, "d": 0.04, "e": 0.02, "f": 0.01, "g": 0.005}
    bkg = [{"name": k, "type": "normsys", "data": {"hi": 1 + v, "lo": 1 - 0.8 * v}}
           for k, v in sizes.items()]
    bkg.append({"name": "shape", "type": "histosys",
                "data": {"hi_data": [52.0, 23.0], "lo_data": [48.0, 27.0]}})
    spec = {
        "channels": [{"name": "SR", "samples": [
            {"name": "sig", "data": [4.0, 10.0], "modifiers": [
                {"name": "mu", "type": "normfactor", "data": None},
                {"name": "a", "type": "normsys", "data": {"hi": 1.05, "lo": 0.95}}]},
            {"name": "bkg", "data": [50.0, 25.0], "modifiers": bkg},
        ]}],
        "observations": [{"name": "SR", "data": [57.0, 36.0]}],
        "measurements": [{"name": "m", "config": {"poi": "mu", "parameters": [
            {"name": "mu", "bounds": [[0.0, 20.0]], "inits": [1.0]}]}}],
        "version": "1.0.0",
    }
    ws = pyhf.Workspace(spec)
    model = ws.model()
    return model, [float(x) for x in ws.data(model)]


def _refit_mu(model: pyhf.pdf.Model, data: list[float], best: np.ndarray, i: int,
              value: float) -> float:
    """mu of a plain pyhf fit with parameter ``i`` fixed at ``value``."""
    init = best.copy()
    init[i] = value
    fixed = [False] * model.config.npars
    fixed[i] = True
    pars = pyhf.infer.mle.fit(data, model, init_pars=init.tolist(), fixed_params=fixed)
    return float(pars[model.config.poi_index])


def test_ranking_matches_cabinetry_and_direct_refits():
    model, data = _model()
    objective = Objective(model)
    fit = mle_fit(model, data, simple_cfg(), objective)
    ours = ranking(model, data, fit, top_n=3, objective=objective)
    assert len(ours.labels) == 3

    # cabinetry refits every parameter (MINUIT, tight tolerance: its default 0.1 leaves ~1e-2)
    pyhf.set_backend("numpy", pyhf.optimize.scipy_optimizer(tolerance=1e-12))
    try:
        ref_fit = cabinetry.fit.fit(model, data, tolerance=1e-6, strategy=2)
        ref = cabinetry.fit.ranking(model, data, fit_results=ref_fit, tolerance=1e-6, strategy=2)
        best = np.asarray(fit.bestfit, dtype=float)
        direct = {}
        for name in ours.labels:
            i = model.config.par_names.index(name)
            s = float(fit.uncertainty[i])
            mu = best[model.config.poi_index]
            direct[name] = [_refit_mu(model, data, best, i, best[i] + d) - mu for d in (s, -s)]
    finally:
        pyhf.set_backend("numpy", pyhf.optimize.scipy_optimizer())
    assert len(ref.labels) == 8
    # the same top three, in the same order (by the largest post-fit impact), as cabinetry's
    # ranking of all eight: the preselection by linearised impact drops no important one
    strength = np.maximum(np.abs(ref.postfit_up), np.abs(ref.postfit_down))
    ref_order = [ref.labels[k] for k in np.argsort(-strength, kind="stable")]
    assert list(ours.labels) == ref_order[:3]
    for k, name in enumerate(ours.labels):
        j = list(ref.labels).index(name)
        # pre-fit shifts (+-1 prior width) are the same fits: agree to 1e-4
        assert ours.prefit_up[k] == pytest.approx(ref.prefit_up[j], abs=1e-4), name
        assert ours.prefit_down[k] == pytest.approx(ref.prefit_down[j], abs=1e-4), name
        # post-fit shifts use the Hesse uncertainty, MINUIT's is ~0.6% smaller (its
        # sine-transformed bounded coordinates): within 3% of cabinetry's impacts ...
        assert ours.postfit_up[k] == pytest.approx(ref.postfit_up[j], rel=0.03), name
        assert ours.postfit_down[k] == pytest.approx(ref.postfit_down[j], rel=0.03), name
        # ... and to 1e-4 of plain pyhf refits at exactly our best fit +- uncertainty
        assert [ours.postfit_up[k], ours.postfit_down[k]] == pytest.approx(direct[name], abs=1e-4)
    assert abs(ours.postfit_up[0]) > 0.3  # sizeable impacts: the checks are not met by zeros


# Parameter names of the demo model, the longest ones included.
DEMO_NAMES = ["staterror_CMS_WORKSHOP_mtt[12]", "jesRelativeStatFSR_2017", "btag_hfstats2_2017",
              "muon_trigger_sf", "pileup_2017", "jesSinglePionHCAL", "xsec_ttbar", "lumi"]


def _draw_ranking(path: Path) -> None:
    n = len(DEMO_NAMES)
    impact = np.linspace(0.2, 0.02, n)
    plots.ranking(path, cabinetry.fit.RankingResults(np.ones(n), np.ones(n), DEMO_NAMES, impact,
                                                     -impact, 0.7 * impact, -0.7 * impact), "mu")


def _draw_pulls(path: Path) -> None:
    plots.pulls(path, [{"name": name, "pull": 0.1, "constraint": 0.8} for name in DEMO_NAMES])


@pytest.mark.parametrize("draw", [_draw_ranking, _draw_pulls], ids=["ranking", "pulls"])
def test_parameter_names_and_axis_labels_lie_within_the_figure(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, draw: Any) -> None:
    outside: list[tuple[str, Any]] = []
    saved = Figure.savefig

    def checking_savefig(fig: Figure, *args: Any, **kwargs: Any) -> None:
        saved(fig, *args, **kwargs)
        fig.canvas.draw()  # the layout as saved, at the figure's own dpi
        renderer = fig.canvas.get_renderer()
        (ax,) = fig.axes
        texts = [*ax.get_yticklabels(), ax.xaxis.label]
        assert sorted(t.get_text() for t in ax.get_yticklabels()) == sorted(DEMO_NAMES)
        box = fig.bbox
        for text in texts:
            ext = text.get_window_extent(renderer)
            if ext.x0 < box.x0 - 0.5 or ext.x1 > box.x1 + 0.5 or ext.y0 < box.y0 - 0.5 \
                    or ext.y1 > box.y1 + 0.5:
                outside.append((text.get_text(), ext))

    monkeypatch.setattr(Figure, "savefig", checking_savefig)
    draw(tmp_path / "plot.png")
    assert (tmp_path / "plot.png").is_file()
    assert outside == [], f"cut off at the figure's edge: {outside}"

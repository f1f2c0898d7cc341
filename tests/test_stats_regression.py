"""Fits of a demo-like workspace: the analytic fit must move from its start and agree with pyhf.

The demo workspace (one channel, a dominant ttbar sample of ~10^4 events, small
backgrounds, and dozens of correlated normsys + histosys parameters besides lumi, xsec and
staterror) once returned its initial parameters: L-BFGS-B's first step crossed the box into
empty expectations, the line search fell back to the start and L-BFGS-B reported success.
"""

from __future__ import annotations

from dataclasses import fields

import numpy as np
import pyhf
import pytest

from intccms.config.statistics import StatisticsConfig
from intccms.stats.fit import mle_fit
from intccms.stats.likelihood import FastLikelihood, _agrees, compile_model
from intccms.stats.optimize import Objective

N_BINS = 9
N_JES = 50


def _demo_like_spec(seed: int = 3) -> tuple[dict, list[float]]:
    """A workspace with the demo's modifier mix and data ~8% below the prediction."""
    rng = np.random.default_rng(seed)
    # the demo's m_tt spectrum: two nearly empty bins below the peak
    shape = np.array([9.0, 46.0, 1325.0, 3557.0, 2695.0, 1546.0, 907.0, 496.0, 820.0])
    shape /= shape.sum()
    yields = {"sig": 140.0, "ttbar": 11000.0, "wjets": 140.0, "single_top": 80.0,
              "dyjets": 4.5, "qcd": 23.0}
    # normalisation effects of 2-5%, all the same sign: strongly correlated parameters
    effects = rng.uniform(0.02, 0.05, N_JES)
    # shape effects of the same pattern (the demo's: up raises the lowest bin by ~1%)
    pattern = np.array([1.0, -0.3, -1.0, 0.0, 0.0, 0.3, 0.7, 0.2, 0.3])
    tilts = 0.008 * pattern * rng.uniform(0.5, 1.5, (N_JES, 1))
    samples = []
    peak = np.array([0.0, 0.0, 0.01, 0.02, 0.04, 0.08, 0.15, 0.25, 0.45])  # a 2 TeV Z'
    for name, total in yields.items():
        nom = total * (peak if name == "sig" else shape) * rng.uniform(0.8, 1.2, N_BINS)
        mods: list[dict] = []
        if name == "sig":
            mods.append({"name": "mu", "type": "normfactor", "data": None})
        mods.append({"name": "lumi", "type": "normsys", "data": {"hi": 1.016, "lo": 0.984}})
        mods.append({"name": f"xsec_{name}", "type": "normsys",
                     "data": {"hi": 1.1, "lo": 0.9}})
        mods.append({"name": "staterror_SR", "type": "staterror",
                     "data": (0.02 * nom + np.sqrt(nom) * 0.05).tolist()})
        for k in range(N_JES):
            if name == "dyjets" and k % 3 == 0:
                continue  # pruned on the smallest sample
            mods.append({"name": f"jes{k}", "type": "normsys",
                         "data": {"hi": 1.0 + effects[k], "lo": 1.0 - 0.9 * effects[k]}})
            up, dn = nom * (1.0 + tilts[k]), nom * (1.0 - tilts[k])
            mods.append({"name": f"jes{k}", "type": "histosys",
                         "data": {"hi_data": up.tolist(), "lo_data": dn.tolist()}})
        samples.append({"name": name, "data": nom.tolist(), "modifiers": mods})
    bkg = sum(np.asarray(s["data"]) for s in samples[1:])
    expected = 0.92 * bkg + 0.8 * np.asarray(samples[0]["data"])
    observed = np.round(expected * rng.uniform(0.98, 1.02, N_BINS))
    spec = {
        "channels": [{"name": "SR", "samples": samples}],
        "observations": [{"name": "SR", "data": observed.tolist()}],
        "measurements": [{"name": "measurement", "config": {"poi": "mu", "parameters": [
            {"name": "mu", "bounds": [[0.0, 50.0]], "inits": [1.0]}]}}],
        "version": "1.0.0",
    }
    return spec, observed.tolist()


@pytest.fixture(scope="module")
def demo_like() -> tuple[pyhf.pdf.Model, list[float]]:
    spec, _ = _demo_like_spec()
    ws = pyhf.Workspace(spec)
    model = ws.model(validate=False)
    return model, [float(x) for x in ws.data(model)]


@pytest.fixture(scope="module")
def pyhf_fit(demo_like) -> tuple[np.ndarray, float]:
    model, data = demo_like
    pars, nll = pyhf.infer.mle.fit(data, model, return_fitted_val=True)
    return np.asarray(pars, dtype=float), float(nll)


def test_analytic_fit_matches_pyhf_on_demo_like_workspace(demo_like, pyhf_fit):
    model, data = demo_like
    obj = Objective(model)
    assert obj.backend == "analytic"
    best, nll = obj.minimize(data)
    ref, ref_nll = pyhf_fit
    poi = model.config.poi_index
    assert abs(ref[poi] - 1.0) > 0.05  # the workspace does pull mu away from its start
    assert nll == pytest.approx(ref_nll, rel=1e-4)
    assert nll <= ref_nll + 1e-3  # pyhf's minimum is not lower than the analytic one
    assert best[poi] == pytest.approx(ref[poi], rel=1e-3)


def test_mle_fit_moves_every_parameter_and_has_uncertainties(demo_like, pyhf_fit):
    model, data = demo_like
    fit = mle_fit(model, data, StatisticsConfig(), objective=Objective(model))
    init = np.asarray(model.config.suggested_init(), dtype=float)
    ref, ref_nll = pyhf_fit
    assert fit.best_twice_nll == pytest.approx(ref_nll, rel=1e-4)
    assert np.all(fit.bestfit != init)  # no parameter left at its start value
    assert np.all(fit.uncertainty > 0)
    np.testing.assert_allclose(fit.bestfit, ref, atol=2e-2)


def test_start_point_is_not_reported_as_a_minimum(demo_like):
    """From the initial point the gradient is large; minimize must not return that point."""
    model, data = demo_like
    obj = Objective(model)
    _, grad = obj.fast.value_and_grad(obj.init, np.asarray(data))
    assert np.max(np.abs(grad * obj.scale)) > 1.0
    _, nll = obj.minimize(data)
    assert nll < obj.twice_nll(obj.init, data) - 1.0


class _SkewedGradient(FastLikelihood):
    """Correct values, a gradient 1% off: what the build-time check must catch."""

    def value_and_grad(self, pars: np.ndarray, data: np.ndarray) -> tuple[float, np.ndarray]:
        val, grad = super().value_and_grad(pars, data)
        return val, 1.01 * grad


def test_build_check_rejects_a_wrong_gradient(demo_like):
    model, _ = demo_like
    fast = compile_model(model)
    assert fast is not None and _agrees(fast, model)
    skewed = _SkewedGradient(**{f.name: getattr(fast, f.name) for f in fields(fast)})
    assert not _agrees(skewed, model)

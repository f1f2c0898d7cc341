"""The analytic likelihood against pyhf: values, gradients, fits, covariance, fallback."""

from __future__ import annotations

import numpy as np
import pyhf
import pytest

from intccms.stats.inputs import load_histograms
from intccms.stats.likelihood import compile_model
from intccms.stats.model import build_model
from intccms.stats.optimize import MinimizationError, Objective
from intccms.stats.synthetic import make_histograms, synthetic_config


@pytest.fixture(scope="module")
def small_model() -> pyhf.pdf.Model:
    """Every supported modifier type, two channels, a sample absent from one channel."""
    spec = {
        "channels": [
            {"name": "A", "samples": [
                {"name": "sig", "data": [2.0, 6.0, 1.0], "modifiers": [
                    {"name": "mu", "type": "normfactor", "data": None},
                    {"name": "jes", "type": "histosys",
                     "data": {"hi_data": [2.4, 6.3, 0.9], "lo_data": [1.7, 5.5, 1.2]}},
                    {"name": "stat_A", "type": "staterror", "data": [0.3, 0.5, 0.2]}]},
                {"name": "bkg", "data": [30.0, 20.0, 8.0], "modifiers": [
                    {"name": "jes", "type": "histosys",
                     "data": {"hi_data": [33.0, 19.0, 8.5], "lo_data": [28.0, 21.5, 7.0]}},
                    {"name": "jes", "type": "normsys", "data": {"hi": 1.04, "lo": 0.93}},
                    {"name": "xsec", "type": "normsys", "data": {"hi": 1.2, "lo": 0.85}},
                    {"name": "stat_A", "type": "staterror", "data": [2.0, 1.5, 1.0]}]},
            ]},
            {"name": "B", "samples": [
                {"name": "bkg", "data": [12.0, 4.0], "modifiers": [
                    {"name": "xsec", "type": "normsys", "data": {"hi": 1.2, "lo": 0.85}},
                    {"name": "lumi", "type": "normsys", "data": {"hi": 1.016, "lo": 0.984}}]},
            ]},
        ],
        "parameters": [{"name": "mu", "bounds": [[0.0, 20.0]], "inits": [1.0]}],
    }
    return pyhf.Model(spec, poi_name="mu")


def _points(model: pyhf.pdf.Model, n: int, seed: int = 1) -> np.ndarray:
    """Parameter points that visit every interpolation branch (|alpha| below and above 1)."""
    rng = np.random.default_rng(seed)
    init = np.asarray(model.config.suggested_init())
    pts = np.repeat(init[None], n, 0)
    alphas = [model.config.par_slice(p).start for p in ("jes", "xsec", "lumi")]
    pts[:, alphas] = rng.uniform(-2.5, 2.5, (n, len(alphas)))
    pts[:, model.config.poi_index] = rng.uniform(0.0, 3.0, n)
    gam = model.config.par_slice("stat_A")
    pts[:, gam] = rng.uniform(0.8, 1.2, (n, gam.stop - gam.start))
    return pts


def test_value_and_gradient_match_pyhf(small_model):
    fast = compile_model(small_model)
    assert fast is not None
    data = np.asarray(small_model.expected_data(small_model.config.suggested_init()))
    data[: small_model.config.nmaindata] = [31, 27, 10, 11, 5]
    data[small_model.config.nmaindata:] += 0.1  # auxiliary data away from the parameters
    for pars in _points(small_model, 25):
        ref = float(pyhf.infer.mle.twice_nll(pars, data, small_model)[0])
        val, grad = fast.value_and_grad(pars, data)
        assert val == pytest.approx(ref, rel=1e-12)
        numeric = np.array([
            (fast.twice_nll(pars + h, data) - fast.twice_nll(pars - h, data)) / 2e-6
            for h in np.eye(pars.size) * 1e-6
        ])
        np.testing.assert_allclose(grad, numeric, rtol=1e-5, atol=1e-5)


def test_full_size_model_compiles_and_matches_pyhf():
    hset = load_histograms(make_histograms(seed=2))
    build = build_model(hset, synthetic_config())
    model = pyhf.Workspace(build.spec).model()
    fast = compile_model(model)
    assert fast is not None and fast.npars == model.config.npars
    data = np.asarray(pyhf.Workspace(build.spec).data(model))
    for pars in _points_generic(model, 3):
        ref = float(pyhf.infer.mle.twice_nll(pars, data, model)[0])
        assert fast.twice_nll(pars, data) == pytest.approx(ref, rel=1e-10)


def _points_generic(model: pyhf.pdf.Model, n: int) -> np.ndarray:
    rng = np.random.default_rng(5)
    init = np.asarray(model.config.suggested_init())
    return np.array([init + rng.normal(0.0, 0.05, init.size) * np.where(init == 1.0, 1.0, 20.0)
                     for _ in range(n)])


def test_fit_and_covariance_agree_with_pyhf_minuit(small_model):
    data = [33.0, 26.0, 9.0, 13.0, 4.0, *small_model.config.auxdata]
    obj = Objective(small_model)
    assert obj.backend == "analytic"
    best, twice_nll = obj.minimize(data)
    cov = obj.covariance(best, data)
    pyhf.set_backend("numpy", pyhf.optimize.minuit_optimizer(tolerance=1e-6, strategy=2))
    try:
        ref, ref_nll = pyhf.infer.mle.fit(data, small_model, return_uncertainties=True,
                                          return_fitted_val=True,
                                          par_bounds=[(-500.0, 500.0)] * small_model.config.npars)
    finally:
        pyhf.set_backend("numpy", pyhf.optimize.scipy_optimizer())
    np.testing.assert_allclose(best, ref[:, 0], atol=2e-4)
    assert twice_nll == pytest.approx(float(ref_nll), abs=1e-6)
    np.testing.assert_allclose(np.sqrt(np.diag(cov)), ref[:, 1], rtol=2e-3)
    # fixing the POI: the conditional fit is never better than the free one
    _, cond = obj.minimize(data, best, {small_model.config.poi_index: 0.0})
    assert cond >= twice_nll - 1e-9


def test_unsupported_modifier_falls_back_to_pyhf():
    model = pyhf.simplemodels.uncorrelated_background(signal=[5.0, 3.0], bkg=[50.0, 20.0],
                                                      bkg_uncertainty=[5.0, 3.0])
    assert compile_model(model) is None  # shapesys: Poisson-constrained
    obj = Objective(model)
    assert obj.backend == "pyhf"
    data = [55.0, 22.0, *model.config.auxdata]
    best, nll = obj.minimize(data)
    ref = pyhf.infer.mle.fit(data, model, return_fitted_val=True)
    assert nll == pytest.approx(float(ref[1]), abs=1e-6)
    np.testing.assert_allclose(best, ref[0], atol=1e-3)


def test_iteration_limit_is_a_named_failure(small_model):
    data = [33.0, 26.0, 9.0, 13.0, 4.0, *small_model.config.auxdata]
    with pytest.raises(MinimizationError, match="ITERATIONS"):
        Objective(small_model, maxiter=1).minimize(data)


def test_fit_through_an_empty_bin_matches_pyhf():
    """A bin only the signal fills, with no data: the first step to mu = 0 empties it
    (pyhf: 0 events expected and seen, a finite term); the fit must go on from there."""
    spec = {"channels": [{"name": "SR", "samples": [
        {"name": "sig", "data": [0.05, 2.0, 8.0], "modifiers": [
            {"name": "mu", "type": "normfactor", "data": None}]},
        {"name": "bkg", "data": [0.0, 40.0, 30.0], "modifiers": [
            {"name": "jes", "type": "histosys",
             "data": {"hi_data": [0.0, 46.0, 31.0], "lo_data": [0.0, 35.0, 29.0]}},
            {"name": "norm", "type": "normsys", "data": {"hi": 1.3, "lo": 0.7}}]},
    ]}], "parameters": [{"name": "mu", "bounds": [[0.0, 20.0]], "inits": [1.0]}]}
    model = pyhf.Model(spec, poi_name="mu")
    data = [0.0, 25.0, 21.0, *model.config.auxdata]  # far below the prediction
    best, nll = Objective(model).minimize(data)
    ref, ref_nll = pyhf.infer.mle.fit(data, model, return_fitted_val=True)
    assert nll == pytest.approx(float(ref_nll), abs=1e-5)
    np.testing.assert_allclose(best, ref, atol=2e-3)

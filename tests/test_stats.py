"""Statistics stage: model building, fit and limits against plain pyhf, bad inputs."""

from __future__ import annotations

import json
import pickle

import hist
import numpy as np
import pyhf
import pytest

from intccms.config.statistics import DataMode, LuminosityConfig
from intccms.stats import (
    FitConvergenceError,
    StatisticsConfig,
    StatisticsInputError,
    build_model,
    load_histograms,
    run_statistics,
    upper_limits,
)

EDGES = [0.0, 1.0, 2.0]


def make_hists(
    procs: dict[str, dict[str, list[float]]],
    edges: list[float] = EDGES,
    variances: float = 0.0,
    meta: dict | None = None,
) -> dict:
    """{process: {variation: bin values}} -> the analysis stage's pickle dict."""
    variations = sorted({v for per in procs.values() for v in per})
    nb = len(edges) - 1
    h = hist.Hist(
        hist.axis.StrCategory(list(procs), name="process"),
        hist.axis.StrCategory(variations, name="variation"),
        hist.axis.Regular(nb, edges[0], edges[-1], name="obs"),
        storage=hist.storage.Weight(),
    )
    view = h.view(flow=True)
    for ip, per in enumerate(procs.values()):
        for v, vals in per.items():
            iv = variations.index(v)
            view.value[ip, iv, 1 : nb + 1] = vals
            view.variance[ip, iv, 1 : nb + 1] = np.asarray(vals) * variances
    return {"histograms": {"SR": {"obs": h}}, "meta": meta or {"config_hash": "abc"}}


def simple_cfg(**kw) -> StatisticsConfig:
    cfg = StatisticsConfig(
        signal="sig",
        backgrounds={"bkg": ["bkg*"]},
        luminosity=LuminosityConfig(components=[]),
        plots=False,
        ranking=False,
        show_table=False,
    )
    cfg.input.channels = ["SR"]
    cfg.input.observable = "obs"
    cfg.systematics.mc_stat = False
    cfg.systematics.pruning_threshold = 0.0
    cfg.limits.rtol = 1e-8
    cfg.fit.tolerance = 1e-4
    for k, v in kw.items():
        setattr(cfg, k, v)
    return cfg


def plain_pyhf_reference(spec: dict) -> tuple[float, float, float, list[float]]:
    """Best fit, Hesse uncertainty, observed and expected limits from plain pyhf.

    The fit widens every bound to [-500, 500]: MINUIT's HESSE works in its internal
    sine-transformed coordinates, which near a bound bias the uncertainty by ~1% (1.810
    instead of the exact 1.8229 of the counting experiment below, 1.8228 with wide bounds);
    the best fits here are inside the bounds, so only the uncertainty changes.
    """
    ws = pyhf.Workspace(spec)
    model = ws.model()
    data = ws.data(model)
    bounds = [(-500.0, 500.0)] * model.config.npars
    pyhf.set_backend("numpy", pyhf.optimize.minuit_optimizer(tolerance=1e-4, strategy=2))
    try:
        res = pyhf.infer.mle.fit(data, model, return_uncertainties=True, par_bounds=bounds)
    finally:
        pyhf.set_backend("numpy", pyhf.optimize.scipy_optimizer(tolerance=1e-10))
    poi = model.config.poi_index
    try:
        obs, exp = pyhf.infer.intervals.upper_limits.toms748_scan(
            data, model, 0.0, 10.0, rtol=1e-9, test_stat="qtilde"
        )
    finally:
        pyhf.set_backend("numpy", pyhf.optimize.scipy_optimizer())
    return float(res[poi, 0]), float(res[poi, 1]), float(obs), [float(e) for e in exp]


def assert_agrees_with_plain_pyhf(res: dict, spec: dict) -> None:
    """Best-fit mu, its uncertainty and the CLs limits agree with plain pyhf to 1e-4."""
    mu, dmu, obs, exp = plain_pyhf_reference(spec)
    assert res["fit"]["poi"]["value"] == pytest.approx(mu, abs=1e-4)
    assert res["fit"]["poi"]["uncertainty"] == pytest.approx(dmu, abs=1e-4)
    assert res["limits"]["observed"] == pytest.approx(obs, abs=1e-4)
    got = [res["limits"]["expected_band"][k] for k in ("-2", "-1", "0", "+1", "+2")]
    assert got == pytest.approx(exp, abs=1e-4)


def test_counting_experiment_matches_plain_pyhf(tmp_path):
    hists = make_hists(
        {
            "sig": {"nominal": [5.0]},
            "bkg": {"nominal": [50.0]},
            "data": {"nominal": [58.0]},
        },
        edges=[0.0, 1.0],
    )
    cfg = simple_cfg(xsec_uncertainties={"bkg": 0.1})
    res = run_statistics(hists, cfg, tmp_path)
    spec = {
        "channels": [{"name": "SR", "samples": [
            {"name": "sig", "data": [5.0], "modifiers": [
                {"name": "mu", "type": "normfactor", "data": None}]},
            {"name": "bkg", "data": [50.0], "modifiers": [
                {"name": "xsec_bkg", "type": "normsys", "data": {"hi": 1.1, "lo": 0.9}}]},
        ]}],
        "observations": [{"name": "SR", "data": [58.0]}],
        "measurements": [{"name": "m", "config": {"poi": "mu", "parameters": [
            {"name": "mu", "bounds": [[0.0, 50.0]], "inits": [1.0]}]}}],
        "version": "1.0.0",
    }
    assert_agrees_with_plain_pyhf(res, spec)


def test_two_bin_shape_model_matches_plain_pyhf(tmp_path):
    hists = make_hists(
        {
            "sig": {"nominal": [2.0, 8.0], "jes_up": [2.2, 8.4], "jes_down": [1.9, 7.5]},
            "bkg1": {"nominal": [40.0, 20.0], "jes_up": [44.0, 21.0], "jes_down": [37.0, 19.5]},
            "bkg2": {"nominal": [10.0, 5.0], "jes_up": [10.0, 5.0], "jes_down": [10.0, 5.0]},
            "data": {"nominal": [49.0, 30.0]},
        },
        variances=0.04,
    )
    cfg = simple_cfg()
    cfg.systematics.mc_stat = True
    res = run_statistics(hists, cfg, tmp_path)

    def split(nom, up, down):
        nom, up, down = map(np.asarray, (nom, up, down))
        hi, lo = up.sum() / nom.sum(), down.sum() / nom.sum()
        return [
            {"name": "jes", "type": "normsys", "data": {"hi": hi, "lo": lo}},
            {"name": "jes", "type": "histosys",
             "data": {"hi_data": (up / hi).tolist(), "lo_data": (down / lo).tolist()}},
        ]

    def stat(nom):
        return {"name": "staterror_SR", "type": "staterror",
                "data": np.sqrt(np.asarray(nom) * 0.04).tolist()}

    bkg = [50.0, 25.0]
    spec = {
        "channels": [{"name": "SR", "samples": [
            {"name": "sig", "data": [2.0, 8.0], "modifiers": [
                {"name": "mu", "type": "normfactor", "data": None}, stat([2.0, 8.0]),
                *split([2.0, 8.0], [2.2, 8.4], [1.9, 7.5])]},
            {"name": "bkg", "data": bkg, "modifiers": [
                stat(bkg), *split(bkg, [54.0, 26.0], [47.0, 24.5])]},
        ]}],
        "observations": [{"name": "SR", "data": [49.0, 30.0]}],
        "measurements": [{"name": "m", "config": {"poi": "mu", "parameters": [
            {"name": "mu", "bounds": [[0.0, 50.0]], "inits": [1.0]}]}}],
        "version": "1.0.0",
    }
    assert_agrees_with_plain_pyhf(res, spec)

    # the saved workspace validates and refits to the same result with plain pyhf
    saved = json.loads((tmp_path / "workspace.json").read_text())
    mu2, _dmu2, obs2, _ = plain_pyhf_reference(saved)
    assert mu2 == pytest.approx(res["fit"]["poi"]["value"], abs=1e-4)
    assert obs2 == pytest.approx(res["limits"]["observed"], abs=1e-4)


def test_asimov_fit_returns_injected_mu_with_zero_pulls(tmp_path):
    hists = make_hists({
        "sig": {"nominal": [3.0, 9.0], "jes_up": [3.3, 9.5], "jes_down": [2.8, 8.6]},
        "bkg": {"nominal": [30.0, 20.0], "jes_up": [32.0, 21.0], "jes_down": [28.5, 19.0]},
    }, variances=0.1)
    cfg = simple_cfg(xsec_uncertainties={"bkg": 0.05})
    cfg.data.mode = DataMode.asimov
    cfg.data.asimov_poi = 1.5
    cfg.systematics.mc_stat = True
    res = run_statistics(hists, cfg, tmp_path)
    assert res["fit"]["poi"]["value"] == pytest.approx(1.5, abs=1e-3)
    pulls = [p["pull"] for p in res["fit"]["parameters"] if "pull" in p]
    assert len(pulls) == 4  # jes, xsec_bkg, two staterror bins
    assert np.allclose(pulls, 0.0, atol=2e-3)
    assert res["data"].startswith("asimov")


def _era_hists() -> dict:
    """Two eras merged: 2017 and 2018 parts of every process, era-specific variations
    filled with the other era's nominal."""
    p17 = {"sig": np.array([1.0, 4.0]), "bkgA": np.array([20.0, 10.0]), "bkgB": np.array([5.0, 3.0])}
    p18 = {k: 1.5 * v for k, v in p17.items()}
    sources = {  # name: eras it acts on
        "jesAbsoluteStat_2017": ["2017"], "jesAbsoluteStat_2018": ["2018"],
        "jesFlavorQCD": ["2017", "2018"], "pileup_2017": ["2017"], "pileup_2018": ["2018"],
        "btag_hf": ["2017", "2018"],
    }
    procs: dict[str, dict[str, list[float]]] = {}
    for p in p17:
        per = {"nominal": (p17[p] + p18[p]).tolist()}
        for k, (s, eras) in enumerate(sources.items()):
            shift = 0.02 * (k + 1) * np.array([1.0, -0.5])
            for sign, d in ((1, "up"), (-1, "down")):
                tot = np.zeros(2)
                for era, part in (("2017", p17[p]), ("2018", p18[p])):
                    tot += part * (1 + sign * shift) if era in eras else part
                per[f"{s}_{d}"] = tot.tolist()
        # a source only the (absent) 2016 era produces: filled with nominal everywhere
        per["pileup_2016preVFP_up"] = per["nominal"]
        per["pileup_2016preVFP_down"] = per["nominal"]
        procs[p] = per
    procs["data"] = {"nominal": [40.0, 30.0]}
    meta = {"config_hash": "h1", "eras": ["2017", "2018"],
            "era_yields": {p: {"2017": float(p17[p].sum()), "2018": float(p18[p].sum())}
                           for p in p17}}
    return make_hists(procs, meta=meta)


def test_np_mapping_over_eras_and_foreign_variation(tmp_path):
    hists = _era_hists()
    cfg = simple_cfg(backgrounds={"bkg": ["bkg*"]})
    cfg.systematics.pruning_threshold = 1e-6
    cfg.luminosity = LuminosityConfig()  # CMS Run-2 scheme
    build = build_model(load_histograms(hists), cfg)
    model = pyhf.Workspace(build.spec).model()
    expected = {"mu", "jesAbsoluteStat_2017", "jesAbsoluteStat_2018", "jesFlavorQCD",
                "pileup_2017", "pileup_2018", "btag_hf", "lumi_2017", "lumi_2018",
                "lumi_corr", "lumi_1718"}
    assert set(model.config.parameters) == expected
    assert model.config.npars == len(expected)
    # one parameter per pair, shared by both samples
    for s in model.config.samples:
        names = [m["name"] for ch in build.spec["channels"] for smp in ch["samples"]
                 if smp["name"] == s for m in smp["modifiers"]]
        assert names.count("jesFlavorQCD") == 2  # normsys + histosys
    # the foreign-era variation is pruned and reported for every sample, never silently
    assert build.pruned_parameters == ["pileup_2016preVFP"]
    pruned = {(p["sample"], p["modifier"]) for p in build.pruned
              if p["parameter"] == "pileup_2016preVFP"}
    assert pruned == {(s, t) for s in ("sig", "bkg") for t in ("normsys", "histosys")}
    # lumi normsys is the era-fraction-weighted size: bkg is 40% 2017, 60% 2018
    bkg = next(s for s in build.spec["channels"][0]["samples"] if s["name"] == "bkg")
    lumi = {m["name"]: m["data"]["hi"] - 1 for m in bkg["modifiers"] if m["name"].startswith("lumi")}
    assert lumi["lumi_2017"] == pytest.approx(0.4 * 0.020)
    assert lumi["lumi_2018"] == pytest.approx(0.6 * 0.015)
    assert lumi["lumi_corr"] == pytest.approx(0.4 * 0.009 + 0.6 * 0.020)
    assert lumi["lumi_1718"] == pytest.approx(0.4 * 0.006 + 0.6 * 0.002)

    # without pruning the foreign variation is a parameter that changes nothing
    res_pruned = run_statistics(hists, cfg, tmp_path / "a")
    cfg.systematics.pruning_threshold = 0.0
    res_kept = run_statistics(hists, cfg, tmp_path / "b")
    assert "pileup_2016preVFP" in res_kept["model"]["parameters"]
    foreign = next(p for p in res_kept["fit"]["parameters"] if p["name"] == "pileup_2016preVFP")
    assert foreign["pull"] == pytest.approx(0.0, abs=1e-3)
    assert res_kept["fit"]["poi"]["value"] == pytest.approx(
        res_pruned["fit"]["poi"]["value"], abs=1e-4)
    assert res_kept["limits"]["observed"] == pytest.approx(
        res_pruned["limits"]["observed"], abs=1e-4)
    assert res_pruned["pruned_parameters"] == ["pileup_2016preVFP"]


def test_pickle_and_root_inputs_give_the_same_model(tmp_path):
    uproot = pytest.importorskip("uproot")
    hists = _era_hists()
    pkl = tmp_path / "histograms.pkl"
    pkl.write_bytes(pickle.dumps(hists))
    h = hists["histograms"]["SR"]["obs"]
    with uproot.recreate(tmp_path / "histograms.root") as f:
        for proc in h.axes["process"]:
            for var in h.axes["variation"]:
                one = h[{"process": proc, "variation": var}]
                if proc == "data" and var != "nominal":
                    continue
                key = f"SR__obs__{proc}" + ("" if var == "nominal" else f"__{var}")
                f[key] = one
    cfg = simple_cfg()
    a = build_model(load_histograms(str(pkl)), cfg).spec
    b = build_model(load_histograms(f"file://{tmp_path}/histograms.root"), cfg).spec
    assert json.dumps(a["channels"], sort_keys=True) == json.dumps(b["channels"], sort_keys=True)
    assert a["observations"] == b["observations"]


@pytest.mark.parametrize(
    ("mutate", "match"),
    [
        (lambda p, c: c.__setattr__("signal", "sigX"), "signal process 'sigX'"),
        (lambda p, c: c.backgrounds.__setitem__("ttbar", ["TTTo*"]), "'ttbar'.*matches no process"),
        (lambda p, c: [p[k].pop("jes_down") for k in ("sig", "bkg1")], "jes_up .* has no jes_down"),
        (lambda p, c: p["bkg1"].pop("jes_down"), "process 'bkg1' .* lacks variation.*jes_down"),
        (lambda p, c: (p["bkg1"].pop("jes_down"), p["bkg1"].pop("jes_up")),
         "process 'bkg1' .* lacks variation"),
        (lambda p, c: p["bkg1"].__setitem__("nominal", [0.0, 0.0]), "sample 'bkg' .* is empty"),
        (lambda p, c: c.input.__setattr__("expected_config_hash", "other"), "config_hash 'abc'"),
        (lambda p, c: c.systematics.__setattr__("include", ["jes", "pileup"]),
         "systematic 'pileup' required"),
    ],
)
def test_bad_inputs_raise_named_errors(mutate, match):
    procs = {
        "sig": {"nominal": [2.0, 8.0], "jes_up": [2.2, 8.4], "jes_down": [1.9, 7.5]},
        "bkg1": {"nominal": [40.0, 20.0], "jes_up": [44.0, 21.0], "jes_down": [37.0, 19.5]},
        "data": {"nominal": [49.0, 30.0]},
    }
    cfg = simple_cfg()
    mutate(procs, cfg)
    with pytest.raises(StatisticsInputError, match=match):
        build_model(load_histograms(make_hists(procs)), cfg)


def test_missing_file_and_fit_failure(tmp_path):
    with pytest.raises(StatisticsInputError, match="not found"):
        load_histograms(str(tmp_path / "nope.pkl"))
    hists = _era_hists()
    cfg = simple_cfg()
    cfg.fit.maxiter = 3
    with pytest.raises(FitConvergenceError, match="did not converge") as info:
        run_statistics(hists, cfg, tmp_path)
    # the parameters at their bounds are reported, in the message and as an attribute
    assert isinstance(info.value.at_bounds, list)
    assert f"parameters at their bounds: {info.value.at_bounds or 'none'}" in str(info.value)
    from intccms.stats.fit import _not_converged

    model = pyhf.simplemodels.uncorrelated_background(signal=[5.0], bkg=[50.0], bkg_uncertainty=[5.0])
    idx = model.config.par_slice("uncorr_bkguncrt").start
    stuck = list(model.config.suggested_init())
    stuck[model.config.poi_index] = 0.0  # mu at its lower bound
    stuck[idx] = model.config.suggested_bounds()[idx][1]  # the background parameter at its upper
    err = _not_converged(model, RuntimeError("stopped"), stuck)
    assert sorted(err.at_bounds) == ["mu", "uncorr_bkguncrt[0]"]
    assert "uncorr_bkguncrt[0]" in str(err) and "'mu'" in str(err)
    ok = _not_converged(model, RuntimeError("stopped"), [1.0, 1.0])
    assert ok.at_bounds == [] and "bounds: none" in str(ok)


def test_outputs_plots_ranking_and_table(tmp_path, capsys):
    hists = _era_hists()
    cfg = simple_cfg(plots=True, ranking=True, top_n_ranking=3, show_table=True)
    cfg.luminosity = LuminosityConfig()
    cfg.systematics.mc_stat = True
    res = run_statistics(hists, cfg, tmp_path)
    on_disk = json.loads((tmp_path / "results.json").read_text())
    assert on_disk["fit"]["poi"]["value"] == pytest.approx(res["fit"]["poi"]["value"])
    assert {"fit", "limits", "ranking", "pruned", "timing"} <= set(on_disk)
    assert len(on_disk["ranking"]) == 3
    for name in ("SR_obs_prefit.png", "SR_obs_postfit.png", "pulls.png", "correlation.png",
                 "ranking.png"):
        assert (tmp_path / name).stat().st_size > 1000, name
        assert (tmp_path / name).read_bytes()[:4] == b"\x89PNG"
    assert "upper limit" in capsys.readouterr().out


def test_upper_limits_direct_matches_pyhf():
    model = pyhf.simplemodels.uncorrelated_background(
        signal=[12.0, 11.0], bkg=[50.0, 52.0], bkg_uncertainty=[3.0, 7.0]
    )
    data = [51, 48, *model.config.auxdata]
    res = upper_limits(model, data, rtol=1e-8)
    pyhf.set_backend("numpy", pyhf.optimize.scipy_optimizer(tolerance=1e-10))
    try:
        obs, exp = pyhf.infer.intervals.upper_limits.toms748_scan(
            data, model, 0.0, 5.0, rtol=1e-9, test_stat="qtilde"
        )
    finally:
        pyhf.set_backend("numpy", pyhf.optimize.scipy_optimizer())
    assert res.observed == pytest.approx(float(obs), abs=1e-4)
    assert res.expected == pytest.approx([float(e) for e in exp], abs=1e-4)


def test_counting_experiment_without_nuisance_parameters_matches_plain_pyhf(tmp_path):
    # mu is the only parameter: the background-only fit has nothing left to minimise
    hists = make_hists({
        "sig": {"nominal": [3.0, 6.0]},
        "bkg": {"nominal": [20.0, 10.0]},
        "data": {"nominal": [24.0, 15.0]},
    })
    res = run_statistics(hists, simple_cfg(), tmp_path)
    assert res["model"]["parameters"] == ["mu"]
    spec = {
        "channels": [{"name": "SR", "samples": [
            {"name": "sig", "data": [3.0, 6.0], "modifiers": [
                {"name": "mu", "type": "normfactor", "data": None}]},
            {"name": "bkg", "data": [20.0, 10.0], "modifiers": []},
        ]}],
        "observations": [{"name": "SR", "data": [24.0, 15.0]}],
        "measurements": [{"name": "m", "config": {"poi": "mu", "parameters": [
            {"name": "mu", "bounds": [[0.0, 50.0]], "inits": [1.0]}]}}],
        "version": "1.0.0",
    }
    # MINUIT stops ~1e-4 short with one parameter: scipy with a tight tolerance is the reference
    ws = pyhf.Workspace(spec)
    model = ws.model()
    data = ws.data(model)
    pyhf.set_backend("numpy", pyhf.optimize.scipy_optimizer(tolerance=1e-12))
    try:
        mu = float(pyhf.infer.mle.fit(data, model)[0])
        obs, exp = pyhf.infer.intervals.upper_limits.toms748_scan(
            data, model, 0.0, 10.0, rtol=1e-9, test_stat="qtilde")
    finally:
        pyhf.set_backend("numpy", pyhf.optimize.scipy_optimizer())
    s, n = np.array([3.0, 6.0]), np.array([24.0, 15.0])
    nu = np.array([20.0, 10.0]) + mu * s
    sigma = 1.0 / np.sqrt(np.sum(s**2 * n / nu**2))  # Hesse of the Poisson likelihood
    assert res["fit"]["poi"]["value"] == pytest.approx(mu, abs=1e-4)
    assert res["fit"]["poi"]["uncertainty"] == pytest.approx(sigma, abs=1e-4)
    assert res["limits"]["observed"] == pytest.approx(float(obs), abs=1e-4)
    got = [res["limits"]["expected_band"][k] for k in ("-2", "-1", "0", "+1", "+2")]
    assert got == pytest.approx([float(e) for e in exp], abs=1e-4)

"""Statistics options that change the fitted dataset or binning: blind, toy, rebinning,
flow bins, full-template shapes; and how pseudo-data is labelled in the plots."""

from __future__ import annotations

import json

import numpy as np
import pyhf
import pytest
from test_stats import make_hists, simple_cfg

from intccms.config.statistics import DataMode, ShapeMode
from intccms.stats import StatisticsInputError, build_model, load_histograms, run_statistics
from intccms.stats import plots as stats_plots
from intccms.stats.fit import fit_dataset
from intccms.stats.run import make_model, make_workspace

PROCS = {
    "sig": {"nominal": [2.0, 8.0], "jes_up": [2.2, 8.4], "jes_down": [1.9, 7.5]},
    "bkg1": {"nominal": [40.0, 20.0], "jes_up": [44.0, 21.0], "jes_down": [37.0, 19.5]},
    "data": {"nominal": [49.0, 30.0]},
}


def _samples(spec: dict) -> dict[str, dict]:
    return {s["name"]: s for s in spec["channels"][0]["samples"]}


def test_blind_fits_asimov_and_gives_no_observed_limit(tmp_path):
    cfg = simple_cfg(xsec_uncertainties={"bkg": 0.1})
    cfg.data.blind = True
    cfg.data.asimov_poi = 0.0
    res = run_statistics(make_hists(PROCS), cfg, tmp_path)
    assert res["blind"] and res["data"].startswith("asimov")
    assert res["limits"]["observed"] is None
    assert np.isfinite(res["limits"]["expected"]) and res["limits"]["expected"] > 0
    # the fitted (and saved) data is the background-only expectation, not the observed 49, 30
    saved = json.loads((tmp_path / "workspace.json").read_text())
    assert saved["observations"][0]["data"] == pytest.approx([40.0, 20.0])
    assert res["fit"]["poi"]["value"] == pytest.approx(0.0, abs=1e-3)
    # unblinded, the same histograms give an observed limit that differs from the expected
    cfg.data.blind = False
    unblind = run_statistics(make_hists(PROCS), cfg, tmp_path / "unblind")
    assert unblind["limits"]["observed"] > unblind["limits"]["expected"]  # the data has an excess


def _toy(seed: int) -> tuple[np.ndarray, list[float], str]:
    cfg = simple_cfg(xsec_uncertainties={"bkg": 0.1})
    cfg.data.mode = DataMode.toy
    cfg.data.seed = seed
    cfg.data.asimov_poi = 1.0
    ws = make_workspace(build_model(load_histograms(make_hists(PROCS)), cfg))
    model = make_model(ws)
    data, label = fit_dataset(model, ws, cfg, has_data=True)
    return np.asarray(data), model.config.auxdata, label


def test_toy_is_reproducible_by_seed():
    a, aux, label = _toy(7)
    b, _, _ = _toy(7)
    c, _, _ = _toy(8)
    assert label.startswith("toy (seed=7")
    assert np.array_equal(a, b)  # same seed, same pseudo-data
    assert not np.array_equal(a[:2], c[:2])  # another seed, another fluctuation
    main = a[:2]
    assert np.array_equal(main, np.round(main)) and np.all(main >= 0)  # Poisson counts
    assert not np.array_equal(main, [49.0, 30.0])  # not the observed data
    assert a[2:].tolist() == aux  # auxiliary data stay at their nominal values
    # over many seeds the toys scatter around the Asimov expectation (mu=1: 42, 28)
    means = np.mean([_toy(s)[0][:2] for s in range(40)], axis=0)
    assert means == pytest.approx([42.0, 28.0], rel=0.1)


def test_rebin_edges_merge_bins_and_variances():
    procs = {
        "sig": {"nominal": [1.0, 2.0, 3.0, 4.0]},
        "bkg1": {"nominal": [10.0, 20.0, 30.0, 40.0]},
        "data": {"nominal": [11.0, 23.0, 32.0, 45.0]},
    }
    hists = make_hists(procs, edges=[0.0, 1.0, 2.0, 3.0, 4.0], variances=0.5)
    cfg = simple_cfg()
    cfg.systematics.mc_stat = True
    cfg.input.rebin_edges = [0.0, 1.0, 4.0]
    build = build_model(load_histograms(hists), cfg)
    s = _samples(build.spec)
    assert s["sig"]["data"] == [1.0, 9.0] and s["bkg"]["data"] == [10.0, 90.0]
    assert build.spec["observations"][0]["data"] == [11.0, 100.0]
    assert build.channels[0].edges.tolist() == [0.0, 1.0, 4.0]
    stat = next(m for m in s["bkg"]["modifiers"] if m["type"] == "staterror")
    assert stat["data"] == pytest.approx(np.sqrt([5.0, 45.0]))  # variances add, not errors
    cfg.input.rebin_edges = [0.0, 1.5, 4.0]
    with pytest.raises(StatisticsInputError, match=r"rebin edge 1\.5 is not a bin edge"):
        build_model(load_histograms(hists), cfg)


def test_include_flow_folds_underflow_and_overflow():
    hists = make_hists({"sig": {"nominal": [2.0, 8.0]}, "bkg1": {"nominal": [40.0, 20.0]},
                        "data": {"nominal": [49.0, 30.0]}})
    h = hists["histograms"]["SR"]["obs"]
    view = h.view(flow=True)
    ib = list(h.axes["process"]).index("bkg1")
    view.value[ib, :, 0] = 5.0  # underflow
    view.value[ib, :, -1] = 7.0  # overflow
    cfg = simple_cfg()
    cfg.input.include_flow = True
    assert _samples(build_model(load_histograms(hists), cfg).spec)["bkg"]["data"] == [45.0, 27.0]
    cfg.input.include_flow = False
    assert _samples(build_model(load_histograms(hists), cfg).spec)["bkg"]["data"] == [40.0, 20.0]


def test_full_shape_mode_is_one_histosys_on_the_raw_templates(tmp_path):
    cfg = simple_cfg()
    cfg.systematics.shape_mode = ShapeMode.full
    build = build_model(load_histograms(make_hists(PROCS)), cfg)
    mods = [m for m in _samples(build.spec)["bkg"]["modifiers"] if m["name"] == "jes"]
    assert mods == [{"name": "jes", "type": "histosys",
                     "data": {"hi_data": [44.0, 21.0], "lo_data": [37.0, 19.5]}}]
    # the fit is the one of plain pyhf on that spec
    res = run_statistics(make_hists(PROCS), cfg, tmp_path)
    ws = pyhf.Workspace(build.spec)
    model = ws.model()
    best = pyhf.infer.mle.fit(ws.data(model), model)
    assert res["fit"]["poi"]["value"] == pytest.approx(float(best[model.config.poi_index]), abs=1e-4)
    # split mode gives normsys + histosys for the same pair
    cfg.systematics.shape_mode = ShapeMode.split
    split = build_model(load_histograms(make_hists(PROCS)), cfg)
    types = [m["type"] for m in _samples(split.spec)["bkg"]["modifiers"] if m["name"] == "jes"]
    assert types == ["normsys", "histosys"]


@pytest.mark.parametrize(("mode", "blind", "label"), [
    (DataMode.data, False, "Data"),
    (DataMode.asimov, False, "Asimov data"),
    (DataMode.toy, False, "Pseudo-data"),
    (DataMode.data, True, None),
])
def test_plots_label_pseudo_data_as_such(tmp_path, monkeypatch, mode, blind, label):
    seen: list[list[str]] = []
    original = stats_plots.distribution

    def recording(*args, **kwargs):
        seen.append(original(*args, **kwargs))

    monkeypatch.setattr(stats_plots, "distribution", recording)
    cfg = simple_cfg(plots=True)
    cfg.data.mode, cfg.data.blind = mode, blind
    run_statistics(make_hists(PROCS), cfg, tmp_path)
    assert len(seen) == 2  # pre-fit and post-fit
    for legend in seen:
        data_entries = [t for t in legend if t in ("Data", "Asimov data", "Pseudo-data")]
        assert data_entries == ([] if label is None else [label])

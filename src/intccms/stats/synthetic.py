"""Synthetic full-size histogram sets, for timing and tests without the analysis stage.

The structure mirrors the analysis output for the eras 2016preVFP, 2017 and 2018:
69 systematic sources (138 variations: 17 correlated JES, 10 JES per year, pileup per
era, 3 muon SFs, 4 correlated and 4 per-era b-tag sources), 20 mtt bins 200-3000 GeV,
and processes grouped into ~10 samples. Era-specific variations change only that era's
part of the merged yield, as the analysis stage's nominal-filling implies.
"""

from __future__ import annotations

import tempfile
import time
from typing import Any

import hist
import numpy as np

from intccms.config.statistics import DataMode, StatisticsConfig
from intccms.core.conf import era_luminosities, jes_sources

# The eras of the synthetic model (one per year) with their luminosities, and the JES sources
# split into those correlated between years and those decorrelated ({year} in the variation).
ERAS = {e: lumi for e, lumi in era_luminosities().items() if e in ("2016preVFP", "2017", "2018")}
_JES_CORR = [s["source"] for s in jes_sources() if "{year}" not in s["variation"]]
_JES_YEAR = [s["source"] for s in jes_sources() if "{year}" in s["variation"]]
BACKGROUNDS = {
    "ttbar_semilep": ["TTToSemiLeptonic"],
    "ttbar_other": ["TTToHadronic", "TTTo2L2Nu"],
    "wjets": ["WJetsToLNu_HT-*"],
    "dy": ["DYJetsToLL_M-50_HT-*"],
    "singletop_t": ["ST_t-channel_*"],
    "singletop_tw": ["ST_tW_*"],
    "qcd": ["QCD_HT*"],
    "diboson": ["WW", "WZ", "ZZ"],
}
_PROCESSES = {  # name: (total yield, slope in 1/TeV, typical event weight)
    "TTToSemiLeptonic": (4000.0, 3.0, 0.05),
    "TTToHadronic": (150.0, 3.0, 0.05),
    "TTTo2L2Nu": (300.0, 3.2, 0.05),
    "WJetsToLNu_HT-200To400": (200.0, 3.5, 2.0),
    "WJetsToLNu_HT-400To600": (250.0, 2.5, 0.5),
    "WJetsToLNu_HT-600To800": (150.0, 2.0, 0.2),
    "DYJetsToLL_M-50_HT-400to600": (60.0, 2.5, 0.3),
    "DYJetsToLL_M-50_HT-600to800": (30.0, 2.0, 0.2),
    "ST_t-channel_top": (120.0, 3.0, 0.1),
    "ST_tW_top": (150.0, 2.8, 0.1),
    "ST_tW_antitop": (140.0, 2.8, 0.1),
    "QCD_HT1000to1500": (100.0, 2.0, 5.0),
    "WW": (20.0, 2.5, 0.1),
    "WZ": (10.0, 2.5, 0.1),
    "ZZ": (5.0, 2.5, 0.1),
}
SIGNALS = ["ZPrimeToTT_M1000_W100", "ZPrimeToTT_M2000_W200", "ZPrimeToTT_M3000_W300"]


def signal_points(n: int) -> list[str]:
    """``n`` Z' signal names, masses 1000, 1500, 2000, ... GeV and 10% widths."""
    return [f"ZPrimeToTT_M{m}_W{m // 10}" for m in range(1000, 1000 + 500 * n, 500)]


def variation_names(eras: dict[str, float] = ERAS) -> list[str]:
    """Systematic source names of the analysis for the given eras (without _up/_down)."""
    years = sorted({e[:4] for e in eras})
    names = [f"jes{s}" for s in _JES_CORR]
    names += [f"jes{s}_{y}" for s in _JES_YEAR for y in years]
    names += [f"pileup_{e}" for e in eras]
    names += ["muon_id_sf", "muon_iso_sf", "muon_trigger_sf"]
    names += ["btag_hf", "btag_lf", "btag_cferr1", "btag_cferr2"]
    names += [f"btag_{s}_{e}" for s in ("hfstats1", "hfstats2", "lfstats1", "lfstats2")
              for e in eras]
    return names


def _era_of(name: str, eras: list[str]) -> list[str]:
    """Eras a source acts on: the era/year in its suffix, or all eras."""
    suffix = name.rsplit("_", 1)[-1]
    hit = [e for e in eras if e == suffix or e[:4] == suffix]
    return hit or eras


def make_histograms(
    seed: int = 1, eras: dict[str, float] = ERAS, nbins: int = 20, signal_scale: float = 1.0,
    signals: list[str] | None = None,
) -> dict[str, Any]:
    """A histogram dict in the analysis stage's pickle format (channel CMS_WORKSHOP, mtt).

    ``signals`` (default :data:`SIGNALS`) are Z' names whose mass (``_M{GeV}``) places a
    Gaussian peak of 10% width.
    """
    rng = np.random.default_rng(seed)
    edges = np.linspace(200.0, 3000.0, nbins + 1)
    centers = 0.5 * (edges[1:] + edges[:-1]) / 1000.0
    era_names = list(eras)
    lumi = np.array([eras[e] for e in era_names])
    frac = lumi / lumi.sum()
    shapes: dict[str, np.ndarray] = {}
    weights: dict[str, float] = {}
    for p, (tot, slope, w) in _PROCESSES.items():
        s = np.exp(-slope * centers)
        shapes[p] = tot * s / s.sum()
        weights[p] = w
    for sig in signals or SIGNALS:
        m = float(sig.split("_M")[1].split("_")[0]) / 1000.0
        s = np.exp(-0.5 * ((centers - m) / (0.1 * m)) ** 2) + 1e-3
        shapes[sig] = signal_scale * 30.0 * s / s.sum()
        weights[sig] = 0.002
    systs = variation_names(eras)
    variations = ["nominal"] + [f"{n}_{d}" for n in systs for d in ("up", "down")]
    procs = [*shapes, "data"]
    h = hist.Hist(
        hist.axis.StrCategory(procs, name="process"),
        hist.axis.StrCategory(variations, name="variation"),
        hist.axis.Regular(nbins, edges[0], edges[-1], name="mtt"),
        storage=hist.storage.Weight(),
    )
    val = np.zeros((len(procs), len(variations), nbins + 2))
    var = np.zeros_like(val)
    era_yields: dict[str, dict[str, float]] = {}
    effects = {n: rng.normal(0.0, 0.03, 2) for n in systs}
    for ip, p in enumerate(shapes):
        nom = shapes[p]
        # per-era nominal parts with a small era-dependent tilt (era fractions differ by process)
        parts = np.array([f * nom * (1 + 0.05 * rng.normal()) for f in frac])
        nom = parts.sum(axis=0)
        era_yields[p] = {e: float(parts[k].sum()) for k, e in enumerate(era_names)}
        val[ip, 0, 1:-1] = nom
        for iv, n in enumerate(systs):
            a, b = effects[n] * (1 + 0.2 * rng.normal())
            rel = a + b * (centers - 1.0)
            touched = sum(parts[era_names.index(e)] for e in _era_of(n, era_names))
            val[ip, 1 + 2 * iv, 1:-1] = nom + touched * rel
            val[ip, 2 + 2 * iv, 1:-1] = nom - touched * rel * 0.9
        var[ip, :, 1:-1] = np.abs(val[ip, :, 1:-1]) * weights[p]
    bkg = sum(val[i, 0, 1:-1] for i, p in enumerate(shapes) if not p.startswith("ZPrime"))
    val[-1, 0, 1:-1] = rng.poisson(bkg)
    var[-1, 0, 1:-1] = val[-1, 0, 1:-1]
    view = h.view(flow=True)
    view.value[: len(procs), : len(variations), :] = val
    view.variance[: len(procs), : len(variations), :] = var
    meta = {
        "config_hash": "synthetic",
        "eras": era_names,
        "processes": {p: {"is_data": p == "data", "datasets": [p]} for p in procs},
        "era_yields": era_yields,
    }
    return {"histograms": {"CMS_WORKSHOP": {"mtt": h}}, "meta": meta}


def synthetic_config(**overrides: Any) -> StatisticsConfig:
    """A statistics configuration matching :func:`make_histograms`."""
    cfg = StatisticsConfig(
        backgrounds={k: list(v) for k, v in BACKGROUNDS.items()},
        xsec_uncertainties={"ttbar_semilep": 0.05, "ttbar_other": 0.05, "wjets": 0.10,
                            "dy": 0.10, "singletop_t": 0.05, "singletop_tw": 0.05,
                            "qcd": 0.50, "diboson": 0.10},
        plots=False,
        ranking=False,
        show_table=False,
    )
    cfg.data.mode = DataMode.data
    for k, v in overrides.items():
        setattr(cfg, k, v)
    return cfg


def time_full_model(ranking: bool = False, seed: int = 1) -> dict[str, float]:
    """Time model building, fit and observed+expected limits on a full-size synthetic model.

    Args:
        ranking: also time the impact ranking (top 15).
        seed: random seed of the synthetic histograms.

    Returns:
        dict: seconds per step, number of parameters and the limit-fit count.
    """

    from intccms.stats.run import run_statistics  # pyhf and cabinetry: only when fitting

    hists = make_histograms(seed)
    cfg = synthetic_config(ranking=ranking)
    t = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        res = run_statistics(hists, cfg, tmp)
    out = {k: round(v, 3) for k, v in res["timing"].items()}
    out["wall"] = round(time.perf_counter() - t, 3)
    out["n_parameters"] = res["model"]["n_parameters"]
    out["n_systematics"] = len(res["model"]["systematics"])
    out["limit_fits"] = res["limits"]["n_fits"]
    return out

"""End to end on generated data: the demo job ends with a limit, and the statistics stage
runs alone on the histograms it saved (pickle and ROOT; from the workflow with
``statistics.input.path``, local and on S3)."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pyhf
import pytest
from fixtures.demo import SMALL_2017, small_overrides
from fixtures.s3 import S3Server

from intccms.config import ConfigError, compose_config
from intccms.execute.job import run_job
from intccms.stats import StatisticsInputError, run_statistics
from intccms.stats.run import as_config

pytestmark = pytest.mark.e2e

# Naming rules of ../shared/ANALYSIS.md, written out independently of the code.
JES_CORRELATED = [
    "AbsoluteMPFBias", "AbsoluteScale", "FlavorQCD", "Fragmentation", "PileUpDataMC",
    "PileUpPtBB", "PileUpPtEC1", "PileUpPtEC2", "PileUpPtHF", "PileUpPtRef", "RelativeBal",
    "RelativeFSR", "RelativeJERHF", "RelativePtBB", "RelativePtHF", "SinglePionECAL",
    "SinglePionHCAL",
]
JES_PER_YEAR = [
    "AbsoluteStat", "RelativeJEREC1", "RelativeJEREC2", "RelativePtEC1", "RelativePtEC2",
    "RelativeSample", "RelativeStatEC", "RelativeStatFSR", "RelativeStatHF", "TimePtEta",
]
PLOTS = {"CMS_WORKSHOP_mtt_prefit.png", "CMS_WORKSHOP_mtt_postfit.png", "pulls.png",
         "correlation.png", "ranking.png"}


def sources_of_era(era: str) -> set[str]:
    """The 39 systematic sources one era produces, by the analysis naming rules."""
    year = era[:4]
    names = {f"jes{s}" for s in JES_CORRELATED} | {f"jes{s}_{year}" for s in JES_PER_YEAR}
    names |= {f"pileup_{era}", "muon_id_sf", "muon_iso_sf", "muon_trigger_sf"}
    names |= {"btag_hf", "btag_lf", "btag_cferr1", "btag_cferr2"}
    names |= {f"btag_{s}_{era}" for s in ("hfstats1", "hfstats2", "lfstats1", "lfstats2")}
    return names


def demo_cfg(data: Path, out: Path, *extra: str):
    """The demo configuration on one era's small slice, statistics included."""
    over = [o for o in small_overrides(data, out, SMALL_2017)
            if not o.startswith("workflow.run_statistics")]
    cfg = compose_config("demo", [*over, "workflow.run_statistics=true",
                                  "statistics.show_table=false", *extra])
    # the groups of the slice's samples (the demo configuration groups all demo samples)
    cfg.statistics.backgrounds = {"ttbar": ["TTTo*"], "wjets": ["WJetsToLNu_HT-*"]}
    return cfg


def run_demo_job(client, data: Path, out: Path):
    """The demo job on one era's small slice, statistics included."""
    cfg = demo_cfg(data, out)
    return cfg, run_job(cfg, client=client)


def alone_cfg(data: Path, out: Path, *extra: str):
    """The same configuration with only the statistics stage switched on."""
    return demo_cfg(data, out, "workflow.run_analysis=false", *extra)


@pytest.fixture(scope="module")
def job(dask_client, demo_data: Path, tmp_path_factory):
    return run_demo_job(dask_client, demo_data, tmp_path_factory.mktemp("stats_job"))


def _finite(x: object) -> bool:
    return isinstance(x, float) and math.isfinite(x)


def check_results(results: dict, folder: Path) -> None:
    """What every statistics run on the demo must deliver."""
    on_disk = json.loads((folder / "results.json").read_text())
    assert on_disk["signal"] == "ZPrimeToTT_M2000_W200" and on_disk["data"] == "observed"
    lim = on_disk["limits"]
    band = [lim["expected_band"][k] for k in ("-2", "-1", "0", "+1", "+2")]
    assert _finite(lim["observed"]) and all(_finite(b) for b in band), lim
    assert 0 < band[0] < band[1] < band[2] < band[3] < band[4]
    assert lim["expected"] == band[2]
    poi = on_disk["fit"]["poi"]
    assert _finite(poi["value"]) and poi["uncertainty"] > 0
    assert on_disk["fit"]["likelihood"] == "analytic"
    assert on_disk["limits"]["observed"] == pytest.approx(results["limits"]["observed"])
    # every plot listed exists as a non-empty PNG, and none is missing
    assert set(on_disk["plots"]) == PLOTS
    for name in PLOTS:
        raw = (folder / name).read_bytes()
        assert raw[:8] == b"\x89PNG\r\n\x1a\n" and len(raw) > 5000, name
    # the saved workspace validates and names the same parameters
    ws = pyhf.Workspace(json.loads((folder / "workspace.json").read_text()))
    assert sorted(ws.model().config.parameters) == sorted(on_disk["model"]["parameters"])


def check_parameters(results: dict, era: str) -> None:
    """Parameter names follow the decorrelation rules; pruning is reported, not silent."""
    systs = set(results["model"]["systematics"])
    assert systs == sources_of_era(era)
    pruned = set(results["pruned_parameters"])
    params = set(results["model"]["parameters"])
    shape_params = params - {"mu", "staterror_CMS_WORKSHOP", "xsec_ttbar", "xsec_wjets"}
    shape_params = {p for p in shape_params if not p.startswith("lumi_")}
    assert shape_params == systs - pruned
    for entry in results["pruned"]:
        assert set(entry) == {"parameter", "channel", "sample", "modifier", "effect"}
        assert entry["parameter"] in systs and entry["effect"] < 0.001
    assert pruned <= {e["parameter"] for e in results["pruned"]}
    # one era: its decorrelated sources carry its name; no other era's appears
    for other in ("2016", "2018"):
        assert not any(other in p for p in params), other
    assert {"jesAbsoluteStat_2017", "pileup_2017"} <= systs
    # CMS Run-2 luminosity scheme for a 2017-only sample
    assert {p for p in params if p.startswith("lumi_")} == {"lumi_2017", "lumi_corr", "lumi_1718"}


def test_demo_job_produces_results_and_every_plot(job) -> None:
    _cfg, res = job
    folder = res.output_dir / "statistics"
    assert res.statistics is not None
    check_results(res.statistics, folder)
    check_parameters(res.statistics, "2017")
    assert res.statistics["timing"]["total"] < 60
    # plain pyhf refits the saved workspace to the same minimum
    ws = pyhf.Workspace(json.loads((folder / "workspace.json").read_text()))
    model = ws.model()
    best, twice_nll = pyhf.infer.mle.fit(ws.data(model), model, return_fitted_val=True)
    assert float(twice_nll) == pytest.approx(res.statistics["fit"]["twice_nll"], abs=1e-3)
    assert float(best[model.config.poi_index]) == pytest.approx(
        res.statistics["fit"]["poi"]["value"], abs=2e-3)


@pytest.mark.parametrize("fmt", ["pkl", "root"])
def test_statistics_alone_on_saved_histograms(job, tmp_path, fmt) -> None:
    cfg, res = job
    source = res.histograms_path if fmt == "pkl" else res.root_path
    stats_cfg = as_config(cfg.statistics)
    stats_cfg.show_table = False
    if fmt == "root":
        stats_cfg.input.eras = ["2017"]  # a ROOT file carries no metadata
    results = run_statistics(str(source), stats_cfg, tmp_path)
    check_results(results, tmp_path)
    check_parameters(results, "2017")
    # the same histograms give the same result as in the job
    for key in ("observed", "expected"):
        assert results["limits"][key] == pytest.approx(res.statistics["limits"][key], rel=1e-5)
    assert results["fit"]["poi"]["value"] == pytest.approx(res.statistics["fit"]["poi"]["value"],
                                                           abs=1e-5)


def _same_limits(alone: dict, in_job: dict) -> None:
    for key in ("observed", "expected"):
        assert alone["limits"][key] == pytest.approx(in_job["limits"][key], rel=1e-6), key
    assert alone["limits"]["expected_band"] == pytest.approx(in_job["limits"]["expected_band"],
                                                             rel=1e-6)


def test_workflow_runs_statistics_alone_on_a_saved_file(job, dask_client, demo_data,
                                                        tmp_path) -> None:
    _, res = job
    cfg = alone_cfg(demo_data, tmp_path, f"statistics.input.path={res.histograms_path}")
    alone = run_job(cfg, client=dask_client)
    # no metadata, skim or analysis task ran, no histograms were written
    assert alone.records == [] and alone.histograms_path is None
    assert not (tmp_path / "histograms").exists()
    check_results(alone.statistics, tmp_path / "statistics")
    assert alone.statistics["input"]["source"] == str(res.histograms_path)
    _same_limits(alone.statistics, res.statistics)


@pytest.mark.s3
def test_workflow_runs_statistics_alone_on_s3(job, dask_client, demo_data, tmp_path,
                                              s3_server: S3Server, monkeypatch) -> None:
    import fsspec

    from intccms.storage import Credentials, Secret, StorageOptions

    _, res = job
    creds = Credentials(Secret("INTCCMS_S3_ACCESS_KEY_ID", s3_server.key),
                        Secret("INTCCMS_S3_SECRET_ACCESS_KEY", s3_server.secret), s3_server.endpoint)
    fs = fsspec.filesystem("s3", **StorageOptions(timeout_s=10, retries=1,
                                                  credentials=creds).fsspec_kwargs("s3"))
    fs.mkdir("stats-input")
    fs.put_file(str(res.histograms_path), "stats-input/run1/histograms.pkl")
    monkeypatch.setenv("INTCCMS_S3_ACCESS_KEY_ID", s3_server.key)
    monkeypatch.setenv("INTCCMS_S3_SECRET_ACCESS_KEY", s3_server.secret)
    monkeypatch.setenv("INTCCMS_S3_ENDPOINT", s3_server.endpoint)
    url = "s3://stats-input/run1/histograms.pkl"
    s3_server.reset_records()
    alone = run_job(alone_cfg(demo_data, tmp_path, f"statistics.input.path='{url}'"),
                    client=dask_client)
    # the file came from the S3 server, whole
    assert s3_server.bytes_sent("stats-input/run1/histograms.pkl") >= res.histograms_path.stat().st_size
    assert alone.statistics["input"]["source"] == url
    check_results(alone.statistics, tmp_path / "statistics")
    _same_limits(alone.statistics, res.statistics)
    # a missing object is named
    with pytest.raises(StatisticsInputError, match=r"s3://stats-input/run1/nope\.pkl"):
        run_job(alone_cfg(demo_data, tmp_path / "missing",
                          "statistics.input.path='s3://stats-input/run1/nope.pkl'"), client=dask_client)


def test_alone_without_input_fails_at_start_up(job, demo_data, tmp_path) -> None:
    cfg = alone_cfg(demo_data, tmp_path)
    with pytest.raises(ConfigError, match=r"workflow\.run_analysis=false needs statistics\.input\.path"):
        run_job(cfg)  # fails before any cluster starts
    assert not (tmp_path / "statistics").exists()


def test_alone_on_histograms_of_another_configuration(job, dask_client, demo_data,
                                                      tmp_path) -> None:
    _, res = job
    src = f"statistics.input.path={res.histograms_path}"
    named = re.escape(str(res.histograms_path))
    other_binning = alone_cfg(demo_data, tmp_path / "a", src, "analysis.observables.mtt.binning.bins=14")
    with pytest.raises(StatisticsInputError, match=rf"{named} were made by another configuration.*binning"):
        run_job(other_binning, client=dask_client)
    fewer_variations = alone_cfg(demo_data, tmp_path / "b", src,
                                 "workflow.variations=[jesFlavorQCD_up,jesFlavorQCD_down]")
    with pytest.raises(StatisticsInputError, match=rf"{named} were made by another.*unexpected ones"):
        run_job(fewer_variations, client=dask_client)

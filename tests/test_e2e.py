"""End to end on generated data: the four workflow modes, resuming, bad input, decorrelation."""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import uproot
from fixtures.demo import SMALL_2017, SMALL_2018, small_overrides

from intccms.config import compose_config
from intccms.execute.job import run_job
from intccms.runner.stage import BadInputError

pytestmark = pytest.mark.e2e


def _run(client, data: Path, out: Path, datasets: list[str], *extra: str):
    cfg = compose_config("demo", small_overrides(data, out, datasets, *extra))
    return run_job(cfg, client=client)


def _hists(path: Path) -> dict:
    with open(path, "rb") as handle:
        return pickle.load(handle)


DIGEST_FILE = Path(__file__).parent / "data" / "demo_histograms_digest.json"


def histogram_digest(histograms: dict) -> dict:
    """sha256 over every bin (flow included: values and variances) of every histogram in a fixed
    order, with per (channel, observable, process, variation) sums to compare across CPUs."""
    from numpy._core._multiarray_umath import __cpu_features__

    sha, sums = hashlib.sha256(), {}
    for channel in sorted(histograms):
        for obs in sorted(histograms[channel]):
            h = histograms[channel][obs]
            for process in h.axes["process"]:
                for variation in h.axes["variation"]:
                    view = h[{"process": process, "variation": variation}].view(flow=True)
                    key = f"{channel}/{obs}/{process}/{variation}"
                    sha.update(key.encode())
                    sha.update(np.ascontiguousarray(view.value, dtype="<f8").tobytes())
                    sha.update(np.ascontiguousarray(view.variance, dtype="<f8").tobytes())
                    sums[key] = [float(view.value.sum()), float(view.variance.sum())]
    features = sorted(k for k, v in __cpu_features__.items() if v)
    return {"digest": sha.hexdigest(), "cpu_features": features, "sums": sums}


def _values(h, process: str, variation: str = "nominal") -> np.ndarray:
    return h[{"process": process, "variation": variation}].values(flow=True)


@pytest.fixture(scope="module")
def analysis_run(dask_client, demo_data: Path, tmp_path_factory):
    out = tmp_path_factory.mktemp("analysis")
    return _run(dask_client, demo_data, out, SMALL_2017, "workflow.run_plots=true")


def test_analysis_only_writes_histograms_plots_and_provenance(analysis_run) -> None:
    res = analysis_run
    data = _hists(res.histograms_path)
    h = data["histograms"]["CMS_WORKSHOP"]["mtt"]
    processes = list(h.axes["process"])
    assert {"ZPrimeToTT_M2000_W200", "TTToSemiLeptonic", "data"} <= set(processes)
    variations = list(h.axes["variation"])
    assert variations[0] == "nominal" and len(variations) == 1 + 78
    sig = _values(h, "ZPrimeToTT_M2000_W200")
    assert sig.sum() > 0
    # the signal peaks near its mass (2000 GeV: bins of 140 GeV from 200)
    peak_center = 200 + (np.argmax(sig[1:-1]) + 0.5) * 140
    assert 1300 < peak_center < 2400
    for v in ("jesFlavorQCD_up", "pileup_2017_up", "btag_hf_down", "muon_id_sf_up"):
        assert not np.allclose(_values(h, "TTToSemiLeptonic", v), _values(h, "TTToSemiLeptonic"))
    assert np.all(_values(h, "data", "jesFlavorQCD_up") == 0)  # data gets only the nominal
    with uproot.open(res.root_path) as f:
        nominal = f["CMS_WORKSHOP__mtt__TTToSemiLeptonic"].values(flow=True)
        np.testing.assert_allclose(nominal, _values(h, "TTToSemiLeptonic"))
        assert "CMS_WORKSHOP__mtt__TTToSemiLeptonic__jesFlavorQCD_up" in f
        assert "CMS_WORKSHOP__mtt__data__jesFlavorQCD_up" not in f
    assert [p.name for p in res.plots] == ["CMS_WORKSHOP__mtt.png"] and res.plots[0].stat().st_size > 10_000
    prov = res.output_dir / "provenance"
    assert "CMS_WORKSHOP" in (prov / "config.yaml").read_text()
    assert "awkward" in (prov / "versions.json").read_text()
    assert res.summary["events_read"] == sum(r.events_read for r in res.records if r.stage == "analysis")


def test_skim_then_analysis_of_skims_equals_analysis_only(dask_client, demo_data, tmp_path, analysis_run) -> None:
    res = _run(dask_client, demo_data, tmp_path, SMALL_2017, "workflow=skim_and_analysis")
    a = _hists(analysis_run.histograms_path)["histograms"]["CMS_WORKSHOP"]["mtt"]
    b = _hists(res.histograms_path)["histograms"]["CMS_WORKSHOP"]["mtt"]
    np.testing.assert_allclose(b.view(flow=True).value, a.view(flow=True).value, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(b.view(flow=True).variance, a.view(flow=True).variance, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("fmt", ["parquet", "ttree", "rntuple"])
def test_skim_only_resume_and_analysis_on_skimmed_input(dask_client, demo_data, tmp_path, analysis_run, fmt) -> None:
    datasets = SMALL_2017
    res = _run(dask_client, demo_data, tmp_path, datasets, "workflow=skim", f"workflow.skim_format={fmt}")
    assert res.histograms_path is None
    manifest = tmp_path / "skims" / "TTToSemiLeptonic_2017" / "manifest.json"
    assert manifest.is_file()
    provenance = tmp_path / "skims" / "provenance"
    assert f"skim_format: {fmt}" in (provenance / "config.yaml").read_text()
    assert "uproot" in (provenance / "versions.json").read_text()
    parts = sorted((tmp_path / "skims").rglob("part_*"))
    assert parts and all(not p.name.startswith(".") for p in parts)
    mtimes = {p: p.stat().st_mtime_ns for p in parts}
    # A rerun writes nothing: every part is committed already.
    again = _run(dask_client, demo_data, tmp_path, datasets, "workflow=skim", f"workflow.skim_format={fmt}")
    assert not [r for r in again.records if r.stage == "skim"]
    assert {p: p.stat().st_mtime_ns for p in parts} == mtimes
    # Removing one part: the rerun redoes exactly that one.
    victim = parts[0]
    victim.unlink()
    third = _run(dask_client, demo_data, tmp_path, datasets, "workflow=skim", f"workflow.skim_format={fmt}")
    assert len([r for r in third.records if r.stage == "skim"]) == 1 and victim.exists()
    skimmed = _run(dask_client, demo_data, tmp_path, datasets, "workflow=skimmed_input",
                   f"workflow.skim_dir={tmp_path / 'skims'}")
    a = _hists(analysis_run.histograms_path)["histograms"]["CMS_WORKSHOP"]["mtt"]
    b = _hists(skimmed.histograms_path)["histograms"]["CMS_WORKSHOP"]["mtt"]
    np.testing.assert_allclose(b.view(flow=True).value, a.view(flow=True).value, rtol=1e-6, atol=1e-9)


@pytest.fixture(scope="module")
def two_era_run(dask_client, demo_data: Path, tmp_path_factory):
    return _run(dask_client, demo_data, tmp_path_factory.mktemp("two_eras"), SMALL_2017 + SMALL_2018)


def test_demo_histograms_reproduce_the_recorded_digest(two_era_run) -> None:
    """Every bin of every variation, both eras, equals the recorded run bit for bit (on the CPU
    the digest was recorded with; elsewhere every histogram's sums to 1e-9: vectorised maths may
    differ in the last bit between instruction sets). Re-record only for an intended physics
    change: INTCCMS_RECORD_DIGEST=1 pytest tests/test_e2e.py -k digest."""
    got = histogram_digest(_hists(two_era_run.histograms_path)["histograms"])
    if os.environ.get("INTCCMS_RECORD_DIGEST") == "1":
        DIGEST_FILE.write_text(json.dumps(got, indent=1, sort_keys=True) + "\n")
    want = json.loads(DIGEST_FILE.read_text())
    assert sorted(got["sums"]) == sorted(want["sums"])
    for key, (value, variance) in want["sums"].items():
        assert got["sums"][key] == pytest.approx([value, variance], rel=1e-9, abs=1e-12), key
    if got["cpu_features"] == want["cpu_features"]:
        assert got["digest"] == want["digest"]


def test_workers_in_the_compiled_tier_fill_the_same_histograms(dask_client, demo_data, tmp_path, analysis_run) -> None:
    """``workflow.compiled_kernels_after=0``: every worker loads the kernels before its first
    chunk, and every bin of every variation is the same as in the numpy tier's run."""
    from intccms.physics import compiled

    res = _run(dask_client, demo_data, tmp_path, SMALL_2017, "workflow.compiled_kernels_after=0")
    assert all(dask_client.run(lambda: compiled.kernels() is not None).values())
    got = _hists(res.histograms_path)["histograms"]
    want = _hists(analysis_run.histograms_path)["histograms"]
    assert sorted(got) == sorted(want)
    for channel, observables in want.items():
        for name, hist in observables.items():
            assert got[channel][name].view(flow=True).tobytes() == hist.view(flow=True).tobytes(), (channel, name)


def test_year_decorrelation_after_merging_two_eras(dask_client, demo_data, tmp_path, analysis_run,
                                                   two_era_run) -> None:
    both = _hists(two_era_run.histograms_path)
    only17 = _hists(analysis_run.histograms_path)
    only18 = _hists(_run(dask_client, demo_data, tmp_path / "b", SMALL_2018).histograms_path)
    h, h17, h18 = (d["histograms"]["CMS_WORKSHOP"]["mtt"] for d in (both, only17, only18))
    variations = set(h.axes["variation"])
    assert len(variations) == 1 + 48 + 2 * 30
    for process in ("TTToSemiLeptonic", "ZPrimeToTT_M2000_W200"):
        np.testing.assert_allclose(_values(h, process), _values(h17, process) + _values(h18, process))
        # decorrelated: era 2017's source, with 2018 contributing its nominal
        for var in ("jesAbsoluteStat_2017_up", "pileup_2017_down", "btag_hfstats1_2017_up"):
            np.testing.assert_allclose(_values(h, process, var),
                                       _values(h17, process, var) + _values(h18, process), rtol=1e-10)
        # correlated: both eras move together
        np.testing.assert_allclose(_values(h, process, "jesFlavorQCD_up"),
                                   _values(h17, process, "jesFlavorQCD_up") + _values(h18, process, "jesFlavorQCD_up"),
                                   rtol=1e-10)


def test_varies_with_applies_linked_btag_only_in_jes_fills(dask_client, demo_data, tmp_path, analysis_run) -> None:
    unlinked = _run(dask_client, demo_data, tmp_path, SMALL_2017, "corrections.definitions.btag_shape.varies_with=[]")
    a = _hists(analysis_run.histograms_path)["histograms"]["CMS_WORKSHOP"]["mtt"]
    b = _hists(unlinked.histograms_path)["histograms"]["CMS_WORKSHOP"]["mtt"]
    for var in a.axes["variation"]:
        same = np.allclose(_values(a, "TTToSemiLeptonic", var), _values(b, "TTToSemiLeptonic", var), rtol=1e-12)
        assert same == (not var.startswith("jes")), var


def test_bad_file_is_named_and_skipped_on_request(dask_client, demo_data, tmp_path) -> None:
    bad = tmp_path / "corrupt.root"
    bad.write_bytes(b"root" + os.urandom(2000))
    over = [f"datasets.TTToSemiLeptonic_2017.files=[{demo_data}/2017/TTToSemiLeptonic_2017/nano_0.root,{bad}]"]
    with pytest.raises(BadInputError, match=r"corrupt\.root"):
        _run(dask_client, demo_data, tmp_path / "strict", SMALL_2017, *over)
    res = _run(dask_client, demo_data, tmp_path / "lenient", SMALL_2017, *over, "workflow.skip_bad_files=true")
    assert str(bad) in res.skipped
    assert res.histograms_path is not None and res.histograms_path.is_file()


def test_demo_data_count_follows_the_simulated_prediction(tmp_path) -> None:
    from rich.console import Console

    from intccms import datagen
    from intccms.execute.prepare import ensure_inputs
    from intccms.plan.run import with_generated_files
    from intccms.storage import open_source

    for lumi in (200, 300):  # a changed luminosity resizes the data file on the next run
        cfg = compose_config("demo", [f"paths.generated_data={tmp_path}", "dataset_selection=[SingleMuon_2017]",
                                      f"eras.2017.luminosity={lumi}", "paths.generate_corrections=false"])
        cfg = with_generated_files(cfg)
        ensure_inputs(cfg, console=Console(quiet=True))
        processes = [dict(p) for p in cfg.datasets.SingleMuon_2017.generate.params.processes]
        expected = datagen.expected_data_events("2017", float(lumi), processes)
        with open_source(str(cfg.datasets.SingleMuon_2017.files[0])) as source:
            assert source.num_entries == expected > 0


def test_metadata_cache_notices_a_rewritten_file(dask_client, tmp_path) -> None:
    data, out = tmp_path / "gen", tmp_path / "out"
    name = "ZPrimeToTT_M2000_W200_2017"
    first = _run(dask_client, data, out, [name], f"datasets.{name}.generate.events_per_file=1000")
    assert first.summary["events_read"] == 1000
    (data / "2017" / name / "nano_0.root").unlink()
    second = _run(dask_client, data, out, [name], f"datasets.{name}.generate.events_per_file=1500")
    assert second.summary["events_read"] == 1500


def test_rechunked_or_incomplete_skims_are_never_double_counted(dask_client, demo_data, tmp_path, analysis_run) -> None:
    import json

    from intccms.plan.items import IncompleteSkimError

    datasets = SMALL_2017
    skims = tmp_path / "skims"
    _run(dask_client, demo_data, tmp_path, datasets, "workflow=skim")
    # Another chunking: every old part is replaced, none is listed twice.
    rechunked = _run(dask_client, demo_data, tmp_path, datasets, "workflow=skim", "workflow.chunksize=3000")
    assert [r for r in rechunked.records if r.stage == "skim"]
    manifest = skims / "TTToSemiLeptonic_2017" / "manifest.json"
    parts = json.loads(manifest.read_text())["parts"]
    ranges = sorted((p["source_file"], p["entry_start"], p["entry_stop"]) for p in parts)
    assert all(stop - start <= 3000 for _, start, stop in ranges)
    for (fa, _, stop_a), (fb, start_b, _) in itertools.pairwise(ranges):
        assert fa != fb or start_b == stop_a
    skimmed = _run(dask_client, demo_data, tmp_path, datasets, "workflow=skimmed_input",
                   f"workflow.skim_dir={skims}")
    a = _hists(analysis_run.histograms_path)["histograms"]["CMS_WORKSHOP"]["mtt"]
    b = _hists(skimmed.histograms_path)["histograms"]["CMS_WORKSHOP"]["mtt"]
    np.testing.assert_allclose(b.view(flow=True).value, a.view(flow=True).value, rtol=1e-6, atol=1e-9)
    # An interrupted skim (a part missing from the manifest) is refused, not analysed short.
    doc = json.loads(manifest.read_text())
    doc["parts"] = doc["parts"][1:]
    manifest.write_text(json.dumps(doc))
    with pytest.raises(IncompleteSkimError, match=r"covers .* of .* entries"):
        _run(dask_client, demo_data, tmp_path, datasets, "workflow=skimmed_input", f"workflow.skim_dir={skims}")


def test_skims_carry_their_sources_weights_so_the_originals_can_go(dask_client, demo_data, tmp_path,
                                                                   analysis_run) -> None:
    """Analysis on skimmed input normalises from what the skim recorded: with the original
    files and the metadata cache gone, the histograms are those of the analysis-only run."""
    import shutil

    from intccms.plan.datasets import generated_file_paths

    originals = tmp_path / "generated"
    shutil.copytree(demo_data, originals)  # the session's inputs are shared: remove copies
    skims = tmp_path / "skims"
    _run(dask_client, originals, tmp_path / "skim", SMALL_2017, "workflow=skim", f"workflow.skim_dir={skims}")
    removed = []
    for name in SMALL_2017:
        recorded = json.loads((skims / name / "manifest.json").read_text())["sources"]
        paths = generated_file_paths(str(originals), name, "2017", 1)
        assert set(recorded) == set(paths)
        assert all(v["sum_genweight"] > 0 for v in recorded.values()) or name.startswith("SingleMuon")
        for path in paths:
            Path(path).unlink()
        removed += paths
    res = _run(dask_client, originals, tmp_path / "analysis", SMALL_2017, "workflow=skimmed_input",
               f"workflow.skim_dir={skims}")
    assert not [p for p in removed if Path(p).exists()], "no original is generated again"
    a = _hists(analysis_run.histograms_path)["histograms"]["CMS_WORKSHOP"]["mtt"]
    b = _hists(res.histograms_path)["histograms"]["CMS_WORKSHOP"]["mtt"]
    np.testing.assert_allclose(b.view(flow=True).value, a.view(flow=True).value, rtol=1e-6, atol=1e-9)

"""The job on the real CMS NanoAOD file nano_dy.root (Run-2 DY simulation, 40 events)."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import awkward as ak
import numpy as np
import pytest
import uproot

from intccms.config import compose_config
from intccms.execute.job import run_job

SHARED = Path(os.environ.get("INTCCMS_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
NANO = SHARED / "nanoaod" / "nano_dy.root"
pytestmark = [pytest.mark.realdata, pytest.mark.e2e,
              pytest.mark.skipif(not NANO.is_file(), reason=f"real NanoAOD {NANO} is absent"),
              pytest.mark.skipif(not (SHARED / "jsonpog-integration" / "POG").is_dir(),
                                 reason="real correction files absent")]

# nano_dy.root has HLT_IsoMu24 but no particleNet tagger: a DY-friendly analysis group on the same
# code, added the way a user adds one: YAML group files in an extra configuration directory.
DATASETS_YAML = f"""
dy:
  era: "2017"
  xsec: 6077.22
  files: ["{NANO}"]
"""
ANALYSIS_YAML = """
defaults:
  - zprime_ttbar
  - _self_
collections:
  HLT: [IsoMu24]
  FatJet: [pt, eta, phi, mass]
skim:
  params: {met_min: 0.0}
objects:
  muons: {params: {pt_min: 20.0, min_mini_iso_id: 1}}
  jets: {params: {pt_min: 20.0}}
baseline:
  two_jets: {params: {n: 1}}
channels:
  CMS_WORKSHOP:
    cuts:
      btag: {params: {n: 0}}
      met: {params: {minimum: -1.0}}
      lepton_met: {params: {minimum: 0.0}}
    observables: [jet_pt]
observables:
  jet_pt:
    function: intccms.physics.observables.leading_pt
    inputs: [jets]
    binning: {bins: 10, start: 0, stop: 200}
"""
OVERRIDES = ["datasets=realdy", "~analysis.objects.fatjets", "~analysis.channels.CMS_WORKSHOP.cuts.one_fatjet", "analysis=dy_check", "eras.2017.triggers=[IsoMu24]",
             "workflow.run_statistics=false", f"paths.jsonpog={SHARED / 'jsonpog-integration'}",
             "analysis.channels.CMS_WORKSHOP.cuts.btag.inputs=[jets]",
             "analysis.channels.CMS_WORKSHOP.cuts.btag.function=intccms.physics.cuts.count_at_least"]


@pytest.fixture(autouse=True)
def _extra_conf(tmp_path_factory, monkeypatch) -> None:
    extra = tmp_path_factory.mktemp("extra_conf")
    (extra / "datasets").mkdir()
    (extra / "analysis").mkdir()
    (extra / "datasets" / "realdy.yaml").write_text(DATASETS_YAML)
    (extra / "analysis" / "dy_check.yaml").write_text(ANALYSIS_YAML)
    monkeypatch.setenv("INTCCMS_EXTRA_CONF_DIR", str(extra))


def _cfg(tmp_path: Path, *extra: str):
    return compose_config("demo", [f"output_dir={tmp_path}", f"paths.generated_data={tmp_path / 'gen'}",
                                   *OVERRIDES, *extra])


def test_metadata_uses_runs_tree_sum_of_weights(dask_client, tmp_path: Path) -> None:
    res = run_job(_cfg(tmp_path, "corrections.by_era.2017=[]", "paths.generate_corrections=false"),
                  client=dask_client)
    import json

    meta = json.loads((tmp_path / "metadata.json").read_text())["datasets"]["dy"]
    with uproot.open(NANO) as f:
        runs = f["Runs"]
        branch = "genEventSumw" if "genEventSumw" in runs else "genEventSumw_"  # older NanoAOD names
        expected = float(np.sum(runs[branch].array(library="np")))
    assert meta["sum_genweight"] == pytest.approx(expected)
    assert meta["num_entries"] == 40
    # Independent selection with uproot + numpy, no corrections (by_era empty).
    with uproot.open(NANO) as f:
        ev = f["Events"].arrays(["HLT_IsoMu24", "Muon_pt", "Muon_eta", "Muon_tightId", "Muon_miniIsoId",
                                 "Jet_pt", "Jet_eta", "Jet_jetId", "genWeight"])
    mu_ok = (ev.Muon_pt > 20) & (abs(ev.Muon_eta) < 2.4) & ev.Muon_tightId & (ev.Muon_miniIsoId >= 1)
    jet_ok = (ev.Jet_pt > 20) & (abs(ev.Jet_eta) < 2.5) & (ev.Jet_jetId >= 4)
    sel = ev.HLT_IsoMu24 & (ak.sum(mu_ok, axis=1) == 1) & (ak.sum(jet_ok, axis=1) >= 1)
    norm = 6077.22 * 41480.0 / expected
    lead = ak.to_numpy(ak.max(ev.Jet_pt[jet_ok][sel], axis=1))
    w = ak.to_numpy(ev.genWeight[sel]) * norm
    ref, _ = np.histogram(np.clip(lead, 0, 199.999), bins=10, range=(0, 200), weights=w)
    with open(res.histograms_path, "rb") as handle:
        h = pickle.load(handle)["histograms"]["CMS_WORKSHOP"]["jet_pt"]
    ours = h[{"process": "dy", "variation": "nominal"}].values(flow=True)
    np.testing.assert_allclose(ours[1:-2].sum() + ours[-2] + ours[-1], ref.sum(), rtol=1e-6)
    np.testing.assert_allclose(ours[1:-1][:-1], ref[:-1], rtol=1e-6)


def test_all_variations_on_real_file_and_real_corrections(dask_client, tmp_path: Path) -> None:
    res = run_job(_cfg(tmp_path, "paths.generate_corrections=false"), client=dask_client)
    with open(res.histograms_path, "rb") as handle:
        h = pickle.load(handle)["histograms"]["CMS_WORKSHOP"]["jet_pt"]
    assert len(h.axes["variation"]) == 79
    nominal = h[{"process": "dy", "variation": "nominal"}].values(flow=True)
    assert nominal.sum() != 0
    up = h[{"process": "dy", "variation": "jesAbsoluteScale_up"}].values(flow=True)
    assert not np.allclose(up, nominal)


def test_reference_skim_reads_only_the_eras_triggers(tmp_path: Path) -> None:
    """The default analysis on a real 2017 file: HLT_TkMu50 exists only in 2016 NanoAOD, so
    the 2017 skim must read HLT_Mu50 alone and select what an independent uproot cut gives."""
    from intccms.execute.tasks import skim_task
    from intccms.physics.functors import Functor
    from intccms.plan.analysis import era_constants
    from intccms.plan.workitems import WorkItem

    cfg = compose_config("demo", [f"paths.jsonpog={SHARED / 'jsonpog-integration'}",
                                  "paths.generate_corrections=false"])
    consts = era_constants(cfg, ["2017", "2016preVFP"])
    a = cfg.analysis
    skim = Functor.from_config(dict(a.skim))
    collections = {k: tuple(v) for k, v in a.collections.items()}
    with uproot.open(NANO) as f:
        assert "HLT_TkMu50" not in f["Events"].keys()  # noqa: SIM118 - a tree iterates over branch objects
        ev = f["Events"].arrays(["HLT_Mu50", "PuppiMET_pt"], library="np")
    expected = int(np.count_nonzero(ev["HLT_Mu50"] & (ev["PuppiMET_pt"] > 50.0)))
    item = WorkItem(dataset="dy", file=str(NANO), file_index=0, chunk_index=0, entry_start=0, entry_stop=40)
    part, record = skim_task(item, str(tmp_path / "part_0.parquet"), "parquet", tuple(a.skim_keep),
                             frozenset(), skim, collections, consts["2017"], None, {})
    assert not record.failed, record.error
    assert part is not None and record.events_selected == expected
    # The same file read as 2016 asks for the 2016 trigger: bad input naming file and branch.
    _, record16 = skim_task(item, str(tmp_path / "part_1.parquet"), "parquet", tuple(a.skim_keep),
                            frozenset(), skim, collections, consts["2016preVFP"], None, {})
    assert record16.failed and "HLT_TkMu50" in record16.error and str(NANO) in record16.error

"""The benchmark's hard input (benchmarks/hard_input.py): skim-passing, threshold-dense, NanoAOD-typed.

The benchmark states the input's cutflow shares itself; these checks keep the file's promises
(every event passes the skim, both sides of every cut populated, NanoAOD types, LZMA 9) from
drifting when the datagen helpers it reuses change.
"""

from __future__ import annotations

import sys
from pathlib import Path

import awkward as ak
import numpy as np
import pytest
import test_datagen
import uproot

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import hard_input

TH = hard_input.Thresholds()


def _block(n: int = 5_000) -> dict[str, object]:
    return hard_input.draw_block(11, 0, n, TH)


def _both_sides(values: ak.Array | np.ndarray, cut: float, width: float, minimum: float = 0.02) -> None:
    flat = np.asarray(ak.flatten(values, axis=None))
    below = np.mean((flat > cut - width) & (flat <= cut))
    above = np.mean((flat > cut) & (flat <= cut + width))
    assert below > minimum and above > minimum, (cut, below, above)


def test_blocks_are_seeded_and_every_event_passes_the_skim() -> None:
    a, b = _block(), _block()
    for key, value in a.items():
        assert ak.all(ak.ravel(value) == ak.ravel(b[key])), key
    other = hard_input.draw_block(12, 0, 5_000, TH)
    assert not ak.all(ak.ravel(other["Jet"].pt)[:100] == ak.ravel(a["Jet"].pt)[:100])
    assert np.all(a["HLT_Mu50"]) and np.all(a["PuppiMET_pt"] > TH.met)


def test_every_threshold_populated_on_both_sides() -> None:
    cols = _block()
    mu, jet, fat = cols["Muon"], cols["Jet"], cols["FatJet"]
    _both_sides(mu.pt[:, 0], TH.muon_pt, 5.0)
    _both_sides(np.abs(mu.eta[:, 0]), TH.muon_eta, 0.1)
    _both_sides(jet.pt, TH.jet_pt, 5.0)
    _both_sides(np.abs(jet.eta), TH.jet_eta, 0.2)
    _both_sides(jet.btagDeepFlavB, TH.btag_wp, 0.1)
    _both_sides(fat.pt[:, 0], TH.fatjet_pt, 50.0)
    _both_sides(fat.particleNet_TvsQCD[:, 0], TH.fatjet_tag, 0.1)
    _both_sides(mu.pt[:, 0] + cols["PuppiMET_pt"], TH.lepton_met, 15.0)
    assert 0.02 < np.mean(np.asarray(mu.miniIsoId[:, 0]) < TH.muon_iso_id) < 0.3
    assert 0.01 < np.mean(~np.asarray(mu.tightId[:, 0])) < 0.2
    assert set(np.unique(np.asarray(ak.flatten(jet.jetId)))) == {0, 2, 6}
    n_jet = np.asarray(ak.num(jet))
    assert n_jet.min() >= 2 and 5.0 < n_jet.mean() < 7.0 and np.mean(n_jet > 12) > 0.005
    assert 0.25 < np.mean(np.asarray(ak.flatten(jet.pt)) < TH.jet_pt) < 0.4
    assert 0.05 < np.mean(cols["genWeight"] < 0) < 0.3


def test_written_file_is_nanoaod_like(tmp_path: Path) -> None:
    path = hard_input.ensure_hard_input(tmp_path, 1_500, 3, "2017", TH)
    ours = test_datagen._dtypes(path)
    shared = {k: v for k, v in test_datagen.EXPECTED.items() if k in ours}
    assert len(shared) >= 30 and {k: ours[k] for k in shared} == shared
    assert ours["Jet_partonFlavour"] == "int32" and ours["FatJet_msoftdrop"] == "float32"
    real = test_datagen.SHARED / "nanoaod" / "nano_dy.root"
    if real.exists():
        theirs = test_datagen._dtypes(real)
        common = set(ours) & set(theirs)
        assert len(common) > 25 and {k: ours[k] for k in common} == {k: theirs[k] for k in common}
    with uproot.open(path) as f:
        assert f.file.compression == uproot.LZMA(9)
        weights = f["Events"]["genWeight"].array(library="np")
        assert f["Runs"]["genEventSumw"].array(library="np")[0] == np.sum(weights, dtype=np.float64)
    mtime = path.stat().st_mtime_ns
    assert hard_input.ensure_hard_input(tmp_path, 1_500, 3, "2017", TH) == path
    assert path.stat().st_mtime_ns == mtime


def test_split_files_hold_the_events_of_one_file(tmp_path: Path) -> None:
    """The fixed-cost benchmark compares one file with the same events in several files."""
    one = hard_input.ensure_hard_input(tmp_path, 2 * hard_input.BLOCK, 5, "2017", TH)
    parts = hard_input.ensure_hard_split(tmp_path, 2 * hard_input.BLOCK, 5, "2017", TH, 2)
    branches = ["event", "Jet_pt", "Muon_pt", "genWeight"]
    with uproot.open(one) as f:
        whole = f["Events"].arrays(branches)
    pieces = []
    for part in parts:
        with uproot.open(part) as f:
            pieces.append(f["Events"].arrays(branches))
            assert f["Runs"]["genEventCount"].array(library="np")[0] == hard_input.BLOCK
    assert ak.to_list(ak.concatenate(pieces)) == ak.to_list(whole)
    with pytest.raises(ValueError, match="whole blocks"):
        hard_input.ensure_hard_split(tmp_path, 2 * hard_input.BLOCK, 5, "2017", TH, 3)

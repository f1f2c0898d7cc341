"""Tests of the synthetic NanoAOD generator and correction files (small event counts)."""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path

import awkward as ak
import correctionlib
import numpy as np
import pytest
import uproot

from intccms.datagen import (
    OUT_OF_JSON_FRACTION,
    ensure_generated,
    expected_data_events,
    generate_file,
    golden_json,
    skim_efficiency,
    write_correction_files,
    write_golden_json,
)
from intccms.datagen.eras import ERAS

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("INTCCMS_SHARED_DATA", REPO.parent / "shared" / "data"))
DATA_PROCESSES = [("ttbar_semilep", {}), ("wjets", {"ht_min": 600, "ht_max": 800})]

EXPECTED = {
    "run": "uint32", "luminosityBlock": "uint32", "event": "uint64", "genWeight": "float32",
    "nMuon": "uint32", "Muon_pt": "float32", "Muon_eta": "float32", "Muon_phi": "float32",
    "Muon_mass": "float32", "Muon_charge": "int32", "Muon_tightId": "bool",
    "Muon_miniIsoId": "uint8", "Muon_pfRelIso04_all": "float32", "nJet": "uint32",
    "Jet_pt": "float32", "Jet_eta": "float32", "Jet_phi": "float32", "Jet_mass": "float32",
    "Jet_rawFactor": "float32", "Jet_area": "float32", "Jet_jetId": "int32",
    "Jet_hadronFlavour": "int32", "Jet_btagDeepFlavB": "float32", "Jet_btagDeepB": "float32",
    "nFatJet": "uint32", "FatJet_pt": "float32", "FatJet_eta": "float32", "FatJet_phi": "float32",
    "FatJet_mass": "float32", "FatJet_particleNet_TvsQCD": "float32", "PuppiMET_pt": "float32",
    "PuppiMET_phi": "float32", "Pileup_nTrueInt": "float32", "fixedGridRhoFastjetAll": "float32",
    "HLT_Mu50": "bool", "HLT_TkMu50": "bool", "HLT_IsoMu24": "bool",
}
MC_ONLY = {"genWeight", "Jet_hadronFlavour", "Pileup_nTrueInt"}


def _dtypes(path: Path) -> dict[str, str]:
    with uproot.open(path) as f:
        tree = f["Events"]
        out = {}
        for name, branch in tree.items():
            interp = branch.interpretation
            dtype = getattr(interp, "content", interp).from_dtype  # type: ignore[attr-defined]
            out[name] = str(np.dtype(dtype).newbyteorder("="))
        return out


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("gen")
    # LZMA level 1 (as the demo): a level-9 encoder's set-up per basket is most of the time of
    # files this small; the level itself is tested on its own below.
    fast = {"compression_level": 1}
    out = {
        "zp1": generate_file(d / "zp1.root", "zprime", "2018", 1500, seed=1, **fast).path,
        "zp1b": generate_file(d / "zp1b.root", "zprime", "2018", 1500, seed=1, **fast).path,
        "zp2": generate_file(d / "zp2.root", "zprime", "2018", 1500, seed=2, **fast).path,
        "tt": generate_file(d / "tt.root", "ttbar_semilep", "2016preVFP", 800, seed=3,
                            compression="zstd").path,
        "data": generate_file(d / "data.root", "data", "2016postVFP", 3000, seed=4,
                              params={"processes": DATA_PROCESSES}, **fast).path,
    }
    return out


def test_same_seed_same_arrays_and_different_seed_differs(files: dict[str, Path]) -> None:
    a = uproot.open(files["zp1"])["Events"].arrays()
    b = uproot.open(files["zp1b"])["Events"].arrays()
    c = uproot.open(files["zp2"])["Events"].arrays()
    for field in a.fields:
        assert ak.all(a[field] == b[field]), field
    assert not ak.all(a["PuppiMET_pt"] == c["PuppiMET_pt"])


def test_branch_names_and_dtypes(files: dict[str, Path]) -> None:
    assert _dtypes(files["tt"]) == EXPECTED
    data = _dtypes(files["data"])
    assert data == {k: v for k, v in EXPECTED.items() if k not in MC_ONLY}


def test_dtypes_match_real_nanoaod(files: dict[str, Path]) -> None:
    real = SHARED / "nanoaod" / "nano_dy.root"
    if not real.exists():
        pytest.skip(f"real NanoAOD sample {real} absent (set INTCCMS_SHARED_DATA)")
    ours, theirs = _dtypes(files["tt"]), _dtypes(real)
    common = set(ours) & set(theirs)
    assert len(common) > 25
    assert {k: ours[k] for k in common} == {k: theirs[k] for k in common}


def test_runs_tree_and_weights(files: dict[str, Path]) -> None:
    g = ensure_generated(files["tt"], "ttbar_semilep", "2016preVFP", 800, seed=3)
    with uproot.open(files["tt"]) as f:
        runs = f["Runs"].arrays(library="np")
        gw = f["Events"]["genWeight"].array(library="np")
        assert set(runs) == {"run", "genEventCount", "genEventSumw"}
    assert runs["genEventSumw"].sum() == pytest.approx(g.sum_genweight, rel=1e-12)
    # a skim: the parent sample is much larger than the file, weights like powheg tt
    assert runs["genEventCount"][0] > 20 * len(gw)
    assert runs["genEventSumw"][0] > 20 * gw.sum()
    assert 250 < np.abs(gw).mean() < 350
    with uproot.open(files["data"]) as f:
        assert set(f["Runs"].keys()) == {"run"}


def _mantissa_bits(values: np.ndarray) -> int:
    """Mantissa bits in use: 23 minus the fewest trailing zero bits over the non-zero mantissas."""
    mantissas = np.asarray(values, np.float32).view(np.uint32) & np.uint32(0x7FFFFF)
    mantissas = mantissas[mantissas != 0]
    if mantissas.size == 0:
        return 0
    trailing = np.zeros(mantissas.size, np.int64)
    for bit in range(23):
        trailing += ((mantissas >> np.uint32(bit)) & np.uint32(1) == 0) & (trailing == bit)
    return 23 - int(trailing.min())


def _float_branches(path: Path, entries: int = 20_000) -> dict[str, int]:
    with uproot.open(path) as f:
        arrays = f["Events"].arrays(entry_stop=entries, library="np")
    out = {}
    for name, values in arrays.items():
        flat = np.concatenate(values) if values.dtype == object else values
        if flat.dtype == np.float32 and flat.size:
            out[name] = _mantissa_bits(flat)
    return out


def test_floats_keep_nanoaods_precision(files: dict[str, Path]) -> None:
    """Reduced-precision branches (e.g. Jet_pt: 10 bits) are rounded, the others are not."""
    from intccms.datagen.reco import MANTISSA_BITS, reduce_precision

    bits = _float_branches(files["tt"])
    for name, used in bits.items():
        if name in MANTISSA_BITS:
            assert used <= MANTISSA_BITS[name], name
        elif name not in ("Muon_mass", "Pileup_nTrueInt"):  # a constant; integers and halves
            assert used >= 20, name
    assert set(MANTISSA_BITS) <= set(bits)
    x = np.array([1.0, 1.0001, -2.7182818, 3e38, np.inf, 0.0], np.float32)
    np.testing.assert_array_equal(reduce_precision(x, 10)[[0, 1, 4, 5]], [1.0, 1.0, np.inf, 0.0])
    assert reduce_precision(x, 10)[2] == np.float32(-2.71875)  # to nearest, sign kept
    assert np.isnan(reduce_precision(np.array([np.nan], np.float32), 10)[0])


def test_precision_matches_real_nanoaod() -> None:
    """The rounded branches are exactly those rounded in a real UL NanoAOD file, to as many bits."""
    from intccms.datagen.reco import MANTISSA_BITS

    real = SHARED / "nanoaod" / "nano_dy.root"
    if not real.exists():
        pytest.skip(f"real NanoAOD sample {real} absent (set INTCCMS_SHARED_DATA)")
    theirs = _float_branches(real)
    checked = {name: bits for name, bits in MANTISSA_BITS.items() if name in theirs}
    assert len(checked) >= 10  # FatJets are absent in the DY sample's first events
    assert {name: theirs[name] for name in checked} == checked
    for name in ("Muon_pt", "PuppiMET_pt", "genWeight"):
        assert theirs[name] > 20 and name not in MANTISSA_BITS


def test_jets_sorted_and_physical(files: dict[str, Path]) -> None:
    ev = uproot.open(files["tt"])["Events"].arrays()
    pt = ev["Jet_pt"]
    assert ak.all(pt[:, :-1] >= pt[:, 1:])
    assert ak.all(pt >= 15)  # pt > 15 before rounding to 10 mantissa bits (15.0 is exact)
    assert set(np.unique(ak.flatten(ev["Jet_jetId"]))) <= {0, 2, 6}
    assert set(np.unique(ak.flatten(ev["Jet_hadronFlavour"]))) <= {0, 4, 5}
    raw = ak.flatten(ev["Jet_rawFactor"])
    assert 0.0 < np.median(raw) < 0.3
    iso = ak.flatten(ev["Muon_miniIsoId"])
    assert set(np.unique(iso)) <= {0, 1, 2, 3, 4}
    # b jets are tagged far more often than light jets
    flav, score = ak.flatten(ev["Jet_hadronFlavour"]), ak.flatten(ev["Jet_btagDeepFlavB"])
    assert np.mean(score[flav == 5] > 0.3) > 0.6 > 0.05 > np.mean(score[flav == 0] > 0.3)


def test_data_lumi_sections_in_golden_json(files: dict[str, Path], tmp_path: Path) -> None:
    path = write_golden_json(tmp_path / "golden.json", "2016postVFP")
    golden = json.loads(path.read_text())
    assert golden == golden_json("2016preVFP")  # both 2016 eras share the 2016 file
    ev = uproot.open(files["data"])["Events"].arrays(["run", "luminosityBlock"], library="np")
    inside = np.array([
        any(a <= ls <= b for a, b in golden.get(str(run), []))
        for run, ls in zip(ev["run"], ev["luminosityBlock"], strict=True)
    ])
    lo, hi = ERAS["2016postVFP"].run_range
    assert np.all((ev["run"] >= lo) & (ev["run"] <= hi))
    outside = 1.0 - inside.mean()
    assert 0.2 * OUT_OF_JSON_FRACTION < outside < 3 * OUT_OF_JSON_FRACTION


def _mtt(ev: ak.Array, wp: float = 0.2783) -> np.ndarray:
    """Reference CMS_WORKSHOP selection and mtt with plain numpy/awkward (no JEC)."""
    mu = ev[["Muon_pt", "Muon_eta", "Muon_phi", "Muon_mass", "Muon_tightId", "Muon_miniIsoId"]]
    musel = (ev.Muon_pt > 55) & (abs(ev.Muon_eta) < 2.4) & ev.Muon_tightId & (ev.Muon_miniIsoId >= 2)
    jsel = (ev.Jet_jetId >= 4) & (abs(ev.Jet_eta) < 2.5) & (ev.Jet_pt > 30)
    fsel = (ev.FatJet_pt > 500) & (ev.FatJet_particleNet_TvsQCD > 0.5)
    del mu
    keep = (ev.HLT_Mu50 & (ev.PuppiMET_pt > 50) & (ak.sum(musel, axis=1) == 1)
            & (ak.sum(jsel, axis=1) >= 2) & (ak.sum(jsel & (ev.Jet_btagDeepFlavB > wp), axis=1) >= 1)
            & (ak.sum(fsel, axis=1) == 1))
    ev, musel, jsel, fsel = ev[keep], musel[keep], jsel[keep], fsel[keep]
    keep2 = ak.firsts(ev.Muon_pt[musel]) + ev.PuppiMET_pt > 150
    ev, musel, jsel, fsel = ev[keep2], musel[keep2], jsel[keep2], fsel[keep2]

    def p4(pt, eta, phi, m):  # type: ignore[no-untyped-def]
        pt, eta, phi, m = (np.asarray(x, dtype=np.float64) for x in (pt, eta, phi, m))
        px, py, pz = pt * np.cos(phi), pt * np.sin(phi), pt * np.sinh(eta)
        return np.stack([px, py, pz, np.sqrt(px**2 + py**2 + pz**2 + m**2)])

    total = (p4(ak.firsts(ev.Muon_pt[musel]), ak.firsts(ev.Muon_eta[musel]),
                ak.firsts(ev.Muon_phi[musel]), ak.firsts(ev.Muon_mass[musel]))
             + p4(ak.firsts(ev.FatJet_pt[fsel]), ak.firsts(ev.FatJet_eta[fsel]),
                  ak.firsts(ev.FatJet_phi[fsel]), ak.firsts(ev.FatJet_mass[fsel]))
             + p4(ak.firsts(ev.Jet_pt[jsel]), ak.firsts(ev.Jet_eta[jsel]),
                  ak.firsts(ev.Jet_phi[jsel]), ak.firsts(ev.Jet_mass[jsel]))
             + p4(ev.PuppiMET_pt, np.zeros(len(ev)), ev.PuppiMET_phi, np.zeros(len(ev))))
    return np.sqrt(np.maximum(total[3] ** 2 - (total[:3] ** 2).sum(axis=0), 0.0))


def test_signal_mtt_peaks_near_mass(files: dict[str, Path]) -> None:
    ev = uproot.open(files["zp1"])["Events"].arrays()
    mtt = _mtt(ev)
    assert len(mtt) > 0.15 * len(ev)  # the signal passes the selection far more than others
    counts, edges = np.histogram(mtt, bins=20, range=(200, 3000))
    peak = 0.5 * (edges[np.argmax(counts)] + edges[np.argmax(counts) + 1])
    assert 1500 < peak < 2300
    assert 1600 < np.median(mtt) < 2200


def test_ttbar_selection_efficiency_below_signal(files: dict[str, Path]) -> None:
    sig = uproot.open(files["zp1"])["Events"].arrays()
    tt = uproot.open(files["tt"])["Events"].arrays()
    eff_sig = len(_mtt(sig)) / len(sig)
    eff_tt = len(_mtt(tt, wp=0.2598)) / len(tt)
    assert 0.0 < eff_tt < eff_sig


def test_stored_jet_pt_consistent_with_synthetic_jec(files: dict[str, Path], tmp_path: Path) -> None:
    root = write_correction_files(tmp_path, ["2018"])
    cset = correctionlib.CorrectionSet.from_file(str(root / "POG/JME/2018_UL/jet_jerc.json.gz"))
    ev = uproot.open(files["zp1"])["Events"].arrays()
    n = ak.num(ev.Jet_pt)
    pt, eta = ak.flatten(ev.Jet_pt).to_numpy(), ak.flatten(ev.Jet_eta).to_numpy()
    area = ak.flatten(ev.Jet_area).to_numpy()
    rho = np.repeat(ev.fixedGridRhoFastjetAll.to_numpy(), n)
    raw = pt * (1 - ak.flatten(ev.Jet_rawFactor).to_numpy())
    corr = raw.astype(np.float64)
    for level in ("L1FastJet", "L2Relative", "L3Absolute"):
        c = cset[f"Summer19UL18_V5_MC_{level}_AK4PFchs"]
        args = (area, eta, corr, rho) if level == "L1FastJet" else (eta, corr)
        corr = corr * c.evaluate(*args)
    ratio = corr / pt
    assert np.median(ratio) == pytest.approx(1.01, abs=0.003)  # older calibration in the file
    assert np.percentile(ratio, 99) < 1.06


def test_ensure_generated_is_idempotent(tmp_path: Path) -> None:
    path = tmp_path / "st.root"
    first = ensure_generated(path, "zprime", "2017", 200, 5)
    stamp = path.stat().st_mtime_ns
    again = ensure_generated(path, "zprime", "2017", 200, 5)
    assert path.stat().st_mtime_ns == stamp
    assert again == first
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    fixed = ensure_generated(path, "zprime", "2017", 200, 5)
    assert fixed == first
    assert uproot.open(path)["Events"].num_entries == 200
    assert not list(tmp_path.glob(".*.tmp"))


def test_unknown_inputs_are_named() -> None:
    with pytest.raises(ValueError, match="unknown process kind 'ttbar'"):
        generate_file("/nonexistent/x.root", "ttbar", "2018", 10, 1)
    with pytest.raises(ValueError, match="unknown era '2019'"):
        generate_file("/nonexistent/x.root", "zprime", "2019", 10, 1)


def test_expected_data_events_scales_with_luminosity() -> None:
    eff = skim_efficiency(("ttbar_semilep", {}), "2018")
    assert 1e-4 < eff < 1e-2
    n = expected_data_events("2018", 1000.0, [("ttbar_semilep", {})])
    assert n == round(364.31 * 1000.0 * eff / (1 - OUT_OF_JSON_FRACTION))
    assert expected_data_events("2018", 2000.0, [("ttbar_semilep", {})]) == pytest.approx(2 * n, abs=1)


# ---------------------------------------------------------------- correction files


@pytest.fixture(scope="module")
def corrections(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_correction_files(tmp_path_factory.mktemp("corr"), list(ERAS))


def _signature(path: Path) -> dict[str, object]:
    with gzip.open(path) as handle:
        doc = json.load(handle)
    out: dict[str, object] = {}
    for c in doc["corrections"] + (doc.get("compound_corrections") or []):
        out[c["name"]] = ([(i["name"], i["type"]) for i in c["inputs"]], c["output"]["name"])
    return out


def _keys(node: dict, name: str) -> list:  # type: ignore[type-arg]
    """Category keys of input ``name`` at the first level where it appears."""
    if not isinstance(node, dict):
        return []
    if node.get("nodetype") == "category":
        if node["input"] == name:
            return [item["key"] for item in node["content"]]
        return _keys(node["content"][0]["value"], name)
    if node.get("nodetype") == "binning":
        return _keys(node["content"][0], name)
    return []


@pytest.mark.parametrize("era", ["2016preVFP", "2017", "2018"])
@pytest.mark.parametrize("stem", ["JME/{f}/jet_jerc", "MUO/{f}/muon_Z", "LUM/{f}/puWeights",
                                  "BTV/{f}/btagging"])
def test_corrections_match_real_files(corrections: Path, era: str, stem: str) -> None:
    rel = "POG/" + stem.format(f=f"{era}_UL") + ".json.gz"
    real = SHARED / "jsonpog-integration" / rel
    if not real.exists():
        pytest.skip(f"real correction file {real} absent (set INTCCMS_SHARED_DATA)")
    ours, theirs = _signature(corrections / rel), _signature(real)
    assert set(ours) <= set(theirs)
    for name, sig in ours.items():
        assert sig == theirs[name], name
    with gzip.open(corrections / rel) as a, gzip.open(real) as b:
        mine = {c["name"]: c for c in json.load(a)["corrections"]}
        ref = {c["name"]: c for c in json.load(b)["corrections"]}
    for name, corr in mine.items():
        for selector in ("systematic", "weights", "working_point", "year", "ValType"):
            assert _keys(corr["data"], selector) == _keys(ref[name]["data"], selector), (name, selector)


def test_corrections_have_the_required_content(corrections: Path) -> None:
    for era, info in ERAS.items():
        base = corrections / "POG"
        jme = correctionlib.CorrectionSet.from_file(str(base / f"JME/{info.folder}/jet_jerc.json.gz"))
        c = info.campaign
        l1 = jme[f"{c}_L1FastJet_AK4PFchs"].evaluate(0.5, 0.2, 50.0, 20.0)
        l2 = jme[f"{c}_L2Relative_AK4PFchs"].evaluate(0.2, 50.0 * l1)
        assert 0.6 < l1 < 1.0 and 1.0 < l2 < 1.4 and 1.0 <= l1 * l2 < 1.2
        assert jme[f"{c}_L3Absolute_AK4PFchs"].evaluate(0.2, 60.0) == 1.0
        for src in ("FlavorQCD", "TimePtEta", "RelativeSample", "PileUpPtRef"):
            assert 0.001 <= jme[f"{c}_{src}_AK4PFchs"].evaluate(1.0, 60.0) <= 0.03
        muo = correctionlib.CorrectionSet.from_file(str(base / f"MUO/{info.folder}/muon_Z.json.gz"))
        for key in ("NUM_TightID_DEN_TrackerMuons", "NUM_LooseRelIso_DEN_TightIDandIPCut", info.trigger_sf_key):
            sf = muo[key].evaluate(f"{era}_UL", 1.0, 80.0, "sf")
            up = muo[key].evaluate(f"{era}_UL", 1.0, 80.0, "systup")
            assert 0.9 < sf <= 1.0 and 0.0 < up - sf < 0.02
        lum = correctionlib.CorrectionSet.from_file(str(base / f"LUM/{info.folder}/puWeights.json.gz"))
        pu = lum[info.pileup_key]
        assert 0.7 < pu.evaluate(30.0, "nominal") < 1.3
        assert pu.evaluate(45.0, "up") > pu.evaluate(45.0, "nominal") > pu.evaluate(45.0, "down")
        btv = correctionlib.CorrectionSet.from_file(str(base / f"BTV/{info.folder}/btagging.json.gz"))
        assert btv["deepJet_wp_values"].evaluate("M") == info.btag_wp[1]
        shape = btv["deepJet_shape"]
        for flav in (0, 4, 5):
            assert 0.8 < shape.evaluate("central", flav, 1.0, 60.0, 0.5) < 1.2
        assert shape.evaluate("up_cferr1", 4, 1.0, 60.0, 0.5) != shape.evaluate("central", 4, 1.0, 60.0, 0.5)
        assert shape.evaluate(f"up_jesAbsolute_{info.year}", 5, 1.0, 60.0, 0.9) > 0
        with pytest.raises(Exception, match="not available in Category"):
            shape.evaluate("up_cferr1", 5, 1.0, 60.0, 0.5)
        with pytest.raises(Exception, match="not available in Category"):
            shape.evaluate("up_hf", 4, 1.0, 60.0, 0.5)


def test_correction_files_are_idempotent(corrections: Path) -> None:
    files = sorted(corrections.rglob("*.json.gz"))
    assert len(files) == 16
    stamps = [f.stat().st_mtime_ns for f in files]
    write_correction_files(corrections, list(ERAS))
    assert [f.stat().st_mtime_ns for f in files] == stamps


def test_cli_writes_files(tmp_path: Path) -> None:
    from intccms.datagen.__main__ import main

    assert main(["nanoaod", "zprime", "2017", "--events", "120", "--files", "2",
                 "--output", str(tmp_path / "zp"), "--compression", "zstd"]) == 0
    written = sorted((tmp_path / "zp").glob("*.root"))
    assert [uproot.open(p)["Events"].num_entries for p in written] == [60, 60]
    events = np.concatenate([uproot.open(p)["Events"]["event"].array(library="np") for p in written])
    assert len(np.unique(events)) == 120  # first_event keeps event numbers unique across files
    assert main(["corrections", str(tmp_path / "c"), "--eras", "2018"]) == 0
    assert len(list((tmp_path / "c").rglob("*.json.gz"))) == 4
    assert main(["golden-json", "2018", str(tmp_path / "g.json")]) == 0
    assert json.loads((tmp_path / "g.json").read_text()) == golden_json("2018")


# ---------------------------------------------------------------- generation inside the skim


def test_forced_slots_follow_the_unconditioned_law_given_a_success() -> None:
    from intccms.datagen.forcing import conditional_choice, first_success, region_probability
    from intccms.datagen.processes import resolve_process

    slots = resolve_process("ttbar_semilep").slots
    n = 400_000
    rng = np.random.default_rng(3)
    free = np.stack([conditional_choice(rng, None, *s.outcomes(), n) for s in slots], axis=1)
    ok = np.stack([s.outcomes()[1][free[:, k]] for k, s in enumerate(slots)], axis=1)
    hit = ok.any(axis=1)
    p = region_probability(slots)
    assert hit.mean() == pytest.approx(p, abs=4 * np.sqrt(p * (1 - p) / n))
    status = first_success(rng, n, slots)
    forced = np.stack([conditional_choice(rng, status[:, k], *s.outcomes(), n) for k, s in enumerate(slots)], axis=1)
    assert np.all(np.stack([s.outcomes()[1][forced[:, k]] for k, s in enumerate(slots)], axis=1).any(axis=1))
    for k, slot in enumerate(slots):  # every slot's outcomes as in plain draws that had a success
        m = len(slot.outcomes()[0])
        want = np.bincount(free[hit, k], minlength=m) / hit.sum()
        got = np.bincount(forced[:, k], minlength=m) / n
        assert np.allclose(got, want, atol=4 * np.sqrt(want * (1 - want) / hit.sum()) + 1e-4), k


def test_isolated_semileptonic_muons_match_the_natural_decay() -> None:
    from intccms.datagen.forcing import (
        ISO_CUT,
        SEMI_FAIL,
        SEMI_PASS,
        iso_pass_probability,
        sample_semileptonic,
    )

    rng = np.random.default_rng(4)
    n = 3_000_000
    z, b, u = rng.beta(1.3, 5.0, n), rng.beta(1.3, 5.0, n), rng.uniform(0.5, 1.0, n)
    mini = (1 - z) * (1 - b) * u / z
    passed = mini < ISO_CUT
    p = iso_pass_probability()
    assert passed.mean() == pytest.approx(p, rel=0.03)
    zp, _, _, mp = sample_semileptonic(rng, np.full(20_000, SEMI_PASS))
    assert np.all(mp < ISO_CUT)
    assert np.mean(zp) == pytest.approx(np.mean(z[passed]), abs=0.01)
    assert np.quantile(zp, 0.1) == pytest.approx(np.quantile(z[passed], 0.1), abs=0.015)
    zf, _, _, mf = sample_semileptonic(rng, np.full(20_000, SEMI_FAIL))
    assert np.all(mf >= ISO_CUT)
    assert np.mean(zf) == pytest.approx(np.mean(z[~passed]), abs=0.01)


@pytest.mark.parametrize("kind, params", [("ttbar_semilep", {}), ("wjets", {"ht_min": 600, "ht_max": 800})])
def test_generation_inside_the_skim_keeps_the_efficiency(kind: str, params: dict) -> None:
    """The same model generated plainly (every event, no muon-source conditioning) passes the
    skim as often, relative to the full sample, as the conditioned generation that the Runs
    tree normalises with ``p_gen``."""
    from dataclasses import replace

    from intccms.datagen.forcing import region_probability
    from intccms.datagen.processes import resolve_process
    from intccms.datagen.stream import SkimStream

    forced = resolve_process(kind, params)
    plain = replace(forced, slots=(), p_gen=forced.p_gen / region_probability(forced.slots))
    effs = []
    for proc in (forced, plain):
        stream = SkimStream(proc, "2018", np.random.default_rng(8))
        stream.take(2500)
        effs.append(proc.p_gen * 2500 / stream.tried)
    assert effs[0] == pytest.approx(effs[1], rel=4 * np.sqrt(2 / 2500))


# skim efficiency ranges (fraction of the full sample): tt and single top need a boosted top and,
# without a prompt muon, a semileptonic b decay with an isolated muon
DEMO_BACKGROUNDS = [("ttbar_had", {}, 3e-6, 3e-5), ("ttbar_dilep", {}, 1e-5, 1e-4),
                    ("single_top", {"channel": "tW_top"}, 5e-5, 5e-4),
                    ("dyjets", {"ht_min": 400, "ht_max": 600}, 5e-3, 5e-2),
                    ("qcd", {"ht_min": 1000, "ht_max": 1500}, 3e-6, 6e-5)]


@pytest.mark.parametrize("kind, params, lo, hi", DEMO_BACKGROUNDS)
def test_rare_backgrounds_generate_quickly(kind: str, params: dict, lo: float, hi: float) -> None:
    """Processes passing the skim once in 10^2-10^5 events fill a demo file in seconds."""
    import time

    from intccms.datagen.processes import resolve_process
    from intccms.datagen.stream import SkimStream

    proc = resolve_process(kind, params)
    stream = SkimStream(proc, "2017", np.random.default_rng(2))
    start = time.process_time()
    stream.take(1000)
    assert time.process_time() - start < 5.0  # ~0.1-0.4 s on one core
    assert lo < proc.p_gen * 1000 / stream.tried < hi


def test_data_match_the_normalised_simulation(tmp_path: Path) -> None:
    """Data drawn for a luminosity agree with the MC normalised by its Runs tree (skim level)."""
    from intccms.datagen.processes import resolve_process

    procs = [("ttbar_had", {}), ("dyjets", {"ht_min": 400, "ht_max": 600})]
    lumi = 20000.0
    data = generate_file(tmp_path / "data.root", "data", "2018", expected_data_events("2018", lumi, procs), 9,
                         params={"processes": procs})
    predicted = 0.0
    for i, (kind, params) in enumerate(procs):
        mc = generate_file(tmp_path / f"mc{i}.root", kind, "2018", 3000, 20 + i, params=params)
        with uproot.open(mc.path) as f:
            gw = f["Events"]["genWeight"].array(library="np")
        predicted += resolve_process(kind, params).xsec_pb * lumi * gw.sum() / mc.sum_genweight
    observed = data.n_events * (1 - OUT_OF_JSON_FRACTION)
    assert observed == pytest.approx(predicted, rel=4 / np.sqrt(observed))


def test_btag_shape_sf_changes_the_shape_not_the_yield(tmp_path: Path) -> None:
    """Averaged over the generator's b-tag scores, the central shape SF is 1 for every flavour."""
    from intccms.datagen import write_correction_files
    from intccms.datagen.reco import _btag

    write_correction_files(tmp_path, ["2018"])
    sf = correctionlib.CorrectionSet.from_file(str(tmp_path / "POG/BTV/2018_UL/btagging.json.gz"))["deepJet_shape"]
    rng = np.random.default_rng(7)
    for flavour in (0, 4, 5):
        pt = rng.uniform(30.0, 400.0, 100_000)
        score, _ = _btag(rng, np.full(pt.shape, flavour, dtype=np.int64), pt)
        values = sf.evaluate("central", flavour, np.full(pt.shape, 1.0), np.full(pt.shape, 100.0), score)
        assert abs(values.mean() - 1.0) < 0.01, flavour
        assert values.std() > 0.005  # still a shape


def test_parallel_generation_writes_what_serial_generation_writes(tmp_path: Path) -> None:
    """The demo inputs are generated in a process pool; each file is seeded on its own, so the
    arrays equal those of one-by-one generation, and each file gets its spec stamp."""
    from rich.console import Console

    from intccms.execute.prepare import _generate_in_parallel

    n = 300
    gens = [{"kind": "ttbar_semilep", "seed": 3, "params": {}, "events_per_file": n, "n_files": 2},
            {"kind": "wjets", "seed": 4, "params": {"ht_min": 600, "ht_max": 800}, "events_per_file": n,
             "n_files": 2}]
    tasks = [(str(tmp_path / "pool" / f"f{i}.root"), gen, "2017", i) for i, gen in enumerate(gens)]
    _generate_in_parallel(tasks, Console(quiet=True))
    for path, gen, era, i in tasks:
        serial = tmp_path / "serial" / Path(path).name
        generate_file(serial, gen["kind"], era, n, gen["seed"] * 1000 + i, params=gen["params"],
                      first_event=1 + i * n)
        with uproot.open(path) as pooled, uproot.open(serial) as one:
            a, b = pooled["Events"].arrays(), one["Events"].arrays()
            assert a.fields == b.fields and ak.array_equal(a, b)
        assert json.loads(Path(path + ".spec.json").read_text())["kind"] == gen["kind"]


@pytest.mark.parametrize(("level", "expected"), [(None, 9), (1, 1)])
def test_compression_level_reaches_the_file(tmp_path: Path, level: int | None, expected: int) -> None:
    """UL production's LZMA 9 by default; the demo's faster level 1 when asked."""
    path = generate_file(tmp_path / "f.root", "wjets", "2017", 50, 1, params={"ht_min": 600, "ht_max": 800},
                         compression_level=level).path
    with uproot.open(path) as f:
        codec = f.file.compression
    assert (type(codec).__name__, codec.level) == ("LZMA", expected)

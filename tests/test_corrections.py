"""Corrections on the real CMS UL correction files: the pipeline equals direct correctionlib."""

from __future__ import annotations

import os
from pathlib import Path

import awkward as ak
import correctionlib
import numpy as np
import pytest
from omegaconf import OmegaConf

from intccms.config import ConfigError, compose_config
from intccms.physics.corrections import CorrectionFileError, EraCorrections
from intccms.physics.corrections.era import linked_source

SHARED = Path(os.environ.get("INTCCMS_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
JSONPOG = SHARED / "jsonpog-integration"
pytestmark = pytest.mark.realdata
needs_files = pytest.mark.skipif(not (JSONPOG / "POG").is_dir(), reason=f"real correction files absent under {JSONPOG}")

ERAS = ["2016preVFP", "2017", "2018"]


def _era_corrections(era: str) -> tuple[EraCorrections, dict]:
    cfg = compose_config("run2_full", [f"paths.jsonpog={JSONPOG}"])
    era_cfg = OmegaConf.to_container(cfg.eras[era], resolve=True)
    defs = OmegaConf.to_container(cfg.corrections.definitions, resolve=True)
    return EraCorrections.from_config(era, era_cfg, defs, list(cfg.corrections.by_era[era]), str(JSONPOG)), era_cfg


def _events(seed: int = 7, n: int = 400) -> dict:
    rng = np.random.default_rng(seed)
    njet = rng.integers(0, 6, n)
    m = int(njet.sum())
    jets = ak.unflatten(ak.zip({
        "pt": rng.uniform(15, 1500, m), "eta": rng.uniform(-2.6, 2.6, m), "phi": rng.uniform(-3, 3, m),
        "mass": rng.uniform(2, 40, m), "rawFactor": rng.uniform(0, 0.3, m), "area": rng.uniform(0.4, 0.6, m),
        "jetId": np.full(m, 6), "hadronFlavour": rng.choice([0, 4, 5], m),
        "btagDeepFlavB": rng.uniform(0, 1, m),
    }), njet)
    nmu = np.ones(n, dtype=int)
    muons = ak.unflatten(ak.zip({
        "pt": rng.uniform(20, 2000, n), "eta": rng.uniform(-2.6, 2.6, n), "phi": rng.uniform(-3, 3, n),
        "mass": np.full(n, 0.105),
    }), nmu)
    return {
        "Jet": jets, "jets": jets, "muons": muons,
        "Pileup": ak.zip({"nTrueInt": rng.uniform(0, 120, n)}),
        "fixedGridRhoFastjetAll": rng.uniform(0, 60, n),
    }


def _direct(era: str, name: str) -> correctionlib.highlevel.CorrectionSet:
    folder = {"2016preVFP": "2016preVFP_UL", "2017": "2017_UL", "2018": "2018_UL"}[era]
    return correctionlib.CorrectionSet.from_file(str(JSONPOG / "POG" / name.split("/")[0] / folder / name.split("/")[1]))


@needs_files
@pytest.mark.parametrize("era", ERAS)
def test_jec_equals_direct_correctionlib(era: str) -> None:
    corr, era_cfg = _era_corrections(era)
    ev = _events()
    result = corr.objects[0].apply(ev)
    cset = _direct(era, "JME/jet_jerc.json.gz")
    camp = era_cfg["jec_campaign"]
    flat = ak.flatten(ev["Jet"])
    counts = ak.to_numpy(ak.num(ev["Jet"]))
    raw = ak.to_numpy(flat.pt) * (1 - ak.to_numpy(flat.rawFactor))
    rho = np.repeat(ak.to_numpy(ev["fixedGridRhoFastjetAll"]), counts)
    eta, area = ak.to_numpy(flat.eta), ak.to_numpy(flat.area)
    pt = raw.copy()
    for level in ("L1FastJet", "L2Relative", "L3Absolute"):
        c = cset[f"{camp}_{level}_AK4PFchs"]
        names = [i.name for i in c.inputs]
        args = {"JetA": area, "JetEta": eta, "JetPt": pt, "Rho": rho}
        pt = pt * c.evaluate(*[args[k] for k in names])
    np.testing.assert_allclose(result.pt, pt, rtol=1e-12)
    assert not np.allclose(result.pt, ak.to_numpy(flat.pt))  # re-applied, not the stored pT
    delta = cset[f"{camp}_FlavorQCD_AK4PFchs"].evaluate(eta, pt)
    up = corr.objects[0].variation_bases.index("jesFlavorQCD")
    assert up >= 0
    np.testing.assert_allclose(ak.to_numpy(ak.flatten(result.varied("jesFlavorQCD", "up").pt)), pt * (1 + delta))
    np.testing.assert_allclose(ak.to_numpy(ak.flatten(result.varied("jesFlavorQCD", "down").mass)),
                               result.mass * (1 - delta))
    year = era_cfg["year"]
    assert f"jesAbsoluteStat_{year}" in corr.objects[0].variation_bases


@needs_files
@pytest.mark.parametrize("era", ERAS)
def test_event_weights_equal_direct_correctionlib(era: str) -> None:
    corr, era_cfg = _era_corrections(era)
    ev = _events()
    by_name = {w.name: w for w in corr.weights}
    folder = era_cfg["correction_folder"]

    # Pileup: event-level input.
    pu = by_name["pileup"]
    nom, up = pu.evaluate(ev, [None, pu.sources[0]], "up")
    c = _direct(era, "LUM/puWeights.json.gz")[era_cfg["pileup_key"]]
    ntrue = np.clip(ak.to_numpy(ev["Pileup"].nTrueInt), 0, 98.999)
    np.testing.assert_allclose(nom, c.evaluate(np.minimum(ak.to_numpy(ev["Pileup"].nTrueInt), 99.0 - 1e-9), "nominal"))
    assert not np.allclose(nom, up)
    assert pu.sources[0].variation == f"pileup_{era}"
    del ntrue

    # Muon ID on the leading muon, inputs clipped into the table (never crash, never a flat 1).
    mid = by_name["muon_id"]
    nom, up = mid.evaluate(ev, [None, mid.sources[0]], "up")
    c = _direct(era, "MUO/muon_Z.json.gz")["NUM_TightID_DEN_TrackerMuons"]
    mu = ak.firsts(ev["muons"])
    abseta = np.clip(np.abs(ak.to_numpy(mu.eta)), 0, 2.4 - 1e-9)
    pt = np.clip(ak.to_numpy(mu.pt), 15, 200 - 1e-9)
    expected = c.evaluate(folder, abseta, pt, "sf")
    inside = (np.abs(ak.to_numpy(mu.eta)) < 2.4) & (ak.to_numpy(mu.pt) > 15) & (ak.to_numpy(mu.pt) < 120)
    np.testing.assert_allclose(nom[inside], expected[inside])
    assert np.all(np.isfinite(nom)) and np.all(nom > 0)
    assert np.all(up >= nom)

    # b-tag shape: product over the jets; a c-jet source leaves events without c jets unchanged.
    bt = by_name["btag_shape"]
    cferr = next(s for s in bt.sources if s.variation == "btag_cferr1")
    hf = next(s for s in bt.sources if s.variation == "btag_hf")
    nom, cf_up, hf_up = bt.evaluate(ev, [None, cferr, hf], "up")
    c = _direct(era, "BTV/btagging.json.gz")["deepJet_shape"]
    jets = ev["jets"]
    flat = ak.flatten(jets)
    per_jet = c.evaluate("central", ak.to_numpy(flat.hadronFlavour), np.clip(np.abs(ak.to_numpy(flat.eta)), 0, 2.5 - 1e-9),
                         np.clip(ak.to_numpy(flat.pt), 20, 1000 - 1e-9), np.clip(ak.to_numpy(flat.btagDeepFlavB), 0, 1))
    expected = ak.to_numpy(ak.prod(ak.unflatten(per_jet, ak.num(jets)), axis=1))
    np.testing.assert_allclose(nom, expected, rtol=1e-12)
    has_c = ak.to_numpy(ak.any(jets.hadronFlavour == 4, axis=1))
    has_bl = ak.to_numpy(ak.any(jets.hadronFlavour != 4, axis=1))
    np.testing.assert_array_equal(cf_up[~has_c], nom[~has_c])
    assert not np.allclose(cf_up[has_c], nom[has_c])
    np.testing.assert_array_equal(hf_up[~has_bl], nom[~has_bl])


@needs_files
def test_linked_btag_source_follows_the_jes_variation() -> None:
    corr, _ = _era_corrections("2017")
    bt = next(w for w in corr.weights if w.name == "btag_shape")
    link = linked_source(bt, "jesAbsoluteStat_2017")
    assert link is not None and link.up == "up_jesAbsoluteStat" and link.down == "down_jesAbsoluteStat"
    assert linked_source(bt, "pileup_2017") is None
    # The JES-linked b-tag sources are not variations of their own.
    assert not any(name.startswith("btag_jes") for name in corr.variation_names())


@needs_files
def test_variation_counts_per_era() -> None:
    corr, _ = _era_corrections("2018")
    names = corr.variation_names()
    assert len(names) == 78  # 39 sources per era
    assert "jesAbsoluteStat_2018_up" in names and "pileup_2018_down" in names
    assert "btag_hfstats1_2018_up" in names and "btag_cferr1_down" in names


@needs_files
def test_missing_correction_key_fails_at_start_up_naming_it() -> None:
    cfg = compose_config("run2_full", [f"paths.jsonpog={JSONPOG}",
                                       "corrections.definitions.muon_id.key=NUM_NoSuchID_DEN_TrackerMuons"])
    era_cfg = OmegaConf.to_container(cfg.eras["2017"], resolve=True)
    defs = OmegaConf.to_container(cfg.corrections.definitions, resolve=True)
    with pytest.raises(CorrectionFileError, match=r"NUM_NoSuchID_DEN_TrackerMuons.*2017"):
        EraCorrections.from_config("2017", era_cfg, defs, ["muon_id"], str(JSONPOG))


def test_missing_correction_file_names_file_and_era(tmp_path: Path) -> None:
    cfg = compose_config("run2_full")
    era_cfg = OmegaConf.to_container(cfg.eras["2018"], resolve=True)
    defs = OmegaConf.to_container(cfg.corrections.definitions, resolve=True)
    with pytest.raises(CorrectionFileError, match=r"puWeights\.json\.gz.*does not exist"):
        EraCorrections.from_config("2018", era_cfg, defs, ["pileup"], str(tmp_path))
    with pytest.raises(ConfigError):
        compose_config("run2_full", ["corrections.by_era.2018=[jec,nope]"])

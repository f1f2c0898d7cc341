"""Corrections on the real CMS UL correction files: the pipeline equals direct correctionlib."""

from __future__ import annotations

import json
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
from intccms.physics.corrections.loading import is_identity

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
    assert "jesFlavorQCD" in corr.objects[0].variation_bases
    assert np.all(delta != 0)  # FlavorQCD shifts every jet: up and down differ from nominal
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

    # Pileup: event-level input; the table clamps nTrueInt above its last bin (up to 120 here).
    pu = by_name["pileup"]
    nom, up, down = pu.evaluate(ev, [None, (pu.sources[0], "up"), (pu.sources[0], "down")])
    c = _direct(era, "LUM/puWeights.json.gz")[era_cfg["pileup_key"]]
    ntrue = ak.to_numpy(ev["Pileup"].nTrueInt)
    assert ntrue.max() > 99
    np.testing.assert_allclose(nom, c.evaluate(ntrue, "nominal"), rtol=1e-12)
    np.testing.assert_allclose(up, c.evaluate(ntrue, "up"), rtol=1e-12)
    np.testing.assert_allclose(down, c.evaluate(ntrue, "down"), rtol=1e-12)
    assert not np.allclose(nom, up) and not np.allclose(nom, down)
    assert pu.sources[0].variation == f"pileup_{era}"

    # Muon ID, isolation and trigger on the leading muon. Out of the tables' range (|eta| > 2.4,
    # pT below the first edge) the SF is the one of the edge bin: never a crash, never a flat 1.
    muons = ak.concatenate([ev["muons"], ak.Array([[{"pt": 5000.0, "eta": 2.45, "phi": 0.0, "mass": 0.105}],
                                                   [{"pt": 5000.0, "eta": -2.45, "phi": 0.0, "mass": 0.105}],
                                                   [{"pt": 60.0, "eta": 2.45, "phi": 0.0, "mass": 0.105}],
                                                   [{"pt": 10.0, "eta": 0.5, "phi": 0.0, "mass": 0.105}]])])
    mu = ak.firsts(muons)
    muo = _direct(era, "MUO/muon_Z.json.gz")
    for name, key in (("muon_id", "NUM_TightID_DEN_TrackerMuons"), ("muon_iso", "NUM_LooseRelIso_DEN_TightIDandIPCut"),
                      ("muon_trigger", era_cfg["trigger_sf_key"])):
        sf = by_name[name]
        nom, up, down = sf.evaluate({"muons": muons}, [None, (sf.sources[0], "up"), (sf.sources[0], "down")])
        c = muo[key]
        pt_low = 52.0 if name == "muon_trigger" else 15.0  # the first pT edge of each table
        abseta = np.minimum(np.abs(ak.to_numpy(mu.eta)), np.nextafter(2.4, 0))
        pt = np.maximum(ak.to_numpy(mu.pt), pt_low)
        for got, sel in ((nom, "sf"), (up, "systup"), (down, "systdown")):
            np.testing.assert_allclose(got, c.evaluate(folder, abseta, pt, sel), rtol=1e-12, err_msg=f"{name} {sel}")
        edge = nom[-4:]
        assert np.all(edge != 1.0) and np.all(np.isfinite(nom)), name
        assert np.all(up >= nom) and np.all(down <= nom) and np.any(up > nom), name

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
    with pytest.raises(CorrectionFileError,
                       match=r"puWeights\.json\.gz does not exist.*key 'Collisions18_UltraLegacy_goldenJSON' for era 2018"):
        EraCorrections.from_config("2018", era_cfg, defs, ["pileup"], str(tmp_path))
    with pytest.raises(ConfigError):
        compose_config("run2_full", ["corrections.by_era.2018=[jec,nope]"])


@needs_files
def test_object_correction_fields_come_from_configuration() -> None:
    """raw_factor / target / also_scaled are configuration: renamed fields give the same jets,
    and a field not scaled keeps its stored value."""
    era = "2018"
    cfg = compose_config("run2_full", [f"paths.jsonpog={JSONPOG}"])
    era_cfg = OmegaConf.to_container(cfg.eras[era], resolve=True)
    defs = OmegaConf.to_container(cfg.corrections.definitions, resolve=True)
    names = list(cfg.corrections.by_era[era])
    reference = EraCorrections.from_config(era, era_cfg, defs, names, str(JSONPOG)).objects[0].apply(_events())
    defs["jec"].update(raw_factor="undo", also_scaled=[])
    renamed = EraCorrections.from_config(era, era_cfg, defs, names, str(JSONPOG)).objects[0]
    ev = _events()
    ev["Jet"] = ak.with_field(ev["Jet"], ev["Jet"].rawFactor, "undo")
    ev["Jet"] = ak.with_field(ev["Jet"], ev["Jet"].rawFactor * 0.0, "rawFactor")
    result = renamed.apply(ev)
    np.testing.assert_array_equal(result.pt, reference.pt)
    stored_mass = ak.to_numpy(ak.flatten(ev["Jet"].mass))
    np.testing.assert_array_equal(ak.to_numpy(ak.flatten(result.nominal().mass)), stored_mass)
    assert not np.allclose(reference.mass, stored_mass)
    defs["jec"]["level_inputs"] = {**defs["jec"]["level_inputs"], "JetPt": "@ptt"}
    from intccms.physics.corrections.era import CorrectionConfigError

    with pytest.raises(CorrectionConfigError, match=r"jec.*level_inputs \['@ptt'\]"):
        EraCorrections.from_config(era, era_cfg, defs, names, str(JSONPOG))



@needs_files
def test_corrections_are_parsed_alone_with_the_whole_files_values(parsed_corrections: list[list[str]]) -> None:
    """A worker parses only the corrections an era uses (not the other periods' large L2Relative
    tables), and each evaluates exactly as in the whole file."""
    from intccms.physics.corrections import loading

    parsed = parsed_corrections
    corrections, _ = _era_corrections("2017")
    # Building parses nothing whole: the JES sources (evaluated through the source table) and
    # the b-tag shape (through its systematic slices) are parsed only if a chunk needs them.
    sources = {s.key for obj in corrections.objects for s in obj.sources}
    assert sources and not sources & {n for names in parsed for n in names}
    assert "deepJet_shape" not in {n for names in parsed for n in names}
    for obj in corrections.objects:  # what the first chunk evaluates
        for level in obj._levels:
            assert level._correction is not None
        # and a source, as for a jet on a bin edge of the source table
        assert next(iter(obj._uncertainties.values()))._correction is not None
    assert parsed and all(len(names) == 1 for names in parsed)  # never a whole file
    used = [names[0] for names in parsed]
    assert "Summer19UL17_V5_MC_L2Relative_AK4PFchs" in used
    assert not [k for k in used if "_DATA_" in k]
    path = str(JSONPOG / "POG" / "JME" / "2017_UL" / "jet_jerc.json.gz")
    whole = correctionlib.CorrectionSet.from_file(path)
    rng = np.random.default_rng(3)
    values = {"JetA": rng.uniform(0.3, 0.7, 500), "JetEta": rng.uniform(-5.5, 5.5, 500),
              "JetPt": rng.uniform(5, 4000, 500), "Rho": rng.uniform(0, 70, 500)}
    jec = [k for k in used if k in set(whole)]
    assert len(jec) >= 3  # L1FastJet, L2Relative and a source; the levels that are 1 are not parsed
    assert "Summer19UL17_V5_MC_L3Absolute_AK4PFchs" not in used
    for key in jec:
        alone = loading.get_correction(path, key, era="2017")
        args = [values[i.name] for i in whole[key].inputs]
        np.testing.assert_array_equal(alone.evalv(*args), whole[key].evaluate(*args))


def test_variants_parse_as_the_whole_probes_do() -> None:
    """A probe family (name and formulas replaced) parsed from one dump of the shared tables
    evaluates bit for bit as each probe parsed whole; variants of other keys fall back to that."""
    from intccms.physics.corrections import loading

    path = str(JSONPOG / "POG" / "JME" / "2017_UL" / "jet_jerc.json.gz")
    corr = loading.correction_json(path, "Summer19UL17_V5_MC_FlavorQCD_AK4PFchs")
    assert corr is not None and corr.get("generic_formulas")
    probes = [{"name": f"probe[{j}]",
               "generic_formulas": [{**f, "expression": f"[{j}]"} for f in corr["generic_formulas"]]}
              for j in range(4)]
    rng = np.random.default_rng(5)
    eta, pt = rng.uniform(-5.4, 5.4, 2000), rng.uniform(10, 3000, 2000)
    spliced = loading.parse_variants(corr, probes)
    for probe, parsed in zip(probes, spliced, strict=True):
        whole = loading.parse_correction({**corr, **probe})
        np.testing.assert_array_equal(parsed.evalv(eta, pt), whole.evalv(eta, pt))
    assert not np.array_equal(spliced[0].evalv(eta, pt), spliced[1].evalv(eta, pt))  # real probes
    mixed = loading.parse_variants(corr, [{"name": "a"}, {"name": "b", "description": "other keys"}])
    np.testing.assert_array_equal(mixed[1].evalv(eta, pt), loading.get_correction(
        path, "Summer19UL17_V5_MC_FlavorQCD_AK4PFchs", era="2017").evalv(eta, pt))


@needs_files
def test_only_levels_that_give_exactly_one_are_left_out() -> None:
    """An MC jet's L3Absolute and L2L3Residual are 1 everywhere (multiplying by them changes no
    bit, so they are not evaluated); data residuals and the other levels are evaluated."""
    path = str(JSONPOG / "POG" / "JME" / "2017_UL" / "jet_jerc.json.gz")
    cset = correctionlib.CorrectionSet.from_file(path)
    rng = np.random.default_rng(3)
    eta, pt = rng.uniform(-6.0, 6.0, 5000), rng.uniform(1.0, 7000.0, 5000)
    for key, one in [("Summer19UL17_V5_MC_L3Absolute_AK4PFchs", True),
                     ("Summer19UL17_V5_MC_L2L3Residual_AK4PFchs", True),
                     ("Summer19UL17_RunB_V5_DATA_L2L3Residual_AK4PFchs", False),
                     ("Summer19UL17_V5_MC_L2Relative_AK4PFchs", False)]:
        assert is_identity(path, key) is one, key
        if one:
            assert np.all(cset[key].evaluate(eta, pt) == 1.0)
    corr, _ = _era_corrections("2017")
    assert len(corr.objects[0]._levels) == 2  # L1FastJet and L2Relative


def test_a_level_is_evaluated_unless_every_leaf_is_one(tmp_path: Path) -> None:
    def level(name: str, content: list, flow: object) -> dict:
        return {"name": name, "version": 1, "inputs": [{"name": "JetEta", "type": "real"}],
                "output": {"name": "f", "type": "real"},
                "data": {"nodetype": "binning", "input": "JetEta", "edges": [-5.0, 0.0, 5.0],
                         "content": content, "flow": flow}}
    one = {"nodetype": "formula", "expression": "1", "parser": "TFormula", "variables": ["JetEta"]}
    corrections = [level("ones", [1.0, one], 1.0), level("clamped", [1.0, 1], "clamp"),
                   level("refuses", [1.0, 1.0], "error"), level("other", [1.0, 1.0000001], 1.0),
                   level("flow", [1.0, 1.0], 0.0)]
    path = tmp_path / "jec.json"
    path.write_text(json.dumps({"schema_version": 2, "corrections": corrections}))
    assert [is_identity(str(path), c["name"]) for c in corrections] == [True, True, False, False, False]

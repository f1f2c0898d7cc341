"""The chunk analysis's own weights and jets on the real CMS UL correction files equal direct
correctionlib evaluations of the same inputs (ANALYSIS.md, "Corrections").

The corrections are built as the job builds them (``corrections_specs`` on the composed demo
configuration with ``paths.jsonpog`` at the real files) and :class:`ChunkAnalysis` runs on
hand-built NanoAOD columns. The observable is the selected muon's pT with one bin per event, so
every histogram row holds the per-event weight of one variation (0 where the event is not
selected in that fill); a spy in the observable records the jets each fill selected.
Expectations are computed here from ANALYSIS.md with ``correctionlib.CorrectionSet.from_file``.
"""

from __future__ import annotations

import dataclasses
import os
from functools import lru_cache
from pathlib import Path
from typing import Any

import awkward as ak
import correctionlib
import numpy as np
import pytest
from omegaconf import OmegaConf

from intccms.config import compose_config
from intccms.datagen import write_correction_files
from intccms.physics.corrections import CorrectionConfigError, EraCorrections
from intccms.physics.corrections.era import linked_source
from intccms.physics.functors import Functor
from intccms.physics.observables import leading_pt
from intccms.physics.pipeline import AnalysisPlan, ChunkAnalysis, ChunkContext, Observable
from intccms.plan.analysis import build_plan, corrections_specs, era_constants, variation_names

SHARED = Path(os.environ.get("INTCCMS_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
JSONPOG = SHARED / "jsonpog-integration"
pytestmark = pytest.mark.realdata
needs_files = pytest.mark.skipif(not (JSONPOG / "POG").is_dir(), reason=f"real correction files absent under {JSONPOG}")

ERAS = ["2016preVFP", "2017", "2018"]
ALL_ERAS = ["2016preVFP", "2016postVFP", "2017", "2018"]
# ANALYSIS.md, "Corrections": written out here so that the configuration is checked against them.
JES_CORRELATED = ["AbsoluteMPFBias", "AbsoluteScale", "FlavorQCD", "Fragmentation", "PileUpDataMC", "PileUpPtBB",
                  "PileUpPtEC1", "PileUpPtEC2", "PileUpPtHF", "PileUpPtRef", "RelativeBal", "RelativeFSR",
                  "RelativeJERHF", "RelativePtBB", "RelativePtHF", "SinglePionECAL", "SinglePionHCAL"]
JES_DECORRELATED = ["AbsoluteStat", "RelativeJEREC1", "RelativeJEREC2", "RelativePtEC1", "RelativePtEC2",
                    "RelativeSample", "RelativeStatEC", "RelativeStatFSR", "RelativeStatHF", "TimePtEta"]
BTAG_BL = ["hf", "lf", "hfstats1", "hfstats2", "lfstats1", "lfstats2"]  # flavours 0 and 5
BTAG_C = ["cferr1", "cferr2"]  # flavour 4
MUON_KEYS = {"muon_id_sf": "NUM_TightID_DEN_TrackerMuons", "muon_iso_sf": "NUM_LooseRelIso_DEN_TightIDandIPCut"}
N_EVENTS = 300
MU_PT0 = 55.5  # the selected muon of event i has pT MU_PT0 + i: one histogram bin per event
NORM = 2.5


def jes_names(era_cfg: dict[str, Any]) -> dict[str, str]:
    """JES variation base name -> source, from ANALYSIS.md."""
    year = str(era_cfg["year"])
    return {**{f"jes{s}": s for s in JES_CORRELATED}, **{f"jes{s}_{year}": s for s in JES_DECORRELATED}}


def btag_names(era: str) -> dict[str, str]:
    """b-tag variation base name -> source, from ANALYSIS.md."""
    return {f"btag_{s}_{era}" if "stats" in s else f"btag_{s}": s for s in BTAG_BL + BTAG_C}


def expected_bases(era: str, era_cfg: dict[str, Any]) -> list[str]:
    return [*jes_names(era_cfg), f"pileup_{era}", "muon_id_sf", "muon_iso_sf", "muon_trigger_sf", *btag_names(era)]


# --- the spy observable ----------------------------------------------------------------------

FILLS: list[dict[str, Any]] = []


def spy_observable(muons: ak.Array, jets: ak.Array) -> np.ndarray:
    """The selected muon's pT; records the selected jets (in their order) of each fill."""
    mu_pt = leading_pt(muons)
    FILLS.append({
        "events": np.rint(mu_pt - MU_PT0).astype(np.int64),
        "counts": ak.to_numpy(ak.num(jets)),
        "pt": ak.to_numpy(ak.flatten(jets.pt)).astype(np.float64),
        "eta": ak.to_numpy(ak.flatten(jets.eta)).astype(np.float64),
    })
    return mu_pt


# --- the job's corrections and plan on the real files, and direct correctionlib ---------------


@lru_cache(maxsize=1)
def job() -> dict[str, Any]:
    """Configuration, corrections specs, era constants and a plan as the job builds them."""
    cfg = compose_config("demo", [f"paths.jsonpog={JSONPOG}"])
    specs = corrections_specs(cfg, ERAS)
    constants = era_constants(cfg, ERAS)
    plan = build_plan(cfg, specs)
    obs = Observable(Functor(f"{__name__}.spy_observable", ("muons", "jets")), N_EVENTS, MU_PT0 - 0.5,
                     MU_PT0 - 0.5 + N_EVENTS)
    channel = dataclasses.replace(plan.channels["CMS_WORKSHOP"], observables=("spy",))
    plan = dataclasses.replace(plan, observables={"spy": obs}, channels={"CMS_WORKSHOP": channel})
    eras = {era: OmegaConf.to_container(cfg.eras[era], resolve=True) for era in ALL_ERAS}
    return {"cfg": cfg, "specs": specs, "constants": constants, "plan": plan, "eras": eras}


@lru_cache(maxsize=16)
def direct(era: str, pog: str, name: str) -> correctionlib.highlevel.CorrectionSet:
    folder = job()["eras"][era]["correction_folder"]
    return correctionlib.CorrectionSet.from_file(str(JSONPOG / "POG" / pog / folder / name))


def columns(era: str, seed: int = 11) -> dict[str, Any]:
    """NanoAOD branches of N_EVENTS events that pass the skim and all non-jet cuts.

    Jets are unsorted, some fail ID or |eta|, many lie near the 30 GeV threshold; a third of the
    events has a harder muon that fails the ID before the selected one.
    """
    rng = np.random.default_rng(seed)
    n = N_EVENTS
    mu_pt, mu_eta, mu_tight = [], [], []
    sel_eta = rng.uniform(-2.39, 2.39, n)
    for i in range(n):
        first = [(400.0, 0.3, False)] if rng.random() < 0.3 else []
        mus = [*first, (MU_PT0 + i, sel_eta[i], True)]
        mu_pt.append([m[0] for m in mus])
        mu_eta.append([m[1] for m in mus])
        mu_tight.append([m[2] for m in mus])
    jet_fields: dict[str, list[list[float]]] = {k: [] for k in
                                                 ("pt", "eta", "phi", "mass", "rawFactor", "area", "jetId",
                                                  "hadronFlavour", "btagDeepFlavB")}
    for _ in range(n):
        k = int(rng.integers(2, 7))
        pt = np.concatenate([[rng.uniform(150, 600)], rng.uniform(22, 60, k // 2), rng.uniform(60, 400, k - 1 - k // 2)])
        eta = np.concatenate([[rng.uniform(-2.3, 2.3)], rng.uniform(-2.7, 2.7, k - 1)])
        btag = np.concatenate([[0.95], rng.uniform(0, 1, k - 1)])
        order = rng.permutation(k)
        values = {
            "pt": pt, "eta": eta, "phi": rng.uniform(-3, 3, k), "mass": rng.uniform(3, 30, k),
            "rawFactor": rng.uniform(0, 0.25, k), "area": rng.uniform(0.35, 0.6, k),
            "jetId": rng.choice([2, 6], k, p=[0.1, 0.9]), "hadronFlavour": rng.choice([0, 4, 5], k),
            "btagDeepFlavB": btag,
        }
        for name, v in values.items():
            jet_fields[name].append(list(np.asarray(v)[order]))
    return _branches(era, n, rng, mu_pt, mu_eta, mu_tight, jet_fields)


def _branches(era: str, n: int, rng: np.random.Generator, mu_pt: list, mu_eta: list, mu_tight: list,
              jet_fields: dict[str, list]) -> dict[str, Any]:
    cols: dict[str, Any] = {
        "Muon_pt": ak.Array(mu_pt), "Muon_eta": ak.Array(mu_eta),
        "Muon_phi": ak.Array([[0.1] * len(m) for m in mu_pt]), "Muon_mass": ak.Array([[0.1057] * len(m) for m in mu_pt]),
        "Muon_tightId": ak.Array(mu_tight), "Muon_miniIsoId": ak.Array([[3] * len(m) for m in mu_pt]),
        "FatJet_pt": ak.Array([[650.0]] * n), "FatJet_eta": ak.Array([[0.5]] * n), "FatJet_phi": ak.Array([[2.0]] * n),
        "FatJet_mass": ak.Array([[175.0]] * n), "FatJet_particleNet_TvsQCD": ak.Array([[0.9]] * n),
        "PuppiMET_pt": rng.uniform(100, 300, n), "PuppiMET_phi": rng.uniform(-3, 3, n),
        "Pileup_nTrueInt": rng.uniform(1, 80, n), "fixedGridRhoFastjetAll": rng.uniform(3, 45, n),
        "genWeight": rng.normal(1.0, 0.3, n), "run": np.ones(n, dtype=np.int64),
        "luminosityBlock": np.ones(n, dtype=np.int64),
    }
    for name, values in jet_fields.items():
        arr = ak.Array(values)
        cols[f"Jet_{name}"] = ak.values_astype(arr, np.int32) if name in ("jetId", "hadronFlavour") else arr
    for path in job()["constants"][era]["triggers"]:
        cols[f"HLT_{path}"] = np.ones(n, dtype=bool)
    return cols


def run_chunk(era: str, cols: dict[str, Any], plan: AnalysisPlan | None = None,
              corrections: EraCorrections | None = None) -> tuple[dict[str, np.ndarray], list[dict[str, Any]]]:
    """Histogram rows by variation name (sum of w, one bin per event) and the spy's records."""
    j = job()
    plan = plan or j["plan"]
    ctx = ChunkContext(process="p", era=era, is_data=False, norm=NORM, constants=j["constants"][era])
    FILLS.clear()
    result = ChunkAnalysis(plan, ctx, corrections or j["specs"][era].build()).run(cols)
    hist = result.hists[("CMS_WORKSHOP", "spy")]
    assert np.all(hist[:, 0, :] == 0) and np.all(hist[:, -1, :] == 0)  # one bin per event, no flow
    np.testing.assert_allclose(hist[..., 1], hist[..., 0] ** 2)  # one event per bin: sum w² = w²
    rows = {name: hist[i, 1:-1, 0] for i, name in enumerate(plan.variations)}
    return rows, list(FILLS)


# --- the expectation, from ANALYSIS.md and direct correctionlib -------------------------------


class Expected:
    """Per-event weights and selected jets of every fill, computed independently."""

    def __init__(self, era: str, cols: dict[str, Any]) -> None:
        self.era = era
        self.cfg = job()["eras"][era]
        self.wp = job()["constants"][era]["btag_wp_medium"]
        camp = self.cfg["jec_campaign"]
        self.jerc = direct(era, "JME", "jet_jerc.json.gz")
        counts = ak.to_numpy(ak.num(cols["Jet_pt"]))
        self.n = len(counts)
        self.jev = np.repeat(np.arange(self.n), counts)
        flat = {k.removeprefix("Jet_"): ak.to_numpy(ak.flatten(v)) for k, v in cols.items() if k.startswith("Jet_")}
        self.jets = flat
        raw = flat["pt"] * (1 - flat["rawFactor"])
        args = {"JetA": flat["area"], "JetEta": flat["eta"], "Rho": cols["fixedGridRhoFastjetAll"][self.jev]}
        pt = raw
        for level in ("L1FastJet", "L2Relative", "L3Absolute"):
            c = self.jerc[f"{camp}_{level}_AK4PFchs"]
            pt = pt * c.evaluate(*[pt if i.name == "JetPt" else args[i.name] for i in c.inputs])
        self.pt = pt
        self.mass = flat["mass"] * (1 - flat["rawFactor"]) * (pt / raw)
        # the selected muon is the last one of each event
        mu_pt = np.array([row[-1] for row in ak.to_list(cols["Muon_pt"])])
        mu_abseta = np.abs([row[-1] for row in ak.to_list(cols["Muon_eta"])])
        muo = direct(era, "MUO", "muon_Z.json.gz")
        keys = {**MUON_KEYS, "muon_trigger_sf": self.cfg["trigger_sf_key"]}
        self.muon = {name: {sel: muo[key].evaluate(self.cfg["correction_folder"], mu_abseta, mu_pt, sel)
                            for sel in ("sf", "systup", "systdown")} for name, key in keys.items()}
        pu = direct(era, "LUM", "puWeights.json.gz")[self.cfg["pileup_key"]]
        self.pileup = {sel: pu.evaluate(cols["Pileup_nTrueInt"], sel) for sel in ("nominal", "up", "down")}
        self.btag = direct(era, "BTV", "btagging.json.gz")["deepJet_shape"]
        self.base = cols["genWeight"] * NORM

    def delta(self, source: str) -> np.ndarray:
        c = self.jerc[f"{self.cfg['jec_campaign']}_{source}_AK4PFchs"]
        return c.evaluate(*[self.pt if i.name == "JetPt" else self.jets["eta"] for i in c.inputs])

    def varied_pt(self, jes: str | None, direction: str) -> np.ndarray:
        if jes is None:
            return self.pt
        sign = 1.0 if direction == "up" else -1.0
        return self.pt * (1 + sign * self.delta(jes_names(self.cfg)[jes]))

    def selected_jets(self, pt: np.ndarray) -> np.ndarray:
        return (self.jets["jetId"] >= 4) & (np.abs(self.jets["eta"]) < 2.5) & (pt > 30)

    def event_selected(self, pt: np.ndarray) -> np.ndarray:
        sel = self.selected_jets(pt)
        njet = np.bincount(self.jev[sel], minlength=self.n)
        nb = np.bincount(self.jev[sel & (self.jets["btagDeepFlavB"] > self.wp)], minlength=self.n)
        return (njet >= 2) & (nb >= 1)

    def btag_weight(self, pt: np.ndarray, selector_of_flavour: dict[int, str]) -> np.ndarray:
        """Product over the selected jets of deepJet_shape with a selector per flavour."""
        sel = self.selected_jets(pt)
        out = np.ones(self.n)
        flav = self.jets["hadronFlavour"]
        for f, selector in selector_of_flavour.items():
            where = sel & (flav == f)
            if np.any(where):
                sf = self.btag.evaluate(selector, flav[where], np.abs(self.jets["eta"][where]), pt[where],
                                        self.jets["btagDeepFlavB"][where])
                np.multiply.at(out, self.jev[where], sf)
        return out

    def factors(self, jes: str | None = None, direction: str = "up") -> dict[str, np.ndarray]:
        """The nominal factors; in a JES fill the b-tag weight on the varied jets with up/down_jes{Source}."""
        pt = self.varied_pt(jes, direction)
        if jes is None:
            btag = {0: "central", 4: "central", 5: "central"}
        else:
            linked = f"{direction}_jes{jes_names(self.cfg)[jes]}"
            btag = {0: linked, 4: "central", 5: linked}
        out = {"pileup": self.pileup["nominal"], "btag": self.btag_weight(pt, btag)}
        out.update({name: values["sf"] for name, values in self.muon.items()})
        return out

    def row(self, variation: str) -> np.ndarray:
        """Per-event weight of one histogram row (0 where the event is not selected)."""
        base, _, direction = variation.rpartition("_")
        jes = base if base in jes_names(self.cfg) else None
        factors = self.factors(jes, direction)
        pt = self.varied_pt(jes, direction)
        if base == f"pileup_{self.era}":
            factors["pileup"] = self.pileup[direction]
        elif base in self.muon:
            factors[base] = self.muon[base][f"syst{direction}"]
        elif base in btag_names(self.era):
            source = btag_names(self.era)[base]
            varied = f"{direction}_{source}"
            flavours = (4,) if source in BTAG_C else (0, 5)
            factors["btag"] = self.btag_weight(pt, {f: varied if f in flavours else "central" for f in (0, 4, 5)})
        # anything else (nominal, another era's decorrelated names) is this era's nominal
        return self.base * np.prod(list(factors.values()), axis=0) * self.event_selected(pt)

    def fill_jets(self, jes: str | None, direction: str) -> dict[str, Any]:
        """Selected events and their selected jets, sorted by the (varied) corrected pT."""
        pt = self.varied_pt(jes, direction)
        keep = self.event_selected(pt)
        sel = self.selected_jets(pt) & keep[self.jev]
        idx = np.flatnonzero(sel)
        idx = idx[np.lexsort((-pt[idx], self.jev[idx]))]
        return {"events": np.flatnonzero(keep), "counts": np.bincount(self.jev[idx], minlength=self.n)[keep],
                "pt": pt[idx], "eta": self.jets["eta"][idx]}


def _same_fill(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return (np.array_equal(a["events"], b["events"]) and np.array_equal(a["counts"], b["counts"])
            and np.allclose(a["pt"], b["pt"], rtol=1e-10) and np.array_equal(a["eta"], b["eta"]))


@lru_cache(maxsize=4)
def analysed(era: str) -> tuple[dict[str, np.ndarray], list[dict[str, Any]], Expected]:
    cols = columns(era)
    rows, fills = run_chunk(era, cols)
    return rows, fills, Expected(era, cols)


# --- tests ------------------------------------------------------------------------------------


@needs_files
@pytest.mark.parametrize("era", ERAS)
def test_pipeline_weights_equal_direct_correctionlib(era: str) -> None:
    """Every histogram row (78 of this era, 60 of the others) holds the per-event weight
    genWeight × norm × pileup × muon ID × iso × trigger × b-tag product, varied as ANALYSIS.md says."""
    rows, _, exp = analysed(era)
    nominal = exp.row("nominal")
    assert np.count_nonzero(nominal) > N_EVENTS // 2
    for name, values in rows.items():
        np.testing.assert_allclose(values, exp.row(name), rtol=1e-10, atol=0, err_msg=name)
    # up/down move where they should
    filled = nominal != 0
    for base in ("muon_id_sf", "muon_iso_sf", "muon_trigger_sf"):
        up, down = rows[f"{base}_up"][filled] / nominal[filled], rows[f"{base}_down"][filled] / nominal[filled]
        assert np.all(up >= 1) and np.all(down <= 1) and np.any(up > 1) and np.any(down < 1), base
    for d in ("up", "down"):
        assert not np.allclose(rows[f"pileup_{era}_{d}"][filled], nominal[filled])


@needs_files
@pytest.mark.parametrize("era", ERAS)
def test_btag_sources_move_only_their_flavours(era: str) -> None:
    """cferr1 moves events with a selected c jet only; hfstats1 those with a selected b or light jet."""
    rows, _, exp = analysed(era)
    nominal = rows["nominal"]
    sel = exp.selected_jets(exp.pt)
    flav = exp.jets["hadronFlavour"]
    has_c = np.bincount(exp.jev[sel & (flav == 4)], minlength=exp.n) > 0
    has_bl = np.bincount(exp.jev[sel & (flav != 4)], minlength=exp.n) > 0
    filled = nominal != 0
    for d in ("up", "down"):
        cferr = rows[f"btag_cferr1_{d}"]
        np.testing.assert_array_equal(cferr[filled & ~has_c], nominal[filled & ~has_c])
        assert np.all(cferr[filled & has_c] != nominal[filled & has_c])
        stats = rows[f"btag_hfstats1_{era}_{d}"]
        np.testing.assert_array_equal(stats[filled & ~has_bl], nominal[filled & ~has_bl])
        assert not np.allclose(stats[filled & has_bl], nominal[filled & has_bl])
        # the same source of another era is filled with this era's nominal
        other = next(e for e in ERAS if e != era)
        np.testing.assert_array_equal(rows[f"btag_hfstats1_{other}_{d}"], nominal)
        np.testing.assert_array_equal(rows[f"pileup_{other}_{d}"], nominal)


@needs_files
@pytest.mark.parametrize("era", ERAS)
def test_pipeline_jets_are_corrected_varied_reselected_and_resorted(era: str) -> None:
    """The jets each fill selects: L1→L2→L3 from raw pT (nominal) and (1 ± δ) in JES fills, for
    every JES source, re-selected at 30 GeV and sorted by the varied pT."""
    _, fills, exp = analysed(era)
    names = jes_names(exp.cfg)
    expected = {"nominal": exp.fill_jets(None, "up")}
    expected.update({f"{b}_{d}": exp.fill_jets(b, d) for b in names for d in ("up", "down")})
    assert len(fills) == len(expected) == 1 + 2 * 27
    unmatched = [name for name, e in expected.items() if not any(_same_fill(f, e) for f in fills)]
    assert not unmatched
    # the sample does exercise re-selection and re-sorting
    up, down = expected["jesFlavorQCD_up"], expected["jesFlavorQCD_down"]
    assert len(up["pt"]) > len(expected["nominal"]["pt"]) > len(down["pt"])
    assert any(not np.array_equal(expected[f"{b}_up"]["events"], expected["nominal"]["events"]) for b in names)


@needs_files
@pytest.mark.parametrize("era", ERAS)
def test_jec_objects_equal_direct_correctionlib(era: str) -> None:
    """The JetEnergyCorrection ChunkAnalysis calls, on all jets: corrected pT and mass, and JES
    up/down for a correlated (FlavorQCD) and a decorrelated (AbsoluteStat_{year}) source."""
    cols = columns(era)
    exp = Expected(era, cols)
    corr = job()["specs"][era].build()
    jets = ak.zip({k.removeprefix("Jet_"): v for k, v in cols.items() if k.startswith("Jet_")})
    result = corr.objects[0].apply({"Jet": jets, "fixedGridRhoFastjetAll": cols["fixedGridRhoFastjetAll"]})
    np.testing.assert_allclose(result.pt, exp.pt, rtol=1e-12)
    np.testing.assert_allclose(result.mass, exp.mass, rtol=1e-12)
    assert np.all(np.abs(result.pt / exp.jets["pt"] - 1) > 1e-6)  # re-applied, not the stored pT
    for jes in ("jesFlavorQCD", f"jesAbsoluteStat_{exp.cfg['year']}"):
        for d in ("up", "down"):
            varied = result.varied(jes, d)
            np.testing.assert_allclose(ak.to_numpy(ak.flatten(varied.pt)), exp.varied_pt(jes, d), rtol=1e-12)
            np.testing.assert_allclose(ak.to_numpy(ak.flatten(varied.mass)),
                                       exp.mass * exp.varied_pt(jes, d) / exp.pt, rtol=1e-12)
        assert np.count_nonzero(exp.delta(jes_names(exp.cfg)[jes])) > len(exp.pt) // 4  # a real shift


def _find_jet(exp: Expected, source: str, eta: float, lo: float, hi: float, want: Any) -> float:
    """Stored pT (rawFactor 0.1, area 0.5, rho 20) whose corrected pT and δ satisfy ``want``."""
    camp = exp.cfg["jec_campaign"]
    grid = np.arange(lo, hi, 0.01)
    etas = np.full_like(grid, eta)
    raw = grid * 0.9
    args = {"JetA": np.full_like(grid, 0.5), "JetEta": etas, "Rho": np.full_like(grid, 20.0)}
    pt = raw
    for level in ("L1FastJet", "L2Relative", "L3Absolute"):
        c = exp.jerc[f"{camp}_{level}_AK4PFchs"]
        pt = pt * c.evaluate(*[pt if i.name == "JetPt" else args[i.name] for i in c.inputs])
    unc = exp.jerc[f"{camp}_{source}_AK4PFchs"]
    delta = unc.evaluate(*[pt if i.name == "JetPt" else etas for i in unc.inputs])
    ok = np.flatnonzero(want(pt, delta))
    assert ok.size, f"no stored pT in [{lo}, {hi}) satisfies the condition for {source}"
    return float(grid[ok[len(ok) // 2]])


@needs_files
@pytest.mark.parametrize("era", ERAS)
def test_jes_shift_across_threshold_reselects_and_resorts(era: str) -> None:
    """Designed events: FlavorQCD down drops a jet below 30 GeV (the event fails ≥ 2 jets), up lifts
    one above (the event passes); RelativeJEREC1 up makes an endcap jet overtake a central one."""
    base_exp = analysed(era)[2]
    year = job()["eras"][era]["year"]
    endcap = f"jesRelativeJEREC1_{year}"
    just_above = _find_jet(base_exp, "FlavorQCD", 0.4, 25, 45, lambda pt, d: (pt > 30.01) & (pt * (1 - d) < 29.99))
    just_below = _find_jet(base_exp, "FlavorQCD", 0.4, 25, 45, lambda pt, d: (pt < 29.99) & (pt * (1 + d) > 30.01))
    # jet A: eta 0.2, stored 150; jet B at eta 2.3 just below A nominally and above it in RelativeJEREC1 up
    a_stored = 150.0
    camp = base_exp.cfg["jec_campaign"]

    def corrected(stored: float, eta: float, source: str) -> tuple[float, float]:
        args = {"JetA": 0.5, "JetEta": eta, "Rho": 20.0}
        pt = stored * 0.9
        for level in ("L1FastJet", "L2Relative", "L3Absolute"):
            c = base_exp.jerc[f"{camp}_{level}_AK4PFchs"]
            pt = pt * c.evaluate(*[pt if i.name == "JetPt" else args[i.name] for i in c.inputs])
        unc = base_exp.jerc[f"{camp}_{source}_AK4PFchs"]
        return pt, unc.evaluate(*[pt if i.name == "JetPt" else eta for i in unc.inputs])

    pa, da = corrected(a_stored, 0.2, "RelativeJEREC1")
    stored_b = _find_jet(base_exp, "RelativeJEREC1", 2.3, 100, 250,
                         lambda pt, d: (pt < pa * (1 - 1e-4)) & (pt * (1 + d) > pa * (1 + da) * (1 + 1e-4)))
    # events: 0 = leading jet + just_above (passes nominally, fails down); 1 = leading + just_below
    # (fails nominally, passes up); 2 = A, B (B leads in RelativeJEREC1 up only)
    lead = (300.0, 0.1, 0.95)
    jets = [[lead, (just_above, 0.4, 0.1)], [lead, (just_below, 0.4, 0.1)], [(a_stored, 0.2, 0.95), (stored_b, 2.3, 0.1)]]
    jet_fields = {k: [] for k in ("pt", "eta", "phi", "mass", "rawFactor", "area", "jetId", "hadronFlavour",
                                  "btagDeepFlavB")}
    for ev in jets:
        jet_fields["pt"].append([j[0] for j in ev])
        jet_fields["eta"].append([j[1] for j in ev])
        jet_fields["btagDeepFlavB"].append([j[2] for j in ev])
        for name, value in (("phi", 0.5), ("mass", 10.0), ("rawFactor", 0.1), ("area", 0.5), ("jetId", 6),
                            ("hadronFlavour", 5)):
            jet_fields[name].append([value] * len(ev))
    n = len(jets)
    rng = np.random.default_rng(3)
    cols = _branches(era, n, rng, [[MU_PT0 + i] for i in range(n)], [[0.3]] * n, [[True]] * n, jet_fields)
    cols["fixedGridRhoFastjetAll"] = np.full(n, 20.0)
    names = ("nominal", "jesFlavorQCD_up", "jesFlavorQCD_down", f"{endcap}_up", f"{endcap}_down")
    plan = dataclasses.replace(job()["plan"], variations=names)
    rows, fills = run_chunk(era, cols, plan)
    exp = Expected(era, cols)
    for name in names:
        np.testing.assert_allclose(rows[name][:n], exp.row(name), rtol=1e-10, err_msg=name)
    assert rows["nominal"][0] != 0 and rows["jesFlavorQCD_down"][0] == 0  # re-selection drops event 0
    assert rows["nominal"][1] == 0 and rows["jesFlavorQCD_up"][1] != 0  # and picks up event 1
    by_events = {}
    for f in fills:
        for i, ev in enumerate(f["events"]):
            if ev == 2:
                start = int(f["counts"][:i].sum())
                by_events.setdefault("leading_eta", []).append(f["eta"][start])
    # five fills see event 2; only the RelativeJEREC1 up fill has the endcap jet B in front
    assert sorted(by_events["leading_eta"]) == [0.2, 0.2, 0.2, 0.2, 2.3]
    assert len(fills) == len(names)


@needs_files
@pytest.mark.parametrize("era", ERAS)
def test_varies_with_uses_exactly_the_linked_jes_source(era: str) -> None:
    """Inside jes{Source}_up the b-tag weight is up_jes{Source} on the varied jets (c jets central);
    the nominal fill uses central."""
    rows, _, exp = analysed(era)
    year = exp.cfg["year"]
    others = ("pileup", "muon_id_sf", "muon_iso_sf", "muon_trigger_sf")
    for jes, source in (("jesFlavorQCD", "FlavorQCD"), (f"jesAbsoluteStat_{year}", "AbsoluteStat")):
        for d in ("up", "down"):
            pt = exp.varied_pt(jes, d)
            keep = exp.event_selected(pt)
            f = exp.factors()
            rest = exp.base * np.prod([f[k] for k in others], axis=0)
            btag = rows[f"{jes}_{d}"][keep] / rest[keep]
            linked = exp.btag_weight(pt, {0: f"{d}_jes{source}", 4: "central", 5: f"{d}_jes{source}"})
            central = exp.btag_weight(pt, {0: "central", 4: "central", 5: "central"})
            np.testing.assert_allclose(btag, linked[keep], rtol=1e-10)
            assert not np.allclose(btag, central[keep], rtol=1e-6)
    keep = exp.event_selected(exp.pt)
    f = exp.factors()
    rest = exp.base * np.prod([f[k] for k in others], axis=0)
    np.testing.assert_allclose(rows["nominal"][keep] / rest[keep],
                               exp.btag_weight(exp.pt, {0: "central", 4: "central", 5: "central"})[keep], rtol=1e-10)
    # the link is resolved from the configured source, not parsed from the variation name
    bt = next(w for w in job()["specs"][era].build().weights if w.name == "btag_shape")
    link = linked_source(bt, f"jesAbsoluteStat_{year}")
    assert link is not None and (link.up, link.down) == ("up_jesAbsoluteStat", "down_jesAbsoluteStat")
    assert linked_source(bt, f"pileup_{era}") is None


@needs_files
def test_linked_source_comes_from_the_configured_source() -> None:
    """A JES variation whose name does not spell its source still links to up_jes{source}."""
    j = job()
    defs = OmegaConf.to_container(j["cfg"].corrections.definitions, resolve=True)
    for entry in defs["jec"]["jes_sources"]:
        if entry["source"] == "AbsoluteStat":
            entry["variation"] = "jesAbsStatistical_{year}"
    corr = EraCorrections.from_config("2017", j["eras"]["2017"], defs, list(j["cfg"].corrections.by_era["2017"]),
                                      str(JSONPOG))
    bt = next(w for w in corr.weights if w.name == "btag_shape")
    link = linked_source(bt, "jesAbsStatistical_2017")
    assert link is not None and (link.up, link.down) == ("up_jesAbsoluteStat", "down_jesAbsoluteStat")


@needs_files
@pytest.mark.parametrize(("override", "correction", "selector"), [
    ("corrections.definitions.muon_iso.nominal=sff", "muon_iso", "sff"),
    ("corrections.definitions.pileup.sources.0.down=dwn", "pileup", "dwn"),
    ("corrections.definitions.btag_shape.sources.2.up=up_hfstat1", "btag_shape", "up_hfstat1"),
    ("corrections.definitions.btag_shape.varies_with.0.up=up_jes_{source}", "btag_shape", "up_jes_AbsoluteMPFBias"),
])
def test_typo_in_a_selector_fails_at_start_up(override: str, correction: str, selector: str) -> None:
    cfg = compose_config("demo", [f"paths.jsonpog={JSONPOG}"])
    key, _, value = override.partition("=")
    OmegaConf.update(cfg, key, value)
    with pytest.raises(CorrectionConfigError) as err:
        corrections_specs(cfg, ["2017"])
    text = str(err.value)
    assert f"correction '{correction}'" in text and f"'{selector}'" in text and "era 2017" in text
    assert "POG/" in text and "2017_UL" in text and "allowed:" in text
    allowed = {"muon_iso": "'systup'", "pileup": "'nominal'", "btag_shape": "'up_hfstats1'"}[correction]
    assert allowed in text


@needs_files
def test_variation_counts_over_eras_on_the_real_files() -> None:
    j = job()
    cfg, specs = j["cfg"], j["specs"]
    for era in ERAS:
        names = specs[era].build().variation_names()
        assert len(names) == len(set(names)) == 78
        assert sorted(names) == sorted(f"{b}_{d}" for b in expected_bases(era, j["eras"][era]) for d in ("up", "down"))
    names = variation_names(cfg, specs)
    assert names[0] == "nominal" and len(names) == len(set(names)) == 1 + 138
    assert set(j["plan"].variations) == set(names)


def test_variation_counts_over_all_four_eras(tmp_path: Path) -> None:
    """148 names over the four eras; the two 2016 eras share the ``_2016`` JES names.

    2016postVFP is not among the real files, so the generated files (same keys) are used.
    """
    write_correction_files(tmp_path, ALL_ERAS)
    cfg = compose_config("demo", [f"paths.jsonpog={tmp_path}"])
    specs = corrections_specs(cfg, ALL_ERAS)
    names = variation_names(cfg, specs)
    assert names[0] == "nominal" and len(names) == len(set(names)) == 1 + 148
    per_era = {era: set(specs[era].build().variation_names()) for era in ALL_ERAS}
    assert all(len(v) == 78 for v in per_era.values())
    pre, post = per_era["2016preVFP"], per_era["2016postVFP"]
    jes_2016 = {f"jes{s}_2016_{d}" for s in JES_DECORRELATED for d in ("up", "down")}
    assert jes_2016 <= pre and jes_2016 <= post
    assert {n for n in pre if n.startswith("jes")} == {n for n in post if n.startswith("jes")}
    assert {n for n in pre ^ post} == {f"{b}_{d}" for e in ("2016preVFP", "2016postVFP")
                                        for b in (f"pileup_{e}", *(f"btag_{s}_{e}" for s in BTAG_BL if "stats" in s))
                                        for d in ("up", "down")}
    assert set(names[1:]) == set().union(*per_era.values())


@needs_files
def test_after_the_warm_up_a_chunk_parses_no_correction(parsed_corrections: list[list[str]]) -> None:
    """Everything the worker's warm-up thread can parse it parses: the first chunk then parses
    nothing (a parse there is paid on the stage's clock, by every worker at once); the
    b-tag shape, evaluated only through its systematic slices, is never parsed whole."""
    parsed = parsed_corrections
    corrections = job()["specs"]["2017"].warm()
    assert parsed  # the warm-up parsed the era's corrections
    assert not [n for names in parsed for n in names if n == "deepJet_shape"]
    parsed.clear()
    rows, _ = run_chunk("2017", columns("2017"), corrections=corrections)
    assert len(rows) > 100  # every variation was filled
    assert parsed == []

"""Synthetic correctionlib files laid out like CMS jsonpog-integration.

``write_correction_files(root, eras)`` writes ``root/POG/{JME,MUO,LUM,BTV}/<era>_UL/`` with
``jet_jerc.json.gz``, ``muon_Z.json.gz``, ``puWeights.json.gz`` and ``btagging.json.gz``.
Correction names, input names and types, output names and the string selectors are those
of the real UL files (every correction written exists in the real file of that era with
the same signature); only the values are synthetic and the binning coarse:

- JEC ``{campaign}_L1FastJet/L2Relative/L3Absolute/L2L3Residual_AK4PFchs`` from
  :mod:`intccms.datagen.jec` (the generator's own model), the compound
  ``{campaign}_L1L2L3Res_AK4PFchs``, and the 27 JES sources ``{campaign}_{Source}_AK4PFchs``
  (0.1-3 %, growing at low pT and high |eta|);
- muon ID/ISO/trigger SFs for every ``NUM_*_DEN_*`` key (``sf`` 0.95-1.0, ``systup``/
  ``systdown`` +-0.5-1 %, plus the component keys of the real tables);
- pileup weights: ratio of Gamma-shaped data (nominal, +-4.6 % minimum-bias cross-section)
  and MC nTrueInt profiles, the MC one being the generator's;
- b-tag ``deepJet_shape`` with all 91 systematics of the real file (cferr only for c jets,
  the others for b and light jets) and ``deepJet_wp_values`` with the real working points.
"""

from __future__ import annotations

import gzip
import hashlib
import inspect
import itertools
import json
import os
import sys
import tempfile
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

import numpy as np
from correctionlib import schemav2 as cs
from scipy.stats import gamma

from intccms.core.conf import jes_sources, run2_eras
from intccms.datagen import eras as eras_module
from intccms.datagen import jec
from intccms.datagen.eras import era_info
from intccms.datagen.reco import _btag

__all__ = ["BTAG_SYSTEMATICS", "JES_SOURCES", "muon_keys", "write_correction_files"]

# The JEC correction's uncertainty sources, in the configuration's order (conf/corrections).
JES_SOURCES = tuple(s["source"] for s in jes_sources())
# The same sources in the order the real UL b-tag file lists its ``up_jes<source>`` systematics.
_BTAG_JES = (
    "AbsoluteStat", "AbsoluteScale", "AbsoluteMPFBias", "Fragmentation", "SinglePionECAL",
    "SinglePionHCAL", "FlavorQCD", "TimePtEta", "RelativeJEREC1", "RelativeJEREC2",
    "RelativeJERHF", "RelativePtBB", "RelativePtEC1", "RelativePtEC2", "RelativePtHF",
    "RelativeBal", "RelativeSample", "RelativeFSR", "RelativeStatFSR", "RelativeStatEC",
    "RelativeStatHF", "PileUpDataMC", "PileUpPtRef", "PileUpPtBB", "PileUpPtEC1", "PileUpPtEC2",
    "PileUpPtHF",
)


def BTAG_SYSTEMATICS(year: str) -> list[str]:  # noqa: N802 (a constant that depends on the year)
    """The 91 ``systematic`` keys of the real ``deepJet_shape``, in the real order."""
    keys = ["central"]
    for src in _BTAG_JES:
        keys += [f"up_jes{src}", f"down_jes{src}"]
    keys += ["up_jes", "down_jes"]
    for src in ("lf", "lfstats1", "lfstats2", "hf", "hfstats1", "hfstats2", "cferr1", "cferr2"):
        keys += [f"up_{src}", f"down_{src}"]
    for src in ("Absolute", f"Absolute_{year}", "BBEC1", f"BBEC1_{year}", "EC2", f"EC2_{year}",
                "HF", f"HF_{year}", f"RelativeSample_{year}"):
        keys += [f"up_jes{src}", f"down_jes{src}"]
    return keys


_JET_INPUTS = {
    "JetA": "area of the jet",
    "JetEta": "pseudorapidity of the jet",
    "JetPt": "pT of the jet before specific correction (for JER: after all corrections applied)",
    "Rho": "energy density rho (as measure of PU)",
}


def _edges(values: Sequence[float]) -> cs.Edges:
    """Bin edges typed as correctionlib's schema has them (numbers or "inf"); a new list."""
    return list(values)


def _jin(name: str) -> cs.Variable:
    return cs.Variable(name=name, type="real", description=_JET_INPUTS[name])


def _jme_correction(name: str, inputs: list[str], data: cs.Content, what: str) -> cs.Correction:
    return cs.Correction(
        name=name, version=1, inputs=[_jin(i) for i in inputs],
        output=cs.Variable(name="correction", type="real"), data=data,
        description=f"{what} for AK4PFchs (synthetic values, real layout)",
    )


def _formula_binning(expr: str, variables: list[str], params: list[list[float]]) -> cs.Binning:
    content: list[cs.Content] = [cs.Formula(nodetype="formula", expression=expr, parser="TFormula",
                                            variables=variables, parameters=p) for p in params]
    return cs.Binning(nodetype="binning", input="JetEta", edges=_edges(jec.ETA_EDGES), content=content,
                      flow="clamp")


def _jes_table(index: int) -> cs.Binning:
    """Uncertainty of one JES source vs (eta, pT): 0.1-3 %, larger at low pT and high |eta|."""
    eta_edges = [-5.4, -3.0, -2.5, -1.3, 0.0, 1.3, 2.5, 3.0, 5.4]
    pt_edges = [9.0, 20.0, 30.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 6538.0]
    base = 0.001 + 0.004 * ((index * 7) % 11) / 10.0
    rows: list[cs.Content] = []
    for lo, hi in itertools.pairwise(eta_edges):
        aeta = abs(0.5 * (lo + hi))
        cells: list[cs.Content] = []
        for plo, phi in itertools.pairwise(pt_edges):
            pt = np.sqrt(plo * phi)
            cells.append(round(min(0.03, base * (1 + 20.0 / pt) * (1 + 0.25 * aeta)), 6))
        rows.append(cs.Binning(nodetype="binning", input="JetPt", edges=_edges(pt_edges),
                               content=cells, flow="clamp"))
    return cs.Binning(nodetype="binning", input="JetEta", edges=_edges(eta_edges),
                      content=rows, flow="clamp")


def _jme(era: str) -> cs.CorrectionSet:
    campaign = era_info(era).campaign
    l1, l2 = jec.era_params(era)
    unit = cs.Binning(nodetype="binning", input="JetEta", edges=[-5.191, 5.191], flow="clamp",
                      content=[cs.Formula(nodetype="formula", expression="1", parser="TFormula",
                                          variables=["JetPt"], parameters=[1.0, 10000.0])])
    corrs = [
        _jme_correction(f"{campaign}_L1FastJet_AK4PFchs", ["JetA", "JetEta", "JetPt", "Rho"],
                        _formula_binning(jec.L1_EXPR, ["Rho", "JetPt", "JetA"], l1), "L1FastJet"),
        _jme_correction(f"{campaign}_L2Relative_AK4PFchs", ["JetEta", "JetPt"],
                        _formula_binning(jec.L2_EXPR, ["JetPt"], l2), "L2Relative"),
        _jme_correction(f"{campaign}_L3Absolute_AK4PFchs", ["JetEta", "JetPt"], unit, "L3Absolute"),
        _jme_correction(f"{campaign}_L2L3Residual_AK4PFchs", ["JetEta", "JetPt"], unit, "L2L3Residual"),
    ]
    corrs += [_jme_correction(f"{campaign}_{src}_AK4PFchs", ["JetEta", "JetPt"], _jes_table(i), src)
              for i, src in enumerate(JES_SOURCES)]
    compound = cs.CompoundCorrection(
        name=f"{campaign}_L1L2L3Res_AK4PFchs",
        description="compound correction L1FastJet x L2Relative x L3Absolute x L2L3Residual",
        inputs=[_jin(i) for i in ("JetA", "JetEta", "JetPt", "Rho")],
        output=cs.Variable(name="correction", type="real"), inputs_update=["JetPt"],
        input_op="*", output_op="*",
        stack=[f"{campaign}_{lvl}_AK4PFchs" for lvl in ("L1FastJet", "L2Relative", "L3Absolute", "L2L3Residual")],
    )
    return cs.CorrectionSet(schema_version=2, description=f"synthetic JERC for {era}",
                            corrections=corrs, compound_corrections=[compound])


def muon_keys(era: str) -> list[str]:
    """The 29 ``muon_Z`` correction names of ``era`` (trigger keys differ per year)."""
    year = era_info(era).year
    iso_trig = {"2016": "NUM_IsoMu24_or_IsoTkMu24_DEN_CutBasedIdTight_and_PFIsoTight",
                "2017": "NUM_IsoMu27_DEN_CutBasedIdTight_and_PFIsoTight",
                "2018": "NUM_IsoMu24_DEN_CutBasedIdTight_and_PFIsoTight"}[year]
    ids = ["GlobalMuons", "HighPtID", "LooseID", "MediumID", "MediumPromptID", "SoftID", "TightID",
           "TrackerMuons", "TrkHighPtID"]
    keys = [f"NUM_{i}_DEN_genTracks" for i in ids]
    keys += [f"NUM_{i}_DEN_TrackerMuons" for i in ids if i not in ("GlobalMuons", "TrackerMuons")]
    for iso in ("LooseRelIso", "TightRelIso"):
        keys += [f"NUM_{iso}_DEN_{d}" for d in ("LooseID", "MediumID", "MediumPromptID", "TightIDandIPCut")
                 if not (iso == "TightRelIso" and d == "LooseID")]
    for iso in ("LooseRelTkIso", "TightRelTkIso"):
        keys += [f"NUM_{iso}_DEN_{d}" for d in ("HighPtIDandIPCut", "TrkHighPtIDandIPCut")]
    keys += [iso_trig, era_info(era).trigger_sf_key]
    return sorted(keys)


def _muon_correction(name: str, era: str, index: int) -> cs.Correction:
    trigger = "Mu50" in name or "IsoMu" in name
    if "Mu50" in name:
        pt_edges: cs.Edges = [52.0, 56.0, 60.0, 120.0, 200.0, "inf"]
    elif "IsoMu27" in name:
        pt_edges = [29.0, 30.0, 40.0, 50.0, 60.0, 120.0, 200.0, "inf"]
    elif "IsoMu24" in name:
        pt_edges = [26.0, 30.0, 40.0, 50.0, 60.0, 120.0, 200.0, "inf"]
    else:
        pt_edges = [15.0, 20.0, 25.0, 30.0, 40.0, 50.0, 60.0, 120.0, "inf"]
    eta_edges: cs.Edges = [0.0, 0.9, 1.2, 2.1, 2.4]
    components = ["AltSig", "massBin", "massRange", "stat", "syst"] + ([] if trigger else ["tagIso"])
    rows: list[cs.Content] = []
    for ieta in range(len(eta_edges) - 1):
        cells: list[cs.Content] = []
        for ipt in range(len(pt_edges) - 1):
            sf = 0.995 - 0.012 * ieta - (0.02 if trigger else 0.0) - 0.002 * ((index + ipt) % 3)
            unc = 0.004 + 0.002 * ieta + 0.001 * ipt
            values = {c: round(unc * (0.2 + 0.1 * k), 6) for k, c in enumerate(components)}
            values.update(sf=round(sf, 6), systup=round(sf + unc, 6), systdown=round(sf - unc, 6))
            cells.append(cs.Category(nodetype="category", input="ValType",
                                     content=[cs.CategoryItem(key=k, value=v) for k, v in values.items()]))
        rows.append(cs.Binning(nodetype="binning", input="pt", edges=pt_edges, content=cells, flow="error"))
    data = cs.Category(nodetype="category", input="year", content=[cs.CategoryItem(
        key=f"{era}_UL",
        value=cs.Binning(nodetype="binning", input="abseta", edges=eta_edges, content=rows, flow="error"),
    )])
    return cs.Correction(
        name=name, description=name, version=1,
        inputs=[cs.Variable(name="year", type="string", description="year/scenario: example 2016preVFP, 2017 etc"),
                cs.Variable(name="abseta", type="real", description="Probe abseta"),
                cs.Variable(name="pt", type="real", description="Probe pt"),
                cs.Variable(name="ValType", type="string",
                            description="sf or syst (currently 'sf' is nominal, and 'systup' and 'systdown' are up/down variations with total stat+syst uncertainties. Individual systs are also available (in these cases syst only, not sf +/- syst)")],
        output=cs.Variable(name="weight", type="real", description="Output scale factor (nominal) or uncertainty"),
        data=data,
    )


def _muo(era: str) -> cs.CorrectionSet:
    return cs.CorrectionSet(schema_version=2, description=f"synthetic muon SFs for {era}",
                            corrections=[_muon_correction(k, era, i) for i, k in enumerate(muon_keys(era))])


def pileup_profile(mean: float, centres: np.ndarray) -> np.ndarray:
    """The nTrueInt density the generator draws from (Gamma, shape 7)."""
    return gamma.pdf(centres, 7.0, scale=mean / 7.0)


def _lum(era: str) -> cs.CorrectionSet:
    info = era_info(era)
    edges: cs.Edges = [float(x) for x in range(100)]
    centres = np.arange(99) + 0.5
    mc = np.maximum(pileup_profile(info.pileup_mean_mc, centres), 1e-12)
    items = []
    for key, shift in (("nominal", 1.0), ("up", 1.046), ("down", 0.954)):
        w = np.clip(pileup_profile(info.pileup_mean_data * shift, centres) / mc, 0.0, 5.0)
        items.append(cs.CategoryItem(key=key, value=cs.Binning(
            nodetype="binning", input="NumTrueInteractions", edges=edges,
            content=[round(float(x), 6) for x in w], flow="clamp")))
    corr = cs.Correction(
        name=info.pileup_key, version=0,
        inputs=[cs.Variable(name="NumTrueInteractions", type="real", description="Number of true interactions"),
                cs.Variable(name="weights", type="string", description="nominal, up, or down")],
        output=cs.Variable(name="weight", type="real", description="Event weight for pileup reweighting"),
        data=cs.Category(nodetype="category", input="weights", content=items),
    )
    return cs.CorrectionSet(schema_version=2, description=f"synthetic pileup weights for {era}", corrections=[corr])


_SHAPE_D_EDGES = (-15.0, 0.0, 0.05, 0.1, 0.3, 0.6, 0.8, 0.95, 1.1)


@lru_cache(maxsize=8)
def _score_fractions(flavour: int) -> tuple[float, ...]:
    """Fraction of the generator's jets of one flavour in each discriminant bin of the table.

    The central shape SF is divided by its mean over these fractions: like the real reshaping
    SFs after their normalisation, it changes the shape of the b-tag score, not the yield.
    """

    rng = np.random.default_rng(20170 + flavour)
    pt = rng.uniform(30.0, 400.0, 200_000)
    score, _ = _btag(rng, np.full(pt.shape, flavour, dtype=np.int64), pt)
    counts, _ = np.histogram(score, bins=_SHAPE_D_EDGES)
    return tuple(float(c) for c in counts / counts.sum())


def _shape_table(flavour: int, syst: str) -> cs.Binning:
    pt_edges = [20.0, 30.0, 50.0, 70.0, 100.0, 140.0, 10000.0]
    d_edges = _edges(_SHAPE_D_EDGES)
    fractions = np.asarray(_score_fractions(flavour))
    direction = 1.0 if syst.startswith("up") else -1.0 if syst.startswith("down") else 0.0
    size = 0.01 + 0.002 * (sum(map(ord, syst)) % 10)
    rows: list[cs.Content] = []
    for ipt in range(len(pt_edges) - 1):
        x = (np.arange(len(d_edges) - 1) - 1) / (len(d_edges) - 3)  # 0: lowest real score bin, 1: top
        slope = {5: 0.15, 4: 0.05, 0: -0.15}[flavour]
        central = 1.0 + slope * (x - 0.3) - 0.005 * ipt
        central = central / float(np.dot(fractions, central))
        cells: list[cs.Content] = [round(float(c * (1.0 + direction * size * (0.5 + xi))), 6) for c, xi in zip(central, x, strict=True)]
        rows.append(cs.Binning(nodetype="binning", input="discriminant", edges=d_edges, content=cells, flow="clamp"))
    return cs.Binning(nodetype="binning", input="abseta", edges=[0.0, 2.5], flow="error", content=[
        cs.Binning(nodetype="binning", input="pt", edges=_edges(pt_edges), content=rows, flow="clamp")])


def _btv(era: str) -> cs.CorrectionSet:
    info = era_info(era)
    items = []
    for syst in BTAG_SYSTEMATICS(info.year):
        flavours = [4] if "cferr" in syst else [0, 5] if syst != "central" else [0, 4, 5]
        items.append(cs.CategoryItem(key=syst, value=cs.Category(
            nodetype="category", input="flavor",
            content=[cs.CategoryItem(key=f, value=_shape_table(f, syst)) for f in flavours])))
    shape = cs.Correction(
        name="deepJet_shape", version=3,
        description=("deepJet reshaping scale factors (synthetic). cferr1/2 apply to c jets, "
                     "the other sources to light and b jets; jes-varied SFs for JES variations."),
        inputs=[cs.Variable(name="systematic", type="string"),
                cs.Variable(name="flavor", type="int", description="hadron flavor definition: 5=b, 4=c, 0=udsg"),
                cs.Variable(name="abseta", type="real"), cs.Variable(name="pt", type="real"),
                cs.Variable(name="discriminant", type="real", description="deepJet output value")],
        output=cs.Variable(name="weight", type="real"),
        data=cs.Category(nodetype="category", input="systematic", content=items),
    )
    wp = cs.Correction(
        name="deepJet_wp_values", version=1, description=f"working points for deepJet in UL {era}.",
        inputs=[cs.Variable(name="working_point", type="string", description="L/M/T")],
        output=cs.Variable(name="wp", type="real"),
        data=cs.Category(nodetype="category", input="working_point", content=[
            cs.CategoryItem(key=k, value=v) for k, v in zip("LMT", info.btag_wp, strict=True)]),
    )
    return cs.CorrectionSet(schema_version=2, description=f"synthetic b-tagging corrections for {era}",
                            corrections=[wp, shape])


_FILES = (("JME", "jet_jerc", _jme), ("MUO", "muon_Z", _muo), ("LUM", "puWeights", _lum),
          ("BTV", "btagging", _btv))


def _write_if_changed(path: Path, payload: bytes) -> None:
    if path.exists() and path.read_bytes() == payload:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "wb") as handle:
        handle.write(payload)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def write_correction_files(root: str | os.PathLike[str], eras: Sequence[str]) -> Path:
    """Write the synthetic jsonpog tree for ``eras`` under ``root`` (idempotent).

    Args:
        root (str | PathLike): destination; files go to ``root/POG/<POG>/<era>_UL/``.
        eras (Sequence[str]): era names.

    Returns:
        Path: ``root``.
    """
    root = Path(root)
    fingerprint = _builder_fingerprint()
    for era in eras:
        folder = era_info(era).folder
        paths = [root / "POG" / pog / folder / f"{stem}.json.gz" for pog, stem, _ in _FILES]
        stamp = root / "POG" / f".{era}.generated"
        # Building the files takes seconds; a stamp of what built them lets a rerun skip that.
        if all(p.is_file() for p in paths) and stamp.is_file() and stamp.read_text() == fingerprint:
            continue
        for path, (_, _, build) in zip(paths, _FILES, strict=True):
            text = build(era).model_dump_json(exclude_unset=True)
            payload = gzip.compress(text.encode(), compresslevel=6, mtime=0)
            _write_if_changed(path, payload)
        _write_if_changed(stamp, fingerprint.encode())
    return root


def _builder_fingerprint() -> str:
    """What the files are built from: this module's source, the era table's, and the era facts
    and JES sources of the configuration."""
    digest = hashlib.sha256()
    for module in (sys.modules[__name__], eras_module):
        digest.update(inspect.getsource(module).encode())
    digest.update(json.dumps([run2_eras(), jes_sources()], sort_keys=True).encode())
    return digest.hexdigest()

"""Detector model: generator-level objects in, NanoAODv9 branches out.

- Pileup: ``Pileup_nTrueInt`` ~ Gamma(shape 7) around the era's MC mean (data: its own,
  slightly higher mean); in-time pileup ~ Poisson(nTrueInt);
  ``fixedGridRhoFastjetAll`` ~ 2 + 0.55 nPU with a 1.5 GeV spread.
- AK4 jets: stochastic + noise + constant pT resolution, masses from the jet pT, pileup jets,
  jet ID 6/2/0 (tight-lepton-veto / tight / fail), DeepJet and DeepCSV scores drawn per
  hadron flavour (medium-WP efficiencies ~ 78 % b, ~ 18 % c, ~ 1 % light, lower for b at
  high pT). MC jets are stored with the calibration of an older global tag: the stored pT is
  the calibrated pT divided by s ~ N(1.01, 0.01) and ``rawFactor`` is set from the synthetic
  JEC (:mod:`intccms.datagen.jec`), so re-applying the JEC recovers the calibrated pT that
  data jets carry directly.
- Muons: pT resolution 1 % + 4e-5 pT, tight ID 97.5 % (prompt) / 92 % (from b/c decays),
  mini-isolation from nearby jets (cone 10 GeV/pT, 0.05-0.2) or, from b/c decays, drawn
  with the decay (:mod:`intccms.datagen.forcing`).
- Only muons and AK8 jets are simulated before the skim; the rest only for kept events.
- AK8 jets (pT > 170): 6 % pT resolution, mass from the merged decay plus a pT-dependent
  QCD component, ParticleNet TvsQCD from Beta distributions per merging class (QCD-like:
  Beta(0.3, 4.5) through the quantile drawn at generator level, so that a generator-level
  preselection can use it).
- PuppiMET: neutrinos plus jet and muon mismeasurement plus a 6 GeV + 0.6 sqrt(HT) spread.
- Triggers: HLT_Mu50 93 % on the plateau (turn-on at 50 GeV), HLT_TkMu50 mostly
  correlated (their OR ~ 95 %), HLT_IsoMu24 for isolated muons above 24 GeV.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import awkward as ak
import numpy as np
from numpy.typing import NDArray
from scipy.special import betaincinv, erf

from intccms.datagen import fourvec as fv
from intccms.datagen import jec
from intccms.datagen.eras import era_info
from intccms.datagen.truth import FAT_QCD, FAT_TOP, FAT_W, QCD_TAG, Truth

__all__ = [
    "COLLECTION_DTYPES", "EVENT_DTYPES", "MANTISSA_BITS", "SKIM_DESCRIPTION", "Reco", "passes_skim",
    "reduce_precision", "simulate", "to_columns",
]

F = NDArray[np.float64]
# NanoAOD-named columns of a block of events: numpy arrays, or awkward arrays for collections
Columns = dict[str, Any]
SKIM_MUON_PT = 50.0
SKIM_MUON_MINIISO = 2
SKIM_FATJET_PT = 400.0
SKIM_FATJET_TAG = 0.2
SKIM_DESCRIPTION = (
    f"a muon with pT > {SKIM_MUON_PT:g} GeV, |eta| < 2.4 and miniIsoId >= {SKIM_MUON_MINIISO}, "
    f"and an AK8 jet with pT > {SKIM_FATJET_PT:g} GeV and particleNet_TvsQCD > {SKIM_FATJET_TAG:g}"
)
_MAX_PU_JETS = 3


@dataclass
class Reco:
    """Padded reconstructed objects (columns = slots, ``*_ok`` = object exists)."""

    event: dict[str, F]
    jet: dict[str, F]
    jet_ok: NDArray[np.bool_]
    mu: dict[str, F]
    mu_ok: NDArray[np.bool_]
    fat: dict[str, F]
    fat_ok: NDArray[np.bool_]


def _pileup(rng: np.random.Generator, n: int, mean: float) -> tuple[F, NDArray[np.int64], F]:
    true_int = np.clip(rng.gamma(7.0, mean / 7.0, n), 0.0, 99.0)
    npu = rng.poisson(true_int)
    rho = np.maximum(0.0, 2.0 + 0.55 * npu + rng.normal(0.0, 1.5, n))
    return true_int, npu, rho


def _btag(rng: np.random.Generator, flav: NDArray[np.int64], pt: F) -> tuple[F, F]:
    """DeepJet and (correlated) DeepCSV b-tag scores per hadron flavour."""
    shape = flav.shape
    u = rng.random(shape)
    f_b = 0.80 - 0.12 * np.clip((pt - 200.0) / 800.0, 0.0, 1.0)
    high = np.where(flav == 5, u < f_b, np.where(flav == 4, u < 0.12, u < 0.008))
    a_hi = np.where(flav == 5, 5.0, np.where(flav == 4, 4.0, 3.0))
    b_hi = np.where(flav == 5, 0.6, np.where(flav == 4, 1.2, 1.5))
    a_lo = np.where(flav == 5, 0.7, np.where(flav == 4, 0.8, 0.45))
    b_lo = np.where(flav == 5, 4.0, np.where(flav == 4, 6.0, 22.0))
    a, b = np.where(high, a_hi, a_lo), np.where(high, b_hi, b_lo)
    deepjet = rng.beta(a, b)
    deepcsv = 0.7 * deepjet + 0.3 * rng.beta(a, b)
    return deepjet, deepcsv


def _muons(rng: np.random.Generator, truth: Truth, gen_ok: NDArray[np.bool_], tpt: F, teta: F,
           tphi: F) -> tuple[dict[str, F], NDArray[np.bool_]]:
    """Reconstructed muons; prompt ones are isolated unless a generator jet is close by."""
    mpt, meta, mphi, _ = fv.to_ptetaphim(truth.mu_p4)
    mres = np.minimum(0.01 + 4e-5 * mpt, 0.1)
    mu_pt = mpt * np.maximum(0.1, 1.0 + mres * rng.standard_normal(mpt.shape))
    mu_ok = truth.mu_valid & (mu_pt > 3.0) & (np.abs(meta) < 2.4) & (rng.random(mpt.shape) < 0.99)
    prompt = truth.mu_prompt
    tight = rng.random(mpt.shape) < np.where(prompt, 0.975, 0.92)
    # nearest hard jet: hadronic activity around a prompt muon
    dr = fv.delta_r(meta[:, :, None], mphi[:, :, None], teta[:, None, :], tphi[:, None, :])
    dr = np.where(gen_ok[:, None, :], dr, np.inf)
    nearest = np.argmin(dr, axis=2)
    dr_min = np.take_along_axis(dr, nearest[..., None], axis=2)[..., 0]
    jet_near = np.take_along_axis(tpt, nearest, axis=1)
    mpt_safe = np.maximum(mpt, 1.0)
    r_mini = np.clip(10.0 / mpt_safe, 0.05, 0.2)
    ratio = jet_near / mpt_safe
    iso_mini_p = rng.exponential(0.015, mpt.shape) + np.where(dr_min < r_mini, ratio * rng.uniform(0.3, 1.0, mpt.shape), 0.0)
    iso_04_p = rng.exponential(0.02, mpt.shape) + np.where(dr_min < 0.4, ratio * rng.uniform(0.3, 1.0, mpt.shape), 0.0)
    # the rest of the B/D hadron decay is collinear with the muon, inside even the smallest
    # mini-isolation cone: only muons carrying most of the hadron's momentum are isolated
    # (their mini-isolation is drawn with the decay, see intccms.datagen.forcing)
    iso_04_np = truth.mu_activity * rng.uniform(0.5, 1.2, mpt.shape)
    mini = np.where(prompt, iso_mini_p, truth.mu_mini)
    rel04 = np.where(prompt, iso_04_p, iso_04_np)
    mini_id = (mini < 0.4).astype(np.uint8) + (mini < 0.2) + (mini < 0.1) + (mini < 0.05)
    mus = {"pt": mu_pt, "eta": meta, "phi": mphi, "mass": np.full(mpt.shape, 0.10566),
           "charge": truth.mu_charge, "tightId": tight, "miniIsoId": mini_id,
           "pfRelIso04_all": rel04}
    return mus, mu_ok


def _fat_jets(rng: np.random.Generator, truth: Truth) -> tuple[dict[str, F], NDArray[np.bool_]]:
    """AK8 jets: pT and mass resolution, ParticleNet TvsQCD per merging class."""
    fpt_t, feta, fphi, fm_t = fv.to_ptetaphim(truth.fat_p4)
    fpt = fpt_t * np.maximum(0.1, 1.0 + 0.06 * rng.standard_normal(fpt_t.shape))
    fmass = np.sqrt((fm_t * rng.normal(1.0, 0.08, fm_t.shape)) ** 2
                    + (fpt * rng.lognormal(np.log(0.08), 0.4, fpt.shape)) ** 2)
    code, valid = truth.fat_code, truth.fat_valid
    tvsqcd = np.zeros(fpt.shape)
    qcd = valid & (code == FAT_QCD)  # score from the quantile drawn with the candidate
    tvsqcd[qcd] = betaincinv(*QCD_TAG, truth.fat_tag_u[qcd])
    other = valid & (code != FAT_QCD)
    merged_top = code[other] == FAT_TOP
    is_w = code[other] == FAT_W
    top_like = rng.random(merged_top.shape) < 0.85
    ta = np.where(merged_top, np.where(top_like, 6.0, 1.5), np.where(is_w, 1.2, 1.0))
    tb = np.where(merged_top, np.where(top_like, 1.0, 2.0), np.where(is_w, 3.5, 1.0))
    tvsqcd[other] = rng.beta(ta, tb)
    fat_ok = truth.fat_valid & (fpt > 170.0)
    return {"pt": fpt, "eta": feta, "phi": fphi, "mass": fmass, "particleNet_TvsQCD": tvsqcd}, fat_ok


def _skim_mask(mu: dict[str, F], mu_ok: NDArray[np.bool_], fat: dict[str, F],
               fat_ok: NDArray[np.bool_]) -> NDArray[np.bool_]:
    mu_pass = mu_ok & (mu["pt"] > SKIM_MUON_PT) & (mu["miniIsoId"] >= SKIM_MUON_MINIISO)
    fat_pass = fat_ok & (fat["pt"] > SKIM_FATJET_PT) & (fat["particleNet_TvsQCD"] > SKIM_FATJET_TAG)
    return np.any(mu_pass, axis=1) & np.any(fat_pass, axis=1)


def _rows(d: dict[str, F], idx: NDArray[np.int64]) -> dict[str, F]:
    return {k: v[idx] for k, v in d.items()}


def simulate(rng: np.random.Generator, truth: Truth, era: str, *,
             is_data: bool) -> tuple[Reco, NDArray[np.int64]]:
    """Apply the detector model to one block of generator-level events and keep the skimmed.

    Muons and AK8 jets (all the skim needs) are simulated for every event, the rest (AK4
    jets and their calibration, MET, triggers) only for the events passing the skim.

    Returns:
        tuple: the :class:`Reco` of the passing events and their indices in ``truth``.
    """
    info = era_info(era)
    n = truth.n
    true_int, npu, rho = _pileup(rng, n, info.pileup_mean_data if is_data else info.pileup_mean_mc)
    n_pu_jets = np.minimum(rng.poisson(0.03 * npu), _MAX_PU_JETS)
    pu_pt = 15.0 + rng.exponential(8.0, (n, _MAX_PU_JETS))
    pu_p4 = fv.from_ptetaphim(pu_pt, rng.uniform(-4.7, 4.7, pu_pt.shape),
                              rng.uniform(-np.pi, np.pi, pu_pt.shape), np.zeros(pu_pt.shape))
    p4 = np.concatenate([truth.jet_p4, pu_p4], axis=1)
    gen_ok = np.concatenate([truth.jet_valid, np.arange(_MAX_PU_JETS)[None, :] < n_pu_jets[:, None]], axis=1)
    tpt, teta, tphi, tm = fv.to_ptetaphim(p4)
    mus, mu_ok = _muons(rng, truth, gen_ok, tpt, teta, tphi)
    fats, fat_ok = _fat_jets(rng, truth)
    keep = np.flatnonzero(_skim_mask(mus, mu_ok, fats, fat_ok))

    # ---- only the events passing the skim from here on
    m = keep.size
    mus, mu_ok, fats, fat_ok = _rows(mus, keep), mu_ok[keep], _rows(fats, keep), fat_ok[keep]
    true_int, npu, rho = true_int[keep], npu[keep], rho[keep]
    p4, gen_ok = p4[keep], gen_ok[keep]
    tpt, teta, tphi, tm = tpt[keep], teta[keep], tphi[keep], tm[keep]
    flav = np.concatenate([truth.jet_flav[keep], np.zeros((m, _MAX_PU_JETS), np.int64)], axis=1)
    is_pu = np.concatenate([truth.jet_pileup[keep], np.ones((m, _MAX_PU_JETS), bool)], axis=1)

    # ---- AK4 jets (generator slots + pileup jets)
    tpt_safe = np.maximum(tpt, 1.0)
    sigma = np.sqrt((4.0 + 0.1 * np.sqrt(npu))[:, None] ** 2 / tpt_safe**2 + 0.9**2 / tpt_safe + 0.04**2)
    pt = tpt * np.maximum(0.05, 1.0 + sigma * rng.standard_normal(tpt.shape))
    eta = teta + rng.normal(0.0, 0.01, tpt.shape)
    phi = tphi + rng.normal(0.0, 0.01, tpt.shape)
    mass = np.sqrt(tm**2 + (pt * rng.lognormal(np.log(0.09), 0.35, tpt.shape)) ** 2)
    area = np.clip(rng.normal(0.50, 0.03, tpt.shape), 0.3, 0.7)
    scale = np.ones_like(pt) if is_data else rng.normal(1.01, 0.01, pt.shape)
    stored_pt, stored_mass = pt / scale, mass / scale
    raw_factor = np.zeros_like(pt)
    live = gen_ok & (stored_pt > 15.0)
    rho_j = np.broadcast_to(rho[:, None], pt.shape)[live]
    raw = jec.invert(pt[live], eta[live], area[live], rho_j, era)
    raw_factor[live] = 1.0 - raw / stored_pt[live]
    u = rng.random(pt.shape)
    good_frac = np.where(is_pu, 0.80, np.where(np.abs(eta) > 2.7, 0.93, 0.97))
    jet_id = np.where(u < good_frac, 6, np.where(u < good_frac + 0.02, 2, 0))
    deepjet, deepcsv = _btag(rng, flav, pt)
    fwd = np.abs(eta) > 2.5
    deepjet = np.where(fwd, rng.uniform(0.0, 0.02, pt.shape), deepjet)
    deepcsv = np.where(fwd, rng.uniform(0.0, 0.05, pt.shape), deepcsv)
    jet_ok = gen_ok & (stored_pt > 15.0) & (np.abs(eta) < 4.7)
    jets = {"pt": stored_pt, "eta": eta, "phi": phi, "mass": stored_mass, "rawFactor": raw_factor,
            "area": area, "jetId": jet_id, "btagDeepFlavB": deepjet, "btagDeepB": deepcsv}
    if not is_data:
        jets["hadronFlavour"] = flav
    reco_p4 = fv.from_ptetaphim(pt, eta, phi, mass)
    mismeasured = np.sum(np.where(gen_ok[..., None], p4[..., :2] - reco_p4[..., :2], 0.0), axis=1)
    ht = np.sum(np.where(jet_ok, pt, 0.0), axis=1)

    # ---- MET: neutrinos plus the mismeasurement of jets and muons
    mu_true, mu_valid = truth.mu_p4[keep], truth.mu_valid[keep]
    mu_p4_reco = fv.from_ptetaphim(mus["pt"], mus["eta"], mus["phi"], mus["mass"])
    mismeasured += np.sum(np.where(mu_valid[..., None], mu_true[..., :2] - mu_p4_reco[..., :2], 0.0), axis=1)
    met_xy = truth.nu_pxpy[keep] + mismeasured
    met_sigma = 6.0 + 0.6 * np.sqrt(ht)
    met_xy = met_xy + rng.standard_normal((m, 2)) * met_sigma[:, None]

    # ---- triggers: per-muon efficiencies combined per event
    mu_pt, tight, rel04 = mus["pt"], mus["tightId"], mus["pfRelIso04_all"]
    plateau = np.where(tight, 0.93, 0.85)
    p_mu50 = np.where(mu_ok, plateau * 0.5 * (1 + erf((mu_pt - 50.0) / (np.sqrt(2) * 2.0))), 0.0)
    p_ev = 1.0 - np.prod(1.0 - p_mu50, axis=1)
    p_iso = np.where(mu_ok & (rel04 < 0.15), 0.90 * 0.5 * (1 + erf((mu_pt - 24.0) / (np.sqrt(2) * 1.0))), 0.0)
    p_iso_ev = 1.0 - np.prod(1.0 - p_iso, axis=1)
    u1, u2, u3 = rng.random(m), rng.random(m), rng.random(m)
    fake = rng.random(m) < 1e-4
    hlt_mu50 = (u1 < p_ev) | fake
    hlt_tkmu50 = (u1 < 0.96 * p_ev) | ((u1 >= p_ev) & (u2 < 0.3 * p_ev)) | fake
    hlt_isomu24 = (u3 < p_iso_ev) | fake

    event = {"PuppiMET_pt": np.hypot(met_xy[:, 0], met_xy[:, 1]),
             "PuppiMET_phi": np.arctan2(met_xy[:, 1], met_xy[:, 0]),
             "fixedGridRhoFastjetAll": rho, "HLT_Mu50": hlt_mu50, "HLT_TkMu50": hlt_tkmu50,
             "HLT_IsoMu24": hlt_isomu24}
    if not is_data:
        event["Pileup_nTrueInt"] = true_int
    return Reco(event, jets, jet_ok, mus, mu_ok, fats, fat_ok), keep


def passes_skim(reco: Reco) -> NDArray[np.bool_]:
    """The production skim (see :data:`SKIM_DESCRIPTION`)."""
    return _skim_mask(reco.mu, reco.mu_ok, reco.fat, reco.fat_ok)


# NanoAODv9 types of the collection fields the generator writes (also used by other writers of
# NanoAOD-like inputs, e.g. the benchmarks').
COLLECTION_DTYPES: dict[str, dict[str, type[np.generic]]] = {
    "Jet": {"pt": np.float32, "eta": np.float32, "phi": np.float32, "mass": np.float32,
            "rawFactor": np.float32, "area": np.float32, "jetId": np.int32,
            "hadronFlavour": np.int32, "btagDeepFlavB": np.float32, "btagDeepB": np.float32},
    "Muon": {"pt": np.float32, "eta": np.float32, "phi": np.float32, "mass": np.float32,
             "charge": np.int32, "tightId": np.bool_, "miniIsoId": np.uint8,
             "pfRelIso04_all": np.float32},
    "FatJet": {"pt": np.float32, "eta": np.float32, "phi": np.float32, "mass": np.float32,
               "particleNet_TvsQCD": np.float32},
}
# Mantissa bits NanoAODv9 keeps (its table producers' ``precision``; unlisted floats keep all
# 23), as found in UL NanoAOD files. Production rounds when it writes, after the skim decided.
MANTISSA_BITS = {
    "Muon_eta": 12, "Muon_phi": 12,
    "Jet_pt": 10, "Jet_eta": 12, "Jet_phi": 12, "Jet_mass": 10, "Jet_rawFactor": 6,
    "Jet_area": 10, "Jet_btagDeepFlavB": 10, "Jet_btagDeepB": 10,
    "FatJet_eta": 12, "FatJet_phi": 12, "FatJet_particleNet_TvsQCD": 10,
    "PuppiMET_phi": 12,
}


def reduce_precision(values: NDArray[Any], bits: int) -> NDArray[np.float32]:
    """Round float32 values to ``bits`` mantissa bits, as NanoAOD's writer does (inf/nan kept)."""
    ints = np.ascontiguousarray(values, dtype=np.float32).view(np.uint32)
    shift = 23 - bits
    rounded = (ints + np.uint32(1 << (shift - 1))) & np.uint32((0xFFFFFFFF >> shift) << shift)
    special = (ints & np.uint32(0x7F800000)) == np.uint32(0x7F800000)
    return np.where(special, ints, rounded).view(np.float32)


def _stored(branch: str, values: NDArray[np.generic]) -> NDArray[np.generic]:
    bits = MANTISSA_BITS.get(branch)
    return values if bits is None else reduce_precision(values, bits)


EVENT_DTYPES: dict[str, type[np.generic]] = {"PuppiMET_pt": np.float32, "PuppiMET_phi": np.float32,
                "fixedGridRhoFastjetAll": np.float32, "Pileup_nTrueInt": np.float32,
                "HLT_Mu50": np.bool_, "HLT_TkMu50": np.bool_, "HLT_IsoMu24": np.bool_}


def _collection(name: str, fields: dict[str, F], ok: NDArray[np.bool_], idx: NDArray[np.int64]) -> ak.Array:
    """Rows ``idx`` as a jagged record array sorted by pT (descending) like NanoAOD."""
    ok = ok[idx]
    order = np.argsort(np.where(ok, -fields["pt"][idx], np.inf), axis=1, kind="stable")
    ok_sorted = np.take_along_axis(ok, order, axis=1)
    counts = ok_sorted.sum(axis=1)
    columns = {}
    for key, dtype in COLLECTION_DTYPES[name].items():
        if key not in fields:
            continue
        values = np.take_along_axis(fields[key][idx], order, axis=1)[ok_sorted]
        columns[key] = ak.unflatten(_stored(f"{name}_{key}", values.astype(dtype)), counts)
    return ak.zip(columns)


def to_columns(reco: Reco, idx: NDArray[np.int64]) -> Columns:
    """Selected events as NanoAOD-named, NanoAOD-typed columns (collections as records)."""
    out: Columns = {k: _stored(k, v[idx].astype(EVENT_DTYPES[k])) for k, v in reco.event.items()}
    out["Muon"] = _collection("Muon", reco.mu, reco.mu_ok, idx)
    out["Jet"] = _collection("Jet", reco.jet, reco.jet_ok, idx)
    out["FatJet"] = _collection("FatJet", reco.fat, reco.fat_ok, idx)
    return out

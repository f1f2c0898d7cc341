"""Object definitions of the reference analysis (ANALYSIS.md, "Selection")."""

from __future__ import annotations

import awkward as ak
import numpy as np

from intccms.physics.jagged import flat_view, of_same_arrays, select_objects


def select_muons(
    muons: ak.Array,
    *,
    pt_min: float = 55.0,
    eta_max: float = 2.4,
    tight_id: bool = True,
    min_mini_iso_id: int = 2,
) -> ak.Array:
    """Muons passing pT, |eta|, tight ID and mini-isolation (``miniIsoId >= 2``: loose or tighter)."""
    flat = flat_view(muons)
    if flat is not None:
        f = flat.fields
        flags = (f["pt"] > pt_min) & (np.abs(f["eta"]) < eta_max) & (f["miniIsoId"] >= min_mini_iso_id)
        if tight_id:
            flags &= f["tightId"].astype(bool)
        return select_objects(flat, flags)
    keep = (muons.pt > pt_min) & (np.abs(muons.eta) < eta_max) & (muons.miniIsoId >= min_mini_iso_id)
    if tight_id:
        keep = keep & muons.tightId
    return muons[keep]


def select_jets(
    jets: ak.Array,
    *,
    pt_min: float = 30.0,
    eta_max: float = 2.5,
    min_jet_id: int = 4,
) -> ak.Array:
    """AK4 jets passing ID, |eta| and pT on the (corrected, possibly varied) pT, sorted by that pT.

    ``jetId >= 4`` is the tight-lepton-veto bit in UL NanoAOD (values 0, 2, 6). Sorting is
    required because a correction or a JES variation can change the pT order.
    """
    flat = flat_view(jets)
    if flat is not None:
        f = flat.fields
        quality = of_same_arrays(("jet quality", min_jet_id, eta_max), (np.asarray(f["jetId"]), np.asarray(f["eta"])),
                                 lambda jet_id, eta: (jet_id >= min_jet_id) & (np.abs(eta) < eta_max))
        return select_objects(flat, quality & (f["pt"] > pt_min), sort_by="pt")
    keep = (jets.jetId >= min_jet_id) & (np.abs(jets.eta) < eta_max) & (jets.pt > pt_min)
    selected = jets[keep]
    return selected[ak.argsort(selected.pt, axis=1, ascending=False)]


def select_fatjets(fatjets: ak.Array, *, pt_min: float = 500.0, min_tvsqcd: float = 0.5) -> ak.Array:
    """AK8 jets as stored (no correction, no eta cut) with pT and ParticleNet top-tag cuts."""
    flat = flat_view(fatjets)
    if flat is not None:
        f = flat.fields
        return select_objects(flat, (f["pt"] > pt_min) & (f["particleNet_TvsQCD"] > min_tvsqcd))
    keep = (fatjets.pt > pt_min) & (fatjets.particleNet_TvsQCD > min_tvsqcd)
    return fatjets[keep]

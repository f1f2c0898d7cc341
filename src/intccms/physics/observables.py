"""Observables. Each is evaluated on the events of a channel and returns one value per event."""

from __future__ import annotations

from collections.abc import Mapping

import awkward as ak
import numpy as np

from intccms.physics import compiled
from intccms.physics.jagged import (
    TakenFields,
    field_function,
    leading_fields,
    leading_objects,
    of_parent,
    of_source,
    per_event,
    record_fields,
)

_P4 = ("pt", "eta", "phi", "mass")


def _four_vector(pt: np.ndarray, eta: np.ndarray, phi: np.ndarray, mass: np.ndarray) -> np.ndarray:
    return _from_angles(pt, np.cos(phi), np.sin(phi), np.sinh(eta), mass)


def _from_angles(pt: np.ndarray, cos_phi: np.ndarray, sin_phi: np.ndarray, sinh_eta: np.ndarray,
                 mass: np.ndarray) -> np.ndarray:
    """Energy, px, py, pz from pT, the angles' functions and the mass."""
    px = pt * cos_phi
    py = pt * sin_phi
    pz = pt * sinh_eta
    energy = np.sqrt(px * px + py * py + pz * pz + mass * mass)
    return np.stack([energy, px, py, pz])


def _muon_p4(muons: ak.Array) -> np.ndarray:
    return _four_vector(**leading_fields(muons, _P4, "muon"))


def _fatjet_p4(fatjets: ak.Array) -> np.ndarray:
    return _four_vector(**leading_fields(fatjets, _P4, "fat jet"))


def _leading_jet_p4(jets: ak.Array, lead: Mapping[str, np.ndarray] | None) -> np.ndarray:
    """The leading jet's four-vector (``lead``: the leading jets' fields on flat jets, whose
    angles' functions come from the chunk's jets, computed once per chunk, :func:`field_function`),
    as ``_four_vector`` computes it."""
    if lead is None:
        return _four_vector(**leading_fields(jets, _P4, "jet"))
    return _from_angles(np.asarray(lead["pt"], dtype=np.float64), field_function(np.cos, lead, "phi"),
                        field_function(np.sin, lead, "phi"), field_function(np.sinh, lead, "eta"),
                        np.asarray(lead["mass"], dtype=np.float64))


def _met_p3(met: ak.Array) -> np.ndarray:
    """MET as a massless transverse four-vector: energy, px, py."""
    m = record_fields(met, ("pt", "phi"))
    px = m["pt"] * np.cos(m["phi"])
    py = m["pt"] * np.sin(m["phi"])
    return np.stack([np.sqrt(px * px + py * py), px, py])


def mtt(muons: ak.Array, fatjets: ak.Array, jets: ak.Array, met: ak.Array) -> np.ndarray:
    """Reconstructed tt̄ mass: muon + fat jet + leading jet + MET (eta = 0, m = 0).

    The leading jet uses the corrected (and in a JES fill, varied) pT and mass; the fat jet is
    taken as stored. See ANALYSIS.md, "Observable mtt". The muon, fat-jet and MET parts are
    computed once per chunk where the fills take them from the same events (``per_event``), and
    summed with the leading jet's in one compiled pass where the process has the kernels.
    """
    lead = leading_objects(jets, "jet")  # raises for an event without a jet, in both tiers
    fast = _mtt_compiled(muons, fatjets, lead, met)
    if fast is not None:
        return fast
    total = per_event(_muon_p4, muons)
    total += per_event(_fatjet_p4, fatjets)
    total += _leading_jet_p4(jets, lead)
    met_p3 = per_event(_met_p3, met)
    total[0] += met_p3[0]
    total[1] += met_p3[1]
    total[2] += met_p3[2]
    m2 = total[0] ** 2 - total[1] ** 2 - total[2] ** 2 - total[3] ** 2
    return np.sqrt(np.maximum(m2, 0.0))


def _mtt_compiled(muons: ak.Array, fatjets: ak.Array, lead: Mapping[str, np.ndarray] | None, met: ak.Array,
                  ) -> np.ndarray | None:
    """mtt through the kernel where the kernels are loaded, the muon, fat-jet and MET parts come
    from the same parent events and the leading jets' fields from their collection, as float64
    (``None`` otherwise: the numpy code then)."""
    kernels = compiled.kernels()
    if kernels is None or not isinstance(lead, TakenFields):
        return None
    parts = [of_parent(func, value) for func, value in ((_muon_p4, muons), (_fatjet_p4, fatjets), (_met_p3, met))]
    if any(part is None for part in parts):
        return None
    (muon, mask), (fatjet, fat_mask), (met_p3, met_mask) = parts  # type: ignore[misc]
    source, rows = lead.source, lead.rows
    pt, mass = source.get("pt"), source.get("mass")
    arrays = ((muon, 2), (fatjet, 2), (met_p3, 2), (pt, 1), (mass, 1))
    if (any(not isinstance(a, np.ndarray) or a.dtype != np.float64 or a.ndim != ndim for a, ndim in arrays)
            or rows.dtype != np.int64 or muon.shape[0] != 4 or fatjet.shape[0] != 4 or met_p3.shape[0] != 3
            or not (np.array_equal(mask, fat_mask) and np.array_equal(mask, met_mask))):
        return None
    return kernels.mtt(muon, fatjet, met_p3, np.flatnonzero(mask), rows, pt, mass, of_source(np.cos, lead, "phi"),
                       of_source(np.sin, lead, "phi"), of_source(np.sinh, lead, "eta"))


def leading_pt(objects: ak.Array) -> np.ndarray:
    """pT of the leading object."""
    return leading_fields(objects, ("pt",), "object")["pt"]

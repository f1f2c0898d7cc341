"""Observables. Each is evaluated on the events of a channel and returns one value per event."""

from __future__ import annotations

import awkward as ak
import numpy as np

from intccms.physics.jagged import (
    field_function,
    leading_fields,
    leading_objects,
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


def _leading_jet_p4(jets: ak.Array) -> np.ndarray:
    """The leading jet's four-vector; on flat jets the angles' functions come from the chunk's
    jets (computed once per chunk, :func:`field_function`), as ``_four_vector`` computes them."""
    lead = leading_objects(jets, "jet")
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
    computed once per chunk where the fills take them from the same events (``per_event``).
    """
    total = per_event(_muon_p4, muons)
    total += per_event(_fatjet_p4, fatjets)
    total += _leading_jet_p4(jets)
    met_p3 = per_event(_met_p3, met)
    total[0] += met_p3[0]
    total[1] += met_p3[1]
    total[2] += met_p3[2]
    m2 = total[0] ** 2 - total[1] ** 2 - total[2] ** 2 - total[3] ** 2
    return np.sqrt(np.maximum(m2, 0.0))


def leading_pt(objects: ak.Array) -> np.ndarray:
    """pT of the leading object."""
    return leading_fields(objects, ("pt",), "object")["pt"]

"""Observables. Each is evaluated on the events of a channel and returns one value per event."""

from __future__ import annotations

import awkward as ak
import numpy as np


def _leading(objects: ak.Array, name: str) -> ak.Array:
    lead = ak.firsts(objects, axis=1)
    if ak.any(ak.is_none(lead)):
        msg = f"observable needs a leading {name} in every event of the channel"
        raise ValueError(msg)
    return lead


def _four_vector(pt: np.ndarray, eta: np.ndarray, phi: np.ndarray, mass: np.ndarray) -> np.ndarray:
    px = pt * np.cos(phi)
    py = pt * np.sin(phi)
    pz = pt * np.sinh(eta)
    energy = np.sqrt(px * px + py * py + pz * pz + mass * mass)
    return np.stack([energy, px, py, pz])


def _flat(values: ak.Array) -> np.ndarray:
    return np.asarray(ak.to_numpy(values), dtype=np.float64)


def mtt(muons: ak.Array, fatjets: ak.Array, jets: ak.Array, met: ak.Array) -> np.ndarray:
    """Reconstructed tt̄ mass: muon + fat jet + leading jet + MET (eta = 0, m = 0).

    The leading jet uses the corrected (and in a JES fill, varied) pT and mass; the fat jet is
    taken as stored. See ANALYSIS.md, "Observable mtt".
    """
    mu = _leading(muons, "muon")
    fj = _leading(fatjets, "fat jet")
    jet = _leading(jets, "jet")
    total = _four_vector(_flat(mu.pt), _flat(mu.eta), _flat(mu.phi), _flat(mu.mass))
    total += _four_vector(_flat(fj.pt), _flat(fj.eta), _flat(fj.phi), _flat(fj.mass))
    total += _four_vector(_flat(jet.pt), _flat(jet.eta), _flat(jet.phi), _flat(jet.mass))
    met_pt = _flat(met.pt)
    zeros = np.zeros_like(met_pt)
    total += _four_vector(met_pt, zeros, _flat(met.phi), zeros)
    m2 = total[0] ** 2 - total[1] ** 2 - total[2] ** 2 - total[3] ** 2
    return np.sqrt(np.maximum(m2, 0.0))


def leading_pt(objects: ak.Array) -> np.ndarray:
    """pT of the leading object."""
    return _flat(_leading(objects, "object").pt)

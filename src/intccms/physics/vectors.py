"""Observables written with coffea's four-vectors, for functors configured with ``behaviour:``.

They compute what :mod:`intccms.physics.observables` computes on plain records (the tests hold
them to the same numbers) and show how a user's function reads with behaviours: sums of
candidates, ``.mass``, ``.delta_r``. Each works with ``behaviour: vector``, ``candidate`` or
``nanoevents``.
"""

from __future__ import annotations

from typing import Any

import awkward as ak
import numpy as np


def _leading(objects: Any, what: str) -> Any:  # noqa: ANN401
    """The first object of every event; every event must have one."""
    if ak.any(ak.num(objects, axis=1) == 0):
        msg = f"observable needs a leading {what} in every event of the channel"
        raise ValueError(msg)
    return objects[:, 0]


def met_four_vector(met: Any, like: Any) -> Any:  # noqa: ANN401
    """MET as a massless four-vector at eta = 0, of the same coffea kind as ``like`` (a candidate
    when ``like`` is one: coffea adds candidates only to candidates)."""
    # coffea takes ~2 s to import: only functions that ask for behaviours load it
    from coffea.nanoevents.methods import candidate

    zeros = ak.zeros_like(met.pt)
    fields = {"pt": met.pt, "eta": zeros, "phi": met.phi, "mass": zeros}
    name = "PtEtaPhiMLorentzVector"
    if isinstance(like, candidate.CandidateArray):
        fields["charge"] = zeros
        name = "PtEtaPhiMCandidate"
    return ak.zip(fields, with_name=name, behavior=like.behavior)


def mtt(muons: Any, fatjets: Any, jets: Any, met: Any) -> np.ndarray:  # noqa: ANN401
    """Reconstructed tt̄ mass: leading muon + fat jet + jet + MET, as a sum of four-vectors."""
    muon = _leading(muons, "muon")
    total = muon + _leading(fatjets, "fat jet") + _leading(jets, "jet") + met_four_vector(met, muon)
    return np.asarray(ak.to_numpy(total.mass), dtype=np.float64)


def min_delta_r(muons: Any, jets: Any) -> np.ndarray:  # noqa: ANN401
    """ΔR between the leading muon and the closest jet (infinite in events without jets)."""
    distances = _leading(muons, "muon").delta_r(jets)
    return np.asarray(ak.to_numpy(ak.fill_none(ak.min(distances, axis=1), np.inf)), dtype=np.float64)

"""Event-level cuts. Each returns a boolean mask with one entry per event."""

from __future__ import annotations

from collections.abc import Sequence

import awkward as ak
import numpy as np

from intccms.physics.jagged import count_true, counts_of, field_at, flat_view, record_fields


def _as_mask(values: ak.Array) -> np.ndarray:
    return np.asarray(ak.to_numpy(values), dtype=bool)


def trigger_and_met(
    hlt: ak.Array, met: ak.Array, triggers: Sequence[str], *, met_min: float = 50.0
) -> np.ndarray:
    """The skim: any of the era's single-muon triggers fired and ``PuppiMET_pt > met_min``.

    Args:
        hlt: the ``HLT`` record (fields are path names without the ``HLT_`` prefix).
        met: the ``PuppiMET`` record.
        triggers: the era's trigger paths (2016 eras: ``Mu50`` or ``TkMu50``).
        met_min: MET threshold in GeV.
    """
    fired = np.zeros(len(met), dtype=bool)
    for path in triggers:
        if path not in ak.fields(hlt):
            msg = f"trigger HLT_{path} is not among the branches read ({sorted(ak.fields(hlt))})"
            raise KeyError(msg)
        fired |= _as_mask(hlt[path])
    return fired & _as_mask(met.pt > met_min)


def count_equal(objects: ak.Array, *, n: int) -> np.ndarray:
    """Exactly ``n`` objects."""
    return counts_of(objects) == n


def count_at_least(objects: ak.Array, *, n: int) -> np.ndarray:
    """At least ``n`` objects."""
    return counts_of(objects) >= n


def n_btagged_at_least(
    jets: ak.Array, working_point: float, *, n: int = 1, discriminant: str = "btagDeepFlavB"
) -> np.ndarray:
    """At least ``n`` jets whose b-tag discriminant exceeds the working point."""
    flat = flat_view(jets)
    if flat is not None:
        return count_true(flat, flat.fields[discriminant] > working_point) >= n
    return _as_mask(ak.sum(jets[discriminant] > working_point, axis=1) >= n)


def met_above(met: ak.Array, *, minimum: float) -> np.ndarray:
    """MET above a threshold (GeV)."""
    return record_fields(met, ("pt",))["pt"] > minimum


def lepton_met_sum_above(leptons: ak.Array, met: ak.Array, *, minimum: float) -> np.ndarray:
    """Scalar sum of the leading lepton pT and MET above a threshold (events without lepton fail)."""
    met_pt = record_fields(met, ("pt",))["pt"]
    flat = flat_view(leptons)
    if flat is not None:
        lead_pt = np.full(len(flat), -np.inf)
        has = flat.counts > 0
        lead_pt[has] = field_at(flat.fields, "pt", flat.offsets[:-1][has])
        return lead_pt + met_pt > minimum
    lead_pt = ak.fill_none(ak.firsts(leptons.pt, axis=1), -np.inf)
    return _as_mask(lead_pt + met_pt > minimum)

"""The synthetic jet energy correction model, shared by the generator and the JME file.

``L1FastJet`` subtracts pileup offset ``A (rho - r0) s (1 + l log(pT/15)) / pT``,
``L2Relative`` is ``p0 + p1 / (log10(pT)^2 + p2)`` (the shape of the real UL fits, falling
with pT), ``L3Absolute`` is 1. Parameters vary coarsely with |eta| and slightly per era.
The generator inverts the chain (bisection) to store ``rawFactor`` so that re-applying the
corrections to the raw pT reproduces the jet's calibrated pT. The same parameters are
written as TFormula strings into ``jet_jerc.json.gz``, so numpy and correctionlib agree.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

__all__ = ["ETA_EDGES", "L1_EXPR", "L2_EXPR", "era_params", "invert", "total_factor"]

F = NDArray[np.float64]

ETA_EDGES = [-5.191, -3.0, -2.5, -1.3, 0.0, 1.3, 2.5, 3.0, 5.191]
# |eta| classes of the eight bins above: forward, transition, endcap, barrel, mirrored
_CLASS = [3, 2, 1, 0, 0, 1, 2, 3]
_L1_SLOPE = [0.75, 0.85, 0.95, 1.00]
_L2_P0 = [1.02, 1.03, 1.05, 1.04]
_L2_P1 = [0.90, 1.10, 1.50, 1.20]
_ERA_SHIFT = {"2016preVFP": 0.0, "2016postVFP": 0.004, "2017": 0.008, "2018": 0.012}

# x = Rho, y = JetPt, z = JetA (the variable order of the real L1FastJet formulas)
L1_EXPR = "max(0.0001,1-(z*[1]*(x-[0])*(1+[2]*log(max(y,1.)/15.)))/max(y,1.))"
L2_EXPR = "max(0.0001,[0]+[1]/(pow(log10(max(min(x,6500.),10.)),2)+[2]))"


def era_params(era: str) -> tuple[list[list[float]], list[list[float]]]:
    """Per-eta-bin ``(L1, L2)`` parameter lists of ``era``."""
    shift = _ERA_SHIFT.get(era, 0.0)
    l1 = [[1.2, _L1_SLOPE[c] * (1 + shift), 0.1] for c in _CLASS]
    l2 = [[_L2_P0[c] + shift, _L2_P1[c], 1.5] for c in _CLASS]
    return l1, l2


def _bin_index(eta: F) -> NDArray[np.int64]:
    return np.clip(np.searchsorted(ETA_EDGES, eta, side="right") - 1, 0, len(ETA_EDGES) - 2)


def total_factor(raw_pt: F, eta: F, area: F, rho: F, era: str) -> F:
    """L1 x L2 x L3 factor for raw pT, evaluated like the correctionlib chain."""
    l1p, l2p = (np.asarray(p) for p in era_params(era))
    i = _bin_index(eta)
    r0, slope, lg = l1p[i, 0], l1p[i, 1], l1p[i, 2]
    y = np.maximum(raw_pt, 1.0)
    l1 = np.maximum(1e-4, 1 - (area * slope * (rho - r0) * (1 + lg * np.log(y / 15.0))) / y)
    pt1 = raw_pt * l1
    x = np.clip(pt1, 10.0, 6500.0)
    l2 = np.maximum(1e-4, l2p[i, 0] + l2p[i, 1] / (np.log10(x) ** 2 + l2p[i, 2]))
    return l1 * l2


def invert(pt: F, eta: F, area: F, rho: F, era: str, iterations: int = 6) -> F:
    """Raw pT whose corrected pT is ``pt`` (Newton steps on ``raw * factor(raw) = pt``).

    ``raw * factor(raw)`` is smooth and increasing, so a few steps from ``pt / 1.1`` reach
    float64 precision.
    """
    raw = pt / 1.1
    for _ in range(iterations):
        f0 = raw * total_factor(raw, eta, area, rho, era) - pt
        h = 1e-4 * raw
        f1 = (raw + h) * total_factor(raw + h, eta, area, rho, era) - pt
        slope = np.where(f1 != f0, (f1 - f0) / h, 1.0)
        raw = np.clip(raw - f0 / slope, 0.2 * pt, 3.0 * pt)
    return raw

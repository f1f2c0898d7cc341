"""Normalisation of simulation to the era's luminosity (ANALYSIS.md, "Event weights")."""

from __future__ import annotations


def normalisation_factor(xsec_pb: float, luminosity_pb: float, sum_genweight: float) -> float:
    """``σ × L / Σ genWeight``: multiplied by each event's ``genWeight`` gives its weight.

    Args:
        xsec_pb: cross-section in pb.
        luminosity_pb: the era's integrated luminosity in pb⁻¹.
        sum_genweight: sum of generator weights over every generated event of the sample
            (``genEventSumw`` of the ``Runs`` trees), not the number of events.

    Raises:
        ValueError: the sum of weights is not positive (the sample cannot be normalised).
    """
    if not sum_genweight > 0:
        msg = f"sum of generator weights must be positive to normalise, got {sum_genweight}"
        raise ValueError(msg)
    return xsec_pb * luminosity_pb / sum_genweight

"""Sampling mode: inspect N files per dataset and extrapolate to the full listing.

The files are a simple random sample without replacement (seeded, so a rerun inspects the same
files). A total over the listing is estimated as N_listed times the sample mean; its spread is
the standard error of that estimate, ``N * s / sqrt(n) * sqrt((N - n) / (N - 1))`` with the
finite-population correction (Cochran, *Sampling Techniques*, 3rd ed., eq. 2.12): zero when every
file is inspected.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


def choose_files(files: Sequence[str], n: int | None, seed: int) -> list[str]:
    """Files to inspect: all when ``n`` is ``None`` or covers the listing, else a seeded sample.

    The sample keeps the listing's order, so the first inspected file is stable.
    """
    if n is None or n >= len(files):
        return list(files)
    picked = set(random.Random(seed).sample(range(len(files)), n))
    return [f for i, f in enumerate(files) if i in picked]


@dataclass(frozen=True)
class Estimate:
    """A total over the full listing with its standard error (``spread``).

    Attributes:
        total: estimated total over ``n_listed`` files.
        spread: standard error of ``total`` (0 when every file was inspected; ``None`` when
            one file of several was, so no spread can be estimated).
        n_sampled: files that contributed a value.
        n_listed: files in the listing.
    """

    total: float
    spread: float | None
    n_sampled: int
    n_listed: int

    @property
    def relative_spread(self) -> float:
        """``spread / total`` (0 for a zero total)."""
        if self.spread is None:
            return math.nan
        return self.spread / self.total if self.total else 0.0

    def to_dict(self) -> dict[str, float | None]:
        """Plain numbers for JSON."""
        return {"total": self.total, "spread": self.spread, "n_sampled": self.n_sampled,
                "n_listed": self.n_listed}


def extrapolate(values: Sequence[float], n_listed: int) -> Estimate:
    """Estimate the listing's total from per-file values of a random sample.

    Args:
        values: the value of each inspected (readable) file.
        n_listed: files in the full listing (readable or not).

    Returns:
        The estimate; with no value at all, a zero total and zero spread.
    """
    n = len(values)
    if n == 0:
        return Estimate(0.0, 0.0, 0, n_listed)
    mean = sum(values) / n
    total = mean * n_listed
    if n >= n_listed or n < 2:
        spread = 0.0 if n >= n_listed else None
        return Estimate(total, spread, n, n_listed)
    var = sum((v - mean) ** 2 for v in values) / (n - 1)
    fpc = (n_listed - n) / (n_listed - 1)
    return Estimate(total, n_listed * math.sqrt(var / n) * math.sqrt(fpc), n, n_listed)


@dataclass(frozen=True)
class Distribution:
    """Summary of per-file values: count, min, quartiles, max, mean, standard deviation."""

    count: int
    minimum: float
    q1: float
    median: float
    q3: float
    maximum: float
    mean: float
    std: float

    @classmethod
    def of(cls, values: Sequence[float]) -> Distribution:
        """Summary of ``values`` (all zeros when empty)."""
        if not values:
            return cls(0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0)

        arr = np.asarray(values, dtype=float)
        q1, med, q3 = (float(x) for x in np.percentile(arr, [25, 50, 75]))
        std = float(arr.std(ddof=1)) if len(arr) > 1 else 0.0
        return cls(len(arr), float(arr.min()), q1, med, q3, float(arr.max()), float(arr.mean()), std)

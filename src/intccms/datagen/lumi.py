"""Synthetic certification (golden JSON) and run/lumi-section assignment for data.

Each calendar year gets a fixed list of runs inside the real run ranges of its eras, each
with a few certified lumi-section ranges separated by small uncertified gaps, like the real
``Cert_*`` files. Data events are spread uniformly over certified lumi sections; a small
fraction (:data:`OUT_OF_JSON_FRACTION`) is put into uncertified gaps or after the last
certified section, so that a lumi mask has something to remove. The golden JSON is a pure
function of the year, so files written by different processes agree.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from intccms.datagen.eras import ERAS, era_info

__all__ = ["OUT_OF_JSON_FRACTION", "golden_json", "sample_run_lumi", "write_golden_json"]

OUT_OF_JSON_FRACTION = 0.01
_RUNS_PER_ERA = 40


@dataclass(frozen=True)
class _RunTable:
    """Certified lumi sections of one era, flattened for sampling."""

    runs: NDArray[np.uint32]  # one entry per certified lumi section
    lumis: NDArray[np.uint32]
    bad_runs: NDArray[np.uint32]  # one entry per uncertified lumi section
    bad_lumis: NDArray[np.uint32]


@cache
def _era_ranges(era: str) -> dict[int, list[list[int]]]:
    """Certified ranges of one era's runs, deterministic in the era name."""
    info = era_info(era)
    seed = int.from_bytes(era.encode(), "little") % (2**32)
    rng = np.random.default_rng(seed)
    lo, hi = info.run_range
    runs = np.sort(rng.choice(np.arange(lo, hi + 1), size=_RUNS_PER_ERA, replace=False))
    out: dict[int, list[list[int]]] = {}
    for run in runs:
        n_ls = int(rng.integers(80, 900))
        n_ranges = int(rng.integers(1, 4))
        cuts = np.sort(rng.choice(np.arange(10, n_ls - 10), size=n_ranges - 1, replace=False))
        ranges: list[list[int]] = []
        start = 1
        for cut in cuts:
            gap = int(rng.integers(2, 8))
            if cut < start or cut + gap + 1 >= n_ls:
                continue
            ranges.append([start, int(cut)])
            start = int(cut) + gap + 1
        ranges.append([start, n_ls])
        out[int(run)] = ranges
    return out


def golden_json(era: str) -> dict[str, list[list[int]]]:
    """The certification of ``era``'s calendar year (both 2016 eras share one).

    Args:
        era (str): era name.

    Returns:
        dict[str, list[list[int]]]: CMS golden-JSON content ``{"run": [[from, to], ...]}``.
    """
    year = era_info(era).year
    merged: dict[int, list[list[int]]] = {}
    for name, info in ERAS.items():
        if info.year == year:
            merged.update(_era_ranges(name))
    return {str(run): merged[run] for run in sorted(merged)}


@cache
def _table(era: str) -> _RunTable:
    runs, lumis, bad_runs, bad_lumis = [], [], [], []
    for run, ranges in _era_ranges(era).items():
        for a, b in ranges:
            runs.append(np.full(b - a + 1, run))
            lumis.append(np.arange(a, b + 1))
        certified = np.concatenate([np.arange(a, b + 1) for a, b in ranges])
        last = ranges[-1][1]
        # gaps between certified ranges plus a tail after the last certified section
        everything = np.arange(1, last + 20)
        bad = np.setdiff1d(everything, certified)
        bad_runs.append(np.full(bad.size, run))
        bad_lumis.append(bad)
    return _RunTable(
        np.concatenate(runs).astype(np.uint32),
        np.concatenate(lumis).astype(np.uint32),
        np.concatenate(bad_runs).astype(np.uint32),
        np.concatenate(bad_lumis).astype(np.uint32),
    )


def sample_run_lumi(
    rng: np.random.Generator, era: str, n: int
) -> tuple[NDArray[np.uint32], NDArray[np.uint32]]:
    """Draw ``(run, luminosityBlock)`` for ``n`` data events of ``era``.

    Args:
        rng (numpy.random.Generator): random source.
        era (str): era name.
        n (int): number of events.

    Returns:
        tuple[ndarray, ndarray]: uint32 run and lumi-section numbers.
    """
    table = _table(era)
    outside = rng.random(n) < OUT_OF_JSON_FRACTION
    good = rng.integers(0, table.runs.size, n)
    bad = rng.integers(0, table.bad_runs.size, n)
    run = np.where(outside, table.bad_runs[bad], table.runs[good])
    lumi = np.where(outside, table.bad_lumis[bad], table.lumis[good])
    return run.astype(np.uint32), lumi.astype(np.uint32)


def write_golden_json(path: str | os.PathLike[str], era: str) -> Path:
    """Write the synthetic golden JSON of ``era`` (atomically).

    Args:
        path (str | PathLike): destination file.
        era (str): era name; 2016preVFP and 2016postVFP give the same 2016 file.

    Returns:
        Path: the written file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(golden_json(era), indent=1)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w") as handle:
        handle.write(text + "\n")
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)
    return path

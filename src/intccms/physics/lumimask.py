"""Golden-JSON lumi mask for data, loaded once per process.

The certified ``(run, luminosity block)`` ranges become two sorted arrays of 64-bit keys
(``run << 32 | lumi``), and an event is certified when its key falls inside the range that
starts last before it: one ``searchsorted``. coffea's ``LumiMask`` gives the same answer (a
test compares them), but importing it compiles numba kernels, 5-8 s in every fresh worker
process before its first data chunk.
"""

from __future__ import annotations

import json
from functools import lru_cache

import awkward as ak
import numpy as np
from numpy.typing import NDArray

__all__ = ["GoldenJson", "in_golden_json"]


class GoldenJson:
    """The certified luminosity-block ranges of one golden JSON file."""

    def __init__(self, path: str) -> None:
        try:
            with open(path) as handle:
                doc = json.load(handle)
        except FileNotFoundError:
            msg = f"golden JSON {path} does not exist (check eras.<era>.golden_json)"
            raise FileNotFoundError(msg) from None
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            msg = f"golden JSON {path} is not valid JSON ({err}); expected {{run: [[first, last], ...]}}"
            raise ValueError(msg) from None
        try:
            ranges = sorted((int(run) << 32 | int(first), int(run) << 32 | int(last))
                            for run, blocks in doc.items() for first, last in blocks)
        except (TypeError, ValueError, AttributeError) as err:
            msg = f"golden JSON {path}: {err}; expected {{run: [[first, last], ...]}}"
            raise ValueError(msg) from None
        merged: list[list[int]] = []
        for start, stop in ranges:  # overlapping ranges would hide each other from the search
            if merged and start <= merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], stop)
            else:
                merged.append([start, stop])
        self.starts = np.array([r[0] for r in merged], dtype=np.uint64)
        self.stops = np.array([r[1] for r in merged], dtype=np.uint64)

    def __call__(self, runs: NDArray[np.integer], lumis: NDArray[np.integer]) -> NDArray[np.bool_]:
        keys = np.asarray(runs, dtype=np.uint64) << np.uint64(32) | np.asarray(lumis, dtype=np.uint64)
        index = np.searchsorted(self.starts, keys, side="right") - 1
        inside = index >= 0
        return inside & (keys <= self.stops[np.maximum(index, 0)]) if self.stops.size else inside


@lru_cache(maxsize=8)
def _mask(path: str) -> GoldenJson:
    return GoldenJson(path)


def in_golden_json(path: str, run: ak.Array, lumi_block: ak.Array) -> np.ndarray:
    """True for events whose (run, luminosityBlock) is certified in the golden JSON ``path``."""
    runs = np.asarray(ak.to_numpy(run), dtype=np.uint32)
    lumis = np.asarray(ak.to_numpy(lumi_block), dtype=np.uint32)
    return _mask(path)(runs, lumis)

"""Golden-JSON lumi mask for data, loaded once per process."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import awkward as ak
import numpy as np


@lru_cache(maxsize=8)
def _mask(path: str) -> Any:
    # Imported here: coffea's lumi tools take seconds to import, which only data chunks need.
    from coffea.lumi_tools import LumiMask

    try:
        return LumiMask(path)
    except FileNotFoundError:
        msg = f"golden JSON {path} does not exist (check eras.<era>.golden_json)"
        raise FileNotFoundError(msg) from None


def in_golden_json(path: str, run: ak.Array, lumi_block: ak.Array) -> np.ndarray:
    """True for events whose (run, luminosityBlock) is certified in the golden JSON ``path``."""
    runs = np.asarray(ak.to_numpy(run), dtype=np.uint32)
    lumis = np.asarray(ak.to_numpy(lumi_block), dtype=np.uint32)
    return np.asarray(_mask(path)(runs, lumis), dtype=bool)

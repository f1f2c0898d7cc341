"""Sums over the NanoAOD ``Runs`` tree (MC normalisation)."""

from __future__ import annotations

import numpy as np

from intccms.storage.formats.root import decoding, open_root
from intccms.storage.options import StorageOptions
from intccms.storage.schemes import backend_for

_COUNT = ("genEventCount", "genEventCount_")
_SUMW = ("genEventSumw", "genEventSumw_")


def read_runs_sums(url: str, options: StorageOptions | None = None) -> tuple[int, float] | None:
    """Return (sum genEventCount, sum genEventSumw) over every entry of the Runs tree.

    Args:
        url: NanoAOD ROOT file.
        options: Storage options.

    Returns:
        tuple | None: The sums, or ``None`` for data / files without a Runs tree or
        without ``genEventSumw``.
    """
    backend = backend_for(url, options)
    handle, _ = open_root(backend, url)
    with handle, backend.errors(url), decoding(url):
        if "Runs" not in {k.split(";")[0] for k in handle.keys(recursive=False)}:
            return None
        runs = handle["Runs"]
        names = set(runs.keys())
        sumw = next((n for n in _SUMW if n in names), None)
        count = next((n for n in _COUNT if n in names), None)
        if sumw is None:
            return None
        arrays = runs.arrays([n for n in (count, sumw) if n], library="np")
        total_count = int(np.sum(arrays[count])) if count else 0
        return total_count, float(np.sum(arrays[sumw]))

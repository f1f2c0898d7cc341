"""Histogram accumulation, conversion to ``hist.Hist``, and the pickle and ROOT outputs.

Chunks return dense arrays ``[variation, bin (with flow), (Σw, Σw²)]`` per channel, observable
and process; the driver adds them as they arrive. At the end they become ``hist.Hist`` objects
with axes process × variation × observable and ``Weight`` storage.
"""

from __future__ import annotations

import os
import pickle
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hist
import numpy as np


@dataclass(frozen=True)
class AxisSpec:
    """Uniform binning of an observable."""

    name: str
    bins: int
    start: float
    stop: float
    label: str = ""


@dataclass
class HistogramAccumulator:
    """Sums chunk results: ``(channel, observable) -> process -> array``."""

    variations: tuple[str, ...]
    axes: Mapping[str, AxisSpec]
    contents: dict[tuple[str, str], dict[str, np.ndarray]] = field(default_factory=dict)

    def add(self, process: str, hists: Mapping[tuple[str, str], np.ndarray]) -> None:
        for key, values in hists.items():
            per_process = self.contents.setdefault(key, {})
            if process in per_process:
                per_process[process] += values
            else:
                per_process[process] = values.copy()

    def to_hists(self, processes: Sequence[str]) -> dict[str, dict[str, hist.Hist]]:
        """``{channel: {observable: Hist(process, variation, observable)}}``."""
        out: dict[str, dict[str, hist.Hist]] = {}
        for (channel, obs), per_process in sorted(self.contents.items()):
            spec = self.axes[obs]
            h = hist.Hist(
                hist.axis.StrCategory(list(processes), name="process"),
                hist.axis.StrCategory(list(self.variations), name="variation"),
                hist.axis.Regular(spec.bins, spec.start, spec.stop, name=obs, label=spec.label),
                storage=hist.storage.Weight(),
            )
            view = h.view(flow=True)
            for p_index, process in enumerate(processes):
                values = per_process.get(process)
                if values is None:
                    continue
                view.value[p_index, : len(self.variations), :] = values[..., 0]
                view.variance[p_index, : len(self.variations), :] = values[..., 1]
            out.setdefault(channel, {})[obs] = h
        return out


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}-", suffix=".tmp")
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.replace(tmp, path)


def save_pickle(path: Path, hists: Mapping[str, Mapping[str, hist.Hist]], meta: Mapping[str, Any]) -> Path:
    """Pickle ``{"histograms": ..., "meta": ...}`` atomically."""
    _atomic_write_bytes(path, pickle.dumps({"histograms": hists, "meta": dict(meta)}, protocol=5))
    return path


def load_pickle(path: str | Path) -> dict[str, Any]:
    """Load a histogram pickle written by :func:`save_pickle` (local path or fsspec URL)."""
    import fsspec

    with fsspec.open(str(path), "rb") as handle:
        data = pickle.load(handle)
    if not isinstance(data, dict) or "histograms" not in data:
        msg = f"{path} is not an intccms histogram file (no 'histograms' key)"
        raise ValueError(msg)
    return data


def root_key(channel: str, observable: str, process: str, variation: str = "nominal") -> str:
    """ROOT key of one histogram: ``{channel}__{observable}__{process}[__{variation}]``."""
    base = f"{channel}__{observable}__{process}"
    return base if variation == "nominal" else f"{base}__{variation}"


def save_root(
    path: Path,
    hists: Mapping[str, Mapping[str, hist.Hist]],
    data_processes: Sequence[str] = ("data",),
) -> Path:
    """Write every (process, variation) slice as a TH1 with Σw² (data: nominal only)."""
    import uproot

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}-", suffix=".root")
    os.close(fd)
    with uproot.recreate(tmp) as out:
        for channel, per_obs in hists.items():
            for obs, h in per_obs.items():
                for process in h.axes["process"]:
                    for variation in h.axes["variation"]:
                        if process in data_processes and variation != "nominal":
                            continue
                        out[root_key(channel, obs, process, variation)] = h[
                            {"process": process, "variation": variation}
                        ]
    os.replace(tmp, path)
    return path

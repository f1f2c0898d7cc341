"""Histogram accumulation, conversion to ``hist.Hist``, and the pickle and ROOT outputs.

Chunks return dense arrays ``[variation, bin (with flow), (Σw, Σw²)]`` per channel, observable
and process; the driver adds them as they arrive. At the end they become ``hist.Hist`` objects
with axes process × variation × observable and ``Weight`` storage.

Simulation is filled un-normalised (``norm = 1``) and grouped by file
(:class:`FileGroupedAccumulator`): a file counts only once all its chunks are in, so with
``skip_bad_files`` a file with one bad chunk is dropped whole, and ``σ·L/Σw`` is applied per
dataset at the end with the Σw of the files actually kept (ANALYSIS.md, "Event weights").
"""

from __future__ import annotations

import os
import pickle
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import fsspec
import hist
import numpy as np
import uproot


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

    def to_hists(self, processes: Sequence[str]) -> dict[str, dict[str, hist.Hist[Any]]]:
        """``{channel: {observable: Hist(process, variation, observable)}}``."""
        out: dict[str, dict[str, hist.Hist[Any]]] = {}
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


Hists = dict[tuple[str, str], np.ndarray]


def scaled(values: np.ndarray, norm: float) -> np.ndarray:
    """A copy of ``[..., (Σw, Σw²)]`` for weights multiplied by ``norm``: Σw·norm, Σw²·norm²."""
    out = np.array(values, dtype=np.float64, copy=True)
    out[..., 0] *= norm
    out[..., 1] *= norm * norm
    return out


def _add_into(target: Hists, hists: Mapping[tuple[str, str], np.ndarray]) -> None:
    for key, values in hists.items():
        if key in target:
            target[key] += values
        else:
            target[key] = np.array(values, dtype=np.float64, copy=True)


@dataclass
class FileGroupedAccumulator:
    """Un-normalised sums per dataset, merged one complete file at a time, in plan order.

    Every file's chunk count is declared first (:meth:`expect`), in the order of the plan. A
    file's chunks are held apart only while the file is in progress; when the last one is in,
    they are summed in plan order and the file joins the dataset's total once every file
    before it has. Floating-point sums then never depend on which chunk finished first, how
    many workers ran or which chunk was retried: the same inputs give the same histograms, bin
    for bin. A file with a failed chunk (:meth:`drop`) never joins: its other chunks, before or
    after the failure, are discarded, so the totals equal a run without it.

    Attributes:
        totals: dataset -> ``(channel, observable)`` -> un-normalised array.
        dropped: ``(dataset, file)`` of every file left out.
    """

    totals: dict[str, Hists] = field(default_factory=dict)
    dropped: set[tuple[str, str]] = field(default_factory=set)
    _outstanding: dict[tuple[str, str], int] = field(default_factory=dict)
    _pending: dict[tuple[str, str], dict[int, Mapping[tuple[str, str], np.ndarray]]] = field(default_factory=dict)
    _file_order: dict[str, list[str]] = field(default_factory=dict)
    _finished: dict[tuple[str, str], Hists | None] = field(default_factory=dict)
    _merged: dict[str, int] = field(default_factory=dict)
    _arrivals: int = 0

    def expect(self, dataset: str, file: str, chunks: int = 1) -> None:
        """Declare ``chunks`` more chunks of ``file`` (before any of them is added)."""
        key = (dataset, file)
        if key not in self._outstanding and key not in self._finished:
            self._file_order.setdefault(dataset, []).append(file)
        self._outstanding[key] = self._outstanding.get(key, 0) + chunks

    def add(self, dataset: str, file: str, hists: Mapping[tuple[str, str], np.ndarray],
            order: int | None = None) -> None:
        """One successful chunk of ``file`` (weights with ``norm = 1``); ``order`` is the
        chunk's position in the plan (default: arrival order)."""
        key = (dataset, file)
        self._arrivals += 1
        if key not in self.dropped:
            self._pending.setdefault(key, {})[self._arrivals if order is None else order] = hists
        self._settle(key)

    def drop(self, dataset: str, file: str) -> None:
        """A chunk of ``file`` failed: leave the whole file out."""
        key = (dataset, file)
        self.dropped.add(key)
        self._pending.pop(key, None)
        self._settle(key)

    @property
    def in_progress(self) -> int:
        """Files whose sums are held apart right now (the memory cost beyond the totals)."""
        return len(self._pending) + sum(v is not None for v in self._finished.values())

    def _settle(self, key: tuple[str, str]) -> None:
        left = self._outstanding.get(key, 0) - 1
        if left < 0:
            msg = f"more chunks reported for {key[1]} (dataset {key[0]}) than were expected"
            raise RuntimeError(msg)
        self._outstanding[key] = left
        if left:
            return
        del self._outstanding[key]
        chunks = self._pending.pop(key, None)
        file_sum: Hists | None = None
        if chunks is not None and key not in self.dropped:
            file_sum = {}
            for position in sorted(chunks):
                _add_into(file_sum, chunks[position])
        self._finished[key] = file_sum
        self._merge_in_order(key[0])

    def _merge_in_order(self, dataset: str) -> None:
        """Add finished files to the dataset's total in plan order, as far as none is missing."""
        order = self._file_order.get(dataset, [])
        i = self._merged.get(dataset, 0)
        while i < len(order) and (dataset, order[i]) in self._finished:
            done = self._finished.pop((dataset, order[i]))
            if done is not None:
                _add_into(self.totals.setdefault(dataset, {}), done)
            i += 1
        self._merged[dataset] = i

    def nominal_sum(self, dataset: str) -> float:
        """Σw of the nominal variation over every filled (channel, observable), un-normalised."""
        return sum(float(v[0, :, 0].sum()) for v in self.totals.get(dataset, {}).values())

    def normalised(
        self, norms: Mapping[str, float], processes: Mapping[str, str], variations: tuple[str, ...],
        axes: Mapping[str, AxisSpec],
    ) -> HistogramAccumulator:
        """The per-process sums with each dataset scaled by ``norms[dataset]``.

        Args:
            norms: dataset -> ``σ·L/Σw`` (1 for data).
            processes: dataset -> process.
            variations: the variation axis.
            axes: observable binning.

        Raises:
            RuntimeError: a file still has chunks outstanding (its results would be lost).
        """
        if self._outstanding:
            (dataset, file), left = next(iter(self._outstanding.items()))
            msg = (f"{len(self._outstanding)} file(s) still have chunks outstanding, e.g. {left} of "
                   f"{file} (dataset {dataset}); their histograms are incomplete")
            raise RuntimeError(msg)
        acc = HistogramAccumulator(variations=variations, axes=axes)
        for dataset, hists in sorted(self.totals.items()):
            norm = norms[dataset]
            acc.add(processes[dataset], {k: scaled(v, norm) for k, v in hists.items()})
        return acc


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}-", suffix=".tmp")
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.replace(tmp, path)


def save_pickle(path: Path, hists: Mapping[str, Mapping[str, hist.Hist[Any]]], meta: Mapping[str, Any]) -> Path:
    """Pickle ``{"histograms": ..., "meta": ...}`` atomically."""
    _atomic_write_bytes(path, pickle.dumps({"histograms": hists, "meta": dict(meta)}, protocol=5))
    return path


def load_pickle(path: str | Path) -> dict[str, Any]:
    """Load a histogram pickle written by :func:`save_pickle` (local path or fsspec URL)."""

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
    hists: Mapping[str, Mapping[str, hist.Hist[Any]]],
    data_processes: Sequence[str] = ("data",),
) -> Path:
    """Write every (process, variation) slice as a TH1 with Σw² (data: nominal only)."""

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

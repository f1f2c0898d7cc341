"""Reading histogram files of the analysis stage into plain numpy templates.

Both outputs of the analysis stage are supported, on local disk, S3 or XRootD: the pickle
(``{"histograms": {channel: {observable: hist.Hist}}, "meta": {...}}``) and the ROOT file
(keys ``{channel}__{observable}__{process}[__{variation}]``, read with uproot). Remote files
are fetched whole through :mod:`intccms.storage` (histogram files are small).
Everything downstream works on :class:`HistogramSet`, which is
cheap to pickle and therefore to scatter to Dask workers.
"""

from __future__ import annotations

import io
import pickle
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import uproot

from intccms.stats.errors import StatisticsInputError
from intccms.storage import StorageNotFoundError
from intccms.storage.schemes import backend_for
from intccms.storage.urls import local_path, scheme_of

NOMINAL = "nominal"


@dataclass
class Template:
    """Sum of weights and of squared weights per bin, including both flow bins."""

    values: np.ndarray
    variances: np.ndarray


@dataclass
class ObservableHistograms:
    """All processes and variations of one channel and observable."""

    edges: np.ndarray
    contents: dict[str, dict[str, Template]] = field(default_factory=dict)


@dataclass
class HistogramSet:
    """Histograms of one analysis run: ``histograms[channel][observable]`` and metadata."""

    histograms: dict[str, dict[str, ObservableHistograms]]
    meta: dict[str, Any]
    source: str = "<memory>"

    def get(self, channel: str, observable: str) -> ObservableHistograms:
        """The histograms of one channel and observable, or an error naming what exists."""
        if channel not in self.histograms:
            msg = (
                f"channel {channel!r} not in histograms from {self.source}; available: "
                f"{sorted(self.histograms)}. Fix statistics.input.channels."
            )
            raise StatisticsInputError(msg)
        per_obs = self.histograms[channel]
        if observable not in per_obs:
            msg = (
                f"observable {observable!r} not in channel {channel!r} of {self.source}; "
                f"available: {sorted(per_obs)}. Fix statistics.input.observable."
            )
            raise StatisticsInputError(msg)
        return per_obs[observable]


def _from_hist(h: Any, where: str) -> ObservableHistograms:
    """Convert a ``hist.Hist`` (process x variation x observable, Weight storage)."""
    names = [ax.name for ax in h.axes]
    if set(names[:2]) != {"process", "variation"} and "process" not in names:
        msg = f"histogram {where} has axes {names}; expected process, variation, observable"
        raise StatisticsInputError(msg)
    try:
        i_proc, i_var = names.index("process"), names.index("variation")
    except ValueError as err:
        msg = f"histogram {where} has axes {names}; expected process, variation, observable"
        raise StatisticsInputError(msg) from err
    i_obs = next(i for i in range(len(names)) if i not in (i_proc, i_var))
    view = h.view(flow=True)
    try:
        values, variances = np.asarray(view["value"]), np.asarray(view["variance"])
    except (IndexError, ValueError, KeyError) as err:
        msg = f"histogram {where} must use Weight() storage (sum of w and w^2)"
        raise StatisticsInputError(msg) from err
    values = np.transpose(values, (i_proc, i_var, i_obs))
    variances = np.transpose(variances, (i_proc, i_var, i_obs))
    obs_axis = h.axes[i_obs]
    nbins = len(obs_axis)
    # Keep exactly underflow + bins + overflow on the observable axis.
    lo = 1 if obs_axis.traits.underflow else 0
    out = ObservableHistograms(edges=np.asarray(obs_axis.edges, dtype=float))

    def _flow(arr: np.ndarray) -> np.ndarray:
        core = arr[lo : lo + nbins]
        under = arr[0] if obs_axis.traits.underflow else 0.0
        over = arr[lo + nbins] if obs_axis.traits.overflow else 0.0
        return np.concatenate([[under], core, [over]]).astype(float)

    for ip, proc in enumerate(h.axes[i_proc]):
        per_var: dict[str, Template] = {}
        for iv, var in enumerate(h.axes[i_var]):
            per_var[str(var)] = Template(_flow(values[ip, iv]), _flow(variances[ip, iv]))
        out.contents[str(proc)] = per_var
    return out


def _from_mapping(payload: Mapping[str, Any], source: str) -> HistogramSet:
    if "histograms" not in payload:
        msg = f"{source} holds no 'histograms' key (keys: {sorted(payload)}); not an analysis output"
        raise StatisticsInputError(msg)
    hists: dict[str, dict[str, ObservableHistograms]] = {}
    for channel, per_obs in payload["histograms"].items():
        hists[channel] = {}
        for obs, h in per_obs.items():
            if isinstance(h, ObservableHistograms):
                hists[channel][obs] = h
            else:
                hists[channel][obs] = _from_hist(h, f"{source}:{channel}/{obs}")
    return HistogramSet(hists, dict(payload.get("meta", {})), source)


def _from_root(file: Any, url: str) -> HistogramSet:

    hists: dict[str, dict[str, ObservableHistograms]] = {}
    with uproot.open(file) as f:
        meta: dict[str, Any] = {}
        for key in f.keys(cycle=False, recursive=False):
            parts = key.split("__")
            if len(parts) not in (3, 4):
                continue  # not a histogram of the analysis stage (e.g. metadata)
            channel, obs, proc = parts[:3]
            var = parts[3] if len(parts) == 4 else NOMINAL
            th1 = f[key]
            edges = np.asarray(th1.axis().edges(), dtype=float)
            obsh = hists.setdefault(channel, {}).setdefault(
                obs, ObservableHistograms(edges=edges)
            )
            values = np.asarray(th1.values(flow=True), dtype=float)
            variances = np.asarray(th1.variances(flow=True), dtype=float)
            obsh.contents.setdefault(proc, {})[var] = Template(values, variances)
    if not hists:
        msg = (
            f"{url} holds no histogram named '{{channel}}__{{observable}}__{{process}}'; "
            "is it an output of the analysis stage?"
        )
        raise StatisticsInputError(msg)
    return HistogramSet(hists, meta, url)


def _read_remote(url: str, options: Any) -> bytes:
    """The whole file at an ``s3://`` or ``root://`` URL, through the storage backends
    (their timeouts, retries and credentials; auth and unreachable errors name the server)."""

    try:
        return backend_for(url, options).read_bytes(url)
    except StorageNotFoundError as err:
        msg = f"histogram file {url} not found ({err}); check statistics.input.path"
        raise StatisticsInputError(msg) from err


def load_histograms(source: str | Mapping[str, Any] | HistogramSet,
                    options: Any = None) -> HistogramSet:
    """Load analysis histograms from a pickle/ROOT path or URL, or an in-memory dict.

    Args:
        source: a local path, ``file://``, ``s3://`` or ``root://`` URL ending in
            ``.pkl``/``.pickle`` or ``.root``, the unpickled dict itself, or an already
            loaded :class:`HistogramSet`.
        options: :class:`intccms.storage.StorageOptions` for remote URLs (endpoint,
            credentials, timeouts); None reads the ``INTCCMS_*`` environment.

    Returns:
        HistogramSet: the templates with metadata.
    """
    if isinstance(source, HistogramSet):
        return source
    if isinstance(source, Mapping):
        return _from_mapping(source, "<in-memory histograms>")

    url = str(source)
    remote = scheme_of(url) != "file"
    if url.endswith(".root"):
        try:
            return _from_root(io.BytesIO(_read_remote(url, options)) if remote else url, url)
        except FileNotFoundError as err:
            msg = f"histogram file {url} not found; check statistics.input.path"
            raise StatisticsInputError(msg) from err
    try:
        raw = _read_remote(url, options) if remote else Path(local_path(url)).read_bytes()
    except FileNotFoundError as err:
        msg = f"histogram file {url} not found; check the path or URL (statistics.input.path)"
        raise StatisticsInputError(msg) from err
    try:
        payload = pickle.loads(raw)
    except (pickle.UnpicklingError, EOFError) as err:
        msg = f"{url} is not a pickle of the analysis stage ({err}); use .root for ROOT files"
        raise StatisticsInputError(msg) from err
    if not isinstance(payload, Mapping):
        msg = f"{url} unpickles to {type(payload).__name__}, expected a dict with 'histograms'"
        raise StatisticsInputError(msg)
    return _from_mapping(payload, url)

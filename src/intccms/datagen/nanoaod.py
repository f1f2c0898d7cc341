"""Write NanoAODv9-like ROOT files: ``Events`` TTree (LZMA like UL NanoAOD) and ``Runs``.

Files are written with uproot ``mktree``/``extend`` in blocks (one basket per block), then
moved into place atomically, so a reader never sees a half-written file. MC ``Runs`` hold
``genEventCount`` and ``genEventSumw`` of the full sample the skimmed events come from
(see :mod:`intccms.datagen.stream`); data ``Runs`` hold ``run`` only, as in real data.
Collection counters (``nMuon``, ...) are uint32 like NanoAOD's; uproot writes int32
counters, so :func:`_uint32_counters` switches the counter type while the tree is declared.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import uproot
from uproot.writing import _cascadetree

from intccms.datagen.eras import era_info
from intccms.datagen.lumi import sample_run_lumi
from intccms.datagen.normalisation import mixture
from intccms.datagen.processes import MC_KINDS, resolve_process
from intccms.datagen.stream import BLOCK, SkimStream, concat_columns

__all__ = ["PROCESS_KINDS", "GeneratedFile", "ensure_generated", "generate_file", "read_runs", "write_nanoaod"]

PROCESS_KINDS = (*MC_KINDS, "data")
# Algorithm -> (uproot codec, production level: UL NanoAOD's LZMA 9; ZSTD 5).
_COMPRESSION: dict[str, tuple[Callable[[int], Any], int]] = {
    "lzma": (uproot.LZMA, 9),
    "zstd": (uproot.ZSTD, 5),
}
_PATCH_LOCK = threading.Lock()
_EVENTS_PER_LUMI_MC = 500


@dataclass(frozen=True)
class GeneratedFile:
    """A written file and the normalisation numbers stored in its ``Runs`` tree."""

    path: Path
    n_events: int
    sum_genweight: float


@contextlib.contextmanager
def _uint32_counters() -> Iterator[None]:
    """Declare collection counters as uint32 (NanoAOD's type) instead of uproot's int32."""
    original = _cascadetree.Tree._branch_np

    def patched(self: Any, name: str, branch_type: Any, branch_dtype: Any, counter: Any = None,
                kind: str = "normal") -> Any:
        if kind == "counter":
            branch_type = branch_dtype = np.dtype(np.uint32)
        return original(self, name, branch_type, branch_dtype, counter=counter, kind=kind)

    with _PATCH_LOCK:
        _cascadetree.Tree._branch_np = patched
        try:
            yield
        finally:
            _cascadetree.Tree._branch_np = original


def _branch_types(columns: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in columns.items():
        out[key] = value.dtype if isinstance(value, np.ndarray) else value.type.content
    return out


def _ordered(columns: Mapping[str, Any]) -> dict[str, Any]:
    """NanoAOD-like branch order: ids, weights, collections, event-level quantities."""
    order = ["run", "luminosityBlock", "event", "genWeight", "Muon", "Jet", "FatJet",
             "PuppiMET_pt", "PuppiMET_phi", "Pileup_nTrueInt", "fixedGridRhoFastjetAll",
             "HLT_Mu50", "HLT_TkMu50", "HLT_IsoMu24"]
    return {k: columns[k] for k in order if k in columns}


class _Chunks:
    """Produces the file's events block by block and accumulates the ``Runs`` numbers."""

    def __init__(self, kind: str, era: str, seed: int, params: Mapping[str, Any], first_event: int):
        self.kind, self.era, self.first_event = kind, era, first_event
        self.is_data = kind == "data"
        root = np.random.SeedSequence([seed, PROCESS_KINDS.index(kind)])
        self.rng = np.random.default_rng(root.spawn(1)[0])
        if self.is_data:
            procs = mixture(era, params.get("processes"))
            total = sum(x for _, _, x in procs)
            if total <= 0:
                msg = f"the data mixture for era {era!r} has no process passing the skim"
                raise ValueError(msg)
            self.fractions = np.array([x / total for _, _, x in procs])
            seeds = root.spawn(len(procs) + 1)[1:]
            self.streams = [
                SkimStream(resolve_process(k, p), era, np.random.default_rng(s), is_data=True,
                           max_tries=200_000_000)
                for (k, p, _), s in zip(procs, seeds, strict=True)
            ]
        else:
            self.process = resolve_process(kind, params)
            self.streams = [SkimStream(self.process, era, self.rng, max_tries=0)]
        self.done = 0

    def next(self, k: int) -> dict[str, Any]:
        if self.is_data:
            counts = self.rng.multinomial(k, self.fractions)
            parts = [s.take(int(c)) for s, c in zip(self.streams, counts, strict=True) if c > 0]
            cols = concat_columns(parts)
            order = self.rng.permutation(k)
            cols = {name: v[order] for name, v in cols.items()}
            run, lumi = sample_run_lumi(self.rng, self.era, k)
            by_lumi = np.lexsort((lumi, run))
            cols = {name: v[by_lumi] for name, v in cols.items()}
            cols["run"], cols["luminosityBlock"] = run[by_lumi], lumi[by_lumi]
            cols["event"] = self.rng.integers(1, 2**31, k).astype(np.uint64)
        else:
            stream = self.streams[0]
            stream.max_tries = max(200_000_000, 20_000 * (self.done + k))
            cols = stream.take(k)
            idx = np.arange(self.done, self.done + k, dtype=np.uint64) + np.uint64(self.first_event)
            cols["run"] = np.ones(k, np.uint32)
            cols["luminosityBlock"] = (1 + idx // _EVENTS_PER_LUMI_MC).astype(np.uint32)
            cols["event"] = idx
        self.done += k
        return _ordered(cols)

    def runs(self) -> tuple[dict[str, np.ndarray], int, float]:
        if self.is_data:
            return {"run": np.array([era_info(self.era).run_range[0]], np.uint32)}, self.done, 0.0
        stream = self.streams[0]
        count = round(stream.tried / self.process.p_gen)
        sumw = stream.sumw / self.process.p_gen
        branches: dict[str, np.ndarray] = {"run": np.array([1], np.uint32), "genEventCount": np.array([count], np.int64),
                    "genEventSumw": np.array([sumw], np.float64)}
        return branches, self.done, sumw


def generate_file(
    path: str | os.PathLike[str],
    kind: str,
    era: str,
    n_events: int,
    seed: int,
    *,
    params: Mapping[str, Any] | None = None,
    compression: str = "lzma",
    compression_level: int | None = None,
    first_event: int = 1,
    progress: Callable[[int], None] | None = None,
) -> GeneratedFile:
    """Generate one NanoAOD file of ``n_events`` skimmed events (atomically written).

    Args:
        path (str | PathLike): destination ``.root`` file.
        kind (str): one of :data:`PROCESS_KINDS`.
        era (str): ``2016preVFP``, ``2016postVFP``, ``2017`` or ``2018``.
        n_events (int): events in the file (>= 1).
        seed (int): random seed; the same seed gives identical arrays.
        params (Mapping | None): process parameters (see :func:`resolve_process`); for
            ``data``, ``processes`` selects the background mixture.
        compression (str): ``lzma`` (UL NanoAOD's) or ``zstd``.
        compression_level (int | None): the codec's level; None: UL production's (LZMA 9).
        first_event (int): ``event`` number of the first MC event (for multi-file samples).
        progress (Callable | None): called with the number of events written per block.

    Returns:
        GeneratedFile: path, events and the sum of generator weights stored in ``Runs``.
    """
    if kind not in PROCESS_KINDS:
        msg = f"unknown process kind {kind!r}; choose one of {', '.join(PROCESS_KINDS)}"
        raise ValueError(msg)
    era_info(era)
    if n_events < 1:
        msg = f"n_events must be at least 1, got {n_events}"
        raise ValueError(msg)
    if compression not in _COMPRESSION:
        msg = f"unknown compression {compression!r}; choose one of {', '.join(_COMPRESSION)}"
        raise ValueError(msg)
    chunks = _Chunks(kind, era, seed, dict(params or {}), first_event)

    def blocks() -> Iterator[dict[str, Any]]:
        remaining = n_events
        while remaining > 0:
            k = min(BLOCK, remaining)
            yield chunks.next(k)
            remaining -= k
            if progress is not None:
                progress(k)

    path = write_nanoaod(path, blocks(), lambda: chunks.runs()[0], compression=compression,
                         compression_level=compression_level)
    _, n_written, sumw = chunks.runs()
    return GeneratedFile(path, n_written, sumw)


def write_nanoaod(
    path: str | os.PathLike[str],
    blocks: Iterable[Mapping[str, Any]],
    runs: Callable[[], Mapping[str, np.ndarray]],
    *,
    compression: str = "lzma",
    compression_level: int | None = None,
) -> Path:
    """Write an ``Events`` tree block by block and a ``Runs`` tree, atomically, NanoAOD-typed.

    Shared by the generator and other writers of NanoAOD-like inputs (benchmarks), so that
    every such file has UL NanoAOD's codec, uint32 collection counters and one basket per
    branch per block: the size of the blocks is the size of the baskets a reader decompresses.

    Args:
        path (str | PathLike): destination ``.root`` file (its folder is created).
        blocks (Iterable[Mapping]): columns per block: numpy arrays for event-level branches,
            awkward record arrays for collections (``Jet`` -> ``nJet``, ``Jet_pt``, ...); every
            block has the same names and types, in the branch order of the file.
        runs (Callable): called once after the last block, returns the ``Runs`` branches (so
            that they can hold sums over the events just written).
        compression (str): ``lzma`` (UL NanoAOD's) or ``zstd``.
        compression_level (int | None): the codec's level; None: UL production's (LZMA 9).

    Returns:
        Path: the written file.
    """
    if compression not in _COMPRESSION:
        msg = f"unknown compression {compression!r}; choose one of {', '.join(_COMPRESSION)}"
        raise ValueError(msg)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        codec, default_level = _COMPRESSION[compression]
        level = default_level if compression_level is None else int(compression_level)
        with uproot.recreate(tmp_name, compression=codec(level)) as out:
            tree = None
            for columns in blocks:
                if tree is None:
                    with _uint32_counters():
                        tree = out.mktree(
                            "Events", _branch_types(columns), title="Events",
                            counter_name=lambda c: "n" + c, field_name=lambda o, i: f"{o}_{i}",
                        )
                tree.extend(dict(columns))
            branches = runs()
            out.mktree("Runs", {k: v.dtype for k, v in branches.items()}, title="Runs").extend(dict(branches))
        os.chmod(tmp_name, 0o644)
        os.replace(tmp_name, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        raise
    return path


def read_runs(path: str | os.PathLike[str]) -> GeneratedFile:
    """Read back a generated file's event count and ``Runs`` sum of weights.

    Raises:
        OSError: the file is missing, truncated or not a generated NanoAOD file.
    """
    path = Path(path)
    try:
        with uproot.open(path) as f:
            n = int(f["Events"].num_entries)
            runs = f["Runs"]
            sumw = float(np.sum(runs["genEventSumw"].array(library="np"))) if "genEventSumw" in runs else 0.0
    except Exception as err:  # uproot raises many types for a damaged file
        msg = f"{path} is not a complete generated NanoAOD file ({type(err).__name__}: {err})"
        raise OSError(msg) from err
    return GeneratedFile(path, n, sumw)


def ensure_generated(
    path: str | os.PathLike[str], kind: str, era: str, n_events: int, seed: int, **kw: Any
) -> GeneratedFile:
    """Like :func:`generate_file`, but keep an existing complete file of the right size.

    A file that cannot be opened, lacks ``Events``/``Runs`` or holds a different number of
    events (e.g. a truncated copy) is regenerated.
    """
    if Path(path).exists():
        try:
            existing = read_runs(path)
        except OSError:
            existing = None
        if existing is not None and existing.n_events == n_events:
            return existing
    return generate_file(path, kind, era, n_events, seed, **kw)

"""Scan one ROOT file: events, size on storage and per-branch storage numbers.

Everything here comes from TTree metadata (``fZipBytes``, ``fTotBytes``, ``fCompress``,
``fBasketBytes``, basket entry offsets), so a scan reads a file's header and tree metadata only,
never its baskets. The file is opened through the project's storage layer, so local, S3 and
XRootD inputs use the same credentials, timeouts and byte counting as the job. A file that cannot
be read comes back as a :class:`FileReport` with ``error`` set instead of raising, so one bad
file never stops an inspection.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import uproot

from intccms.plan.workitems import chunk_file
from intccms.storage import StorageOptions
from intccms.storage.formats.root import open_root
from intccms.storage.schemes import backend_for

EVENT_GROUP = "event"


@dataclass
class BranchInfo:
    """Storage numbers of one branch, as the TTree metadata records them.

    Attributes:
        compressed: bytes on storage of all its baskets, TKey headers included (``fZipBytes``).
        uncompressed: bytes after decompression, TKey headers included (``fTotBytes``).
    """

    name: str
    group: str
    compressed: int
    uncompressed: int
    algorithm: str
    level: int
    baskets: int

    @property
    def ratio(self) -> float:
        """Uncompressed over compressed bytes (1.0 for an empty branch)."""
        return self.uncompressed / self.compressed if self.compressed else 1.0


@dataclass
class StageReads:
    """What one stage reads from one file.

    Attributes:
        branches: branches the stage reads that the file has.
        compressed / uncompressed: their bytes (whole file).
        chunks: work items the job makes of the file (``workflow.chunksize``).
        expected_bytes: bytes the stage requests from storage over all its chunks: the baskets
            overlapping each chunk (a basket spanning two chunks is read twice) plus the bytes
            needed to open the file and its tree, once per chunk.
    """

    branches: int = 0
    compressed: int = 0
    uncompressed: int = 0
    chunks: int = 0
    expected_bytes: int = 0
    missing: list[str] = field(default_factory=list)


@dataclass
class FileReport:
    """The inspection of one file (``error`` set and numbers zero when it could not be read)."""

    url: str
    dataset: str
    era: str
    size: int = 0
    size_source: str = "storage"
    events: int = 0
    compressed: int = 0
    uncompressed: int = 0
    baskets: int = 0
    n_branches: int = 0
    other_trees_bytes: int = 0
    open_bytes: int = 0
    scan_bytes: int = 0
    scan_time_s: float = 0.0
    algorithms: dict[str, int] = field(default_factory=dict)
    # Algorithm in the block header of the largest branch (checks the metadata's setting).
    block_algorithm: str = ""
    branches: list[BranchInfo] = field(default_factory=list)
    reads: dict[str, StageReads] = field(default_factory=dict)
    error: str | None = None

    @property
    def ok(self) -> bool:
        """Whether the file was read."""
        return self.error is None

    @property
    def header_overhead(self) -> int:
        """Bytes outside the inspected tree's baskets: header, metadata, other trees."""
        return self.size - self.compressed


def branch_group(name: str, collections: set[str]) -> str:
    """NanoAOD group of a branch: ``Jet_pt`` and ``nJet`` -> ``Jet``; ``run`` -> ``event``."""
    if name.startswith("n") and name[1:] in collections:
        return name[1:]
    if "_" in name:
        return name.split("_", 1)[0]
    return EVENT_GROUP


_BLOCK_NAMES = {b"ZL": "ZLIB", b"XZ": "LZMA", b"L4": "LZ4", b"ZS": "ZSTD", b"CS": "old ZLIB"}


def _compression(branch: Any, file_default: Any) -> tuple[str, int]:
    """Algorithm and level: the branch's setting, else the file's when its baskets are compressed.

    Writers other than ROOT (uproot) leave ``fCompress`` at 0 and compress with the file's
    setting, so a branch whose bytes shrink takes the file's setting.
    """

    code = int(branch.member("fCompress"))
    comp = uproot.compression.Compression.from_code(code) if code > 0 else None
    if comp is None and int(branch.uncompressed_bytes) > int(branch.compressed_bytes):
        comp = file_default
    if comp is None:
        return "none", 0
    return type(comp).__name__, int(comp.level)


def block_algorithm(branch: Any) -> str:
    """Algorithm named in the first compressed block of the branch's first basket.

    One read of the basket's key and block header (Python ints: XRootD rejects NumPy ones):
    a check of the setting the metadata records.
    """
    if int(branch.member("fWriteBasket")) == 0:
        return "unknown"
    seek = int(branch.member("fBasketSeek")[0])
    nbytes = int(branch.member("fBasketBytes")[0])
    source = branch.file.source
    head = source.chunk(seek, seek + min(nbytes, 1024)).raw_data.tobytes()
    total, _version, objlen, _datime, keylen = struct.unpack(">ihiih", head[:16])
    if total - keylen >= objlen:
        return "none"  # stored uncompressed
    if keylen + 9 > len(head):
        head = head[:keylen] + source.chunk(seek + keylen, seek + keylen + 9).raw_data.tobytes()
    magic = head[keylen:keylen + 2]
    return _BLOCK_NAMES.get(magic, f"unknown ({magic!r})")


def _chunk_bytes(branch: Any, ranges: Sequence[tuple[int, int]]) -> int:
    """Bytes of the baskets of ``branch`` that overlap each entry range, summed over ranges."""
    offsets = np.asarray(branch.entry_offsets, dtype=np.int64)
    n_normal = len(offsets) - 1 - len(branch.embedded_baskets)
    sizes = np.asarray(branch.member("fBasketBytes")[:n_normal], dtype=np.int64)
    starts, stops = offsets[:n_normal], offsets[1:n_normal + 1]
    total = 0
    for lo, hi in ranges:
        total += int(sizes[(starts < hi) & (stops > lo)].sum())
    return total


def _stage_reads(tree: Any, names: Sequence[str], events: int, chunksize: int,
                 max_chunks: int | None, open_bytes: int) -> StageReads:
    items = chunk_file("inspect", "", 0, events, chunksize, max_chunks)
    ranges = [(it.entry_start, it.entry_stop) for it in items]
    out = StageReads(chunks=len(items))
    present = set(tree.keys())
    for name in names:
        if name not in present:
            out.missing.append(name)
            continue
        branch = tree[name]
        out.branches += 1
        out.compressed += int(branch.compressed_bytes)
        out.uncompressed += int(branch.uncompressed_bytes)
        out.expected_bytes += _chunk_bytes(branch, ranges)
    out.expected_bytes += open_bytes * len(items)
    return out


def _other_trees(handle: Any, tree_name: str) -> int:
    total = 0
    for key, cls in handle.classnames(recursive=False).items():
        if cls == "TTree" and key.split(";")[0] != tree_name:
            total += sum(int(b.compressed_bytes) for b in handle[key].values())
    return total


def scan_file(
    url: str,
    dataset: str,
    era: str,
    options: StorageOptions | None = None,
    *,
    tree: str = "Events",
    reads: Mapping[str, Sequence[str]] | None = None,
    chunksize: int = 100_000,
    max_chunks: int | None = None,
    keep_branches: bool = True,
) -> FileReport:
    """Inspect one file from its metadata.

    Args:
        url: local path, ``s3://bucket/key`` or ``root://host//path``.
        dataset: dataset the file belongs to (for the report).
        era: era of the dataset.
        options: storage endpoint, timeouts, retries and credentials.
        tree: the tree to inspect.
        reads: stage -> branches it reads (from :mod:`intccms.inspect.reads`).
        chunksize: entries per work item of the job, for the expected bytes per stage.
        max_chunks: ``workflow.max_chunks_per_file``.
        keep_branches: keep the per-branch list in the report.

    Returns:
        The report; ``error`` names the problem when the file is missing, truncated or unreadable.
    """
    report = FileReport(url=url, dataset=dataset, era=era)
    t0 = time.perf_counter()
    try:
        _fill(report, url, options or StorageOptions(), tree, reads or {}, chunksize, max_chunks)
    except Exception as err:  # noqa: BLE001 - a bad file is reported, never fatal
        text = str(err) if url in str(err) else f"{url}: {err}"
        report.error = f"{type(err).__name__}: {text}"[:2000]
        report.branches, report.reads = [], {}
    report.scan_time_s = time.perf_counter() - t0
    if not keep_branches:
        report.branches = []
    return report


def _fill(report: FileReport, url: str, options: StorageOptions, tree_name: str,
          reads: Mapping[str, Sequence[str]], chunksize: int, max_chunks: int | None) -> None:
    backend = backend_for(url, options)
    report.size = backend.size(url)
    handle, source = open_root(backend, url)
    with handle:
        with backend.errors(url):
            if handle.file.fEND > report.size:
                msg = (f"{url} is truncated: its header records {handle.file.fEND} bytes, storage "
                       f"holds {report.size}")
                raise OSError(msg)
            names = [k.split(";")[0] for k in handle.keys(recursive=False)]
            if tree_name not in names:
                msg = f"{url} has no tree {tree_name!r} (it has {sorted(set(names))}); set inspect.tree"
                raise KeyError(msg)
            tree = handle[tree_name]
            if "RNTuple" in type(tree).__name__:
                msg = f"{url}: {tree_name!r} is an RNTuple; the inspector reads TTrees"
                raise TypeError(msg)
            report.open_bytes = int(source.counter.total)
            report.events = int(tree.num_entries)
            file_default = handle.file.compression
            branches = list(tree.values())
            groups = {b.name.split("_", 1)[0] for b in branches if "_" in b.name}
            for branch in branches:
                algo, level = _compression(branch, file_default)
                info = BranchInfo(branch.name, branch_group(branch.name, groups),
                                  int(branch.compressed_bytes), int(branch.uncompressed_bytes),
                                  algo, level, int(branch.num_baskets))
                report.branches.append(info)
                report.compressed += info.compressed
                report.uncompressed += info.uncompressed
                report.baskets += info.baskets
                key = f"{algo}({level})" if algo != "none" else algo
                report.algorithms[key] = report.algorithms.get(key, 0) + info.compressed
            report.n_branches = len(branches)
            if branches:
                report.block_algorithm = block_algorithm(max(branches, key=lambda b: b.compressed_bytes))
            for stage, wanted in reads.items():
                report.reads[stage] = _stage_reads(tree, wanted, report.events, chunksize,
                                                   max_chunks, report.open_bytes)
            report.other_trees_bytes = _other_trees(handle, tree_name)
        report.scan_bytes = int(source.counter.total)

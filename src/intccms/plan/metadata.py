"""Dataset metadata: events and sums of generator weights per file, cached as JSON.

The sum of weights comes from ``genEventSumw`` summed over every entry of each file's ``Runs``
tree; only where a file has no such tree is it the sum of ``genWeight`` over its events (a
skimmed file would then under-count, so the source is recorded per file).
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import awkward as ak
import numpy as np
import uproot

from intccms.storage import FATAL_STORAGE_ERRORS, StorageOptions, open_source, read_runs_sums

# What a bad file raises: missing/truncated (OSError), not ROOT or empty (ValueError), corrupt
# records or compressed blocks. Anything else is a bug or an outage, never "a bad file" that
# ``skip_bad_files`` would quietly leave out.
try:
    from cramjam import DecompressionError
except ImportError:  # cramjam comes with uproot; without it its errors cannot occur
    DecompressionError = ValueError  # type: ignore[assignment,misc]
INPUT_ERRORS: tuple[type[BaseException], ...] = (
    OSError, ValueError, EOFError, uproot.KeyInFileError, uproot.DeserializationError, DecompressionError,
)


@dataclass
class FileMetadata:
    """Events and weight sums of one file (or the error that prevented reading it)."""

    file: str
    num_entries: int = 0
    sum_genweight: float = 0.0
    sum_source: str = "none"  # "Runs" | "genWeight" | "data"
    error: str | None = None
    bytes_read: int = 0
    # Size and modification time of a local file when it was counted (None for remote URLs).
    fingerprint: str | None = None
    # False when the file could not be opened: ``num_entries`` is then unknown, not zero.
    counted: bool = True


def file_fingerprint(url: str) -> str | None:
    """``size:mtime`` of a local file, so a cached count is not reused for a rewritten file.

    Remote files are not stat-ed here (one round trip per file on the driver); their cache
    entries are trusted until ``workflow.regenerate_metadata=true``.
    """
    if "://" in url and not url.startswith("file://"):
        return None
    try:
        st = os.stat(url.removeprefix("file://"))
    except OSError:
        return None
    return f"{st.st_size}:{st.st_mtime_ns}"


def file_metadata(url: str, is_data: bool, options: StorageOptions | None = None) -> FileMetadata:
    """Count entries and generator weights of one file (runs on a worker).

    Input errors (missing, empty, corrupt or truncated file, no ``Events`` tree, an ``Events``
    tree without entries) are returned in ``error``, which always names the file and the
    problem, so the driver decides whether to skip or stop.
    """
    try:
        with open_source(url, options=options) as source:
            meta = FileMetadata(file=url, num_entries=int(source.num_entries),
                                fingerprint=file_fingerprint(url))
            if meta.num_entries == 0:
                # Nothing to analyse, yet its Runs tree may hold a sum of weights: counting that
                # in the normalisation without any of its events would bias every histogram.
                meta.error = (f"EmptyTreeError: {url}: the 'Events' tree has 0 entries "
                              "(an empty or failed production file); remove it from the dataset")
            if is_data:
                meta.sum_source = "data"
            else:
                sums = read_runs_sums(url, options)
                if sums is not None:
                    meta.sum_genweight = float(sums[1])
                    meta.sum_source = "Runs"
                else:
                    gen = source.read(["genWeight"], 0, source.num_entries)["genWeight"]
                    meta.sum_genweight = float(np.sum(ak.to_numpy(gen), dtype=np.float64))
                    meta.sum_source = "genWeight"
            meta.bytes_read = int(source.bytes_read)
            return meta
    except FATAL_STORAGE_ERRORS:
        # A storage outage is not a bad file: skipping it would silently drop data.
        raise
    except INPUT_ERRORS as err:  # reported per file, the driver decides
        return FileMetadata(file=url, error=describe_input_error(err, url), counted=False)


def describe_input_error(err: BaseException, url: str) -> str:
    """``Type: <url>: problem`` for a file that cannot be read (the URL added where missing)."""
    if _is_empty_local_file(url):
        return f"{type(err).__name__}: {url}: the file is empty (0 bytes); regenerate or remove it"
    problem = " ".join(str(err).split())  # uproot's messages span lines
    if "expected Chunk of length" in problem:
        problem += " (the file ends before the data it lists: truncated or corrupt)"
    text = problem if url.removeprefix("file://") in problem else f"{url}: {problem}"
    return f"{type(err).__name__}: {text}"


def _is_empty_local_file(url: str) -> bool:
    if "://" in url and not url.startswith("file://"):
        return False
    try:
        return os.stat(url.removeprefix("file://")).st_size == 0
    except OSError:
        return False


@dataclass
class DatasetMetadata:
    """Per-dataset totals derived from its files' metadata."""

    name: str
    era: str
    is_data: bool
    xsec: float | None
    files: dict[str, FileMetadata]

    @property
    def num_entries(self) -> int:
        return sum(f.num_entries for f in self.files.values() if f.error is None)

    @property
    def sum_genweight(self) -> float:
        return sum(f.sum_genweight for f in self.files.values() if f.error is None)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "era": self.era,
            "is_data": self.is_data,
            "xsec": self.xsec,
            "num_entries": self.num_entries,
            "sum_genweight": self.sum_genweight,
            "files": {k: asdict(v) for k, v in self.files.items()},
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DatasetMetadata:
        return cls(
            name=data["name"],
            era=data["era"],
            is_data=data["is_data"],
            xsec=data.get("xsec"),
            files={k: FileMetadata(**v) for k, v in data["files"].items()},
        )


def load_cache(path: Path) -> dict[str, DatasetMetadata]:
    """Cached metadata by dataset name (empty when the cache is absent or unreadable)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return {}
    return {name: DatasetMetadata.from_dict(d) for name, d in data.get("datasets", {}).items()}


def save_cache(path: Path, datasets: Mapping[str, DatasetMetadata]) -> None:
    """Write the metadata cache atomically (temporary file, then rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"datasets": {n: d.to_dict() for n, d in sorted(datasets.items())}}
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".metadata-", suffix=".tmp")
    with os.fdopen(fd, "w") as handle:
        json.dump(payload, handle, indent=1, sort_keys=True)
    os.replace(tmp, path)

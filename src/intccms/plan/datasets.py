"""Resolve each dataset definition to the list of its input files."""

from __future__ import annotations

import fnmatch
import glob
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from intccms.storage.schemes import backend_for, is_temporary_name
from intccms.storage.urls import root_endpoint, scheme_of

if TYPE_CHECKING:
    from intccms.storage import StorageOptions


class DatasetError(ValueError):
    """A dataset definition cannot be resolved to files."""


@dataclass(frozen=True)
class Dataset:
    """A resolved dataset: its files plus what normalisation and the analysis need."""

    name: str
    process: str
    era: str
    is_data: bool
    xsec: float | None
    files: tuple[str, ...]
    das_name: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)


def _is_remote(path: str) -> bool:
    return "://" in path and not path.startswith("file://")


def _expand(pattern: str, options: StorageOptions | None = None) -> list[str]:
    if _is_remote(pattern):
        if any(ch in pattern for ch in "*?["):
            return _remote_glob(pattern, options)
        return [pattern]
    local = pattern.removeprefix("file://")
    if any(ch in local for ch in "*?["):
        return sorted(glob.glob(local))
    return [local]


def _remote_glob(pattern: str, options: StorageOptions | None) -> list[str]:
    """Expand an ``s3://`` or ``root://`` glob through the storage backend, so the ``storage``
    group's endpoint, credentials, timeouts and retries apply (and its errors name the server)."""

    backend = backend_for(pattern, options)
    with backend.errors(pattern):
        paths = backend.filesystem(pattern).glob(backend.path(pattern))
    scheme = scheme_of(pattern)
    if scheme == "root":
        base = root_endpoint(pattern)
        urls = [f"{base}/{'/' + p.lstrip('/')}" for p in paths]
    else:
        protocol = pattern.split("://", 1)[0]
        urls = [p if "://" in p else f"{protocol}://{p}" for p in paths]
    return sorted(u for u in urls if not is_temporary_name(u))


def _read_json_listing(path: str, key: str, *, name: str) -> list[str]:
    """Files of ``key`` in a JSON listing ``{key: {variation: {"files": [{"path": ...}]}}}``."""

    try:
        data = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as err:
        msg = f"dataset {name}: cannot read JSON listing {path}: {err}"
        raise DatasetError(msg) from None
    if key not in data:
        msg = f"dataset {name}: key '{key}' not in {path} (available: {sorted(data)})"
        raise DatasetError(msg)
    entry = data[key].get("nominal", data[key])
    return [f["path"] if isinstance(f, dict) else str(f) for f in entry["files"]]


def _read_listing(path: str, redirector: str | None, *, name: str) -> list[str]:
    json_path, sep, key = path.rpartition(".json:")
    if sep:
        return _read_json_listing(json_path + ".json", key, name=name)
    try:
        lines = Path(path).read_text().splitlines()
    except OSError as err:
        msg = f"dataset {name}: cannot read file listing {path}: {err.strerror}"
        raise DatasetError(msg) from None
    files = [ln.strip() for ln in lines if ln.strip() and not ln.lstrip().startswith("#")]
    if redirector:
        files = [f"{redirector.rstrip('/')}/{f}" if f.startswith("/store") else f for f in files]
    return files


def resolve_dataset(name: str, cfg: Mapping[str, Any], options: StorageOptions | None = None) -> Dataset:
    """Files of one dataset from its ``files`` (paths, globs, URLs) and ``listings``.

    ``options`` (the ``storage`` group) reach the stores that ``s3://``/``root://`` globs are
    listed on.

    Raises:
        DatasetError: no file found, or simulation without a cross-section.
    """
    files: list[str] = []
    for pattern in cfg.get("files") or []:
        files.extend(_expand(str(pattern), options))
    for listing in cfg.get("listings") or []:
        matches = [] if ".json:" in str(listing) else sorted(glob.glob(str(listing)))
        for path in matches or [str(listing)]:
            files.extend(_read_listing(path, cfg.get("redirector"), name=name))
    if cfg.get("max_files"):
        files = files[: int(cfg["max_files"])]
    if not files:
        msg = (
            f"dataset {name}: no input files (files={list(cfg.get('files') or [])}, "
            f"listings={list(cfg.get('listings') or [])})"
        )
        raise DatasetError(msg)
    is_data = bool(cfg.get("is_data"))
    if not is_data and cfg.get("xsec") is None:
        msg = f"dataset {name}: simulation needs a cross-section (datasets.{name}.xsec)"
        raise DatasetError(msg)
    return Dataset(
        name=name,
        process=str(cfg.get("process") or ("data" if is_data else name)),
        era=str(cfg["era"]),
        is_data=is_data,
        xsec=float(cfg["xsec"]) if cfg.get("xsec") is not None else None,
        files=tuple(files),
        das_name=cfg.get("das_name"),
    )


def select_datasets(
    datasets: Mapping[str, Mapping[str, Any]], patterns: Sequence[str]
) -> dict[str, Mapping[str, Any]]:
    """Datasets whose names match any fnmatch pattern (all when no pattern is given)."""
    if not patterns:
        return dict(datasets)
    chosen = {n: d for n, d in datasets.items() if any(fnmatch.fnmatchcase(n, p) for p in patterns)}
    if not chosen:
        msg = f"dataset_selection {list(patterns)} matches none of {sorted(datasets)}"
        raise DatasetError(msg)
    return chosen


def generated_file_paths(root: str, name: str, era: str, n_files: int) -> list[str]:
    """Where the project's generator writes a demo dataset's files."""
    return [os.path.join(root, era, name, f"nano_{i}.root") for i in range(n_files)]


def unmatched_eras(datasets: Mapping[str, Dataset]) -> list[str]:
    """Eras whose selected datasets have collision data but no simulation, or the reverse.

    Each era's data is compared with that era's simulation scaled to its own luminosity; an era
    with only one of the two shifts every merged data/simulation comparison and fit.
    """
    kinds: dict[str, set[bool]] = {}
    for ds in datasets.values():
        kinds.setdefault(ds.era, set()).add(ds.is_data)
    if not any(True in k for k in kinds.values()):
        return []  # no data selected at all: a simulation-only study
    out = []
    for era, found in sorted(kinds.items()):
        if found == {True}:
            out.append(f"era {era}: collision data but no simulation selected")
        elif found == {False}:
            out.append(f"era {era}: simulation but no collision data selected")
    return out

"""Provenance: the resolved configuration and the package versions next to every output."""

from __future__ import annotations

import hashlib
import json
import platform
import sys
from collections.abc import Mapping
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

PACKAGES = ("intccms", "awkward", "uproot", "coffea", "hist", "correctionlib", "numpy", "dask",
            "distributed", "hydra-core", "omegaconf", "pyarrow", "fsspec", "s3fs", "fsspec-xrootd",
            "pyhf", "cabinetry", "mplhep", "prometheus-client")


def package_versions() -> dict[str, str]:
    """Installed versions of the packages a result depends on."""
    out = {"python": sys.version.split()[0], "platform": platform.platform()}
    for name in PACKAGES:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "not installed"
    return out


def config_hash(config_yaml: str) -> str:
    """Short, stable fingerprint of a resolved configuration."""
    return hashlib.sha256(config_yaml.encode()).hexdigest()[:16]


def provenance_files(config_yaml: str, extra: dict[str, Any] | None = None,
                     plan: Mapping[str, Any] | None = None) -> dict[str, bytes]:
    """The provenance files by name: ``config.yaml``, ``versions.json`` (with the config hash)
    and, given the run plan's summary, ``plan.json`` (the datasets and files actually run).

    One function builds them, so the job's outputs and the skims (wherever they are stored)
    carry the same provenance.
    """
    info = {"versions": package_versions(), "config_hash": config_hash(config_yaml)}
    info.update(extra or {})
    files = {"config.yaml": config_yaml.encode(),
             "versions.json": json.dumps(info, indent=1, sort_keys=True).encode()}
    if plan is not None:
        files["plan.json"] = json.dumps(plan, indent=1, sort_keys=True).encode()
    return files


def write_provenance(directory: Path, config_yaml: str, extra: dict[str, Any] | None = None,
                     plan: Mapping[str, Any] | None = None) -> list[Path]:
    """Write the provenance files into a local ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, payload in provenance_files(config_yaml, extra, plan).items():
        (directory / name).write_bytes(payload)
        written.append(directory / name)
    return written

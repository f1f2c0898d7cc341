"""Provenance: the resolved configuration and the package versions next to every output."""

from __future__ import annotations

import hashlib
import json
import platform
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

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


def write_provenance(directory: Path, config_yaml: str, extra: dict | None = None) -> list[Path]:
    """Write ``config.yaml`` and ``versions.json`` into ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    cfg_path = directory / "config.yaml"
    cfg_path.write_text(config_yaml)
    info = {"versions": package_versions(), "config_hash": config_hash(config_yaml)}
    info.update(extra or {})
    ver_path = directory / "versions.json"
    ver_path.write_text(json.dumps(info, indent=1, sort_keys=True))
    return [cfg_path, ver_path]

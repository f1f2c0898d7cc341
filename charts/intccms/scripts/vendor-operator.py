#!/usr/bin/env python3
"""Build the Dask operator chart archive under charts/intccms/charts/ from the installed, pinned
dask-kubernetes wheel; the archive is committed, so a fresh clone lints and installs offline.

The wheel carries the chart with chartpress placeholders for its version and image tag; they
are set to the dask-kubernetes version, which is the published chart's version. The archive is
reproducible (sorted entries, fixed owners, modes and times), so rerunning changes no byte.

Usage: python charts/intccms/scripts/vendor-operator.py [--check]
With --check, exit 1 when the committed archive differs from what the wheel gives.
"""

from __future__ import annotations

import gzip
import importlib.metadata
import io
import re
import shutil
import sys
import tarfile
from pathlib import Path

import yaml

NAME = "dask-kubernetes-operator"
CHART = Path(__file__).resolve().parents[1]
MTIME = 946684800  # 2000-01-01: a fixed time, so the archive depends on the content only


def pinned_version() -> str:
    """The operator chart version Chart.yaml depends on."""
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    (dep,) = [d for d in chart["dependencies"] if d["name"] == NAME]
    return str(dep["version"])


def wheel_chart() -> tuple[Path, str]:
    """The operator chart folder inside the installed dask-kubernetes, and its version."""
    import dask_kubernetes

    src = Path(dask_kubernetes.__file__).parent / "operator/deployment/helm" / NAME
    return src, importlib.metadata.version("dask-kubernetes")


def chart_files(src: Path, version: str) -> dict[str, bytes]:
    """The chart's files (path relative to the chart -> bytes), placeholders set to ``version``."""
    files = {p.relative_to(src).as_posix(): p.read_bytes()
             for p in sorted(src.rglob("*")) if p.is_file() and "__pycache__" not in p.parts}
    chart = files["Chart.yaml"].decode()
    chart = re.sub(r"(?m)^version: .*$", f"version: {version}", chart)
    chart = re.sub(r"(?m)^appVersion: .*$", f'appVersion: "{version}"', chart)
    files["Chart.yaml"] = chart.encode()
    files["values.yaml"] = files["values.yaml"].replace(b'tag: "set-by-chartpress"',
                                                         f'tag: "{version}"'.encode())
    return files


def archive(files: dict[str, bytes]) -> bytes:
    """A gzipped tar of ``files`` under ``<NAME>/``, as ``helm package`` lays it out."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for rel in sorted(files):
            info = tarfile.TarInfo(f"{NAME}/{rel}")
            info.size, info.mode, info.mtime = len(files[rel]), 0o644, MTIME
            tar.addfile(info, io.BytesIO(files[rel]))
    return gzip.compress(raw.getvalue(), compresslevel=9, mtime=0)


def main(argv: list[str]) -> int:
    src, version = wheel_chart()
    want = pinned_version()
    if version != want:
        sys.stderr.write(f"dask-kubernetes {version} is installed but Chart.yaml pins the operator "
                         f"chart {want}; install the pinned dask-kubernetes or update Chart.yaml\n")
        return 1
    if not (src / "Chart.yaml").is_file():
        sys.stderr.write(f"no operator chart in {src}\n")
        return 1
    data = archive(chart_files(src, version))
    target = CHART / "charts" / f"{NAME}-{version}.tgz"
    if "--check" in argv:
        if not target.is_file() or target.read_bytes() != data:
            sys.stderr.write(f"{target} is not the chart of dask-kubernetes {version}: "
                             f"run {Path(__file__).name}\n")
            return 1
        return 0
    # Leftovers helm would load as a second copy: an unpacked folder, other versions.
    shutil.rmtree(CHART / "charts" / NAME, ignore_errors=True)
    for old in (CHART / "charts").glob(f"{NAME}-*.tgz"):
        if old != target:
            old.unlink()
    if target.is_file() and target.read_bytes() == data:
        return 0
    target.parent.mkdir(exist_ok=True)
    target.write_bytes(data)
    print(f"vendored {NAME} {version} into {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

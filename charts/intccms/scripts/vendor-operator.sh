#!/usr/bin/env bash
# Rebuild the committed Dask operator chart archive (charts/intccms/charts/*.tgz) from the
# installed, pinned dask-kubernetes wheel, offline: run after changing the pin. A fresh clone
# needs nothing from here. Usage: charts/intccms/scripts/vendor-operator.sh [--check]
# (PYTHON=... to pick the interpreter; see vendor-operator.py)
set -euo pipefail

CHART_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
REPO_ROOT="$(cd "${CHART_DIR}/../.." && pwd)"
PYTHON="${PYTHON:-${REPO_ROOT}/.venv/bin/python}"
[[ -x "${PYTHON}" ]] || PYTHON="$(command -v python3)"
exec "${PYTHON}" "${CHART_DIR}/scripts/vendor-operator.py" "$@"

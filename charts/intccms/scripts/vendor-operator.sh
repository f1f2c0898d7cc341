#!/usr/bin/env bash
# Vendor the Dask operator chart into charts/intccms/charts/ from the installed, pinned
# dask-kubernetes wheel, so `helm lint/template/package/install` work offline.
#
# The wheel carries the chart with chartpress placeholders for its version and image tag;
# they are set to the dask-kubernetes version, which is the published chart's version.
# Usage: charts/intccms/scripts/vendor-operator.sh   (PYTHON=... to pick the interpreter)
set -euo pipefail

CHART_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
REPO_ROOT="$(cd "${CHART_DIR}/../.." && pwd)"
PYTHON="${PYTHON:-${REPO_ROOT}/.venv/bin/python}"
[[ -x "${PYTHON}" ]] || PYTHON="$(command -v python3)"

read -r SRC VERSION < <("${PYTHON}" - <<'PY'
import importlib.metadata, pathlib
import dask_kubernetes
src = pathlib.Path(dask_kubernetes.__file__).parent / "operator/deployment/helm/dask-kubernetes-operator"
print(src, importlib.metadata.version("dask-kubernetes"))
PY
)
WANT="$(sed -n '/name: dask-kubernetes-operator/,/version:/s/.*version: *"\{0,1\}\([^"]*\)"\{0,1\}/\1/p' "${CHART_DIR}/Chart.yaml")"
if [[ "${VERSION}" != "${WANT}" ]]; then
    echo "dask-kubernetes ${VERSION} is installed but Chart.yaml pins the operator chart ${WANT};" \
         "install the pinned dask-kubernetes or update the dependency in Chart.yaml" >&2
    exit 1
fi
[[ -f "${SRC}/Chart.yaml" ]] || { echo "no operator chart in ${SRC}" >&2; exit 1; }

DEST="${CHART_DIR}/charts/dask-kubernetes-operator"
if [[ -f "${DEST}/Chart.yaml" ]] && grep -q "^version: ${VERSION}\$" "${DEST}/Chart.yaml"; then
    exit 0  # already vendored at this version
fi
rm -rf "${DEST}"
mkdir -p "${CHART_DIR}/charts"
cp -R "${SRC}" "${DEST}"
sed -i.bak -e "s/^version: .*/version: ${VERSION}/" -e "s/^appVersion: .*/appVersion: \"${VERSION}\"/" "${DEST}/Chart.yaml"
sed -i.bak -e "s/tag: \"set-by-chartpress\"/tag: \"${VERSION}\"/" "${DEST}/values.yaml"
rm -f "${DEST}"/*.bak
echo "vendored dask-kubernetes-operator ${VERSION} into ${DEST}"

#!/usr/bin/env bash
# Render the chart with default values into plain manifests under <repo>/manifests/, for
# clusters managed without Helm (kubectl apply -k / -f). A test fails when they drift.
# Usage: charts/intccms/scripts/render-manifests.sh [--check]
set -euo pipefail

CHART_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
REPO_ROOT="$(cd "${CHART_DIR}/../.." && pwd)"
HELM="${HELM:-${REPO_ROOT}/.tools/bin/helm}"
[[ -x "${HELM}" ]] || HELM="$(command -v helm)"
OUT="${REPO_ROOT}/manifests"
RELEASE="intccms"
NAMESPACE="intccms"
KUBE_VERSION="1.33.0"

TMP="$(mktemp -d)"
trap 'rm -rf "${TMP}"' EXIT

{
    echo "# Rendered from charts/intccms by charts/intccms/scripts/render-manifests.sh; do not edit."
    echo "# Namespace ${NAMESPACE}, release ${RELEASE}. The Grafana admin password is generated:"
    echo "# create Secret ${RELEASE}-grafana-admin yourself (see docs/kubernetes.md)."
} > "${TMP}/header"

# The generated Grafana password would change on every render: plain manifests use an
# existing Secret instead.
"${HELM}" template "${RELEASE}" "${CHART_DIR}" --namespace "${NAMESPACE}" \
    --kube-version "${KUBE_VERSION}" \
    --set grafana.admin.existingSecret="${RELEASE}-grafana-admin" \
    > "${TMP}/intccms.yaml"
"${HELM}" template "${RELEASE}" "${CHART_DIR}" --namespace "${NAMESPACE}" \
    --kube-version "${KUBE_VERSION}" --include-crds --show-only 'charts/dask-kubernetes-operator/crds/*' \
    > "${TMP}/crds.yaml"
cat "${TMP}/header" "${TMP}/crds.yaml" > "${TMP}/crds.out"
cat "${TMP}/header" "${TMP}/intccms.yaml" > "${TMP}/intccms.out"

if [[ "${1:-}" == "--check" ]]; then
    diff -u "${OUT}/crds.yaml" "${TMP}/crds.out" && diff -u "${OUT}/intccms.yaml" "${TMP}/intccms.out"
    exit $?
fi
mkdir -p "${OUT}"
cp "${TMP}/crds.out" "${OUT}/crds.yaml"
cp "${TMP}/intccms.out" "${OUT}/intccms.yaml"
echo "wrote ${OUT}/crds.yaml and ${OUT}/intccms.yaml"

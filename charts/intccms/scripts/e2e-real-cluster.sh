#!/usr/bin/env bash
# End-to-end check on a real Kubernetes cluster (kind, or whatever the current kubeconfig
# points at): install the chart, run the demo job, check that it wrote histograms and that
# Prometheus scraped worker metrics, then uninstall. Not run in CI (no cluster there).
#
# Usage: charts/intccms/scripts/e2e-real-cluster.sh
#   IMAGE=registry/intccms:0.1.0   image to run (must be pullable by the cluster, or loaded
#                                  with `kind load docker-image`)
#   NAMESPACE=intccms-e2e          namespace to create and delete
#   KEEP=1                         keep the release for inspection
set -euo pipefail

CHART_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
REPO_ROOT="$(cd "${CHART_DIR}/../.." && pwd)"
HELM="${HELM:-${REPO_ROOT}/.tools/bin/helm}"
[[ -x "${HELM}" ]] || HELM="$(command -v helm)"
KUBECTL="${KUBECTL:-kubectl}"
NAMESPACE="${NAMESPACE:-intccms-e2e}"
RELEASE="${RELEASE:-e2e}"
IMAGE="${IMAGE:-ghcr.io/intccms/intccms:0.1.0}"
TIMEOUT="${TIMEOUT:-1800}"

log() { printf '\n==> %s\n' "$*"; }
cleanup() {
    if [[ "${KEEP:-0}" != "1" ]]; then
        log "uninstalling"
        "${HELM}" uninstall "${RELEASE}" --namespace "${NAMESPACE}" --wait || true
        "${KUBECTL}" delete namespace "${NAMESPACE}" --wait=false || true
    fi
}
trap cleanup EXIT

"${KUBECTL}" version >/dev/null || { echo "no reachable cluster in the current kubeconfig" >&2; exit 1; }
"${CHART_DIR}/scripts/vendor-operator.sh"

log "installing ${RELEASE} into ${NAMESPACE} with image ${IMAGE}"
"${HELM}" upgrade --install "${RELEASE}" "${CHART_DIR}" \
    --namespace "${NAMESPACE}" --create-namespace \
    --set image.repository="${IMAGE%:*}" --set image.tag="${IMAGE##*:}" \
    --set job.config=demo \
    --set dask.adapt.minimum=2 --set dask.adapt.maximum=2 --set dask.wait.workers=2 \
    --set dask.worker.resources.requests.cpu=500m \
    --wait --timeout 10m

JOB="$("${KUBECTL}" -n "${NAMESPACE}" get jobs -l app.kubernetes.io/instance="${RELEASE}" -o name | tail -n1)"
log "waiting for ${JOB}"
PROM_POD="$("${KUBECTL}" -n "${NAMESPACE}" get pods -l app.kubernetes.io/component=prometheus,app.kubernetes.io/instance="${RELEASE}" -o name | head -n1)"
# Query Prometheus while the workers are alive: they disappear with the run's DaskCluster.
seen_worker_metrics=0
deadline=$(( $(date +%s) + TIMEOUT ))
while (( $(date +%s) < deadline )); do
    status="$("${KUBECTL}" -n "${NAMESPACE}" get "${JOB}" -o jsonpath='{.status.succeeded}{.status.failed}')"
    if [[ "${seen_worker_metrics}" == 0 ]]; then
        n="$("${KUBECTL}" -n "${NAMESPACE}" exec "${PROM_POD}" -- \
            wget -qO- 'http://localhost:9090/api/v1/query?query=count(up{job="intccms-dask",intccms_role="worker"}==1)' 2>/dev/null \
            | sed -n 's/.*"value":\[[^,]*,"\([0-9]*\)".*/\1/p')"
        if [[ -n "${n}" && "${n}" -ge 1 ]]; then
            seen_worker_metrics=1
            log "Prometheus scrapes ${n} worker(s)"
        fi
    fi
    [[ -n "${status}" ]] && break
    sleep 10
done

"${KUBECTL}" -n "${NAMESPACE}" logs "${JOB}" --tail=50 || true
[[ "$("${KUBECTL}" -n "${NAMESPACE}" get "${JOB}" -o jsonpath='{.status.succeeded}')" == "1" ]] \
    || { echo "FAIL: the job did not succeed" >&2; exit 1; }
"${KUBECTL}" -n "${NAMESPACE}" logs "${JOB}" | grep -Eiq 'histogram|outputs in' \
    || { echo "FAIL: the job log mentions no histograms/outputs" >&2; exit 1; }
[[ "${seen_worker_metrics}" == 1 ]] \
    || { echo "FAIL: Prometheus never scraped a worker's /metrics" >&2; exit 1; }
n_series="$("${KUBECTL}" -n "${NAMESPACE}" exec "${PROM_POD}" -- \
    wget -qO- 'http://localhost:9090/api/v1/query?query=count(intccms_events_read_total)' | sed -n 's/.*"value":\[[^,]*,"\([0-9]*\)".*/\1/p')"
[[ -n "${n_series}" && "${n_series}" -ge 1 ]] \
    || { echo "FAIL: no intccms_events_read_total series in Prometheus" >&2; exit 1; }
[[ -z "$("${KUBECTL}" -n "${NAMESPACE}" get daskclusters -o name)" ]] \
    || { echo "FAIL: the job left a DaskCluster behind" >&2; exit 1; }
log "PASS: job succeeded, histograms written, worker metrics in Prometheus, cluster cleaned up"

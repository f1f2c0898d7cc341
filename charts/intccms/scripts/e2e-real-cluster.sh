#!/usr/bin/env bash
# End-to-end check on a real Kubernetes cluster (kind, or whatever the current kubeconfig
# points at): install the chart, run the demo job, check that it wrote histograms and that
# Prometheus scraped worker metrics, then uninstall. Not run in CI (no cluster there).
#
# Usage: charts/intccms/scripts/e2e-real-cluster.sh
#   IMAGE=registry/intccms:0.1.0   image to run (must be pullable by the cluster, or loaded
#                                  with `kind load docker-image`)
#   NAMESPACE=intccms-e2e          namespace to create and delete
#   OUTPUT_DIR=s3://bucket/prefix  write outputs to the object store (needs STORAGE_SECRET);
#                                  empty: the chart's shared volume (sharedVolume.*)
#   STORAGE_SECRET=my-s3           existing Secret with INTCCMS_S3_ACCESS_KEY_ID/SECRET_ACCESS_KEY
#   S3_ENDPOINT=https://...        S3 endpoint for OUTPUT_DIR
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
PYTHON="${PYTHON:-python3}"
extra=()
[[ -n "${OUTPUT_DIR:-}" ]] && extra+=(--set-string output.dir="${OUTPUT_DIR}")
[[ -n "${STORAGE_SECRET:-}" ]] && extra+=(--set storage.existingSecret="${STORAGE_SECRET}")
[[ -n "${S3_ENDPOINT:-}" ]] && extra+=(--set storage.s3Endpoint="${S3_ENDPOINT}")

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

log "installing ${RELEASE} into ${NAMESPACE} with image ${IMAGE}"
"${HELM}" upgrade --install "${RELEASE}" "${CHART_DIR}" \
    --namespace "${NAMESPACE}" --create-namespace \
    --set image.repository="${IMAGE%:*}" --set image.tag="${IMAGE##*:}" \
    --set job.config=demo \
    --set dask.adapt.minimum=2 --set dask.adapt.maximum=2 --set dask.wait.workers=2 \
    --set dask.worker.resources.requests.cpu=500m \
    "${extra[@]}" \
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
# The results must outlive the Job's pod: read report.json and histograms.pkl from a new pod
# made from the Job's pod template (same config, shared volume and Secret), not from the log.
CHECK_POD="${RELEASE}-check-outputs"
"${KUBECTL}" -n "${NAMESPACE}" delete pod "${CHECK_POD}" --ignore-not-found --wait
"${KUBECTL}" -n "${NAMESPACE}" get "${JOB}" -o json | "${PYTHON}" -c '
import json, sys
job, name, script = json.load(sys.stdin), sys.argv[1], open(sys.argv[2]).read()
template = job["spec"]["template"]
labels = {k: v for k, v in template["metadata"].get("labels", {}).items()
          if "job-name" not in k and "controller-uid" not in k}
spec = template["spec"]
(container,) = spec["containers"]
container.update(name="check", command=["python", "-c", script], args=[])
spec["restartPolicy"] = "Never"
print(json.dumps({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": labels},
                  "spec": spec}))
' "${CHECK_POD}" "${CHART_DIR}/scripts/check-outputs.py" | "${KUBECTL}" -n "${NAMESPACE}" apply -f -
for _ in $(seq 1 60); do
    phase="$("${KUBECTL}" -n "${NAMESPACE}" get pod "${CHECK_POD}" -o jsonpath='{.status.phase}')"
    [[ "${phase}" == Succeeded || "${phase}" == Failed ]] && break
    sleep 5
done
"${KUBECTL}" -n "${NAMESPACE}" logs "${CHECK_POD}" | tail -n 20
[[ "${phase}" == Succeeded ]] \
    || { echo "FAIL: report.json/histograms.pkl missing or empty after the Job's pod ended (${phase})" >&2; exit 1; }
"${KUBECTL}" -n "${NAMESPACE}" delete pod "${CHECK_POD}" --wait=false
[[ "${seen_worker_metrics}" == 1 ]] \
    || { echo "FAIL: Prometheus never scraped a worker's /metrics" >&2; exit 1; }
n_series="$("${KUBECTL}" -n "${NAMESPACE}" exec "${PROM_POD}" -- \
    wget -qO- 'http://localhost:9090/api/v1/query?query=count(intccms_events_read_total)' | sed -n 's/.*"value":\[[^,]*,"\([0-9]*\)".*/\1/p')"
[[ -n "${n_series}" && "${n_series}" -ge 1 ]] \
    || { echo "FAIL: no intccms_events_read_total series in Prometheus" >&2; exit 1; }
[[ -z "$("${KUBECTL}" -n "${NAMESPACE}" get daskclusters -o name)" ]] \
    || { echo "FAIL: the job left a DaskCluster behind" >&2; exit 1; }
log "PASS: job succeeded, report.json and histograms.pkl kept, worker metrics in Prometheus, cluster cleaned up"

"""The ``kubernetes`` backend against an in-memory Kubernetes API with the real Dask operator.

The job's code submits its DaskCluster and DaskAutoscaler; the operator (kopf, standalone, in
this process) turns them into scheduler/worker Deployments and a Service. Pods never run in
the emulator, so there is no live scheduler: the tests check what was created, that waiting
for the scheduler is bounded, and that teardown deletes the resources.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import time
from collections.abc import Callable
from typing import Any

import pytest
from fixtures.k8s import (
    JOB_TOKEN,
    NAMESPACE,
    OPERATOR_TOKEN,
    EmulatedCluster,
    validate_custom_resource,
)

from intccms.config.kubernetes import (
    KubernetesClusterConfig,
    OwnerReference,
    SecretEnvVar,
)
from intccms.execute.backends.kubernetes import ClusterStartupError, KubernetesBackend

pytestmark = [pytest.mark.k8s, pytest.mark.slow, pytest.mark.timeout(180)]

DASK = "kubernetes.dask.org/v1"
IMAGE = "registry.example/intccms:0.1.0"


def _config(**wait: float) -> KubernetesClusterConfig:
    cfg = KubernetesClusterConfig(
        image=IMAGE,
        namespace=NAMESPACE,
        env_from_secrets=[
            SecretEnvVar(name="AWS_ACCESS_KEY_ID", secret_name="intccms-storage", key="key"),
            SecretEnvVar(name="AWS_SECRET_ACCESS_KEY", secret_name="intccms-storage", key="secret"),
        ],
        env_from_secret_names=["intccms-xrootd"],
        labels={"team": "cms"},
    )
    cfg.adapt.minimum, cfg.adapt.maximum = 1, 4
    cfg.wait.operator_timeout_s = 30
    cfg.wait.teardown_timeout_s = 20
    for key, value in wait.items():
        setattr(cfg.wait, key, value)
    return cfg


def _eventually(check: Callable[[], Any], timeout: float = 30.0) -> Any:  # noqa: ANN401
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.2)
    pytest.fail(f"condition not met within {timeout} s: {check.__doc__ or check}")


def _worker_deployment(api: EmulatedCluster, cluster: str) -> dict[str, Any] | None:
    """the operator created the worker Deployment"""
    for dep in api.objects("apps/v1/deployments").values():
        labels = dep["metadata"]["labels"]
        if labels.get("dask.org/cluster-name") == cluster and labels.get(
            "dask.org/component"
        ) == "worker":
            return dep
    return None


def test_operator_builds_the_cluster_and_teardown_deletes_it(
    dask_operator: EmulatedCluster,
) -> None:
    cfg = _config(scheduler_timeout_s=60)
    cfg.idle_timeout_s = 900
    cfg.owner = OwnerReference(name="intccms-run-1", uid="8f7e6d5c-4b3a-4291-8a7b-6c5d4e3f2a1b")
    backend = KubernetesBackend(cfg, run_id="submit")
    name = backend.name
    try:
        backend.submit()
        clusters = dask_operator.objects(f"{DASK}/daskclusters")
        autoscalers = dask_operator.objects(f"{DASK}/daskautoscalers")
        assert name in clusters and name in autoscalers
        # What reached the API server: the Job owns the cluster, the operator may reap it idle.
        assert clusters[name]["metadata"]["ownerReferences"] == [{
            "apiVersion": "batch/v1", "kind": "Job", "name": "intccms-run-1",
            "uid": "8f7e6d5c-4b3a-4291-8a7b-6c5d4e3f2a1b"}]
        assert clusters[name]["spec"]["idleTimeout"] == 900
        assert autoscalers[name]["spec"] == {"cluster": name, "minimum": 1, "maximum": 4}
        validate_custom_resource(
            {k: v for k, v in clusters[name].items() if k != "status"}
        )
        validate_custom_resource(
            {k: v for k, v in autoscalers[name].items() if k != "status"}
        )

        worker = _eventually(lambda: _worker_deployment(dask_operator, name))
        scheduler = dask_operator.objects("apps/v1/deployments")[f"{name}-scheduler"]
        service = dask_operator.objects("v1/services")[f"{name}-scheduler"]
        secret = dask_operator.objects("v1/secrets")[f"{name}-tls"]
    finally:
        backend.close()

    # The run's TLS Secret: owned by the DaskCluster (removed with it by the garbage
    # collector), holding this backend's certificate, and deleted by teardown itself.
    assert secret["type"] == "kubernetes.io/tls"
    assert secret["metadata"]["ownerReferences"] == [{
        "apiVersion": DASK, "kind": "DaskCluster", "name": name, "uid": clusters[name]["metadata"]["uid"]}]
    assert secret["metadata"]["labels"]["dask.org/cluster-name"] == name
    assert backend.tls is not None
    assert base64.b64decode(secret["data"]["tls.crt"]).decode() == backend.tls.cert_pem
    assert f"{name}-tls" not in dask_operator.objects("v1/secrets")
    assert "BEGIN" not in json.dumps([clusters[name], worker, scheduler])

    pod = worker["spec"]["template"]
    (container,) = pod["spec"]["containers"]
    assert container["image"] == IMAGE
    assert container["resources"]["limits"]["memory"] == "4Gi"
    env = {e["name"]: e for e in container["env"]}
    assert env["AWS_SECRET_ACCESS_KEY"]["valueFrom"]["secretKeyRef"] == {
        "name": "intccms-storage",
        "key": "secret",
    }
    assert all("value" not in env[n] for n in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"))
    # The operator keeps the pod's own scheduler address: TLS, at the Service's short name.
    assert env["DASK_SCHEDULER_ADDRESS"]["value"] == f"tls://{name}-scheduler:8786"
    assert {"name": "dask-tls", "secret": {"secretName": f"{name}-tls", "defaultMode": 0o400}} in pod["spec"]["volumes"]
    assert container["envFrom"] == [{"secretRef": {"name": "intccms-xrootd"}}]
    assert {"name": "http-dashboard", "containerPort": 8788, "protocol": "TCP"} in container[
        "ports"
    ]
    assert "intccms.metrics.preload" in container["args"]
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert pod["metadata"]["annotations"]["prometheus.io/port"] == "8788"
    assert pod["metadata"]["labels"]["app.kubernetes.io/component"] == "dask-worker"
    assert pod["metadata"]["labels"]["team"] == "cms"
    # What the chart's NetworkPolicies select on (tests/test_chart_netpol.py builds the same pods
    # with the operator's builders): the configured labels and the operator's component label
    # on both pod templates, and the named Dask ports.
    assert pod["metadata"]["labels"]["dask.org/component"] == "worker"
    sched_labels = scheduler["spec"]["template"]["metadata"]["labels"]
    assert (sched_labels["team"], sched_labels["dask.org/component"]) == ("cms", "scheduler")
    assert {p["name"] for p in container["ports"]} == {"tcp-comm", "tcp-nanny", "http-dashboard"}
    # The read-only root and the scratch emptyDir pass through the operator unchanged.
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert {"name": "scratch", "mountPath": "/tmp"} in container["volumeMounts"]
    assert "emptyDir" in {v["name"]: v for v in pod["spec"]["volumes"]}["scratch"]

    (sched_container,) = scheduler["spec"]["template"]["spec"]["containers"]
    assert sched_container["image"] == IMAGE
    assert scheduler["spec"]["template"]["metadata"]["annotations"]["prometheus.io/port"] == "8787"
    assert {p["port"] for p in service["spec"]["ports"]} == {8786, 8787}
    # Kubernetes' garbage collector removes these with the DaskCluster (the emulator has none).
    for child in (worker, scheduler, service):
        owners = child["metadata"]["ownerReferences"]
        assert any(o["kind"] in ("DaskCluster", "DaskWorkerGroup") for o in owners)

    assert name not in dask_operator.objects(f"{DASK}/daskclusters")
    assert name not in dask_operator.objects(f"{DASK}/daskautoscalers")


def test_waiting_for_the_scheduler_is_bounded_and_cleans_up(
    dask_operator: EmulatedCluster,
) -> None:
    backend = KubernetesBackend(_config(scheduler_timeout_s=2), run_id="bounded")
    started = time.monotonic()
    with pytest.raises(ClusterStartupError, match="scheduler_timeout_s") as info, backend:
        pytest.fail("no scheduler can run in the emulator; entering must fail")
    assert time.monotonic() - started < 60
    assert f"dask.org/cluster-name={backend.name}" in str(info.value)
    ever = dask_operator.ever_created(f"{DASK}/daskclusters")
    assert backend.name in ever, "the DaskCluster was never submitted"
    assert backend.name not in dask_operator.objects(f"{DASK}/daskclusters")
    assert backend.name not in dask_operator.objects(f"{DASK}/daskautoscalers")


def test_a_second_run_with_the_same_name_is_refused(
    dask_operator: EmulatedCluster,
) -> None:
    first = KubernetesBackend(_config(scheduler_timeout_s=60), run_id="twice")
    first.submit()
    try:
        second = KubernetesBackend(_config(scheduler_timeout_s=60), run_id="twice")
        with pytest.raises(ClusterStartupError, match="twice"):
            second.submit()
        second.close()
        assert first.name in dask_operator.objects(f"{DASK}/daskclusters")
    finally:
        first.close()


@pytest.mark.parametrize("interrupt", ["ctrl-c", "sigterm"])
def test_interrupt_inside_the_block_deletes_both_resources(
    dask_operator: EmulatedCluster,
    interrupt: str,
) -> None:
    """Ctrl-C, or SIGTERM from a deleted Job pod, inside ``with backend:`` still tears down."""
    cfg = _config(scheduler_timeout_s=60)
    cfg.wait.scheduler = False  # no pod runs in the emulator: submit only, then enter the block
    backend = KubernetesBackend(cfg, run_id=f"int-{interrupt}")
    name = backend.name
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(KeyboardInterrupt), backend as client:
        assert client is None
        assert name in dask_operator.objects(f"{DASK}/daskclusters")
        assert name in dask_operator.objects(f"{DASK}/daskautoscalers")
        _eventually(lambda: _worker_deployment(dask_operator, name))
        if interrupt == "ctrl-c":
            raise KeyboardInterrupt
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(10)
        pytest.fail("SIGTERM did not interrupt the block")
    assert name in dask_operator.ever_created(f"{DASK}/daskclusters")
    assert name not in dask_operator.objects(f"{DASK}/daskclusters")
    assert name not in dask_operator.objects(f"{DASK}/daskautoscalers")
    assert signal.getsignal(signal.SIGTERM) is before, "the previous SIGTERM handler is restored"


def test_runs_refuse_a_submit_only_cluster() -> None:
    from intccms.execute.backends import ClusterError, start_cluster

    cfg = {"kind": "kubernetes", "kubernetes": _config()}
    cfg["kubernetes"].wait.scheduler = False
    with pytest.raises(ClusterError, match=r"wait\.scheduler=false"), start_cluster(cfg, run_id="r"):
        pytest.fail("a run must not get a cluster without a client")


@pytest.mark.parametrize("pod_exists", [True, False])
def test_the_job_pods_controller_owns_the_cluster(
    dask_operator: EmulatedCluster,
    pod_exists: bool,
) -> None:
    """The job reads its own pod (downward-API name) and gives the DaskCluster the pod's Job."""
    from kr8s.objects import Pod

    job_ref = {"apiVersion": "batch/v1", "kind": "Job", "name": "intccms-run-7",
               "uid": "2c4e6a8b-0d1f-4a3c-9e5b-7d9f1b3c5e7a", "controller": True,
               "blockOwnerDeletion": True}
    pod_name = f"intccms-run-7-{'abcde' if pod_exists else 'gone0'}"
    if pod_exists:
        Pod({"apiVersion": "v1", "kind": "Pod",
             "metadata": {"name": pod_name, "namespace": NAMESPACE, "ownerReferences": [
                 {"apiVersion": "v1", "kind": "Node", "name": "n", "uid": "1"}, job_ref]},
             "spec": {"containers": [{"name": "intccms", "image": IMAGE}]}},
            namespace=NAMESPACE).create()
    cfg = _config(scheduler_timeout_s=60)
    cfg.owner_pod = pod_name
    backend = KubernetesBackend(cfg, run_id=f"owned-{pod_exists}")
    try:
        backend.submit()
        cluster = dask_operator.objects(f"{DASK}/daskclusters")[backend.name]
    finally:
        backend.close()
    if pod_exists:  # only the controller, without blockOwnerDeletion (no RBAC on the Job needed)
        assert cluster["metadata"]["ownerReferences"] == [
            {k: job_ref[k] for k in ("apiVersion", "kind", "name", "uid")}]
    else:  # no pod: the run goes on unowned (the idle timeout remains)
        assert not cluster["metadata"].get("ownerReferences")
    assert backend.name not in dask_operator.objects(f"{DASK}/daskclusters")


def test_the_charts_job_role_grants_every_call_the_backend_makes(
    dask_operator: EmulatedCluster,
) -> None:
    """RBAC from what the job's code really asks the API server (recorded by the emulator
    per client token) over a whole run: submit, owner lookup, waiting for the scheduler,
    the autoscaler, teardown. A call the chart's Role lacks would be a 403 on a cluster."""
    from fixtures.facility import _helm, render_chart

    if _helm() is None:
        pytest.skip("helm is not installed: run tests/setup/install_helm.sh")
    cfg = _config(scheduler_timeout_s=2)
    cfg.owner_pod = "intccms-run-2-abcde"  # the job's own pod (absent here: looked up, not found;
    # kr8s reads one object by name as a list with a field selector, so that is a "list")
    mark = dask_operator.calls_mark()
    backend = KubernetesBackend(cfg, run_id="rbac")
    with pytest.raises(ClusterStartupError, match="scheduler_timeout_s"), backend:
        pytest.fail("no scheduler can run in the emulator; entering must fail")
    calls = dask_operator.calls_by(JOB_TOKEN, since=mark)
    used = {(c.api_group, c.resource, c.verb) for c in calls}
    # The recording is real: the job's own lifecycle, and nothing the operator does.
    assert {("kubernetes.dask.org", "daskclusters", "create"), ("kubernetes.dask.org", "daskautoscalers", "create"),
            ("kubernetes.dask.org", "daskclusters", "delete"), ("", "pods", "list")} <= used, sorted(used)
    assert not {c for c in calls if c.resource == "deployments"}, "deployments are the operator's calls"
    assert {(c.resource, c.verb) for c in dask_operator.calls_by(OPERATOR_TOKEN)} >= {("deployments", "create")}

    role = next(o for o in render_chart({}, NAMESPACE)
                if o["kind"] == "Role" and o["metadata"]["name"].endswith("-job"))
    granted = {(group, res, verb) for rule in role["rules"] for group in rule["apiGroups"]
               for res in rule["resources"] for verb in rule["verbs"]}
    assert used <= granted, f"the job's Role lacks {sorted(used - granted)}"
    # Secrets: exactly what the run's TLS Secret needs, and no read of any Secret.
    assert {v for _, r, v in used if r == "secrets"} == {v for _, r, v in granted if r == "secrets"} \
        == {"create", "delete"}

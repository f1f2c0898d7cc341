"""The chart's NetworkPolicies, rendered by the real helm and checked against the pods they govern.

Kubernetes cannot run here, so the policies are evaluated the way the API's NetworkPolicy
semantics define (pod and namespace label selectors, named ports, "no rule admits" = denied)
against the labels and ports of the real pods: the Job, Prometheus, Grafana and operator pods
of the same render, and the scheduler and worker pods that the Dask operator's own builders make
from the DaskCluster the backend generates from the rendered facility configuration.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from test_chart import CHART, NAMESPACE, RenderError, _one, helm, render  # noqa: F401

pytestmark = pytest.mark.k8s
RELEASE = "intccms"  # the release name test_chart.render uses
ALL_FEATURES = CHART / "ci/all-features-values.yaml"
EXTERNAL = CHART / "ci/external-monitoring-values.yaml"


# -- NetworkPolicy semantics ---------------------------------------------------------------------


@dataclass(frozen=True)
class Pod:
    """What a NetworkPolicy sees of a pod: namespace, labels and named container ports."""

    name: str
    labels: dict[str, str]
    ports: dict[str, int] = field(default_factory=dict)
    namespace: str = NAMESPACE


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """A metav1.LabelSelector applied to labels (an empty selector selects everything)."""
    if any(labels.get(k) != v for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr["key"], expr["operator"], expr.get("values") or []
        ok = {"In": key in labels and labels[key] in values,
              "NotIn": key not in labels or labels[key] not in values,
              "Exists": key in labels, "DoesNotExist": key not in labels}[op]
        if not ok:
            return False
    return True


def peer_admits(peer: dict[str, Any], source: Pod, policy_namespace: str) -> bool:
    """A NetworkPolicyPeer: podSelector alone means the policy's namespace."""
    assert "ipBlock" not in peer, "ipBlock peers are not evaluated here"
    namespace_labels = {"kubernetes.io/metadata.name": source.namespace}
    if "namespaceSelector" in peer:
        in_namespace = selects(peer["namespaceSelector"], namespace_labels)
    else:
        in_namespace = source.namespace == policy_namespace
    return in_namespace and selects(peer.get("podSelector") or {}, source.labels)


def port_matches(rule: dict[str, Any], target: Pod, port: str) -> bool:
    """A rule's ports against a named container port of the target (no ports: all ports)."""
    if not rule.get("ports"):
        return True
    return any(p.get("port") in (port, target.ports[port]) and p.get("protocol", "TCP") == "TCP"
               for p in rule["ports"])


def isolating(policies: list[dict[str, Any]], target: Pod) -> list[dict[str, Any]]:
    """The ingress policies that select the target (none: the target is not isolated)."""
    return [p for p in policies
            if "Ingress" in p["spec"].get("policyTypes", ["Ingress"])
            and p["metadata"].get("namespace", NAMESPACE) == target.namespace
            and selects(p["spec"]["podSelector"], target.labels)]


def admitted(policies: list[dict[str, Any]], source: Pod, target: Pod, port: str) -> bool:
    """Whether a TCP connection from source to the target's named port is allowed."""
    assert port in target.ports, f"{target.name} has no port {port}"
    selecting = isolating(policies, target)
    if not selecting:
        return True
    for policy in selecting:
        namespace = policy["metadata"].get("namespace", NAMESPACE)
        for rule in policy["spec"].get("ingress") or []:
            peers = rule.get("from") or []
            from_ok = not peers or any(peer_admits(p, source, namespace) for p in peers)
            if from_ok and port_matches(rule, target, port):
                return True
    return False


# -- the pods ------------------------------------------------------------------------------------


def _template_pod(obj: dict[str, Any], name: str) -> Pod:
    template = obj["spec"]["template"]
    ports = {p["name"]: p["containerPort"]
             for c in template["spec"]["containers"] for p in c.get("ports") or [] if p.get("name")}
    return Pod(name, dict(template["metadata"]["labels"]), ports)


def dask_pods(objs: list[dict[str, Any]]) -> dict[str, Pod]:
    """Scheduler and worker pods of one run, as the Dask operator builds them from the
    DaskCluster that the backend generates from the rendered facility configuration."""
    import kopf
    from dask_kubernetes.operator.controller import controller as operator
    from omegaconf import OmegaConf

    from intccms.config.k8s_specs import make_cluster_spec
    from intccms.config.kubernetes import KubernetesClusterConfig

    facility = yaml.safe_load(_one(objs, "ConfigMap", "-facility")["data"]["facility.yaml"])
    cfg = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(KubernetesClusterConfig),
                                              facility["cluster"]["kubernetes"]))
    cluster = make_cluster_spec(cfg, "r1")
    name, cluster_labels = cluster["metadata"]["name"], cluster["metadata"]["labels"]
    # daskcluster_create_components: the DaskCluster's labels, then the role's.
    sched = cluster["spec"]["scheduler"]
    scheduler = operator.build_scheduler_deployment_spec(
        name, sched["spec"], {}, {**cluster_labels, **sched["metadata"]["labels"]})
    worker_spec = cluster["spec"]["worker"]
    group = operator.build_default_worker_group_spec(
        name, worker_spec, {}, {**cluster_labels, **worker_spec["metadata"]["labels"]})
    # daskworkergroup_replica_update: the group's labels, then the role's, then the cluster's.
    worker = operator.build_worker_deployment_spec(
        group["metadata"]["name"], NAMESPACE, name, "0123456789", worker_spec["spec"], {},
        {**group["metadata"]["labels"], **worker_spec["metadata"]["labels"]})
    kopf.label(worker, labels=cluster_labels)
    return {"scheduler": _template_pod(scheduler, "scheduler"), "worker": _template_pod(worker, "worker")}


def chart_pods(objs: list[dict[str, Any]]) -> dict[str, Pod]:
    """The chart's own pods (Job, Prometheus, Grafana, operator) as rendered."""
    pods = {"job": _template_pod(_one(objs, "Job"), "job")}
    for suffix in ("prometheus", "grafana", "dask-kubernetes-operator"):
        found = [o for o in objs if o["kind"] == "Deployment" and o["metadata"]["name"].endswith(suffix)]
        if found:
            pods[suffix.removeprefix("dask-kubernetes-")] = _template_pod(found[0], suffix)
    return pods


def _elsewhere(pod: Pod, release: str) -> Pod:
    """The same pod of another release in the same namespace."""
    labels = {k: release if k in ("app.kubernetes.io/instance", "intccms.io/release") else v
              for k, v in pod.labels.items()}
    return Pod(f"{pod.name}@{release}", labels, pod.ports)


STRANGER = Pod("debug", {"app": "debug", "app.kubernetes.io/part-of": "intccms"})


def _policies(objs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [o for o in objs if o["kind"] == "NetworkPolicy"]


@pytest.fixture(scope="module")
def default(helm: str) -> tuple[list[dict[str, Any]], dict[str, Pod]]:  # noqa: F811
    objs = render(helm)
    return _policies(objs), {**chart_pods(objs), **dask_pods(objs)}


# -- the policies ----------------------------------------------------------------------------------


@pytest.mark.parametrize("values", [None, ALL_FEATURES, EXTERNAL, CHART / "ci/minimal-values.yaml"],
                         ids=["default", "all-features", "external-monitoring", "minimal"])
def test_policies_validate_against_kubernetes(helm: str, values: Path | None) -> None:  # noqa: F811
    policies = _policies(render(helm, *(["-f", str(values)] if values else [])))
    assert {p["metadata"]["name"] for p in policies} >= {
        "intccms-default-deny", "intccms-dask-default-deny", "intccms-dask-scheduler", "intccms-dask-worker"}
    for policy in policies:
        for kube in ("1.30.0", "1.33.0"):
            kubernetes_validate.validate(policy, kube, strict=True)
        assert "Egress" not in policy["spec"]["policyTypes"], "egress is left open on purpose"
        for rule in policy["spec"].get("ingress", []):
            assert rule.get("from"), f"{policy['metadata']['name']}: a rule without peers admits everyone"
            assert rule.get("ports"), f"{policy['metadata']['name']}: a rule without ports admits all ports"


def test_every_pod_of_the_release_is_isolated_and_no_other(default: tuple) -> None:
    policies, pods = default
    for pod in pods.values():
        assert isolating(policies, pod), f"{pod.name} is selected by no policy: open to all"
    for pod in (STRANGER, *(_elsewhere(p, "other") for p in pods.values())):
        assert not isolating(policies, pod), f"{pod.name} is not ours but a policy selects it"


# (source, target, port) -> admitted, with default values.
DEFAULT_MATRIX = [
    ("job", "scheduler", "tcp-comm", True),
    ("worker", "scheduler", "tcp-comm", True),
    ("operator", "scheduler", "tcp-comm", True),
    ("operator", "scheduler", "http-dashboard", True),
    ("prometheus", "scheduler", "http-dashboard", True),
    ("prometheus", "scheduler", "tcp-comm", False),
    ("grafana", "scheduler", "tcp-comm", False),
    ("job", "scheduler", "http-dashboard", False),
    ("worker", "scheduler", "http-dashboard", False),
    ("scheduler", "worker", "tcp-comm", True),
    ("scheduler", "worker", "tcp-nanny", True),
    ("worker", "worker", "tcp-comm", True),
    ("worker", "worker", "tcp-nanny", False),
    ("prometheus", "worker", "http-dashboard", True),
    ("scheduler", "worker", "http-dashboard", False),
    ("worker", "worker", "http-dashboard", False),
    ("job", "worker", "tcp-comm", False),
    ("operator", "worker", "tcp-comm", False),
    ("grafana", "prometheus", "http", True),
    ("job", "prometheus", "http", False),
    ("worker", "prometheus", "http", False),
    ("job", "grafana", "http", False),
    ("prometheus", "grafana", "http", False),
]


@pytest.mark.parametrize(("source", "target", "port", "allowed"), DEFAULT_MATRIX,
                         ids=[f"{s}->{t}:{p}" for s, t, p, _ in DEFAULT_MATRIX])
def test_default_policies_admit_exactly_the_facility_traffic(
    default: tuple, source: str, target: str, port: str, allowed: bool
) -> None:
    policies, pods = default
    assert admitted(policies, pods[source], pods[target], port) is allowed


@pytest.mark.parametrize("target", ["scheduler", "worker", "job", "prometheus", "grafana", "operator"])
def test_strangers_reach_no_port_of_any_pod(default: tuple, target: str) -> None:
    """An arbitrary pod in the namespace, the same pods of another release, and the same pods
    in another namespace are refused on every port."""
    policies, pods = default
    strangers = [STRANGER, *(_elsewhere(p, "other") for p in pods.values()),
                 *(Pod(p.name, p.labels, p.ports, "elsewhere") for p in pods.values())]
    for port in pods[target].ports:
        for stranger in strangers:
            assert not admitted(policies, stranger, pods[target], port), (stranger.name, target, port)


def test_values_open_grafana_prometheus_and_metrics_to_named_peers(helm: str) -> None:  # noqa: F811
    objs = render(helm, "-f", str(ALL_FEATURES))
    policies, pods = _policies(objs), {**chart_pods(objs), **dask_pods(objs)}
    monitoring = Pod("kps", {"app.kubernetes.io/name": "prometheus"}, namespace="monitoring")
    ingress = Pod("nginx", {"app.kubernetes.io/name": "ingress-nginx"}, namespace="ingress-nginx")
    assert admitted(policies, ingress, pods["grafana"], "http")
    assert not admitted(policies, monitoring, pods["grafana"], "http")
    assert admitted(policies, monitoring, pods["prometheus"], "http")
    for role in ("scheduler", "worker"):
        assert admitted(policies, monitoring, pods[role], "http-dashboard"), role
        assert not admitted(policies, monitoring, pods[role], "tcp-comm"), role
        # The namespace and the pod labels must both match.
        other = Pod("kps", {"app.kubernetes.io/name": "prometheus"}, namespace="team-a")
        assert not admitted(policies, other, pods[role], "http-dashboard"), role
        assert not admitted(policies, ingress, pods[role], "http-dashboard"), role


def test_an_operator_installed_elsewhere_reaches_the_schedulers_only(helm: str) -> None:  # noqa: F811
    objs = render(helm, "-f", str(EXTERNAL))
    policies, pods = _policies(objs), dask_pods(objs)
    operator = Pod("op", {"app.kubernetes.io/name": "dask-kubernetes-operator"}, namespace="dask-operator")
    assert admitted(policies, operator, pods["scheduler"], "tcp-comm")
    assert admitted(policies, operator, pods["scheduler"], "http-dashboard")
    assert not admitted(policies, operator, pods["worker"], "tcp-comm")
    # Without the built-in Prometheus the metrics ports admit only metricsFrom.
    builtin = Pod("prom", {"app.kubernetes.io/name": "intccms", "app.kubernetes.io/instance": RELEASE,
                           "app.kubernetes.io/component": "prometheus"})
    assert not admitted(policies, builtin, pods["worker"], "http-dashboard")


@pytest.mark.parametrize(("args", "message"), [
    (["--set", "prometheus.podMonitor.enabled=true"], "networkPolicy.metricsFrom"),
    (["--set", "prometheus.serviceMonitor.enabled=true"], "networkPolicy.metricsFrom"),
    (["--set", "dask-kubernetes-operator.enabled=false"], "networkPolicy.operatorFrom"),
    (["--set-json", 'networkPolicy.grafanaFrom=[{"podSelectr": {}}]'], "podSelectr"),
])
def test_values_the_policies_cannot_serve_fail_the_render(helm: str, args: list[str], message: str) -> None:  # noqa: F811
    with pytest.raises(RenderError, match=message):
        render(helm, *args)


def test_policies_can_be_switched_off(helm: str) -> None:  # noqa: F811
    objs = render(helm, "--set", "networkPolicy.enabled=false", "--set", "prometheus.podMonitor.enabled=true",
                  "--set", "dask-kubernetes-operator.enabled=false")
    assert not _policies(objs)


def test_dask_pods_carry_the_labels_the_policies_select(default: tuple) -> None:
    """The release label comes from the facility configuration the chart renders, the
    component label from the operator: both reach the pod templates."""
    _, pods = default
    assert pods["scheduler"].labels["intccms.io/release"] == RELEASE
    assert pods["scheduler"].labels["dask.org/component"] == "scheduler"
    assert pods["worker"].labels["intccms.io/release"] == RELEASE
    assert pods["worker"].labels["dask.org/component"] == "worker"
    assert set(pods["worker"].ports) == {"tcp-comm", "tcp-nanny", "http-dashboard"}

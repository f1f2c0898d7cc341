"""The pure DaskCluster / DaskAutoscaler builders, checked without Kubernetes.

Every manifest is validated against the operator's own CRD schemas (from the installed
dask-kubernetes wheel), and the security and metrics properties the facility relies on are
asserted field by field.
"""

from __future__ import annotations

import ast
import json
from pathlib import Path

import jsonschema
import pytest
import yaml
from fixtures.k8s import validate_custom_resource
from omegaconf import OmegaConf

from intccms.config.k8s_specs import (
    MAX_CLUSTER_NAME_LEN,
    SCRATCH_PATH,
    SpecError,
    cluster_name,
    make_autoscaler_spec,
    make_cluster_spec,
    memory_bytes,
)
from intccms.config.kubernetes import (
    KubernetesClusterConfig,
    SecretEnvVar,
    Toleration,
)

pytestmark = pytest.mark.k8s
REPO = Path(__file__).resolve().parents[1]


def _full_config() -> KubernetesClusterConfig:
    cfg = KubernetesClusterConfig(
        image="registry.example/intccms:0.1.0",
        namespace="analysis",
        env={"INTCCMS_LOG_LEVEL": "INFO"},
        env_from_secrets=[
            SecretEnvVar(name="AWS_ACCESS_KEY_ID", secret_name="s3", key="access_key"),
            SecretEnvVar(name="AWS_SECRET_ACCESS_KEY", secret_name="s3", key="secret_key"),
        ],
        env_from_secret_names=["xrootd-token"],
        image_pull_secrets=["regcred"],
        node_selector={"node-role/analysis": "true"},
        tolerations=[Toleration(key="dedicated", value="analysis", effect="NoSchedule")],
        labels={"team": "cms"},
        annotations={"owner": "cms-analysis"},
    )
    cfg.adapt.minimum, cfg.adapt.maximum = 2, 50
    return cfg


def _containers(spec: dict, role: str) -> list[dict]:
    return spec["spec"][role]["spec"]["containers"]


@pytest.mark.parametrize("cfg", [KubernetesClusterConfig(), _full_config()], ids=["default", "full"])
def test_specs_validate_against_operator_crds(cfg: KubernetesClusterConfig) -> None:
    validate_custom_resource(make_cluster_spec(cfg, "run-1"))
    validate_custom_resource(make_autoscaler_spec(cfg, "run-1"))


def test_crd_validation_catches_a_misspelt_field() -> None:
    spec = make_cluster_spec(KubernetesClusterConfig(), "run-1")
    spec["spec"]["worker"]["replica"] = 3  # the CRD field is "replicas"
    with pytest.raises(jsonschema.ValidationError, match="replica"):
        validate_custom_resource(spec)
    autoscaler = make_autoscaler_spec(KubernetesClusterConfig(), "run-1")
    autoscaler["spec"]["minimum"] = None  # what cluster.adapt() without arguments sends
    with pytest.raises(jsonschema.ValidationError):
        validate_custom_resource(autoscaler)


def test_credentials_only_by_secret_reference() -> None:
    spec = make_cluster_spec(_full_config(), "run-1")
    for role in ("worker", "scheduler"):
        (container,) = _containers(spec, role)
        by_name = {e["name"]: e for e in container["env"]}
        assert by_name["AWS_SECRET_ACCESS_KEY"] == {
            "name": "AWS_SECRET_ACCESS_KEY",
            "valueFrom": {"secretKeyRef": {"name": "s3", "key": "secret_key"}},
        }
        assert "value" not in by_name["AWS_ACCESS_KEY_ID"]
        assert container["envFrom"] == [{"secretRef": {"name": "xrootd-token"}}]


def test_plain_env_that_looks_like_a_credential_is_refused() -> None:
    cfg = KubernetesClusterConfig(env={"AWS_SECRET_ACCESS_KEY": "hunter2"})
    with pytest.raises(SpecError, match="env_from_secrets") as info:
        make_cluster_spec(cfg, "run-1")
    assert "hunter2" not in str(info.value)


def test_incomplete_secret_reference_is_refused() -> None:
    cfg = KubernetesClusterConfig(env_from_secrets=[SecretEnvVar(name="TOKEN", secret_name="x")])
    with pytest.raises(SpecError, match="needs name, secret_name and key"):
        make_cluster_spec(cfg, "run-1")


def test_pods_are_hardened_and_resourced() -> None:
    spec = make_cluster_spec(KubernetesClusterConfig(), "run-1")
    for role in ("worker", "scheduler"):
        pod = spec["spec"][role]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["automountServiceAccountToken"] is False
        (container,) = pod["containers"]
        sc = container["securityContext"]
        assert sc["allowPrivilegeEscalation"] is False
        assert sc["runAsUser"] == 1000
        assert sc["capabilities"] == {"drop": ["ALL"]}
        assert container["resources"]["limits"]["memory"]
        assert container["resources"]["requests"]["cpu"]


def _env_values(container: dict) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container["env"] if "value" in e}


@pytest.mark.parametrize(("role", "size"), [("scheduler", "1Gi"), ("worker", "10Gi")])
def test_root_filesystem_is_read_only_with_an_emptydir_for_scratch(role: str, size: str) -> None:
    """Scheduler and workers write only to their scratch emptyDir, where Dask's local
    directory and the library caches point."""
    pod = make_cluster_spec(_full_config(), "run-1")["spec"][role]["spec"]
    (container,) = pod["containers"]
    sc = container["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["runAsNonRoot"] is True and pod["securityContext"]["runAsNonRoot"] is True
    assert sc["privileged"] is False
    scratch = [m for m in container["volumeMounts"] if m["mountPath"] == SCRATCH_PATH]
    assert len(scratch) == 1 and not scratch[0].get("readOnly")
    volume = {v["name"]: v for v in pod["volumes"]}[scratch[0]["name"]]
    assert volume["emptyDir"] == {"sizeLimit": size}
    env = _env_values(container)
    assert env["DASK_TEMPORARY_DIRECTORY"] == SCRATCH_PATH
    for key in ("MPLCONFIGDIR", "NUMBA_CACHE_DIR"):
        assert env[key].startswith(SCRATCH_PATH + "/"), key


def test_dask_reads_its_local_directory_and_spill_bound_from_the_pod_env() -> None:
    """The variable names are the ones Dask's config really reads (a typo would leave the
    local directory on the read-only root)."""
    import dask.config

    (container,) = make_cluster_spec(KubernetesClusterConfig(), "run-1")["spec"]["worker"]["spec"]["containers"]
    env = {k: v for k, v in _env_values(container).items() if k.startswith("DASK_")}
    config = dask.config.collect(paths=[], env=env)
    assert dask.config.get("temporary-directory", config=config) == SCRATCH_PATH
    # Dask stops spilling before the 10Gi emptyDir is full (a full one gets the pod evicted).
    max_spill = dask.config.get("distributed.worker.memory.max-spill", config=config)
    assert max_spill == int(10 * 2**30 * 0.8)


def test_scratch_settings_can_be_overridden_and_are_checked() -> None:
    cfg = KubernetesClusterConfig(env={"DASK_TEMPORARY_DIRECTORY": "/tmp/dask"})
    cfg.worker.scratch_size_limit = "50Gi"
    worker = make_cluster_spec(cfg, "run-1")["spec"]["worker"]["spec"]
    names = [e["name"] for e in worker["containers"][0]["env"]]
    assert names.count("DASK_TEMPORARY_DIRECTORY") == 1
    assert _env_values(worker["containers"][0])["DASK_TEMPORARY_DIRECTORY"] == "/tmp/dask"
    assert worker["volumes"][0]["emptyDir"] == {"sizeLimit": "50Gi"}
    cfg.scheduler.scratch_size_limit = "lots"
    with pytest.raises(SpecError, match=r"scheduler\.scratch_size_limit='lots'"):
        make_cluster_spec(cfg, "run-1")


@pytest.mark.parametrize(("name", "path"), [("scratch", "/data"), ("data", "/tmp")])
def test_a_claim_cannot_take_the_scratch_volume(name: str, path: str) -> None:
    from intccms.config.kubernetes import VolumeClaimMount

    cfg = KubernetesClusterConfig(volumes=[VolumeClaimMount(name=name, claim_name="c", mount_path=path)])
    with pytest.raises(SpecError, match=r"volumes\[0\]: .*scratch volume"):
        make_cluster_spec(cfg, "run-1")


def test_root_user_is_refused() -> None:
    with pytest.raises(SpecError, match="non-root"):
        make_cluster_spec(KubernetesClusterConfig(run_as_user=0), "run-1")


def test_worker_metrics_port_and_prometheus_discovery() -> None:
    spec = make_cluster_spec(_full_config(), "run-1")
    worker = spec["spec"]["worker"]
    (container,) = worker["spec"]["containers"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"tcp-comm": 8789, "tcp-nanny": 8790, "http-dashboard": 8788}
    args = container["args"]
    assert args[0] == "worker"
    assert args[args.index("--dashboard-address") + 1] == ":8788"
    # Fixed worker and nanny ports under their own names: a NetworkPolicy admits the scheduler
    # and the other workers there and Prometheus on the metrics port only.
    assert args[args.index("--worker-port") + 1] == "8789"
    assert args[args.index("--nanny-port") + 1] == "8790"
    assert args[args.index("--preload") + 1] == "intccms.metrics.preload"
    ann = worker["metadata"]["annotations"]
    assert ann["prometheus.io/scrape"] == "true"
    assert ann["prometheus.io/port"] == "8788"
    assert ann["owner"] == "cms-analysis"
    labels = worker["metadata"]["labels"]
    assert labels["app.kubernetes.io/component"] == "dask-worker"
    assert labels["app.kubernetes.io/name"] == "intccms"
    assert labels["team"] == "cms"
    sched = spec["spec"]["scheduler"]
    assert sched["metadata"]["annotations"]["prometheus.io/port"] == "8787"
    assert sched["metadata"]["labels"]["app.kubernetes.io/component"] == "dask-scheduler"


def test_prometheus_annotations_can_be_switched_off() -> None:
    cfg = KubernetesClusterConfig()
    cfg.prometheus.enabled = False
    spec = make_cluster_spec(cfg, "run-1")
    assert "prometheus.io/scrape" not in spec["spec"]["worker"]["metadata"]["annotations"]


def test_worker_memory_limit_leaves_headroom_under_container_limit() -> None:
    spec = make_cluster_spec(KubernetesClusterConfig(), "run-1")
    args = _containers(spec, "worker")[0]["args"]
    limit = int(args[args.index("--memory-limit") + 1])
    assert limit == int(4 * 2**30 * 0.9)
    assert memory_bytes("512Mi") == 512 * 2**20
    assert memory_bytes("2G") == 2 * 10**9
    with pytest.raises(SpecError, match="4Gi"):
        memory_bytes("four gigs")


def test_scheduling_constraints_reach_both_pods() -> None:
    spec = make_cluster_spec(_full_config(), "run-1")
    for role in ("worker", "scheduler"):
        pod = spec["spec"][role]["spec"]
        assert pod["nodeSelector"] == {"node-role/analysis": "true"}
        assert pod["tolerations"] == [
            {"key": "dedicated", "operator": "Equal", "value": "analysis", "effect": "NoSchedule"}
        ]
        assert pod["imagePullSecrets"] == [{"name": "regcred"}]


def test_autoscaler_bounds_are_integers() -> None:
    spec = make_autoscaler_spec(_full_config(), "run-1")
    assert spec["spec"] == {"cluster": "intccms-run-1", "minimum": 2, "maximum": 50}
    cfg = KubernetesClusterConfig()
    cfg.adapt.minimum, cfg.adapt.maximum = 5, 2
    with pytest.raises(SpecError, match="minimum <= maximum"):
        make_cluster_spec(cfg, "run-1")


@pytest.mark.parametrize(
    ("run_id", "expected"),
    [("2026-11-25T10:00:00", "intccms-2026-11-25t10-00-00"), ("A_B", "intccms-a-b")],
)
def test_cluster_names_are_dns_labels(run_id: str, expected: str) -> None:
    assert cluster_name(KubernetesClusterConfig(), run_id) == expected


def test_long_run_ids_are_truncated_to_fit_worker_names() -> None:
    name = cluster_name(KubernetesClusterConfig(), "x" * 200)
    assert len(name) <= MAX_CLUSTER_NAME_LEN
    assert len(f"{name}-default-worker-0123456789") <= 63


def test_fixed_cluster_name_is_checked() -> None:
    with pytest.raises(SpecError, match="DNS-1123"):
        cluster_name(KubernetesClusterConfig(cluster_name="Bad_Name"), "r")


def test_group_file_fills_the_schema() -> None:
    """conf/cluster/kubernetes.yaml merges into the dataclass schema without unknown keys."""
    data = yaml.safe_load((REPO / "conf/cluster/kubernetes.yaml").read_text())
    assert data["kind"] == "kubernetes"
    merged = OmegaConf.merge(OmegaConf.structured(KubernetesClusterConfig), data["kubernetes"])
    cfg = OmegaConf.to_object(merged)
    assert isinstance(cfg, KubernetesClusterConfig)
    assert isinstance(cfg.adapt.minimum, int) and isinstance(cfg.adapt.maximum, int)
    validate_custom_resource(make_cluster_spec(cfg, "run-1"))
    validate_custom_resource(make_autoscaler_spec(cfg, "run-1"))
    json.dumps(make_cluster_spec(cfg, "run-1"))  # serialisable: no OmegaConf nodes left


def test_claims_are_mounted_into_workers_only() -> None:
    from intccms.config.kubernetes import VolumeClaimMount

    cfg = _full_config()
    cfg.volumes = [VolumeClaimMount(name="shared", claim_name="data", mount_path="/shared"),
                   VolumeClaimMount(name="ref", claim_name="refs", mount_path="/ref", read_only=True)]
    spec = make_cluster_spec(cfg, "run-1")
    validate_custom_resource(spec)
    worker = spec["spec"]["worker"]["spec"]
    assert worker["volumes"][1:-1] == [
        {"name": "shared", "persistentVolumeClaim": {"claimName": "data"}},
        {"name": "ref", "persistentVolumeClaim": {"claimName": "refs", "readOnly": True}},
    ]
    assert _containers(spec, "worker")[0]["volumeMounts"][1:-1] == [
        {"name": "shared", "mountPath": "/shared", "readOnly": False},
        {"name": "ref", "mountPath": "/ref", "readOnly": True},
    ]
    scheduler = spec["spec"]["scheduler"]["spec"]
    assert [v["name"] for v in scheduler["volumes"]] == ["scratch", "dask-tls"]


@pytest.mark.parametrize(("name", "claim", "path", "message"), [
    ("Shared", "data", "/shared", "DNS-label name"),
    ("shared", "", "/shared", "claim_name"),
    ("shared", "data", "shared", "absolute mount_path"),
])
def test_incomplete_claim_mount_is_refused(name: str, claim: str, path: str, message: str) -> None:
    from intccms.config.kubernetes import VolumeClaimMount

    cfg = _full_config()
    cfg.volumes = [VolumeClaimMount(name=name, claim_name=claim, mount_path=path)]
    with pytest.raises(SpecError, match=r"volumes\[0\].*" + message):
        make_cluster_spec(cfg, "run-1")


def test_owner_reference_and_idle_timeout_reach_the_cluster() -> None:
    from intccms.config.kubernetes import OwnerReference

    cfg = _full_config()
    cfg.idle_timeout_s = 1800
    cfg.owner = OwnerReference(name="intccms-run-3", uid="0b6f5e4c-1d2a-4c1e-9a57-3f1c2d9e8b70")
    spec = make_cluster_spec(cfg, "run-1")
    validate_custom_resource(spec)
    assert spec["spec"]["idleTimeout"] == 1800
    assert spec["metadata"]["ownerReferences"] == [{
        "apiVersion": "batch/v1", "kind": "Job", "name": "intccms-run-3",
        "uid": "0b6f5e4c-1d2a-4c1e-9a57-3f1c2d9e8b70",
    }]
    assert "ownerReferences" not in make_cluster_spec(_full_config(), "run-1")["metadata"]


@pytest.mark.parametrize(("name", "uid"), [("intccms-run-3", ""), ("", "0b6f5e4c")])
def test_half_an_owner_is_refused(name: str, uid: str) -> None:
    from intccms.config.kubernetes import OwnerReference

    cfg = _full_config()
    cfg.owner = OwnerReference(name=name, uid=uid)
    with pytest.raises(SpecError, match="owner needs api_version, kind, name and uid"):
        make_cluster_spec(cfg, "run-1")


def test_negative_idle_timeout_is_refused() -> None:
    cfg = _full_config()
    cfg.idle_timeout_s = -1
    with pytest.raises(SpecError, match="idle_timeout_s"):
        make_cluster_spec(cfg, "run-1")


def test_run2_skim_composes_with_the_kubernetes_cluster() -> None:
    from intccms.config import compose_config
    from intccms.config.kubernetes import parse_kubernetes_config

    cfg = compose_config("run2_skim", ["cluster=kubernetes", "cluster.kubernetes.adapt.maximum=40"])
    assert cfg.cluster.kind == "kubernetes"
    k8s = parse_kubernetes_config(cfg.cluster.kubernetes)
    assert isinstance(k8s, KubernetesClusterConfig)
    assert k8s.adapt.maximum == 40
    validate_custom_resource(make_cluster_spec(k8s, "run-1"))
    validate_custom_resource(make_autoscaler_spec(k8s, "run-1"))


@pytest.mark.parametrize(("override", "message"), [
    ("+cluster.kubernetes.imagee=registry.example/x:1",
     r"cluster\.kubernetes\.imagee is not a known key; did you mean 'image'"),
    ("+cluster.kubernetes.worker.thread=2",
     r"cluster\.kubernetes\.worker\.thread is not a known key; did you mean 'threads'"),
    ("cluster.kubernetes.adapt.maximum=lots", r"cluster\.kubernetes\.adapt\.maximum: .*'lots'"),
])
def test_a_typo_in_cluster_kubernetes_fails_at_start_up(override: str, message: str) -> None:
    from intccms.config import ConfigError, compose_config

    with pytest.raises(ConfigError, match=message):
        compose_config("run2_skim", ["cluster=kubernetes", override])


def test_a_typo_in_a_facility_file_fails_naming_the_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The chart's ConfigMap (job.extraConfig) reaches cluster.kubernetes without Hydra's '+'."""
    from intccms.config import ConfigError, compose_config

    (tmp_path / "facility.yaml").write_text(
        "defaults: [run2_skim, {override cluster: kubernetes}, _self_]\n"
        "cluster:\n  kubernetes:\n    wait:\n      wokers: 3\n")
    monkeypatch.setenv("INTCCMS_EXTRA_CONF_DIR", str(tmp_path))
    with pytest.raises(ConfigError, match=r"cluster\.kubernetes\.wait\.wokers is not a known key; did you mean 'workers'"):
        compose_config("facility")


def test_tls_mounts_the_runs_secret_read_only_and_speaks_tls() -> None:
    """Scheduler and workers mount ``<cluster>-tls`` (files 0400) and get Dask's TLS settings;
    both listen on ``tls://``, workers find the scheduler at a ``tls://`` address, and the
    scheduler serves Dask's HTTP API for the operator, which has no certificate."""
    from intccms.config.k8s_specs import TLS_MOUNT_PATH, tls_env

    cfg = _full_config()
    assert cfg.tls is True  # on by default
    spec = make_cluster_spec(cfg, "run-1")
    validate_custom_resource(spec)
    secret = "intccms-run-1-tls"
    for role in ("scheduler", "worker"):
        pod = spec["spec"][role]["spec"]
        (container,) = pod["containers"]
        assert {"name": "dask-tls", "secret": {"secretName": secret, "defaultMode": 0o400}} in pod["volumes"]
        assert {"name": "dask-tls", "mountPath": TLS_MOUNT_PATH, "readOnly": True} in container["volumeMounts"]
        env = {e["name"]: e.get("value") for e in container["env"]}
        assert {k: env.get(k) for k in tls_env()} == tls_env()
        assert env["DASK_DISTRIBUTED__COMM__REQUIRE_ENCRYPTION"] == "True"
        assert env["DASK_DISTRIBUTED__COMM__TLS__CLIENT__KEY"] == f"{TLS_MOUNT_PATH}/tls.key"
        args = container["args"]
        assert args[args.index("--protocol") + 1] == "tls"
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
    worker_env = {e["name"]: e.get("value") for e in _containers(spec, "worker")[0]["env"]}
    assert worker_env["DASK_SCHEDULER_ADDRESS"] == "tls://intccms-run-1-scheduler:8786"
    sched_env = {e["name"]: e.get("value") for e in _containers(spec, "scheduler")[0]["env"]}
    routes = ast.literal_eval(sched_env["DASK_DISTRIBUTED__SCHEDULER__HTTP__ROUTES"])
    assert "distributed.http.scheduler.api" in routes and "distributed.http.health" in routes
    assert "BEGIN" not in json.dumps(spec)


def test_tls_off_leaves_the_pods_as_before() -> None:
    cfg = _full_config()
    cfg.tls = False
    spec = make_cluster_spec(cfg, "run-1")
    for role in ("scheduler", "worker"):
        (container,) = _containers(spec, role)
        assert "dask-tls" not in json.dumps(spec)
        assert "--protocol" not in container["args"]
        assert not [e for e in container["env"] if "TLS" in e["name"] or e["name"] == "DASK_SCHEDULER_ADDRESS"]


def test_tls_settings_cannot_be_overridden_or_shadowed() -> None:
    from intccms.config.kubernetes import FileVolume, VolumeClaimMount

    cfg = _full_config()
    cfg.env = {"DASK_DISTRIBUTED__COMM__REQUIRE_ENCRYPTION": "False"}
    with pytest.raises(SpecError, match="tls: false"):
        make_cluster_spec(cfg, "run-1")
    cfg = _full_config()
    cfg.volumes = [VolumeClaimMount(name="dask-tls", claim_name="c", mount_path="/c")]
    with pytest.raises(SpecError, match="TLS volume"):
        make_cluster_spec(cfg, "run-1")
    cfg = _full_config()
    cfg.file_volumes = [FileVolume(name="dask-tls", mount_path="/f", secret_name="s")]
    with pytest.raises(SpecError, match="used twice"):
        make_cluster_spec(cfg, "run-1")

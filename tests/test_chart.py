"""The Helm chart: strict lint, renders for realistic value sets, Kubernetes schema validation,
security properties, one render test per toggle, and agreement with the project.

Offline: the real ``helm`` binary (tests/setup/install_helm.sh) and the Dask operator chart
archive committed under charts/intccms/charts/ (built from the pinned dask-kubernetes wheel by
charts/intccms/scripts/vendor-operator.sh; a test checks it equals the wheel's chart).
"""

from __future__ import annotations

import base64
import importlib.metadata
import json
import os
import shutil
import subprocess
import tarfile
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

pytestmark = pytest.mark.k8s

REPO = Path(__file__).resolve().parents[1]
CHART = REPO / "charts/intccms"
CI_VALUES = sorted((CHART / "ci").glob("*-values.yaml"))
KUBE_VERSIONS = ["1.30.0", "1.33.0"]
NAMESPACE = "facility"
OPERATOR_KINDS = {"PodMonitor", "ServiceMonitor", "PrometheusRule"}


def _helm() -> str:
    local = REPO / ".tools/bin/helm"
    if local.exists():
        return str(local)
    found = shutil.which("helm")
    if found is None:
        pytest.skip("helm is not installed: run tests/setup/install_helm.sh")
    return found


@pytest.fixture(scope="module")
def helm() -> str:
    """The helm binary (the operator subchart is committed: nothing to vendor first)."""
    return _helm()


def render(helm: str, *args: str, kube: str = "1.33.0") -> list[dict[str, Any]]:
    """Objects of ``helm template`` with extra arguments (-f / --set)."""
    result = subprocess.run(
        [helm, "template", "intccms", str(CHART), "--namespace", NAMESPACE,
         "--kube-version", kube, *args],
        capture_output=True, text=True, check=False,
    )
    if result.returncode != 0:
        raise RenderError(result.stderr)
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


class RenderError(RuntimeError):
    """helm template failed; the message is helm's stderr."""


def _values_args(path: Path | None) -> list[str]:
    return ["-f", str(path)] if path else []


VALUE_SETS = [None, *CI_VALUES]
VALUE_IDS = ["default", *(p.name.removesuffix("-values.yaml") for p in CI_VALUES)]


def _by_kind(objs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objs if o["kind"] == kind]


def _one(objs: list[dict[str, Any]], kind: str, suffix: str = "") -> dict[str, Any]:
    matches = [o for o in _by_kind(objs, kind) if o["metadata"]["name"].endswith(suffix)]
    assert len(matches) == 1, f"expected one {kind} named *{suffix}, got {len(matches)}"
    return matches[0]


def _pod_specs(objs: list[dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any]]]:
    for obj in objs:
        if obj["kind"] in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
            yield f"{obj['kind']}/{obj['metadata']['name']}", obj["spec"]["template"]["spec"]


# -- lint and schema ---------------------------------------------------------------------------


@pytest.mark.parametrize("values", VALUE_SETS, ids=VALUE_IDS)
def test_lint_strict(helm: str, values: Path | None) -> None:
    result = subprocess.run(
        [helm, "lint", "--strict", str(CHART), *_values_args(values)],
        capture_output=True, text=True, check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_schema_json_is_generated_from_yaml() -> None:
    result = subprocess.run(
        [str(REPO / ".venv/bin/python"), str(CHART / "scripts/generate-schema.py"), "--check"],
        capture_output=True, text=True, check=False,
    )
    assert result.returncode == 0, result.stderr


def _schema_paths(schema: dict[str, Any], root: dict[str, Any], prefix: str = "") -> set[str]:
    if "$ref" in schema:
        ref = root
        for part in schema["$ref"].removeprefix("#/").split("/"):
            ref = ref[part]
        schema = {**ref, **{k: v for k, v in schema.items() if k != "$ref"}}
    paths = set()
    for key, sub in schema.get("properties", {}).items():
        path = f"{prefix}.{key}" if prefix else key
        assert sub.get("description"), f"values.schema.yaml: {path} has no description"
        paths.add(path)
        paths |= _schema_paths(sub, root, path)
    return paths


def _value_paths(values: dict[str, Any], prefix: str = "") -> set[str]:
    paths = set()
    for key, value in values.items():
        path = f"{prefix}.{key}" if prefix else key
        paths.add(path)
        if isinstance(value, dict) and value and not path.startswith("dask-kubernetes-operator"):
            paths |= _value_paths(value, path)
    return paths


def test_every_value_is_in_the_schema_with_a_description() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    declared = _schema_paths(schema, schema)
    undeclared = {
        p for p in _value_paths(values)
        if p not in declared and not p.startswith("dask-kubernetes-operator.")
        # maps whose keys are free (resources quantities are checked through $defs)
        and ".resources." not in p
    }
    assert not undeclared, f"values without schema entry: {sorted(undeclared)}"
    jsonschema.validate(values, schema)


def test_every_value_has_a_comment() -> None:
    lines = (CHART / "values.yaml").read_text().splitlines()
    for i, line in enumerate(lines):
        stripped = line.strip()
        if not stripped or stripped.startswith("#") or stripped.startswith("- "):
            continue
        key = stripped.split(":")[0]
        indent = len(line) - len(line.lstrip())
        parent_is_resources = any(
            above.strip().startswith(("resources:", "requests:", "limits:"))
            and len(above) - len(above.lstrip()) < indent
            for above in lines[max(0, i - 4):i]
        )
        if parent_is_resources or key in ("name", "tag", "type", "runAsNonRoot", "seccompProfile"):
            continue  # quantities and subchart internals, described by their parent
        previous = lines[i - 1].strip() if i else ""
        assert previous.startswith("#"), f"values.yaml line {i + 1} ({key}) has no comment above"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--set", "jobs.enabled=true"], "jobs"),
        (["--set", "dask.adapt.minimum=null"], "minimum"),
        (["--set", "prometheus.scrapeInterval=15 seconds"], "scrapeInterval"),
        (["--set", "securityContext.runAsUser=0"], "runAsUser"),
        (["--set", "output.dir=outputs/relative"], "output"),
    ],
)
def test_schema_rejects_bad_values(helm: str, args: list[str], message: str) -> None:
    with pytest.raises(RenderError, match=message):
        render(helm, *args)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--set", "dask.adapt.minimum=5", "--set", "dask.adapt.maximum=2"], "raise the maximum"),
        (["--set", "dask.wait.workers=20"], "lower dask.wait.workers"),
        (["--set", "storage.existingSecret=x", "--set", "storage.credentials.accessKeyId=y"],
         "remove storage.credentials"),
        (["--set", "prometheus.enabled=false"], "grafana.datasourceUrl"),
        (["--set", "job.configName=demo"], "renamed to job.config"),
        (["--set", "output.dir=s3://results/run"], "needs object-store credentials"),
    ],
)
def test_contradictory_or_removed_values_fail_with_migration_text(
    helm: str, args: list[str], message: str
) -> None:
    with pytest.raises(RenderError, match=message):
        render(helm, *args)


# -- Kubernetes schemas and CRDs -----------------------------------------------------------------


@pytest.mark.parametrize("kube", KUBE_VERSIONS)
@pytest.mark.parametrize("values", VALUE_SETS, ids=VALUE_IDS)
def test_every_object_validates_against_kubernetes(
    helm: str, values: Path | None, kube: str
) -> None:
    objs = render(helm, *_values_args(values), kube=kube)
    assert objs
    for obj in objs:
        if obj["kind"] in OPERATOR_KINDS:
            validate_prometheus_operator_object(obj)
            continue  # no schema for Prometheus-operator kinds in kubernetes-validate
        kubernetes_validate.validate(obj, kube, strict=True)


def validate_prometheus_operator_object(obj: dict[str, Any]) -> None:
    """Validate a PodMonitor/ServiceMonitor/PrometheusRule against the Prometheus operator's
    API types (pydantic models generated from its CRDs), strictly: a field the types do not
    know is dropped by the model, so it shows up as a difference after the round trip (the
    API server would prune it silently)."""
    from cloudcoil.models.prometheus_operator import v1

    assert obj["apiVersion"] == "monitoring.coreos.com/v1", obj["apiVersion"]
    model = getattr(v1, obj["kind"]).model_validate(obj)
    back = model.model_dump(by_alias=True, exclude_unset=True, mode="json")
    assert _strip_empty(back) == _strip_empty(obj), (
        f"{obj['kind']} {obj['metadata']['name']}: fields unknown to the operator's schema: "
        f"{_unknown_paths(obj, back)}")


def _strip_empty(node: Any) -> Any:  # noqa: ANN401 - any YAML value
    if isinstance(node, dict):
        return {k: _strip_empty(v) for k, v in node.items() if v is not None}
    if isinstance(node, list):
        return [_strip_empty(v) for v in node]
    return node


def _unknown_paths(given: Any, kept: Any, path: str = "") -> list[str]:  # noqa: ANN401
    """Dotted paths present in ``given`` and missing from the model's round trip ``kept``."""
    if isinstance(given, dict) and isinstance(kept, dict):
        out = [f"{path}.{k}".lstrip(".") for k in given if k not in kept]
        for k in given:
            if k in kept:
                out += _unknown_paths(given[k], kept[k], f"{path}.{k}")
        return out
    if isinstance(given, list) and isinstance(kept, list):
        return [p for i, (a, b) in enumerate(zip(given, kept, strict=False))
                for p in _unknown_paths(a, b, f"{path}[{i}]")]
    return []


@pytest.mark.parametrize("kind", sorted(OPERATOR_KINDS))
def test_prometheus_operator_validation_catches_a_misspelt_field(helm: str, kind: str) -> None:
    """The strict check above is not vacuous: every operator kind the chart renders is checked,
    and a misspelt field fails."""
    objs = render(helm, "-f", str(CHART / "ci/external-monitoring-values.yaml"))
    obj = _one(objs, kind)
    validate_prometheus_operator_object(obj)
    broken = json.loads(json.dumps(obj))
    broken["spec"]["namespaceSelectr"] = {"any": True}
    with pytest.raises(AssertionError, match="namespaceSelectr"):
        validate_prometheus_operator_object(broken)


def test_operator_crds_validate() -> None:
    crds = {n: b for n, b in archive_files(operator_archive()).items() if "/crds/" in n}
    assert len(crds) >= 4, sorted(crds)
    for text in crds.values():
        kubernetes_validate.validate(yaml.safe_load(text), "1.33.0", strict=True)


# -- security ------------------------------------------------------------------------------------


@pytest.mark.parametrize("values", VALUE_SETS, ids=VALUE_IDS)
def test_pods_are_hardened_and_resourced(helm: str, values: Path | None) -> None:
    for name, pod in _pod_specs(render(helm, *_values_args(values))):
        pod_sc = pod.get("securityContext", {})
        for container in pod["containers"] + pod.get("initContainers", []):
            sc = container.get("securityContext", {})
            where = f"{name} container {container['name']}"
            assert sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot")) is True, where
            assert sc.get("runAsUser", pod_sc.get("runAsUser", 1)) != 0, where
            assert sc.get("allowPrivilegeEscalation") is False, where
            assert not sc.get("privileged", False), where
            resources = container.get("resources", {})
            assert resources.get("requests", {}).get("memory"), f"{where}: no memory request"
            assert resources.get("limits", {}).get("memory"), f"{where}: no memory limit"


@pytest.mark.parametrize("values", VALUE_SETS, ids=VALUE_IDS)
def test_rbac_is_namespaced_and_least_privilege(helm: str, values: Path | None) -> None:
    objs = render(helm, *_values_args(values))
    ours = [o for o in objs if o["metadata"].get("labels", {}).get("app.kubernetes.io/part-of") == "intccms"]
    assert not [o for o in ours if o["kind"] in ("ClusterRole", "ClusterRoleBinding")]
    for role in _by_kind(ours, "Role"):
        for rule in role["rules"]:
            assert "*" not in rule["verbs"] and "*" not in rule["resources"], role["metadata"]["name"]
            if "secrets" in rule["resources"]:
                # Only the Job, only to create and delete each run's TLS Secret: no role reads one.
                assert role["metadata"]["name"].endswith("-job"), role["metadata"]["name"]
                assert rule["resources"] == ["secrets"] and set(rule["verbs"]) == {"create", "delete"}


def test_without_dask_tls_the_job_gets_no_rule_on_secrets(helm: str) -> None:
    def secret_rules(*args: str) -> list[dict]:
        role = next(o for o in render(helm, *args) if o["kind"] == "Role" and o["metadata"]["name"].endswith("-job"))
        return [r for r in role["rules"] if "secrets" in r["resources"]]

    assert secret_rules() == [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["create", "delete"]}]
    assert secret_rules("--set", "dask.tls=false") == []
    objs = render(helm, "--set", "dask.tls=false")
    facility = yaml.safe_load(_one(objs, "ConfigMap", "-facility")["data"]["facility.yaml"])
    assert facility["cluster"]["kubernetes"]["tls"] is False


# That the job's Role grants every call the backend really makes is tested against the API
# emulator (tests/test_k8s_backend.py), from the calls recorded per client.


SECRET_VALUES = ["test-access-key-id", "test-secret-access-key-0123456789"]


def test_credentials_only_in_a_secret(helm: str) -> None:
    objs = render(helm, "-f", str(CHART / "ci/credentials-values.yaml"))
    secret = _one(objs, "Secret", "-storage")
    decoded = {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
    assert decoded == {
        "INTCCMS_S3_ACCESS_KEY_ID": SECRET_VALUES[0],
        "INTCCMS_S3_SECRET_ACCESS_KEY": SECRET_VALUES[1],
    }
    others = yaml.safe_dump_all([o for o in objs if o["kind"] != "Secret"])
    for value in SECRET_VALUES:
        assert value not in others, "a credential leaked outside its Secret"
        assert base64.b64encode(value.encode()).decode() not in others
    job = _one(objs, "Job")
    (container,) = job["spec"]["template"]["spec"]["containers"]
    assert container["envFrom"] == [{"secretRef": {"name": secret["metadata"]["name"]}}]
    facility = yaml.safe_load(_one(objs, "ConfigMap", "-facility")["data"]["facility.yaml"])
    assert facility["cluster"]["kubernetes"]["env_from_secret_names"] == [secret["metadata"]["name"]]


def test_no_credentials_by_default(helm: str) -> None:
    objs = render(helm)
    assert not [o for o in _by_kind(objs, "Secret") if "storage" in o["metadata"]["name"]]
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert values["storage"]["credentials"] == {"accessKeyId": "", "secretAccessKey": ""}
    job = _one(objs, "Job")
    assert "envFrom" not in job["spec"]["template"]["spec"]["containers"][0]


def test_grafana_password_is_generated_not_default(helm: str) -> None:
    first = _one(render(helm), "Secret", "grafana-admin")["data"]["admin-password"]
    second = _one(render(helm), "Secret", "grafana-admin")["data"]["admin-password"]
    assert first != second, "the admin password must be random, not a fixed default"
    assert len(base64.b64decode(first)) == 32
    template = (CHART / "templates/grafana/secret.yaml").read_text()
    assert "lookup" in template, "the generated password must survive upgrades"


def test_existing_grafana_secret_is_used(helm: str) -> None:
    objs = render(helm, "--set", "grafana.admin.existingSecret=mine")
    assert not [o for o in _by_kind(objs, "Secret") if "grafana" in o["metadata"]["name"]]
    pod = _one(objs, "Deployment", "grafana")["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    env = {e["name"]: e for e in container["env"]}
    # The admin account is read from files of the mounted Secret, never from the environment.
    assert not [e for e in container["env"] if "valueFrom" in e]
    admin = {v["name"]: v for v in pod["volumes"]}["admin"]["secret"]
    assert admin["secretName"] == "mine"
    files = {i["key"]: i["path"] for i in admin["items"]}
    mount = {m["name"]: m for m in container["volumeMounts"]}["admin"]
    assert mount["readOnly"] is True
    assert env["GF_SECURITY_ADMIN_USER__FILE"]["value"] == f"{mount['mountPath']}/{files['admin-user']}"
    assert env["GF_SECURITY_ADMIN_PASSWORD__FILE"]["value"] == f"{mount['mountPath']}/{files['admin-password']}"
    assert container["livenessProbe"]["httpGet"]["path"] == "/api/health"


# -- the job and its configuration ---------------------------------------------------------------


def test_job_runs_the_facility_config(helm: str) -> None:
    objs = render(helm, "-f", str(CHART / "ci/all-features-values.yaml"))
    job = _one(objs, "Job")
    pod = job["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["image"] == "registry.example.org/cms/intccms:0.1.0"
    assert container["args"] == ["job", "facility", "workflow.max_files=4"]
    env = {e["name"]: e for e in container["env"]}
    assert env["INTCCMS_EXTRA_CONF_DIR"]["value"] == "/etc/intccms/conf"
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    assert mounts["/etc/intccms/conf"] == "facility"
    assert pod["serviceAccountName"].endswith("-job")
    facility = yaml.safe_load(_one(objs, "ConfigMap", "-facility")["data"]["facility.yaml"])
    assert facility["defaults"] == ["run2_full", {"override cluster": "kubernetes"}, "_self_"]
    assert facility["name"] == "facility-test"
    k8s = facility["cluster"]["kubernetes"]
    assert k8s["image"] == container["image"]
    assert k8s["namespace"] == NAMESPACE
    assert k8s["adapt"] == {"minimum": 2, "maximum": 100}
    assert k8s["env"] == {"INTCCMS_S3_ENDPOINT": "https://s3.example.org"}
    assert k8s["env_from_secret_names"] == ["cms-s3-credentials"]
    assert k8s["tolerations"][0]["operator"] == "Exists"


def test_facility_config_fits_the_cluster_schema(helm: str) -> None:
    """The chart's cluster.kubernetes block builds valid operator resources."""
    from fixtures.k8s import validate_custom_resource
    from omegaconf import OmegaConf

    from intccms.config.k8s_specs import make_autoscaler_spec, make_cluster_spec
    from intccms.config.kubernetes import KubernetesClusterConfig

    for values in VALUE_SETS:
        objs = render(helm, *_values_args(values))
        facility = yaml.safe_load(_one(objs, "ConfigMap", "-facility")["data"]["facility.yaml"])
        merged = OmegaConf.merge(
            OmegaConf.structured(KubernetesClusterConfig), facility["cluster"]["kubernetes"]
        )
        cfg = OmegaConf.to_object(merged)
        assert isinstance(cfg, KubernetesClusterConfig)
        validate_custom_resource(make_cluster_spec(cfg, "r1"))
        validate_custom_resource(make_autoscaler_spec(cfg, "r1"))


def test_facility_config_composes_with_hydra(helm: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`intccms run facility` composes: the rendered file is a valid top-level config."""
    compose = pytest.importorskip("intccms.config.compose")
    objs = render(helm)
    conf = tmp_path / "conf"
    shutil.copytree(REPO / "conf", conf)
    (conf / "facility.yaml").write_text(_one(objs, "ConfigMap", "-facility")["data"]["facility.yaml"])
    monkeypatch.setenv("INTCCMS_CONF_DIR", str(conf))
    cfg = compose.compose_config("facility", validate=False)
    assert cfg.cluster.kind == "kubernetes"
    assert cfg.cluster.kubernetes.namespace == NAMESPACE
    assert cfg.cluster.kubernetes.adapt.maximum == 10


def _compose_facility(objs: list[dict[str, Any]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                      job_env: dict[str, Any]) -> Any:
    """The configuration the Job composes, with the Job container's plain env values set."""
    from intccms.config import compose_config

    conf = tmp_path / "extra"
    conf.mkdir()
    (conf / "facility.yaml").write_text(_one(objs, "ConfigMap", "-facility")["data"]["facility.yaml"])
    monkeypatch.setenv("INTCCMS_EXTRA_CONF_DIR", str(conf))
    for name, item in job_env.items():
        if "value" in item and name != "INTCCMS_EXTRA_CONF_DIR":
            monkeypatch.setenv(name, item["value"])
    return compose_config("facility", validate=False)


def test_processor_job_composes_and_imports_the_example_as_in_the_image(
        helm: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`helm install --set job.config=processor`: the Job's configuration composes on top of
    processor.yaml and, at start-up, imports the example processor from the image's
    INTCCMS_EXAMPLES_DIR (the Job's working directory has no examples/ folder)."""
    from intccms.config import ConfigError, compose_config

    objs = render(helm, "--set", "job.config=processor",
                  "--set-json", 'job.overrides=["processor=zprime_ttbar"]')
    (container,) = _one(objs, "Job")["spec"]["template"]["spec"]["containers"]
    assert container["args"] == ["job", "facility", "processor=zprime_ttbar"]
    facility = yaml.safe_load(_one(objs, "ConfigMap", "-facility")["data"]["facility.yaml"])
    assert facility["defaults"][0] == "processor"
    conf = tmp_path / "extra"
    conf.mkdir()
    (conf / "facility.yaml").write_text(_one(objs, "ConfigMap", "-facility")["data"]["facility.yaml"])
    monkeypatch.setenv("INTCCMS_EXTRA_CONF_DIR", str(conf))
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("INTCCMS_EXAMPLES_DIR", raising=False)
    with pytest.raises(ConfigError, match=r"processor\.python_path: examples is not a directory"):
        compose_config("facility", container["args"][2:])
    monkeypatch.setenv("INTCCMS_EXAMPLES_DIR", str(REPO / "examples"))
    cfg = compose_config("facility", container["args"][2:])  # validated: the class is imported and built
    assert cfg.processor["class"] == "zprime_ttbar.ZPrimeTTbarProcessor"
    assert cfg.cluster.kind == "kubernetes" and cfg.output_dir.startswith("/shared/outputs/")


def test_job_and_workers_share_the_demo_inputs(helm: str, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """The demo job writes inputs and corrections where every worker opens them by path."""
    from fixtures.k8s import validate_custom_resource
    from omegaconf import OmegaConf

    from intccms.config.k8s_specs import make_cluster_spec
    from intccms.config.kubernetes import KubernetesClusterConfig

    objs = render(helm)
    claim = _one(objs, "PersistentVolumeClaim", "-shared")
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]
    assert claim["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    pod = _one(objs, "Job")["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    mount = next(m for m in container["volumeMounts"] if m["name"] == "shared")
    assert volumes["shared"]["persistentVolumeClaim"]["claimName"] == claim["metadata"]["name"]
    env = {e["name"]: e for e in container["env"]}
    cfg = _compose_facility(objs, tmp_path, monkeypatch, env)
    data_dir = str(cfg.paths.generated_data)
    # Everything the job generates for the workers lies under the shared mount ...
    eras = {str(ds.era) for ds in cfg.datasets.values() if ds.generate is not None}
    assert eras, "the demo generates its inputs"
    for path in (data_dir, str(cfg.paths.jsonpog), *(str(cfg.eras[e].golden_json) for e in eras)):
        assert path.startswith(mount["mountPath"] + "/"), path
    # ... and every worker mounts the same claim at the same path, read-write.
    k8s = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(KubernetesClusterConfig),
                                              cfg.cluster.kubernetes))
    spec = make_cluster_spec(k8s, "r1")
    validate_custom_resource(spec)
    worker = spec["spec"]["worker"]["spec"]
    (wvol,) = [v for v in worker["volumes"] if "persistentVolumeClaim" in v]
    assert wvol["persistentVolumeClaim"] == {"claimName": claim["metadata"]["name"]}
    (wmount,) = [m for m in worker["containers"][0]["volumeMounts"] if m["name"] == wvol["name"]]
    assert (wmount["mountPath"], wmount["readOnly"]) == (mount["mountPath"], False)
    scheduler_volumes = spec["spec"]["scheduler"]["spec"]["volumes"]
    assert not [v for v in scheduler_volumes if "persistentVolumeClaim" in v]


def test_scratch_size_limits_reach_the_dask_pods(helm: str) -> None:
    """dask.*.scratchSizeLimit bound the emptyDirs the read-only scheduler and workers write to."""
    from omegaconf import OmegaConf

    from intccms.config.k8s_specs import SCRATCH_PATH, make_cluster_spec
    from intccms.config.kubernetes import KubernetesClusterConfig

    objs = render(helm, "--set", "dask.worker.scratchSizeLimit=50Gi",
                  "--set", "dask.scheduler.scratchSizeLimit=2Gi")
    k8s = yaml.safe_load(_one(objs, "ConfigMap", "-facility")["data"]["facility.yaml"])["cluster"]["kubernetes"]
    cfg = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(KubernetesClusterConfig), k8s))
    spec = make_cluster_spec(cfg, "r1")
    for role, size in (("worker", "50Gi"), ("scheduler", "2Gi")):
        pod = spec["spec"][role]["spec"]
        (mount,) = [m for m in pod["containers"][0]["volumeMounts"] if m["mountPath"] == SCRATCH_PATH]
        assert {v["name"]: v for v in pod["volumes"]}[mount["name"]]["emptyDir"] == {"sizeLimit": size}
    with pytest.raises(RenderError, match="scratchSizeLimit"):
        render(helm, "--set", "dask.worker.scratchSizeLimit=lots")


def test_shared_volume_existing_claim_and_off(helm: str) -> None:
    objs = render(helm, "--set", "sharedVolume.existingClaim=cms-nfs", "--set", "sharedVolume.mountPath=/nfs")
    assert not _by_kind(objs, "PersistentVolumeClaim")
    pod = _one(objs, "Job")["spec"]["template"]["spec"]
    assert {v["name"]: v for v in pod["volumes"]}["shared"]["persistentVolumeClaim"] == {"claimName": "cms-nfs"}
    env = {e["name"]: e.get("value") for e in pod["containers"][0]["env"]}
    assert env["INTCCMS_DATA_DIR"] == "/nfs/data"
    k8s = yaml.safe_load(_one(objs, "ConfigMap", "-facility")["data"]["facility.yaml"])["cluster"]["kubernetes"]
    assert k8s["volumes"] == [{"name": "shared", "claim_name": "cms-nfs", "mount_path": "/nfs", "read_only": False}]

    off = render(helm, "--set", "sharedVolume.enabled=false")
    assert not _by_kind(off, "PersistentVolumeClaim")
    pod = _one(off, "Job")["spec"]["template"]["spec"]
    assert "shared" not in {v["name"] for v in pod["volumes"]}
    assert "INTCCMS_DATA_DIR" not in {e["name"] for e in pod["containers"][0]["env"]}
    k8s = yaml.safe_load(_one(off, "ConfigMap", "-facility")["data"]["facility.yaml"])["cluster"]["kubernetes"]
    assert "volumes" not in k8s


@pytest.mark.parametrize(("args", "expected"), [
    ([], "/shared/outputs/demo"),
    (["--set", "sharedVolume.mountPath=/nfs/cms"], "/nfs/cms/outputs/demo"),
    (["--set", "output.dir=s3://results/cms", "--set", "storage.existingSecret=s3"], "s3://results/cms"),
])
def test_outputs_outlive_the_job_pod(helm: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                     args: list[str], expected: str) -> None:
    """The run's output_dir is on the shared volume (or the object store), never the pod's /work."""
    objs = render(helm, *args)
    pod = _one(objs, "Job")["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    env = {e["name"]: e for e in container["env"]}
    cfg = _compose_facility(objs, tmp_path, monkeypatch, env)
    assert str(cfg.output_dir) == expected
    assert str(cfg.workflow.skim_dir).startswith(expected + "/")
    if not expected.startswith("s3://"):
        shared = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}["shared"]
        assert expected.startswith(shared + "/")
        assert {v["name"]: v for v in pod["volumes"]}["shared"]["persistentVolumeClaim"]


def test_dask_cluster_is_owned_by_the_job_and_times_out_idle(
    helm: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A killed Job pod cannot leak its DaskCluster: its pod names the owner, idle ones go."""
    from fixtures.k8s import validate_custom_resource
    from omegaconf import OmegaConf

    from intccms.config.k8s_specs import make_cluster_spec
    from intccms.config.kubernetes import KubernetesClusterConfig

    objs = render(helm)
    job = _one(objs, "Job")
    (container,) = job["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e for e in container["env"]}
    # The backend looks up this pod's controller (the Job) and makes it the cluster's owner.
    assert env["INTCCMS_POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    monkeypatch.setenv("INTCCMS_POD_NAME", f"{job['metadata']['name']}-x7k2p")
    cfg = _compose_facility(objs, tmp_path, monkeypatch, env)
    k8s = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(KubernetesClusterConfig),
                                              cfg.cluster.kubernetes))
    assert k8s.owner_pod == f"{job['metadata']['name']}-x7k2p"
    spec = make_cluster_spec(k8s, "r1")
    validate_custom_resource(spec)
    assert spec["spec"]["idleTimeout"] == 1800
    off = render(helm, "--set", "dask.idleTimeoutSeconds=0")
    facility = yaml.safe_load(_one(off, "ConfigMap", "-facility")["data"]["facility.yaml"])
    assert facility["cluster"]["kubernetes"]["idle_timeout_s"] == 0


def _run_checker(out: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> subprocess.CompletedProcess[str]:
    conf = tmp_path / "checker-conf"
    conf.mkdir(exist_ok=True)
    (conf / "facility.yaml").write_text(f"defaults: [demo, _self_]\noutput_dir: {out}\n")
    env = {**os.environ, "INTCCMS_EXTRA_CONF_DIR": str(conf)}
    return subprocess.run([str(REPO / ".venv/bin/python"), str(CHART / "scripts/check-outputs.py")],
                          capture_output=True, text=True, check=False, env=env, cwd=tmp_path)


def test_e2e_output_checker_reads_report_and_histograms(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """e2e-real-cluster.sh's in-cluster check passes on real outputs and fails on empty ones."""
    import hist

    from intccms.outputs.histograms import save_pickle

    out = tmp_path / "outputs"
    (out / "report").mkdir(parents=True)
    (out / "report/report.json").write_text(json.dumps({"chunks": 3, "events_read": 900, "failed_chunks": 0}))
    filled = hist.Hist.new.Reg(4, 0, 4, name="x").Weight()
    filled.fill([0.5, 1.5], weight=[2.0, 3.0])
    save_pickle(out / "histograms/histograms.pkl", {"mtt": {"nominal": filled}}, {})
    good = _run_checker(out, tmp_path, monkeypatch)
    assert good.returncode == 0, good.stdout + good.stderr
    summary = json.loads(good.stdout.strip().splitlines()[-1])
    assert summary == {"output_dir": str(out), "chunks": 3, "events_read": 900,
                       "histograms": ["mtt"], "problems": []}

    empty = hist.Hist.new.Reg(4, 0, 4, name="x").Weight()
    save_pickle(out / "histograms/histograms.pkl", {"mtt": {"nominal": empty}}, {})
    (out / "report/report.json").write_text(json.dumps({"chunks": 3, "events_read": 900, "failed_chunks": 1}))
    bad = _run_checker(out, tmp_path, monkeypatch)
    assert bad.returncode == 1
    problems = json.loads(bad.stdout.strip().splitlines()[-1])["problems"]
    assert any("failed chunks" in p for p in problems) and any("no filled histogram" in p for p in problems)

    (out / "report/report.json").unlink()
    assert _run_checker(out, tmp_path, monkeypatch).returncode != 0


# -- monitoring ----------------------------------------------------------------------------------


def test_prometheus_scrapes_dask_pods_with_project_rules(helm: str) -> None:
    objs = render(helm)
    config = yaml.safe_load(_one(objs, "ConfigMap", "-prometheus")["data"]["prometheus.yml"])
    (dask_job,) = [j for j in config["scrape_configs"] if j["job_name"] == "intccms-dask"]
    assert dask_job["kubernetes_sd_configs"][0]["namespaces"] == {"own_namespace": True}
    keep = {r["regex"] for r in dask_job["relabel_configs"] if r.get("action") == "keep"}
    assert keep == {"scheduler|worker", "http-dashboard"}
    rules = _one(objs, "ConfigMap", "prometheus-rules")["data"] or {}
    shipped = {
        p.name for p in (CHART / "files/prometheus").glob("*.yaml") if "_test" not in p.name
    }
    assert set(rules) == shipped
    for content in rules.values():
        assert "groups" in yaml.safe_load(content)


def test_dashboards_are_provisioned_verbatim(helm: str) -> None:
    objs = render(helm)
    data = _one(objs, "ConfigMap", "grafana-dashboards")["data"] or {}
    shipped = {p.name: p.read_text() for p in (CHART / "files/dashboards").glob("*.json")}
    assert set(data) == set(shipped)
    for name, text in shipped.items():
        assert json.loads(data[name]) == json.loads(text), f"{name} changed in the ConfigMap"
    datasources = yaml.safe_load(_one(objs, "ConfigMap", "-grafana")["data"]["datasources.yaml"])
    assert datasources["datasources"][0]["url"] == "http://intccms-prometheus:9090"


def test_sidecar_dashboard_configmaps(helm: str) -> None:
    objs = render(helm, "-f", str(CHART / "ci/external-monitoring-values.yaml"))
    maps = [o for o in _by_kind(objs, "ConfigMap") if o["metadata"]["labels"].get("grafana_dashboard")]
    shipped = list((CHART / "files/dashboards").glob("*.json"))
    assert len(maps) == len(shipped)
    for cm in maps:
        assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
        assert len(cm["metadata"]["name"]) <= 63
        for text in cm["data"].values():
            json.loads(text)


def test_long_release_names_keep_names_valid(helm: str) -> None:
    result = subprocess.run(
        [helm, "template", "a" * 50, str(CHART), "--namespace", NAMESPACE,
         "--set", "grafana.dashboardConfigMaps.enabled=true"],
        capture_output=True, text=True, check=True,
    )
    for obj in filter(None, yaml.safe_load_all(result.stdout)):
        if obj["metadata"].get("labels", {}).get("app.kubernetes.io/part-of") == "intccms":
            assert len(obj["metadata"]["name"]) <= 63, obj["metadata"]["name"]


# -- one render test per toggle ------------------------------------------------------------------

TOGGLES = {
    "job.enabled": ("Job", ""),
    "prometheus.enabled": ("Deployment", "prometheus"),
    "prometheus.podMonitor.enabled": ("PodMonitor", ""),
    "prometheus.serviceMonitor.enabled": ("ServiceMonitor", ""),
    "prometheus.prometheusRule.enabled": ("PrometheusRule", ""),
    "grafana.enabled": ("Deployment", "grafana"),
    "grafana.dashboardConfigMaps.enabled": ("ConfigMap", "-dash-"),
    "dask-kubernetes-operator.enabled": ("Deployment", "dask-kubernetes-operator"),
    "serviceAccount.create": ("ServiceAccount", "analysis"),
    "rbac.create": ("Role", "-job"),
    "sharedVolume.enabled": ("PersistentVolumeClaim", "-shared"),
    "networkPolicy.enabled": ("NetworkPolicy", "-default-deny"),
}
# The peers the NetworkPolicies need once a monitor or an external operator is switched on.
PEERS = '[{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}]'


@pytest.mark.parametrize("toggle", sorted(TOGGLES))
def test_each_toggle_renders_its_objects(helm: str, toggle: str) -> None:
    kind, name = TOGGLES[toggle]
    extra = ["--set", "grafana.datasourceUrl=http://prometheus.monitoring:9090",
             "--set-json", f"networkPolicy.metricsFrom={PEERS}",
             "--set-json", f"networkPolicy.operatorFrom={PEERS}"]
    if toggle == "serviceAccount.create":
        extra += ["--set", "serviceAccount.name=analysis"]
    on = render(helm, "--set", f"{toggle}=true", *extra)
    off = render(helm, "--set", f"{toggle}=false", *extra)
    assert [o for o in _by_kind(on, kind) if name in o["metadata"]["name"]], f"{toggle}=true"
    assert not [o for o in _by_kind(off, kind) if name in o["metadata"]["name"]], f"{toggle}=false"
    for obj in on:
        if obj["kind"] in OPERATOR_KINDS:
            validate_prometheus_operator_object(obj)
        else:
            kubernetes_validate.validate(obj, "1.33.0", strict=True)


def test_pod_monitor_targets_the_metrics_port(helm: str) -> None:
    objs = render(helm, "--set", "prometheus.podMonitor.enabled=true",
                  "--set-json", f"networkPolicy.metricsFrom={PEERS}")
    monitor = _one(objs, "PodMonitor")
    assert monitor["spec"]["podMetricsEndpoints"][0]["port"] == "http-dashboard"
    assert "dask.org/cluster-name" in monitor["spec"]["podTargetLabels"]
    rule = _one(render(helm, "--set", "prometheus.prometheusRule.enabled=true"), "PrometheusRule")
    shipped = [
        g
        for p in sorted((CHART / "files/prometheus").glob("*.yaml")) if "_test" not in p.name
        for g in yaml.safe_load(p.read_text()).get("groups", [])
    ]
    assert rule["spec"]["groups"] == shipped


# -- versions and packaging ---------------------------------------------------------------------


OPERATOR = "dask-kubernetes-operator"


def operator_archive() -> Path:
    """The committed operator chart archive at the version Chart.yaml pins."""
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    (dep,) = [d for d in chart["dependencies"] if d["name"] == OPERATOR]
    return CHART / "charts" / f"{OPERATOR}-{dep['version']}.tgz"


def archive_files(path: Path) -> dict[str, bytes]:
    """Path -> bytes of every file in a chart archive (tar metadata left aside)."""
    with tarfile.open(path) as tar:
        return {m.name: tar.extractfile(m).read()  # type: ignore[union-attr]
                for m in tar.getmembers() if m.isfile()}


def test_committed_operator_chart_is_the_wheel_chart() -> None:
    """The archive Helm installs is the chart the pinned dask-kubernetes wheel ships, file by
    file; only chartpress's placeholders (chart version, image tag) are set to the release."""
    import dask_kubernetes

    version = importlib.metadata.version("dask-kubernetes")
    src = Path(dask_kubernetes.__file__).parent / "operator/deployment/helm" / OPERATOR
    wheel = {f"{OPERATOR}/{p.relative_to(src).as_posix()}": p.read_bytes()
             for p in src.rglob("*") if p.is_file() and "__pycache__" not in p.parts}
    archive = operator_archive()
    assert sorted(p.name for p in archive.parent.iterdir()) == [archive.name]  # no second copy
    vendored = archive_files(archive)
    assert sorted(vendored) == sorted(wheel)
    placeholders = {f"{OPERATOR}/Chart.yaml", f"{OPERATOR}/values.yaml"}
    for name in sorted(set(wheel) - placeholders):
        assert vendored[name] == wheel[name], name
    chart, shipped_chart = (yaml.safe_load(f[f"{OPERATOR}/Chart.yaml"]) for f in (vendored, wheel))
    assert "chartpress" in shipped_chart["version"]
    assert chart == {**shipped_chart, "version": version, "appVersion": version}
    values, shipped_values = (yaml.safe_load(f[f"{OPERATOR}/values.yaml"]) for f in (vendored, wheel))
    assert shipped_values["image"]["tag"] == "set-by-chartpress"
    assert values == {**shipped_values, "image": {**shipped_values["image"], "tag": version}}


def tracked_chart(dest: Path) -> Path:
    """Copy what git holds of the chart (tracked files, and new ones not ignored) to ``dest``:
    the chart a fresh clone gets, with nothing built by a script."""
    if shutil.which("git") is None or not (REPO / ".git").exists():
        pytest.skip("not a git checkout")
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard",
                             "charts/intccms"], cwd=REPO, capture_output=True, check=True).stdout
    for rel in filter(None, listed.decode().split("\0")):
        if (REPO / rel).is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / rel, dest / rel)
    return dest / "charts/intccms"


def test_fresh_clone_lints_and_renders_without_vendoring(helm: str, tmp_path: Path) -> None:
    chart = tracked_chart(tmp_path)
    lint = subprocess.run([helm, "lint", "--strict", str(chart)], capture_output=True, text=True,
                          check=False)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    # What `helm install intccms charts/intccms` renders, the operator included.
    rendered = subprocess.run([helm, "template", "intccms", str(chart), "--include-crds"],
                              capture_output=True, text=True, check=False)
    assert rendered.returncode == 0, rendered.stderr
    objs = [d for d in yaml.safe_load_all(rendered.stdout) if d]
    assert _one(objs, "Deployment", OPERATOR)
    assert {o["metadata"]["name"] for o in _by_kind(objs, "CustomResourceDefinition")} >= {
        "daskclusters.kubernetes.dask.org", "daskworkergroups.kubernetes.dask.org"}


def test_versions_agree_with_the_project() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["appVersion"] == project
    assert chart["version"] == project
    (dep,) = [d for d in chart["dependencies"] if d["name"] == "dask-kubernetes-operator"]
    assert dep["version"] == importlib.metadata.version("dask-kubernetes")
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert values["dask-kubernetes-operator"]["image"]["tag"] == dep["version"]
    from intccms.config.kubernetes import KubernetesClusterConfig

    assert KubernetesClusterConfig().image.endswith(f":{project}")


def test_default_image_tag_is_the_project_version(helm: str) -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    job = _one(render(helm), "Job")
    assert job["spec"]["template"]["spec"]["containers"][0]["image"].endswith(f":{project}")


DIGEST = "sha256:" + "0123456789abcdef" * 4


def test_images_can_be_pinned_by_digest(helm: str) -> None:
    """image.digest pins the Job and, through the facility configuration, every Dask pod;
    the Prometheus and Grafana digests pin theirs."""
    from omegaconf import OmegaConf

    from intccms.config.k8s_specs import make_cluster_spec
    from intccms.config.kubernetes import KubernetesClusterConfig

    objs = render(helm, "--set", f"image.digest={DIGEST}", "--set", f"prometheus.image.digest={DIGEST}",
                  "--set", f"grafana.image.digest={DIGEST}")
    pinned = f"ghcr.io/intccms/intccms@{DIGEST}"
    (container,) = _one(objs, "Job")["spec"]["template"]["spec"]["containers"]
    assert container["image"] == pinned
    assert {e["name"]: e.get("value") for e in container["env"]}["INTCCMS_IMAGE"] == pinned
    k8s = yaml.safe_load(_one(objs, "ConfigMap", "-facility")["data"]["facility.yaml"])["cluster"]["kubernetes"]
    cfg = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(KubernetesClusterConfig), k8s))
    spec = make_cluster_spec(cfg, "r1")
    for role in ("scheduler", "worker"):
        assert spec["spec"][role]["spec"]["containers"][0]["image"] == pinned, role
    for name, repository in (("prometheus", "quay.io/prometheus/prometheus"), ("grafana", "docker.io/grafana/grafana")):
        pod = _one(objs, "Deployment", name)["spec"]["template"]["spec"]
        assert pod["containers"][0]["image"] == f"{repository}@{DIGEST}"
    # Without a digest, the tags as before.
    plain = _one(render(helm), "Deployment", "prometheus")["spec"]["template"]["spec"]
    assert plain["containers"][0]["image"] == "quay.io/prometheus/prometheus:v2.55.1"
    with pytest.raises(RenderError, match="digest"):
        render(helm, "--set", "image.digest=sha256:short")


def test_package_builds_offline(helm: str, tmp_path: Path) -> None:
    result = subprocess.run(
        [helm, "package", str(CHART), "--destination", str(tmp_path)],
        capture_output=True, text=True, check=False,
    )
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "intccms-0.1.0.tgz").exists()


def test_manifests_match_the_chart(helm: str) -> None:
    result = subprocess.run(
        [str(CHART / "scripts/render-manifests.sh"), "--check"],
        capture_output=True, text=True, check=False,
        env={**os.environ, "HELM": helm},
    )
    assert result.returncode == 0, (
        "manifests/ drifted from the chart: run charts/intccms/scripts/render-manifests.sh\n"
        + result.stdout[-2000:]
    )


def test_manifests_validate(helm: str) -> None:
    for path in sorted((REPO / "manifests").glob("*.yaml")):
        for obj in filter(None, yaml.safe_load_all(path.read_text())):
            kubernetes_validate.validate(obj, "1.33.0", strict=True)


def test_renders_without_monitoring_files(helm: str, tmp_path: Path) -> None:
    """The Prometheus and dashboard files are optional: the chart renders while they are absent."""
    chart = tmp_path / "intccms"
    shutil.copytree(CHART, chart, ignore=shutil.ignore_patterns("files"))
    result = subprocess.run(
        [helm, "template", "t", str(chart), "--set", "prometheus.prometheusRule.enabled=true",
         "--set", "grafana.dashboardConfigMaps.enabled=true"],
        capture_output=True, text=True, check=False,
    )
    assert result.returncode == 0, result.stderr
    objs = [o for o in yaml.safe_load_all(result.stdout) if o]
    assert _one(objs, "PrometheusRule")["spec"]["groups"] == []
    config = yaml.safe_load(_one(objs, "ConfigMap", "-prometheus")["data"]["prometheus.yml"])
    assert config["global"]["scrape_interval"] == "15s"

"""The chart's grid credentials: the proxy and the token mounted from Secrets (files, so a
renewed Secret reaches running pods) into the Job, scheduler and worker pods with
X509_USER_PROXY / BEARER_TOKEN_FILE pointing at them, the CA directory from a node directory,
a ConfigMap or another volume; only names and paths in the rendered objects.

The full strict validation, lint and hardening checks of tests/test_chart.py also run on
charts/intccms/ci/grid-values.yaml.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from fixtures.k8s import validate_custom_resource
from omegaconf import OmegaConf

from intccms.config.k8s_specs import SpecError, make_cluster_spec
from intccms.config.kubernetes import FileVolume, KubernetesClusterConfig

pytestmark = pytest.mark.k8s
REPO = Path(__file__).resolve().parents[1]
CHART = REPO / "charts/intccms"
GRID = ["--set", "grid.proxy.secretName=cms-proxy", "--set", "grid.token.secretName=cms-token"]
PROXY = "/etc/grid-security/intccms-proxy/x509up"
TOKEN = "/etc/grid-security/intccms-token/token"
CADIR = "/etc/grid-security/certificates"


@pytest.fixture(scope="module")
def helm_binary() -> str:
    local = REPO / ".tools/bin/helm"
    binary = str(local) if local.exists() else shutil.which("helm")
    if binary is None:
        pytest.skip("helm is not installed: run tests/setup/install_helm.sh")
    env = {**os.environ, "PYTHON": str(REPO / ".venv/bin/python")}
    subprocess.run([str(CHART / "scripts/vendor-operator.sh")], check=True, env=env,
                   capture_output=True)
    return binary


def render(helm: str, *args: str) -> list[dict[str, Any]]:
    out = subprocess.run([helm, "template", "intccms", str(CHART), "--namespace", "facility",
                          "--kube-version", "1.33.0", *args], capture_output=True, text=True,
                         check=False)
    if out.returncode != 0:
        raise RuntimeError(out.stderr)
    return [doc for doc in yaml.safe_load_all(out.stdout) if doc]


def job_pod(objs: list[dict[str, Any]]) -> dict[str, Any]:
    (job,) = [o for o in objs if o["kind"] == "Job"]
    return job["spec"]["template"]["spec"]


def dask_pods(objs: list[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Scheduler and worker pod specs the Job's backend makes from the facility configuration."""
    (cm,) = [o for o in objs if o["kind"] == "ConfigMap" and o["metadata"]["name"].endswith("-facility")]
    block = yaml.safe_load(cm["data"]["facility.yaml"])["cluster"]["kubernetes"]
    cfg = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(KubernetesClusterConfig), block))
    assert isinstance(cfg, KubernetesClusterConfig)
    spec = make_cluster_spec(cfg, "r1")
    validate_custom_resource(spec)
    return spec["spec"]["scheduler"]["spec"], spec["spec"]["worker"]["spec"]


def grid_view(pod: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str], dict[str, Any]]:
    """The pod's grid volumes, the container's grid variables and its grid mounts."""
    (container,) = pod["containers"]
    volumes = {v["name"]: v for v in pod.get("volumes", []) if v["name"].startswith("grid-")}
    env = {e["name"]: e for e in container.get("env", [])
           if e["name"] in ("X509_USER_PROXY", "BEARER_TOKEN_FILE", "X509_CERT_DIR")}
    assert all(set(e) == {"name", "value"} for e in env.values()), env  # plain paths
    mounts = {m["name"]: m for m in container.get("volumeMounts", []) if m["name"].startswith("grid-")}
    return volumes, {k: v["value"] for k, v in env.items()}, mounts


def test_job_scheduler_and_workers_mount_the_same_files(helm_binary: str) -> None:
    objs = render(helm_binary, *GRID, "--set",
                  "grid.certificates.hostPath=/cvmfs/grid.cern.ch/etc/grid-security/certificates")
    scheduler, worker = dask_pods(objs)
    for where, pod in (("job", job_pod(objs)), ("scheduler", scheduler), ("worker", worker)):
        volumes, env, mounts = grid_view(pod)
        assert volumes["grid-proxy"]["secret"] == {"secretName": "cms-proxy", "defaultMode": 0o400}, where
        assert volumes["grid-token"]["secret"] == {"secretName": "cms-token", "defaultMode": 0o400}, where
        assert volumes["grid-certificates"]["hostPath"] == {
            "path": "/cvmfs/grid.cern.ch/etc/grid-security/certificates", "type": "Directory"}, where
        assert env == {"X509_USER_PROXY": PROXY, "BEARER_TOKEN_FILE": TOKEN, "X509_CERT_DIR": CADIR}, where
        # Whole folders, read-only, no subPath: a subPath mount never sees a renewed Secret.
        assert {n: (m["mountPath"], m["readOnly"], "subPath" in m) for n, m in mounts.items()} == {
            "grid-proxy": (os.path.dirname(PROXY), True, False),
            "grid-token": (os.path.dirname(TOKEN), True, False),
            "grid-certificates": (CADIR, True, False)}, where
    # The workers keep their scratch, shared and Dask TLS volumes beside the grid files.
    assert {v["name"] for v in worker["volumes"]} == {"scratch", "shared", "dask-tls", "grid-proxy", "grid-token",
                                                      "grid-certificates"}


@pytest.mark.parametrize(("args", "source"), [
    (["--set", "grid.certificates.configMap=igtf"], {"configMap": {"name": "igtf"}}),
    (["--set", "grid.certificates.volume.persistentVolumeClaim.claimName=cvmfs-grid"],
     {"persistentVolumeClaim": {"claimName": "cvmfs-grid"}}),
])
def test_certificates_from_a_configmap_or_any_volume(helm_binary: str, args: list[str],
                                                     source: dict[str, Any]) -> None:
    objs = render(helm_binary, *args)
    scheduler, worker = dask_pods(objs)
    for pod in (job_pod(objs), scheduler, worker):
        volumes, env, _ = grid_view(pod)
        assert volumes == {"grid-certificates": {"name": "grid-certificates", **source}}
        assert env == {"X509_CERT_DIR": CADIR}


def test_only_names_and_paths_no_secret_objects(helm_binary: str) -> None:
    objs = render(helm_binary, *GRID)
    text = yaml.safe_dump_all(objs)
    assert "BEGIN" not in text and "PRIVATE KEY" not in text
    secrets = [o["metadata"]["name"] for o in objs if o["kind"] == "Secret"]
    assert "cms-proxy" not in secrets and "cms-token" not in secrets  # created by the user


def test_nothing_without_grid_values(helm_binary: str) -> None:
    objs = render(helm_binary)
    scheduler, worker = dask_pods(objs)
    for pod in (job_pod(objs), scheduler, worker):
        assert grid_view(pod) == ({}, {}, {})
    # its scratch emptyDir and the run's Dask TLS Secret only
    assert [v["name"] for v in scheduler["volumes"]] == ["scratch", "dask-tls"]


def test_schema_rejects_a_relative_mount_path(helm_binary: str) -> None:
    with pytest.raises(RuntimeError, match="mountPath"):
        render(helm_binary, "--set", "grid.proxy.mountPath=relative/proxy")


def test_file_volume_needs_exactly_one_source() -> None:
    cfg = KubernetesClusterConfig(file_volumes=[FileVolume(name="grid-ca", mount_path="/ca",
                                                           host_path="/a", config_map_name="b")])
    with pytest.raises(SpecError, match="exactly one of"):
        make_cluster_spec(cfg, "r1")

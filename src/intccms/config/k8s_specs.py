"""Pure builders of the Dask operator's custom resources: configuration in, manifest out.

Kept apart from the code that talks to the API server (``kubernetes.py``) so every field
of a DaskCluster or DaskAutoscaler can be unit-tested, and validated against the operator's
CRD schemas, without a cluster. Credentials only ever appear as Secret references
(``valueFrom.secretKeyRef`` / ``envFrom.secretRef``), never as values.
"""

from __future__ import annotations

import re
from typing import Any

from intccms.config.kubernetes import (
    KubernetesClusterConfig,
    PodResources,
    ResourceQuantities,
)

__all__ = [
    "API_VERSION",
    "COMPONENT_LABEL",
    "MAX_CLUSTER_NAME_LEN",
    "SCRATCH_PATH",
    "TLS_MOUNT_PATH",
    "TLS_VOLUME",
    "SpecError",
    "cluster_name",
    "make_autoscaler_spec",
    "make_cluster_spec",
    "memory_bytes",
    "tls_env",
    "tls_secret_name",
]

API_VERSION = "kubernetes.dask.org/v1"
COMPONENT_LABEL = "app.kubernetes.io/component"
# Worker Deployments are named "<cluster>-default-worker-<10 hex>" and must stay a valid
# 63-character label value, which leaves 37 characters for the cluster name.
MAX_CLUSTER_NAME_LEN = 37
# The root filesystem of scheduler and workers is read-only; this emptyDir is where they write
# (Dask's local directory, tempfile, library caches), as the chart's own pods do at /tmp.
SCRATCH_PATH = "/tmp"
SCRATCH_VOLUME = "scratch"
# With cluster.kubernetes.tls the run's Secret (k8s_tls.make_tls_secret) is mounted here,
# read-only, in scheduler and workers; Dask reads its TLS settings from the variables of tls_env.
TLS_VOLUME = "dask-tls"
TLS_MOUNT_PATH = "/etc/dask-tls"
# Scheduler HTTP routes with Dask's API added: the operator holds no certificate, so it asks the
# scheduler for its adaptive target, idleness and workers to retire on the dashboard port instead
# of the (then encrypted and authenticated) comm port.
_SCHEDULER_ROUTES = [
    "distributed.http.scheduler.prometheus",
    "distributed.http.scheduler.info",
    "distributed.http.scheduler.json",
    "distributed.http.health",
    "distributed.http.proxy",
    "distributed.http.statics",
    "distributed.http.scheduler.api",
]
# Dask stops spilling at this share of the scratch volume: a full emptyDir gets the pod evicted.
_SPILL_SHARE = 0.8
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
# Names that look like credentials must come from a Secret, never from plain env values.
_SECRET_LIKE = re.compile(r"(SECRET|PASSWORD|TOKEN|ACCESS_KEY|PRIVATE_KEY|CREDENTIAL)", re.I)
_QUANTITY = re.compile(r"^([0-9]+(?:\.[0-9]+)?)(Ki|Mi|Gi|Ti|Pi|k|K|M|G|T|P)?$")
_FACTORS = {
    None: 1,
    "k": 10**3,
    "K": 10**3,
    "M": 10**6,
    "G": 10**9,
    "T": 10**12,
    "P": 10**15,
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
    "Pi": 2**50,
}


class SpecError(ValueError):
    """A configuration value that cannot become a valid Kubernetes manifest."""


def cluster_name(cfg: KubernetesClusterConfig, run_id: str) -> str:
    """Name of the DaskCluster for one run: ``cluster_name`` or ``<name_prefix>-<run_id>``.

    Args:
        cfg: The ``cluster.kubernetes`` configuration.
        run_id: Identifier of the run (any characters; lowercased and sanitised).

    Returns:
        A DNS-1123 label of at most ``MAX_CLUSTER_NAME_LEN`` characters.
    """
    if cfg.cluster_name:
        name = cfg.cluster_name
        if not _DNS_LABEL.match(name) or len(name) > MAX_CLUSTER_NAME_LEN:
            msg = (
                f"cluster.kubernetes.cluster_name={name!r} is not a lowercase DNS-1123 label of"
                f" at most {MAX_CLUSTER_NAME_LEN} characters; use e.g. 'intccms-run1'"
            )
            raise SpecError(msg)
        return name
    raw = f"{cfg.name_prefix}-{run_id}".lower()
    name = re.sub(r"[^a-z0-9-]+", "-", raw)[:MAX_CLUSTER_NAME_LEN].strip("-")
    if not name or not name[0].isalnum():
        msg = (
            f"cannot build a DaskCluster name from cluster.kubernetes.name_prefix="
            f"{cfg.name_prefix!r} and run id {run_id!r}; set a prefix starting with a letter"
        )
        raise SpecError(msg)
    return name


def tls_secret_name(cfg: KubernetesClusterConfig, run_id: str) -> str:
    """Name of the run's TLS Secret: ``<cluster name>-tls``."""
    return _tls_secret(cluster_name(cfg, run_id))


def _tls_secret(cluster: str) -> str:
    return f"{cluster}-tls"


def tls_env(mount_path: str = TLS_MOUNT_PATH) -> dict[str, str]:
    """Dask's TLS configuration as variables, for files ``tls.crt``/``tls.key``/``ca.crt``.

    Every role (scheduler, worker and nanny, and the client a task may open) uses the one
    certificate of the run, and plain ``tcp://`` connections are refused.
    """
    env = {
        "DASK_DISTRIBUTED__COMM__REQUIRE_ENCRYPTION": "True",
        "DASK_DISTRIBUTED__COMM__TLS__CA_FILE": f"{mount_path}/ca.crt",
    }
    for role in ("SCHEDULER", "WORKER", "CLIENT"):
        env[f"DASK_DISTRIBUTED__COMM__TLS__{role}__CERT"] = f"{mount_path}/tls.crt"
        env[f"DASK_DISTRIBUTED__COMM__TLS__{role}__KEY"] = f"{mount_path}/tls.key"
    return env


def memory_bytes(quantity: str) -> int:
    """Bytes in a Kubernetes memory quantity ("4Gi", "512M", "1000").

    Args:
        quantity: Quantity string as in a container's resources.

    Returns:
        The number of bytes.
    """
    match = _QUANTITY.match(quantity.strip())
    if match is None:
        msg = f"memory quantity {quantity!r} is not understood; write e.g. '4Gi' or '512Mi'"
        raise SpecError(msg)
    number, unit = match.groups()
    return int(float(number) * _FACTORS[unit])


def _quantities(q: ResourceQuantities) -> dict[str, str]:
    return {k: v for k, v in (("cpu", q.cpu), ("memory", q.memory)) if v}


def _resources(res: PodResources, where: str) -> dict[str, Any]:
    requests, limits = _quantities(res.requests), _quantities(res.limits)
    if not requests.get("memory") or not limits.get("memory"):
        msg = (
            f"cluster.kubernetes.{where}.resources needs requests.memory and limits.memory;"
            " pods without them are evicted first and can starve their node"
        )
        raise SpecError(msg)
    return {"requests": requests, "limits": limits}


def _labels(cfg: KubernetesClusterConfig, name: str, component: str) -> dict[str, str]:
    return {
        **cfg.labels,
        "app.kubernetes.io/name": "intccms",
        "app.kubernetes.io/instance": name,
        COMPONENT_LABEL: component,
        "app.kubernetes.io/managed-by": "intccms",
    }


def _annotations(cfg: KubernetesClusterConfig, port: int) -> dict[str, str]:
    annotations = dict(cfg.annotations)
    if cfg.prometheus.enabled:
        annotations |= {
            "prometheus.io/scrape": "true",
            "prometheus.io/port": str(port),
            "prometheus.io/path": cfg.prometheus.path,
        }
    return annotations


def _env(cfg: KubernetesClusterConfig) -> list[dict[str, Any]]:
    env: list[dict[str, Any]] = []
    for key, value in sorted(cfg.env.items()):
        if _SECRET_LIKE.search(key):
            msg = (
                f"cluster.kubernetes.env.{key} looks like a credential; put it in a Secret and"
                " list it under cluster.kubernetes.env_from_secrets instead"
            )
            raise SpecError(msg)
        env.append({"name": key, "value": str(value)})
    for item in cfg.env_from_secrets:
        if not (item.name and item.secret_name and item.key):
            msg = (
                "each cluster.kubernetes.env_from_secrets entry needs name, secret_name and"
                f" key; got name={item.name!r} secret_name={item.secret_name!r}"
            )
            raise SpecError(msg)
        ref: dict[str, Any] = {"name": item.secret_name, "key": item.key}
        if item.optional:
            ref["optional"] = True
        env.append({"name": item.name, "valueFrom": {"secretKeyRef": ref}})
    return env


def _security_context(cfg: KubernetesClusterConfig) -> dict[str, Any]:
    if cfg.run_as_user <= 0:
        msg = f"cluster.kubernetes.run_as_user={cfg.run_as_user} must be a non-root uid (>0)"
        raise SpecError(msg)
    return {
        "runAsNonRoot": True,
        "runAsUser": cfg.run_as_user,
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "privileged": False,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def _scratch_bytes(size_limit: str, where: str) -> int:
    try:
        return memory_bytes(size_limit)
    except SpecError:
        msg = (
            f"cluster.kubernetes.{where}.scratch_size_limit={size_limit!r} is not a Kubernetes"
            " quantity; write e.g. '10Gi'"
        )
        raise SpecError(msg) from None


def _scratch_env(cfg: KubernetesClusterConfig, extra: dict[str, str]) -> list[dict[str, Any]]:
    """Writable places for Dask and the libraries it loads, all on the scratch volume.

    Without them matplotlib and numba try the read-only home directory; values set in
    ``cluster.kubernetes.env`` win.
    """
    defaults = {
        "DASK_TEMPORARY_DIRECTORY": SCRATCH_PATH,
        "MPLCONFIGDIR": f"{SCRATCH_PATH}/matplotlib",
        "NUMBA_CACHE_DIR": f"{SCRATCH_PATH}/numba",
        **extra,
    }
    return [{"name": k, "value": v} for k, v in sorted(defaults.items()) if k not in cfg.env]


def _volumes(cfg: KubernetesClusterConfig) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Pod volumes and container mounts of ``cluster.kubernetes.volumes``."""
    volumes: list[dict[str, Any]] = []
    mounts: list[dict[str, Any]] = []
    for i, vol in enumerate(cfg.volumes):
        where = f"cluster.kubernetes.volumes[{i}]"
        if not (_DNS_LABEL.match(vol.name) and vol.claim_name and vol.mount_path.startswith("/")):
            msg = (
                f"{where} needs a DNS-label name, a claim_name and an absolute mount_path; got"
                f" name={vol.name!r} claim_name={vol.claim_name!r} mount_path={vol.mount_path!r}"
            )
            raise SpecError(msg)
        if vol.name == SCRATCH_VOLUME or vol.mount_path.rstrip("/") == SCRATCH_PATH:
            msg = (
                f"{where}: the name {SCRATCH_VOLUME!r} and the path {SCRATCH_PATH} belong to the"
                " pods' scratch volume; choose another name and mount_path"
            )
            raise SpecError(msg)
        if vol.name == TLS_VOLUME:
            msg = f"{where}: the name {TLS_VOLUME!r} belongs to the pods' TLS volume; choose another"
            raise SpecError(msg)
        if any(v["name"] == vol.name for v in volumes):
            msg = f"{where}: volume name {vol.name!r} is used twice"
            raise SpecError(msg)
        claim: dict[str, Any] = {"claimName": vol.claim_name}
        if vol.read_only:
            claim["readOnly"] = True
        volumes.append({"name": vol.name, "persistentVolumeClaim": claim})
        mounts.append({"name": vol.name, "mountPath": vol.mount_path, "readOnly": vol.read_only})
    return volumes, mounts


def _file_volumes(cfg: KubernetesClusterConfig) -> tuple[list[dict[str, Any]], list[dict[str, Any]],
                                                          list[dict[str, Any]]]:
    """Pod volumes, read-only mounts and path variables of ``cluster.kubernetes.file_volumes``."""
    volumes: list[dict[str, Any]] = []
    mounts: list[dict[str, Any]] = []
    env: list[dict[str, Any]] = []
    for i, vol in enumerate(cfg.file_volumes):
        where = f"cluster.kubernetes.file_volumes[{i}]"
        sources = {"secret_name": vol.secret_name, "config_map_name": vol.config_map_name,
                   "host_path": vol.host_path, "source": vol.source}
        chosen = [k for k, v in sources.items() if v]
        if not (_DNS_LABEL.match(vol.name) and vol.mount_path.startswith("/")) or len(chosen) != 1:
            msg = (f"{where} needs a DNS-label name, an absolute mount_path and exactly one of "
                   f"{sorted(sources)}; got name={vol.name!r} mount_path={vol.mount_path!r} "
                   f"sources={chosen}")
            raise SpecError(msg)
        if (any(v["name"] == vol.name for v in volumes) or vol.name in {c.name for c in cfg.volumes}
                or vol.name in (SCRATCH_VOLUME, TLS_VOLUME)):
            msg = f"{where}: volume name {vol.name!r} is used twice"
            raise SpecError(msg)
        volume: dict[str, Any] = {"name": vol.name}
        if vol.secret_name:
            volume["secret"] = {"secretName": vol.secret_name, "defaultMode": 0o400}
        elif vol.config_map_name:
            volume["configMap"] = {"name": vol.config_map_name}
        elif vol.host_path:
            volume["hostPath"] = {"path": vol.host_path, "type": "Directory"}
        else:
            volume.update(dict(vol.source))
        volumes.append(volume)
        mounts.append({"name": vol.name, "mountPath": vol.mount_path, "readOnly": True})
        for var, file in sorted(vol.env.items()):
            path = vol.mount_path.rstrip("/") + (f"/{file}" if file else "")
            env.append({"name": var, "value": path or "/"})
    return volumes, mounts, env


def _pod_spec(
    cfg: KubernetesClusterConfig,
    container: dict[str, Any],
    scratch: dict[str, Any],
    claims: tuple[list[dict[str, Any]], list[dict[str, Any]]] = ([], []),
    scratch_env: dict[str, str] | None = None,
    tls: tuple[str, dict[str, str]] | None = None,
) -> dict[str, Any]:
    """Pod spec around one container: read-only root, scratch emptyDir, Secret refs only.

    ``tls`` is the run's TLS Secret and the Dask variables that go with it (mounted read-only,
    files readable by the pod's user only).
    """
    volumes, mounts = claims
    file_volumes, file_mounts, file_env = _file_volumes(cfg)
    tls_volumes: list[dict[str, Any]] = []
    tls_mounts: list[dict[str, Any]] = []
    tls_vars: list[dict[str, Any]] = []
    if tls is not None:
        secret, variables = tls
        taken = sorted(set(variables) & set(cfg.env))
        if taken:
            msg = (f"cluster.kubernetes.env sets {taken}, which cluster.kubernetes.tls sets for the"
                   " run's certificate; remove them, or set tls: false")
            raise SpecError(msg)
        tls_volumes = [{"name": TLS_VOLUME, "secret": {"secretName": secret, "defaultMode": 0o400}}]
        tls_mounts = [{"name": TLS_VOLUME, "mountPath": TLS_MOUNT_PATH, "readOnly": True}]
        tls_vars = [{"name": k, "value": v} for k, v in sorted(variables.items())]
    container = {
        "image": cfg.image,
        "imagePullPolicy": cfg.image_pull_policy,
        **container,
        # Grid credential paths are file locations, not secrets: set directly (no Secret check).
        "env": _scratch_env(cfg, scratch_env or {}) + tls_vars + _env(cfg) + file_env,
        "volumeMounts": [{"name": SCRATCH_VOLUME, "mountPath": SCRATCH_PATH}, *mounts,
                         *file_mounts, *tls_mounts],
        "securityContext": _security_context(cfg),
    }
    if cfg.env_from_secret_names:
        container["envFrom"] = [{"secretRef": {"name": s}} for s in cfg.env_from_secret_names]
    spec: dict[str, Any] = {
        "containers": [container],
        "volumes": [{"name": SCRATCH_VOLUME, "emptyDir": scratch}, *volumes, *file_volumes,
                    *tls_volumes],
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": cfg.run_as_user,
            "runAsGroup": cfg.run_as_user,
            "fsGroup": cfg.run_as_user,
        },
        # Dask pods never call the Kubernetes API; only mount a token when asked to.
        "automountServiceAccountToken": bool(cfg.service_account),
    }
    if cfg.service_account:
        spec["serviceAccountName"] = cfg.service_account
    if cfg.image_pull_secrets:
        spec["imagePullSecrets"] = [{"name": s} for s in cfg.image_pull_secrets]
    if cfg.node_selector:
        spec["nodeSelector"] = dict(cfg.node_selector)
    if cfg.tolerations:
        spec["tolerations"] = [
            {k: v for k, v in vars(t).items() if v} for t in cfg.tolerations
        ]
    return spec


def _worker_memory_limit(cfg: KubernetesClusterConfig) -> str:
    if cfg.worker.memory_limit:
        return cfg.worker.memory_limit
    # Leave headroom under the container limit so Dask pauses before the OOM killer acts.
    return str(int(memory_bytes(cfg.worker.resources.limits.memory) * 0.9))


def _worker(cfg: KubernetesClusterConfig, name: str) -> dict[str, Any]:
    wrk = cfg.worker
    port = wrk.dashboard_port
    args = [
        "worker",
        "--name",
        "$(DASK_WORKER_NAME)",
        "--nthreads",
        str(wrk.threads),
        "--nworkers",
        "1",
        "--memory-limit",
        _worker_memory_limit(cfg),
        "--worker-port",
        str(wrk.comm_port),
        "--nanny-port",
        str(wrk.nanny_port),
        "--dashboard",
        "--dashboard-address",
        f":{port}",
    ]
    for module in wrk.preload:
        args += ["--preload", module]
    tls = None
    if cfg.tls:
        args += ["--protocol", "tls"]
        # The operator's own DASK_SCHEDULER_ADDRESS says tcp:// and port 8786; a variable the
        # container already has is kept. The short Service name resolves in the pod's namespace.
        address = f"tls://{name}-scheduler:{cfg.scheduler.comm_port}"
        tls = (_tls_secret(name), {**tls_env(), "DASK_SCHEDULER_ADDRESS": address})
    container: dict[str, Any] = {
        "name": "worker",
        "command": ["intccms-entrypoint"],
        "args": args,
        # Named, so the chart's NetworkPolicies admit peers per port without knowing numbers.
        "ports": [
            {"name": "tcp-comm", "containerPort": wrk.comm_port, "protocol": "TCP"},
            {"name": "tcp-nanny", "containerPort": wrk.nanny_port, "protocol": "TCP"},
            {"name": "http-dashboard", "containerPort": port, "protocol": "TCP"},
        ],
        "resources": _resources(wrk.resources, "worker"),
    }
    scratch = _scratch_bytes(wrk.scratch_size_limit, "worker")
    max_spill = {"DASK_DISTRIBUTED__WORKER__MEMORY__MAX_SPILL": str(int(scratch * _SPILL_SHARE))}
    # Only workers open input files and write skims; the scheduler needs no shared volume.
    spec = _pod_spec(cfg, container, {"sizeLimit": wrk.scratch_size_limit}, _volumes(cfg), max_spill,
                     tls)
    return {
        "replicas": max(cfg.adapt.minimum, 0),
        "metadata": {
            "labels": _labels(cfg, name, "dask-worker"),
            "annotations": _annotations(cfg, port),
        },
        "spec": spec,
    }


def _scheduler(cfg: KubernetesClusterConfig, name: str) -> dict[str, Any]:
    sch = cfg.scheduler
    probe = {"httpGet": {"port": "http-dashboard", "path": "/health"}}
    container: dict[str, Any] = {
        "name": "scheduler",
        "command": ["intccms-entrypoint"],
        "args": [
            "scheduler",
            "--host",
            "0.0.0.0",
            "--port",
            str(sch.comm_port),
            "--dashboard-address",
            f":{sch.dashboard_port}",
        ],
        "ports": [
            {"name": "tcp-comm", "containerPort": sch.comm_port, "protocol": "TCP"},
            {"name": "http-dashboard", "containerPort": sch.dashboard_port, "protocol": "TCP"},
        ],
        "resources": _resources(sch.resources, "scheduler"),
        "readinessProbe": {**probe, "initialDelaySeconds": 0, "periodSeconds": 1},
        "livenessProbe": {**probe, "initialDelaySeconds": 15, "periodSeconds": 20},
    }
    _scratch_bytes(sch.scratch_size_limit, "scheduler")
    tls = None
    if cfg.tls:
        container["args"] += ["--protocol", "tls"]
        routes = {"DASK_DISTRIBUTED__SCHEDULER__HTTP__ROUTES": repr(_SCHEDULER_ROUTES)}
        tls = (_tls_secret(name), {**tls_env(), **routes})
    return {
        "metadata": {
            "labels": _labels(cfg, name, "dask-scheduler"),
            "annotations": _annotations(cfg, sch.dashboard_port),
        },
        "spec": _pod_spec(cfg, container, {"sizeLimit": sch.scratch_size_limit}, tls=tls),
        "service": {
            "type": sch.service_type,
            "selector": {"dask.org/cluster-name": name, "dask.org/component": "scheduler"},
            "ports": [
                {
                    "name": "tcp-comm",
                    "protocol": "TCP",
                    "port": sch.comm_port,
                    "targetPort": "tcp-comm",
                },
                {
                    "name": "http-dashboard",
                    "protocol": "TCP",
                    "port": sch.dashboard_port,
                    "targetPort": "http-dashboard",
                },
            ],
        },
    }


def make_cluster_spec(cfg: KubernetesClusterConfig, run_id: str) -> dict[str, Any]:
    """The DaskCluster for one run.

    Args:
        cfg: The ``cluster.kubernetes`` configuration.
        run_id: Identifier of the run; part of the cluster name and a label.

    Returns:
        A ``kubernetes.dask.org/v1`` DaskCluster manifest (namespace left to the caller).
    """
    name = cluster_name(cfg, run_id)
    if cfg.adapt.minimum < 0 or cfg.adapt.maximum < cfg.adapt.minimum:
        msg = (
            f"cluster.kubernetes.adapt needs 0 <= minimum <= maximum; got"
            f" minimum={cfg.adapt.minimum} maximum={cfg.adapt.maximum}"
        )
        raise SpecError(msg)
    if cfg.idle_timeout_s < 0:
        msg = f"cluster.kubernetes.idle_timeout_s={cfg.idle_timeout_s} must be >= 0 (0: never)"
        raise SpecError(msg)
    metadata: dict[str, Any] = {
        "name": name,
        "labels": {**_labels(cfg, name, "dask-cluster"), "intccms.io/run-id": _label(run_id)},
        "annotations": dict(cfg.annotations),
    }
    owners = _owner_references(cfg)
    if owners:
        metadata["ownerReferences"] = owners
    return {
        "apiVersion": API_VERSION,
        "kind": "DaskCluster",
        "metadata": metadata,
        "spec": {
            "idleTimeout": cfg.idle_timeout_s,
            "worker": _worker(cfg, name),
            "scheduler": _scheduler(cfg, name),
        },
    }


def _owner_references(cfg: KubernetesClusterConfig) -> list[dict[str, Any]]:
    owner = cfg.owner
    if not (owner.name or owner.uid):
        return []
    if not (owner.name and owner.uid and owner.kind and owner.api_version):
        msg = (
            "cluster.kubernetes.owner needs api_version, kind, name and uid together; got"
            f" name={owner.name!r} uid={owner.uid!r} (in the chart's Job they come from"
            " INTCCMS_JOB_NAME / INTCCMS_JOB_UID)"
        )
        raise SpecError(msg)
    # No blockOwnerDeletion/controller: those would need RBAC on the Job's finalizers, and the
    # garbage collector deletes dependents without them.
    return [{"apiVersion": owner.api_version, "kind": owner.kind, "name": owner.name, "uid": owner.uid}]


def make_autoscaler_spec(cfg: KubernetesClusterConfig, run_id: str) -> dict[str, Any]:
    """The DaskAutoscaler that keeps the run's default worker group within its bounds.

    Args:
        cfg: The ``cluster.kubernetes`` configuration.
        run_id: Identifier of the run (same as for ``make_cluster_spec``).

    Returns:
        A ``kubernetes.dask.org/v1`` DaskAutoscaler manifest with integer bounds.
    """
    name = cluster_name(cfg, run_id)
    return {
        "apiVersion": API_VERSION,
        "kind": "DaskAutoscaler",
        "metadata": {
            "name": name,
            "labels": {**_labels(cfg, name, "dask-autoscaler"), "dask.org/cluster-name": name},
        },
        "spec": {
            "cluster": name,
            "minimum": int(cfg.adapt.minimum),
            "maximum": int(cfg.adapt.maximum),
        },
    }


def _label(value: str) -> str:
    """A string made into a valid label value (63 characters, alphanumeric ends)."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "-", value)[:63]
    return cleaned.strip("-._") or "unknown"

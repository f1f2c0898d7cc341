"""Schema of ``cluster.kubernetes``: what the job asks of the Dask operator.

Plain dataclasses with OmegaConf-compatible field types, so that Hydra can use them as
the structured schema of the ``cluster`` group and a typo'd key fails at composition time.
Nothing here talks to Kubernetes; ``k8s_specs`` turns these values into manifests.
Credentials never appear here as values: only the names of the Secrets that hold them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from omegaconf import OmegaConf
from omegaconf.errors import ConfigKeyError, OmegaConfBaseException

from intccms.config.keys import did_you_mean

__all__ = [
    "AdaptConfig",
    "FileVolume",
    "KubernetesClusterConfig",
    "KubernetesConfigError",
    "OwnerReference",
    "PodResources",
    "PrometheusDiscovery",
    "ResourceQuantities",
    "SchedulerConfig",
    "SecretEnvVar",
    "Toleration",
    "VolumeClaimMount",
    "WaitConfig",
    "WorkerConfig",
    "parse_kubernetes_config",
]


@dataclass
class ResourceQuantities:
    """CPU and memory as Kubernetes quantities ("500m", "4Gi"); empty means not set."""

    cpu: str = ""
    memory: str = ""


@dataclass
class PodResources:
    """Requests and limits of one container.

    Requests decide where a pod is scheduled; the memory limit is what the kernel enforces,
    so the Dask worker's own memory limit is derived from it.
    """

    requests: ResourceQuantities = field(default_factory=ResourceQuantities)
    limits: ResourceQuantities = field(default_factory=ResourceQuantities)


@dataclass
class SecretEnvVar:
    """One environment variable read from one key of a Secret (``valueFrom.secretKeyRef``).

    Attributes:
        name: Variable name in the container, e.g. ``AWS_ACCESS_KEY_ID``.
        secret_name: Name of the Secret in the cluster's namespace.
        key: Key inside the Secret.
        optional: Start the pod even when the Secret or key is missing.
    """

    name: str = ""
    secret_name: str = ""
    key: str = ""
    optional: bool = False


@dataclass
class Toleration:
    """A pod toleration, as in the Kubernetes API (empty strings are left out)."""

    key: str = ""
    operator: str = "Equal"
    value: str = ""
    effect: str = ""


@dataclass
class VolumeClaimMount:
    """A PersistentVolumeClaim mounted into every worker pod.

    The job generates demo inputs and corrections, and writes skims, at absolute paths that the
    workers then open; both must see the same files at the same path, so the chart mounts one
    claim at the same ``mount_path`` in the job and (through this) in every worker.

    Attributes:
        name: Volume name inside the pod (a DNS-1123 label).
        claim_name: Name of the PersistentVolumeClaim in the cluster's namespace.
        mount_path: Absolute path of the mount in the worker container.
        read_only: Mount read-only (workers that only read inputs).
    """

    name: str = ""
    claim_name: str = ""
    mount_path: str = ""
    read_only: bool = False


@dataclass
class FileVolume:
    """Read-only files mounted into the scheduler and every worker: grid credentials.

    A Secret (an X509 proxy, a bearer token) is mounted as files, not exported as variables,
    so a renewed Secret reaches running pods; the CA certificates come from a ConfigMap, a
    node directory (``host_path``, e.g. CVMFS) or any other volume source (``source``, e.g. a
    CVMFS CSI claim). Set exactly one of ``secret_name``, ``config_map_name``, ``host_path``
    and ``source``.

    Attributes:
        name: Volume name inside the pod (a DNS-1123 label).
        mount_path: Absolute folder the files appear in.
        secret_name: A Secret in the cluster's namespace (files mode 0400; 0440 under fsGroup).
        config_map_name: A ConfigMap in the cluster's namespace.
        host_path: A directory on the node.
        source: Any other Kubernetes volume source, as in the API (``{"csi": {...}}``).
        env: Variables pointing into the mount: name -> file below ``mount_path`` (``""``:
            the folder itself), e.g. ``{"X509_USER_PROXY": "x509up"}``. Paths, not contents.
    """

    name: str = ""
    mount_path: str = ""
    secret_name: str = ""
    config_map_name: str = ""
    host_path: str = ""
    source: dict[str, Any] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)


@dataclass
class OwnerReference:
    """The object that owns the DaskCluster: Kubernetes deletes the cluster when it goes.

    Set explicitly, or leave name and uid empty and set ``owner_pod``: the backend then reads
    the job's own pod and takes the object that controls it (the chart's Job). Deleting the
    Job (by hand, ``ttlSecondsAfterFinished`` or ``helm uninstall``) then removes a cluster its
    killed pod left behind. Both empty and no ``owner_pod``: no owner (runs outside a Job).

    Attributes:
        api_version: API version of the owner, e.g. ``batch/v1``.
        kind: Kind of the owner, e.g. ``Job``.
        name: Name of the owner.
        uid: UID of the owner (the garbage collector matches on it).
    """

    api_version: str = "batch/v1"
    kind: str = "Job"
    name: str = ""
    uid: str = ""


@dataclass
class PrometheusDiscovery:
    """Annotations that let a plain Prometheus find scheduler and worker pods.

    Workers and the scheduler serve ``/metrics`` on their Dask dashboard (HTTP) port, so
    the scrape port is that port; a Prometheus-operator PodMonitor selects the same pods by
    the ``app.kubernetes.io/*`` labels instead.
    """

    enabled: bool = True
    path: str = "/metrics"


@dataclass
class AdaptConfig:
    """Bounds of the DaskAutoscaler. Both are integers: the CRD rejects null bounds."""

    minimum: int = 1
    maximum: int = 10


@dataclass
class WaitConfig:
    """How long the job waits for each step before it gives up and tears down.

    Every wait is bounded so a job never hangs on a cluster that cannot start (missing
    operator, unpullable image, no capacity). Set ``scheduler`` to false to only submit
    the resources (useful where pods cannot run, e.g. an API emulator in tests).

    Attributes:
        operator_timeout_s: Time for the operator to acknowledge the DaskCluster.
        scheduler: Wait for the scheduler and connect a Client; false only submits the
            resources and the backend yields None (``start_cluster`` refuses it for runs).
        scheduler_timeout_s: Time for the scheduler pod, service and comm to come up.
        workers: Number of workers to wait for before the job starts (0: do not wait).
        workers_timeout_s: Time to wait for that many workers.
        teardown_timeout_s: Time to wait for the DaskCluster to disappear on exit.
    """

    operator_timeout_s: float = 60.0
    scheduler: bool = True
    scheduler_timeout_s: float = 300.0
    workers: int = 1
    workers_timeout_s: float = 600.0
    teardown_timeout_s: float = 120.0


@dataclass
class SchedulerConfig:
    """The scheduler pod: resources, the ports it serves and its scratch volume.

    Attributes:
        resources: Container requests and limits.
        comm_port: Dask comm port (clients and workers connect here).
        dashboard_port: HTTP port of the dashboard, ``/health`` and ``/metrics``.
        service_type: Type of the scheduler's Service.
        scratch_size_limit: Size limit of the emptyDir mounted at ``/tmp`` (the root
            filesystem is read-only, so this is the only writable place).
    """

    resources: PodResources = field(
        default_factory=lambda: PodResources(
            requests=ResourceQuantities(cpu="250m", memory="1Gi"),
            limits=ResourceQuantities(cpu="1", memory="2Gi"),
        )
    )
    comm_port: int = 8786
    dashboard_port: int = 8787
    service_type: str = "ClusterIP"
    scratch_size_limit: str = "1Gi"


@dataclass
class WorkerConfig:
    """The worker pods: resources, threads and the Dask worker's own memory limit.

    Attributes:
        resources: Container requests and limits.
        threads: Threads per worker process (one worker process per pod, so Prometheus
            metrics from the worker process describe the whole pod).
        memory_limit: Dask's memory limit ("3.5GiB"); empty derives it from the container
            memory limit so Dask spills and pauses before the kernel kills the pod.
        dashboard_port: HTTP port of the worker dashboard, which also serves ``/metrics``.
        comm_port: Fixed port of the worker process (the scheduler and other workers
            connect here); fixed so a NetworkPolicy can name it apart from the metrics port.
        nanny_port: Fixed port of the nanny process (the scheduler restarts workers there).
        preload: Modules given to ``dask worker --preload`` (the metrics exporter).
        scratch_size_limit: Size limit of the emptyDir mounted at ``/tmp``: Dask's local
            directory (spilled data), staged skims and library caches; Dask stops spilling
            at 80 % of it so the kubelet never evicts a worker for filling it.
    """

    resources: PodResources = field(
        default_factory=lambda: PodResources(
            requests=ResourceQuantities(cpu="1", memory="4Gi"),
            limits=ResourceQuantities(cpu="2", memory="4Gi"),
        )
    )
    threads: int = 1
    memory_limit: str = ""
    dashboard_port: int = 8788
    comm_port: int = 8789
    nanny_port: int = 8790
    preload: list[str] = field(default_factory=lambda: ["intccms.metrics.preload"])
    scratch_size_limit: str = "10Gi"


@dataclass
class KubernetesClusterConfig:
    """Everything the job needs to ask the Dask operator for its own cluster.

    Attributes:
        image: Image of scheduler and workers; the job's own image, so code matches.
        image_pull_policy: Kubernetes pull policy.
        image_pull_secrets: Names of Secrets for a private registry.
        namespace: Namespace for the DaskCluster; empty means the job pod's own namespace
            (or the kubeconfig's current one outside a cluster).
        name_prefix: The DaskCluster is named ``<name_prefix>-<run id>``.
        cluster_name: Fixed DaskCluster name instead of the generated one.
        scheduler: Scheduler pod settings.
        worker: Worker pod settings.
        env: Plain, non-secret environment variables for scheduler and workers.
        env_from_secrets: Variables read from single Secret keys.
        env_from_secret_names: Secrets whose every key becomes a variable (``envFrom``).
        service_account: Service account of scheduler and workers; empty means none is
            mounted (they do not talk to the Kubernetes API).
        node_selector: Node labels the pods must match.
        tolerations: Taints the pods tolerate.
        labels: Extra labels on the DaskCluster and all its pods.
        annotations: Extra annotations on the DaskCluster and all its pods.
        volumes: Claims mounted into every worker (shared inputs and outputs).
        file_volumes: Read-only files (grid proxy, token, CA certificates) mounted into the
            scheduler and every worker, with the variables that point at them.
        prometheus: Prometheus pod-discovery annotations.
        run_as_user: Non-root uid of every container (the image's user).
        idle_timeout_s: The operator deletes a cluster whose scheduler has had no work this
            long (0: never); covers a job pod killed before its teardown ran.
        owner: Owner of the DaskCluster (the job's Kubernetes Job), for garbage collection.
        owner_pod: Name of the pod the job runs in (downward API ``INTCCMS_POD_NAME``); when
            ``owner`` is empty, the pod's controller (its Job) becomes the owner.
        adapt: Autoscaler bounds.
        wait: Bounded waits at start and teardown.
        tls: Encrypt and authenticate all Dask traffic with a certificate made for the run
            (a private CA, a Secret ``<cluster>-tls`` mounted in scheduler and workers, the
            job's client holding the same in memory); clients without it are refused.
    """

    image: str = "ghcr.io/intccms/intccms:0.1.0"
    image_pull_policy: str = "IfNotPresent"
    image_pull_secrets: list[str] = field(default_factory=list)
    namespace: str = ""
    name_prefix: str = "intccms"
    cluster_name: str = ""
    scheduler: SchedulerConfig = field(default_factory=SchedulerConfig)
    worker: WorkerConfig = field(default_factory=WorkerConfig)
    env: dict[str, str] = field(default_factory=dict)
    env_from_secrets: list[SecretEnvVar] = field(default_factory=list)
    env_from_secret_names: list[str] = field(default_factory=list)
    service_account: str = ""
    node_selector: dict[str, str] = field(default_factory=dict)
    tolerations: list[Toleration] = field(default_factory=list)
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)
    volumes: list[VolumeClaimMount] = field(default_factory=list)
    file_volumes: list[FileVolume] = field(default_factory=list)
    prometheus: PrometheusDiscovery = field(default_factory=PrometheusDiscovery)
    run_as_user: int = 1000
    idle_timeout_s: int = 0
    owner: OwnerReference = field(default_factory=OwnerReference)
    owner_pod: str = ""
    adapt: AdaptConfig = field(default_factory=AdaptConfig)
    wait: WaitConfig = field(default_factory=WaitConfig)
    tls: bool = True


class KubernetesConfigError(ValueError):
    """``cluster.kubernetes`` has a key or value the schema does not allow."""


def parse_kubernetes_config(block: Any) -> KubernetesClusterConfig:
    """The ``cluster.kubernetes`` block checked against :class:`KubernetesClusterConfig`.

    ``ClusterConfig.kubernetes`` is untyped in the root schema (the ``local`` and ``address``
    backends have no such block), so this runs at start-up (``validate_config``) to catch a
    typo'd key or a wrong type before any cluster is asked for.

    Args:
        block: The composed block (DictConfig or plain mapping), or a ready config object.

    Returns:
        The typed configuration.

    Raises:
        KubernetesConfigError: Naming the full key, with the closest valid keys.
    """

    if isinstance(block, KubernetesClusterConfig):
        return block
    try:
        merged = OmegaConf.merge(OmegaConf.structured(KubernetesClusterConfig), block)
        cfg = OmegaConf.to_object(merged)
    except OmegaConfBaseException as err:
        key = str(getattr(err, "full_key", "") or "")
        unknown = did_you_mean(key, KubernetesClusterConfig, "cluster.kubernetes.") if key else None
        if isinstance(err, ConfigKeyError) and unknown is not None:
            msg = unknown
        else:
            where = f"cluster.kubernetes.{key}" if key else "cluster.kubernetes"
            msg = f"{where}: {str(err).splitlines()[0]}"
        raise KubernetesConfigError(msg) from None
    assert isinstance(cfg, KubernetesClusterConfig)
    return cfg

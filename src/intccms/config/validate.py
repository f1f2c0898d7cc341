"""Semantic checks after composition: everything that types alone cannot catch."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from dask.utils import parse_bytes
from omegaconf import DictConfig

from intccms.config.k8s_specs import SpecError, make_cluster_spec, memory_bytes
from intccms.config.kubernetes import (
    KubernetesConfigError,
    parse_kubernetes_config,
)
from intccms.config.processor import ProcessorConfigError, parse_processor_config
from intccms.core.errors import ConfigError
from intccms.physics.behaviours import KINDS, BehaviourError, resolve_behaviour
from intccms.physics.functors import FunctorError, import_function

if TYPE_CHECKING:
    from intccms.config.kubernetes import KubernetesClusterConfig, PodResources
    from intccms.config.processor_loader import LoadedProcessor

# Kubernetes CPU quantities: cores ("2", "0.5") or millicores ("250m").
_CPU_QUANTITY = re.compile(r"^(\d+(\.\d+)?|\.\d+)m?$")
_MAX_PORT = 65535


def validate_config(cfg: DictConfig) -> None:
    """Fail at start-up, naming the key, on references that do not resolve.

    Checks import paths of every functor, observables named by channels, eras of datasets,
    cross-sections of simulation, and corrections named per era; with a ``processor`` group,
    the processor (keys, class, constructor arguments, schema) instead of the analysis.
    """
    if cfg.get("processor") is not None:
        check_processor(cfg)
    else:
        _check_analysis(cfg)
    _check_datasets(cfg)
    _check_cluster(cfg.cluster)
    _check_cluster_kubernetes(cfg)
    _check_credentials(cfg)
    if cfg.workflow.chunksize <= 0:
        msg = f"workflow.chunksize must be positive, got {cfg.workflow.chunksize}"
        raise ConfigError(msg)
    after = cfg.workflow.compiled_kernels_after
    if after is not None and after < 0:
        msg = f"workflow.compiled_kernels_after must be 0 or more events (null: never), got {after}"
        raise ConfigError(msg)


def check_processor(cfg: DictConfig) -> LoadedProcessor:
    """The ``processor`` group typed, its class imported, checked and built (at start-up)."""
    # coffea takes ~2 s to import: only configurations with a processor pay for it.
    from intccms.config.processor_loader import ProcessorLoadError, load_processor

    try:
        loaded = load_processor(parse_processor_config(cfg.processor))
    except (ProcessorConfigError, ProcessorLoadError) as err:
        raise ConfigError(str(err)) from None
    wf = cfg.workflow
    if wf.use_skimmed_input or wf.save_skimmed_output or wf.run_statistics or wf.run_mva_training:
        msg = ("workflow: a processor run reads NanoAOD and runs the processor only; set "
               "workflow.use_skimmed_input, save_skimmed_output, run_statistics and "
               "run_mva_training to false (or use workflow=analysis)")
        raise ConfigError(msg)
    return loaded


def _check_analysis(cfg: DictConfig) -> None:
    """Functors import, channels name defined observables, corrections exist per era."""

    a = cfg.analysis
    functors = [("analysis.skim", a.skim)]
    functors += [(f"analysis.objects.{k}", v) for k, v in a.objects.items()]
    functors += [(f"analysis.baseline.{k}", v) for k, v in a.baseline.items()]
    functors += [(f"analysis.observables.{k}", v) for k, v in a.observables.items()]
    for ch, channel in a.channels.items():
        functors += [(f"analysis.channels.{ch}.cuts.{k}", v) for k, v in channel.cuts.items()]
        for obs in channel.observables:
            if obs not in a.observables:
                msg = (f"analysis.channels.{ch}.observables: '{obs}' is not defined under "
                       f"analysis.observables (known: {sorted(a.observables)})")
                raise ConfigError(msg)
    for key, functor in functors:
        try:
            import_function(str(functor.function))
        except FunctorError as err:
            raise ConfigError(f"{key}.function: {err}") from None
        if functor.get("behaviour"):
            _check_behaviour(key, functor, a)
    for era, names in cfg.corrections.by_era.items():
        if era not in cfg.eras:
            msg = f"corrections.by_era.{era}: '{era}' is not one of the configured eras {sorted(cfg.eras)}"
            raise ConfigError(msg)
        for name in names:
            if name not in cfg.corrections.definitions:
                msg = (f"corrections.by_era.{era}: correction '{name}' is not defined under "
                       f"corrections.definitions (known: {sorted(cfg.corrections.definitions)})")
                raise ConfigError(msg)


def _check_behaviour(key: str, functor: DictConfig, analysis: DictConfig) -> None:
    """The coffea behaviours a functor asks for fit its inputs (coffea is imported only here)."""

    kind = str(functor.behaviour)
    if kind not in KINDS:
        msg = f"{key}.behaviour: '{kind}' is not one of {list(KINDS)}"
        raise ConfigError(msg)
    objects = {str(k): list(v.inputs) for k, v in analysis.objects.items()}
    try:
        resolve_behaviour(kind, list(functor.inputs), analysis.collections, objects)
    except BehaviourError as err:
        raise ConfigError(f"{key}.behaviour: {err}") from None


def _check_datasets(cfg: DictConfig) -> None:
    """Every dataset has a configured era, data is process 'data', simulation a cross-section."""
    for name, ds in cfg.datasets.items():
        if ds.era not in cfg.eras:
            msg = f"datasets.{name}.era: '{ds.era}' is not one of the configured eras {sorted(cfg.eras)}"
            raise ConfigError(msg)
        process = ds.process or ("data" if ds.is_data else name)
        if ds.is_data != (process == "data"):
            # Histograms, plots and the statistical model know the observed data as process
            # "data": a data set under another name would be stacked as a background.
            msg = (f"datasets.{name}.process: '{process}' with is_data={bool(ds.is_data)}; "
                   "collision data must use process 'data' (or leave it unset) and simulation any other name")
            raise ConfigError(msg)
        if not ds.is_data and ds.xsec is None:
            msg = f"datasets.{name}.xsec: simulation needs a cross-section in pb"
            raise ConfigError(msg)


def _check_cluster_kubernetes(cfg: DictConfig) -> None:
    """cluster.kubernetes is untyped in the root schema: check it against its own dataclass,
    its numbers, and everything the manifest builder would refuse later."""
    block = cfg.cluster.get("kubernetes")
    if block is None:
        return

    try:
        k8s = parse_kubernetes_config(block)
    except KubernetesConfigError as err:
        raise ConfigError(str(err)) from None
    _check_kubernetes_numbers(k8s)
    try:  # what only the manifest builder checks (names, secrets, volumes, owner) fails now too
        make_cluster_spec(k8s, run_id="config-check")
    except SpecError as err:
        raise ConfigError(str(err)) from None


def _require(ok: bool, key: str, value: Any, rule: str) -> None:  # noqa: ANN401
    """Fail with ``key=value: rule`` (the key in full, as the user would override it)."""
    if not ok:
        raise ConfigError(f"{key}={value!r}: {rule}")


def _check_cluster(cluster: DictConfig) -> None:
    """Numbers of the ``cluster`` group: zero workers leave a job waiting forever, and Dask's
    own error for a bad memory size does not say which key holds it."""
    _require(cluster.n_workers >= 1, "cluster.n_workers", cluster.n_workers,
             "a local cluster needs at least 1 worker")
    _require(cluster.threads_per_worker >= 1, "cluster.threads_per_worker",
             cluster.threads_per_worker, "a worker needs at least 1 thread")
    for key in ("connect_timeout_s", "workers_timeout_s", "no_workers_timeout_s"):
        _require(cluster[key] > 0, f"cluster.{key}", cluster[key], "must be > 0 seconds (every wait is bounded)")
    _check_memory_limit("cluster.memory_limit", str(cluster.memory_limit))


def _check_memory_limit(key: str, value: str) -> None:
    """A Dask worker memory limit: "auto" or what ``dask.utils.parse_bytes`` reads (a size, a
    fraction of the machine's memory, or 0 for none)."""

    if value == "auto":
        return
    hint = "write e.g. '4GiB', '3.5GB', '0.5' (of the machine's memory), 'auto' or '0' (no limit)"
    try:
        size = parse_bytes(value) if value.strip() else -1
    except ValueError as err:
        raise ConfigError(f"{key}={value!r} is not a memory size ({err}); {hint}") from None
    _require(size >= 0, key, value, f"not a memory size; {hint}")


def _check_kubernetes_numbers(k8s: KubernetesClusterConfig) -> None:
    """Numbers of ``cluster.kubernetes`` the types allow but a cluster cannot use."""
    key = "cluster.kubernetes"
    wait, adapt = k8s.wait, k8s.adapt
    for name in ("operator_timeout_s", "scheduler_timeout_s", "workers_timeout_s", "teardown_timeout_s"):
        value = getattr(wait, name)
        _require(value > 0, f"{key}.wait.{name}", value, "must be > 0 seconds (every wait is bounded)")
    _require(adapt.minimum >= 0, f"{key}.adapt.minimum", adapt.minimum, "must be >= 0")
    _require(adapt.maximum >= max(1, adapt.minimum), f"{key}.adapt.maximum", adapt.maximum,
             f"must be >= 1 and >= adapt.minimum ({adapt.minimum}): without workers no task runs")
    _require(0 <= wait.workers <= adapt.maximum, f"{key}.wait.workers", wait.workers,
             f"must be between 0 (do not wait) and adapt.maximum ({adapt.maximum}): more workers "
             "than the autoscaler allows never arrive")
    _require(k8s.worker.threads >= 1, f"{key}.worker.threads", k8s.worker.threads,
             "a worker needs at least 1 thread")
    _require(k8s.idle_timeout_s >= 0, f"{key}.idle_timeout_s", k8s.idle_timeout_s, "must be >= 0 (0: never)")
    ports = {"scheduler.comm_port": k8s.scheduler.comm_port,
             "scheduler.dashboard_port": k8s.scheduler.dashboard_port,
             "worker.dashboard_port": k8s.worker.dashboard_port}
    for name, port in ports.items():
        _require(1 <= port <= _MAX_PORT, f"{key}.{name}", port, f"must be a port in 1..{_MAX_PORT}")
    _require(k8s.scheduler.comm_port != k8s.scheduler.dashboard_port, f"{key}.scheduler.dashboard_port",
             k8s.scheduler.dashboard_port, "must differ from scheduler.comm_port")
    if k8s.worker.memory_limit:
        _check_memory_limit(f"{key}.worker.memory_limit", k8s.worker.memory_limit)
    _check_resources(f"{key}.scheduler.resources", k8s.scheduler.resources)
    _check_resources(f"{key}.worker.resources", k8s.worker.resources)


def _check_resources(key: str, resources: PodResources) -> None:
    """Kubernetes quantities, so a typo fails now and not as the API server's rejection."""

    for kind in ("requests", "limits"):
        q = getattr(resources, kind)
        _require(not q.cpu or bool(_CPU_QUANTITY.match(q.cpu)), f"{key}.{kind}.cpu", q.cpu,
                 "not a CPU quantity; write e.g. '2', '0.5' or '250m'")
        if q.memory:
            try:
                memory_bytes(q.memory)
            except SpecError:
                raise ConfigError(f"{key}.{kind}.memory={q.memory!r} is not a memory quantity; "
                                  "write e.g. '4Gi' or '512Mi'") from None


def _looks_like_content(value: str) -> bool:
    """A PEM block or a JWT pasted where a path belongs."""
    parts = value.split(".")
    return "-----BEGIN" in value or "\n" in value or (
        len(parts) == 3 and value.startswith("eyJ") and "/" not in value)


def _check_credentials(cfg: DictConfig) -> None:
    """The credentials group holds locations: a pasted proxy or token is refused, unshown."""
    creds = cfg.get("credentials")
    if creds is None:
        return
    for key in ("x509_proxy", "x509_cert_dir", "bearer_token_file"):
        value = creds.get(key)
        if value is not None and _looks_like_content(str(value)):
            msg = (f"credentials.{key} must be a path, and this looks like credential contents "
                   "(not shown); put the proxy or token in a file and give its path")
            raise ConfigError(msg)
    for key in ("min_lifetime_h", "token_min_lifetime_h"):
        if float(creds.get(key, 0.0)) < 0:
            msg = f"credentials.{key} must be >= 0 hours, got {creds.get(key)}"
            raise ConfigError(msg)

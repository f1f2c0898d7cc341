"""Run-level metrics: what the job knows about the run (planned and completed chunks, workers).

They must be served by a process Prometheus already scrapes. With a ``LocalCluster`` the scheduler
lives in the job process, so the job's default registry is served by the scheduler's own
``/metrics``: use :class:`RunMetrics` directly. With a remote scheduler (Kubernetes) register
:class:`RunMetricsPlugin`, which keeps the same gauges inside the scheduler process, and talk to it
through :class:`RemoteRunMetrics`. :func:`run_metrics_for` picks the right one for a client.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from distributed import Scheduler
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge

from intccms.metrics import names
from intccms.metrics.server import PrometheusProcess, start_local_prometheus

try:
    from distributed.diagnostics.plugin import SchedulerPlugin
except ImportError:  # pragma: no cover - distributed is a dependency
    SchedulerPlugin = object  # type: ignore[assignment,misc]  # a stand-in for the class mypy knows

if TYPE_CHECKING:
    from distributed import Client, Scheduler

__all__ = [
    "PrometheusProcess",
    "RemoteRunMetrics",
    "RunMetrics",
    "RunMetricsLike",
    "RunMetricsPlugin",
    "run_metrics_for",
    "start_local_prometheus",
]

PLUGIN_NAME = "intccms-run-metrics"

_sets: dict[int, _RunMetricSet] = {}
_sets_lock = threading.Lock()


@dataclass(frozen=True, slots=True)
class _RunMetricSet:
    planned: Gauge
    completed: Counter
    workers_wanted: Gauge
    workers_present: Gauge
    last_progress: Gauge
    info: Gauge


def _run_metric_set(registry: CollectorRegistry) -> _RunMetricSet:
    """Create the run series once per registry (a registry rejects duplicate names)."""
    with _sets_lock:
        found = _sets.get(id(registry))
        if found is None:
            found = _RunMetricSet(
                planned=Gauge(
                    names.RUN_CHUNKS_PLANNED, "Chunks the run plans to process.", ("run", "stage"),
                    registry=registry,
                ),
                completed=Counter(
                    names.RUN_CHUNKS_COMPLETED,
                    "Chunks finished, successful or given up.",
                    ("run", "stage"),
                    registry=registry,
                ),
                workers_wanted=Gauge(
                    names.RUN_WORKERS_WANTED, "Workers the run asked for.", ("run",), registry=registry
                ),
                workers_present=Gauge(
                    names.RUN_WORKERS_PRESENT, "Workers connected to the scheduler.", ("run",),
                    registry=registry,
                ),
                last_progress=Gauge(
                    names.RUN_LAST_PROGRESS,
                    "UNIX time of the last planned or completed chunk (stall detection).",
                    ("run",),
                    registry=registry,
                ),
                info=Gauge(names.RUN_INFO, "1 for each run; config names the configuration.",
                           ("run", "config"), registry=registry),
            )
            _sets[id(registry)] = found
        return found


class RunMetricsLike(Protocol):
    """What the executor calls; met by RunMetrics and RemoteRunMetrics."""

    def planned(self, n: int, stage: str) -> None: ...
    def completed(self, n: int = 1, stage: str = "analysis") -> None: ...
    def workers(self, wanted: int, present: int) -> None: ...


class RunMetrics:
    """Run gauges in a local registry (the job's default registry unless given)."""

    def __init__(self, run_id: str, registry: CollectorRegistry | None = None, *, config: str = "") -> None:
        """Publish ``intccms_run_info{run, config}`` = 1 and prepare the run's series.

        Args:
            run_id: run label.
            registry: registry to use (default: the process's default registry).
            config: short name of the run's configuration (shown in the dashboards).
        """
        if not run_id:
            msg = "RunMetrics: run_id must be a non-empty string"
            raise ValueError(msg)
        self.run_id = run_id
        self._registry = REGISTRY if registry is None else registry
        self._m = _run_metric_set(self._registry)
        self._m.info.labels(run=run_id, config=config).set(1)
        self._m.workers_wanted.labels(run=run_id)
        self._m.workers_present.labels(run=run_id)
        self._m.last_progress.labels(run=run_id).set(time.time())

    def planned(self, n: int, stage: str) -> None:
        """Set the number of chunks planned for ``stage`` (and show its completed counter at 0)."""
        if n < 0:
            msg = f"RunMetrics.planned: n must be >= 0 for stage {stage!r}, got {n}"
            raise ValueError(msg)
        self._m.planned.labels(run=self.run_id, stage=stage).set(n)
        self._m.completed.labels(run=self.run_id, stage=stage)
        self._m.last_progress.labels(run=self.run_id).set(time.time())

    def completed(self, n: int = 1, stage: str = "analysis") -> None:
        """Count ``n`` chunks of ``stage`` as finished (successful or given up)."""
        if n < 0:
            msg = f"RunMetrics.completed: n must be >= 0 for stage {stage!r}, got {n}"
            raise ValueError(msg)
        self._m.completed.labels(run=self.run_id, stage=stage).inc(n)
        self._m.last_progress.labels(run=self.run_id).set(time.time())

    def workers(self, wanted: int, present: int) -> None:
        """Record how many workers the run wants and how many are connected."""
        self._m.workers_wanted.labels(run=self.run_id).set(wanted)
        self._m.workers_present.labels(run=self.run_id).set(present)

    def values(self) -> dict[str, Any]:
        """Current values (tests, run summary): planned/completed per stage and workers."""
        reg = self._registry
        run = {"run": self.run_id}
        out: dict[str, Any] = {"planned": {}, "completed": {}}
        for family in self._m.planned.collect():
            for sample in family.samples:
                if sample.labels.get("run") == self.run_id:
                    out["planned"][sample.labels["stage"]] = sample.value
        for stage in out["planned"]:
            done = reg.get_sample_value(f"{names.RUN_CHUNKS_COMPLETED}_total", {**run, "stage": stage})
            out["completed"][stage] = done or 0.0
        out["workers_wanted"] = reg.get_sample_value(names.RUN_WORKERS_WANTED, run)
        out["workers_present"] = reg.get_sample_value(names.RUN_WORKERS_PRESENT, run)
        return out


class RunMetricsPlugin(SchedulerPlugin):
    """Keeps the run gauges inside a remote scheduler process (served by its ``/metrics``).

    Workers present is tracked from the scheduler's own add/remove events; planned, completed
    and wanted come from the job through RemoteRunMetrics.
    """

    name = PLUGIN_NAME

    def __init__(self, run_id: str, config: str = "") -> None:
        self.run_id = run_id
        self.config = config
        self.metrics: RunMetrics | None = None
        self._scheduler: Scheduler | None = None
        self._wanted = 0

    async def start(self, scheduler: Scheduler) -> None:
        """Create the gauges in the scheduler's default registry."""
        self._scheduler = scheduler
        self.metrics = RunMetrics(self.run_id, config=self.config)
        self._present()

    def _present(self) -> None:
        if self.metrics is not None and self._scheduler is not None:
            self.metrics.workers(self._wanted, len(self._scheduler.workers))

    def add_worker(self, scheduler: Scheduler, worker: str) -> None:
        """Update workers present."""
        self._present()

    def remove_worker(self, scheduler: Scheduler, worker: str, **kwargs: Any) -> None:
        """Update workers present."""
        self._present()

    def update(self, kind: str, n: int, stage: str = "analysis") -> None:
        """Apply one update sent by the job ("planned", "completed" or "wanted")."""
        if self.metrics is None:
            msg = f"RunMetricsPlugin for run {self.run_id!r} is not started on the scheduler"
            raise RuntimeError(msg)
        if kind == "planned":
            self.metrics.planned(n, stage)
        elif kind == "completed":
            self.metrics.completed(n, stage)
        elif kind == "wanted":
            self._wanted = n
            self._present()
        else:
            msg = f"RunMetricsPlugin.update: unknown kind {kind!r} (use planned, completed, wanted)"
            raise ValueError(msg)


def _apply_on_scheduler(dask_scheduler: Scheduler, kind: str, n: int, stage: str) -> None:
    plugin = dask_scheduler.plugins.get(PLUGIN_NAME)
    if not isinstance(plugin, RunMetricsPlugin):
        msg = f"scheduler has no {PLUGIN_NAME!r} plugin: register RunMetricsPlugin first"
        raise RuntimeError(msg)
    plugin.update(kind, n, stage)


class RemoteRunMetrics:
    """Job-side handle on RunMetricsPlugin in a remote scheduler (same interface as RunMetrics)."""

    def __init__(self, client: Client, run_id: str, *, config: str = "") -> None:
        """Register the plugin on the client's scheduler.

        Args:
            client: connected Dask client.
            run_id: run label.
            config: short name of the run's configuration.
        """
        self.client = client
        self.run_id = run_id
        client.register_plugin(RunMetricsPlugin(run_id, config), name=PLUGIN_NAME)

    def _send(self, kind: str, n: int, stage: str) -> None:
        self.client.run_on_scheduler(_apply_on_scheduler, kind=kind, n=n, stage=stage)

    def planned(self, n: int, stage: str) -> None:
        """Set chunks planned for ``stage`` in the scheduler."""
        self._send("planned", n, stage)

    def completed(self, n: int = 1, stage: str = "analysis") -> None:
        """Count finished chunks in the scheduler."""
        self._send("completed", n, stage)

    def workers(self, wanted: int, present: int) -> None:
        """Set workers wanted; the scheduler counts the present ones itself."""
        del present  # the scheduler knows better than the job
        self._send("wanted", wanted, "")


def run_metrics_for(client: Client, run_id: str, *, config: str = "") -> RunMetricsLike:
    """RunMetrics when the scheduler runs in this process (LocalCluster), else RemoteRunMetrics.

    Args:
        client: connected Dask client.
        run_id: run label.
        config: short name of the run's configuration.

    Returns:
        An object with planned(), completed() and workers().
    """

    cluster = getattr(client, "cluster", None)
    if isinstance(getattr(cluster, "scheduler", None), Scheduler):
        return RunMetrics(run_id, config=config)
    return RemoteRunMetrics(client, run_id, config=config)

"""Live Prometheus metrics of a run: what each worker measured and what the run knows.

Workers count events, bytes and chunks into their process's default prometheus-client registry,
which Dask already serves at ``/metrics`` on each worker's dashboard port
(:mod:`intccms.metrics.worker`, :mod:`intccms.metrics.preload`). The job keeps the run-level
gauges (chunks planned and completed, workers wanted and present) next to the scheduler
(:mod:`intccms.metrics.scheduler`). Every series carries a ``run`` label so one Prometheus and
one dashboard can serve many runs. The run report (:mod:`intccms.outputs.report`) is built
from the same per-chunk numbers.
"""

from intccms.metrics.names import LABELS, RUN_ID_ENV
from intccms.metrics.scheduler import (
    RemoteRunMetrics,
    RunMetrics,
    RunMetricsPlugin,
    run_metrics_for,
)
from intccms.metrics.server import (
    PrometheusNotInstalledError,
    PrometheusProcess,
    start_local_prometheus,
)
from intccms.metrics.worker import (
    ChunkMeter,
    chunk_metrics,
    current_worker_label,
    get_run_id,
    prime_worker_metrics,
    set_run_id,
)

__all__ = [
    "LABELS",
    "RUN_ID_ENV",
    "ChunkMeter",
    "PrometheusNotInstalledError",
    "PrometheusProcess",
    "RemoteRunMetrics",
    "RunMetrics",
    "RunMetricsPlugin",
    "chunk_metrics",
    "current_worker_label",
    "get_run_id",
    "prime_worker_metrics",
    "run_metrics_for",
    "set_run_id",
    "start_local_prometheus",
]

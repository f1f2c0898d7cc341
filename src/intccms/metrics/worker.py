"""Per-chunk metrics inside a worker process.

The series live in the process's default prometheus-client registry because that is the registry
Dask serves at ``/metrics`` on each worker's dashboard port: no extra HTTP server, no extra port.
Dask's own metrics assume one worker per process (one per pod on Kubernetes), and so do these.

Usage in a task::

    with chunk_metrics(dataset, "skim") as meter:
        ...
        meter.add(events_read=n, bytes_read=b)
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from distributed import get_worker
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram

from intccms.metrics import names

_run_id: str | None = None
_sets: dict[int, WorkerMetricSet] = {}
_sets_lock = threading.Lock()


def set_run_id(run_id: str) -> None:
    """Set the ``run`` label for this process and for worker processes started after this call.

    The id is also exported as ``INTCCMS_RUN_ID`` so that a ``LocalCluster`` created afterwards
    hands it to its worker processes.

    Args:
        run_id: run identifier shown in the dashboards' run selector.
    """
    global _run_id
    if not run_id:
        msg = "set_run_id: the run id must be a non-empty string (e.g. 'ttbar-2026-11-25T10-00')"
        raise ValueError(msg)
    _run_id = run_id
    os.environ[names.RUN_ID_ENV] = run_id


def get_run_id() -> str:
    """The ``run`` label: set_run_id() value, else ``$INTCCMS_RUN_ID``, else ``"default"``."""
    return _run_id or os.environ.get(names.RUN_ID_ENV) or names.DEFAULT_RUN_ID


def current_worker_label() -> str:
    """The ``worker`` label: the Dask worker address inside a worker, else ``"local"``.

    Use the same value for ``ChunkRecord.worker`` so the run report and Prometheus agree.
    """
    try:
        return str(get_worker().address)
    except ValueError:  # not running inside a worker task
        return "local"


@dataclass(frozen=True, slots=True)
class WorkerMetricSet:
    """The worker-side series of one registry (created once per registry)."""

    events_read: Counter
    events_selected: Counter
    bytes_read: Counter
    bytes_written: Counter
    chunks_processed: Counter
    chunks_failed: Counter
    chunk_duration: Histogram
    chunks_in_flight: Gauge
    worker_info: Gauge


def worker_metrics(registry: CollectorRegistry | None = None) -> WorkerMetricSet:
    """Return the worker series registered in ``registry`` (the default one if None).

    Idempotent: a registry rejects a second registration of the same name, so the set is
    created once per registry and then reused.
    """
    reg = REGISTRY if registry is None else registry
    with _sets_lock:
        found = _sets.get(id(reg))
        if found is not None:
            return found
        labels = names.LABELS
        made = WorkerMetricSet(
            events_read=Counter(names.EVENTS_READ, "Entries read from the input.", labels, registry=reg),
            events_selected=Counter(
                names.EVENTS_SELECTED, "Events passing the stage's selection.", labels, registry=reg
            ),
            bytes_read=Counter(names.BYTES_READ, "Bytes requested from storage.", labels, registry=reg),
            bytes_written=Counter(names.BYTES_WRITTEN, "Bytes written (skims).", labels, registry=reg),
            chunks_processed=Counter(
                names.CHUNKS_PROCESSED, "Chunks that finished without error.", labels, registry=reg
            ),
            chunks_failed=Counter(names.CHUNKS_FAILED, "Chunks that raised.", labels, registry=reg),
            chunk_duration=Histogram(
                names.CHUNK_DURATION,
                "Wall time of one chunk, failed ones included.",
                labels,
                buckets=names.DURATION_BUCKETS,
                registry=reg,
            ),
            chunks_in_flight=Gauge(
                names.CHUNKS_IN_FLIGHT, "Chunks being processed now.", labels, registry=reg
            ),
            worker_info=Gauge(
                names.WORKER_INFO,
                "1 for each live worker process with intccms metrics (joins Dask's series by instance).",
                ("run", "worker"),
                registry=reg,
            ),
        )
        _sets[id(reg)] = made
        return made


def prime_worker_metrics(
    datasets: Iterable[str] = (),
    stages: Iterable[str] = (),
    *,
    run: str | None = None,
    worker: str | None = None,
    registry: CollectorRegistry | None = None,
) -> WorkerMetricSet:
    """Register the worker series and publish them at zero before the first chunk.

    A labelled series only appears once its label values are known; priming the
    (dataset, stage) pairs of the plan makes rates and the idle-worker alert work from the start.

    Args:
        datasets: dataset names of the run (may be empty: only the worker info series appears).
        stages: stage names of the run.
        run: run label (default: get_run_id()).
        worker: worker label (default: current_worker_label()).
        registry: registry to use (default: the process's default registry).

    Returns:
        The registered metric set.
    """
    metrics = worker_metrics(registry)
    run_id = run or get_run_id()
    label = worker or current_worker_label()
    metrics.worker_info.labels(run=run_id, worker=label).set(1)
    stage_list = list(stages)
    for dataset in datasets:
        for stage in stage_list:
            key = {"run": run_id, "dataset": dataset, "stage": stage, "worker": label}
            for counter in (
                metrics.events_read,
                metrics.events_selected,
                metrics.bytes_read,
                metrics.bytes_written,
                metrics.chunks_processed,
                metrics.chunks_failed,
            ):
                counter.labels(**key)
            metrics.chunk_duration.labels(**key)
            metrics.chunks_in_flight.labels(**key)
    return metrics


def forget_run(run: str, worker: str | None = None, registry: CollectorRegistry | None = None) -> None:
    """Drop the worker info series of a finished run (long-lived workers serve many runs)."""
    metrics = worker_metrics(registry)
    with contextlib.suppress(KeyError):
        metrics.worker_info.remove(run, worker or current_worker_label())


class ChunkMeter:
    """Counts what one chunk did; every add() updates the live counters at once.

    The running totals stay on the meter (``events_read``, ...) so the caller can copy them into
    its ChunkRecord: the report and Prometheus then hold the same numbers.
    """

    __slots__ = (
        "_children",
        "bytes_read",
        "bytes_written",
        "dataset",
        "events_read",
        "events_selected",
        "failed",
        "run",
        "stage",
        "t_end",
        "t_start",
        "worker",
    )

    def __init__(self, dataset: str, stage: str, run: str, worker: str, children: tuple[Counter, ...]) -> None:
        self.dataset = dataset
        self.stage = stage
        self.run = run
        self.worker = worker
        self.events_read = 0
        self.events_selected = 0
        self.bytes_read = 0
        self.bytes_written = 0
        self.t_start = time.time()
        self.t_end = 0.0
        self.failed = False
        self._children = children

    def add(
        self, *, events_read: int = 0, events_selected: int = 0, bytes_read: int = 0, bytes_written: int = 0
    ) -> None:
        """Add measured amounts (non-negative; counters only go up).

        Raises:
            ValueError: when an amount is negative.
        """
        amounts = (events_read, events_selected, bytes_read, bytes_written)
        if min(amounts) < 0:
            msg = (
                f"ChunkMeter.add for dataset {self.dataset!r}, stage {self.stage!r}: amounts must be "
                f">= 0, got events_read={events_read}, events_selected={events_selected}, "
                f"bytes_read={bytes_read}, bytes_written={bytes_written}"
            )
            raise ValueError(msg)
        self.events_read += events_read
        self.events_selected += events_selected
        self.bytes_read += bytes_read
        self.bytes_written += bytes_written
        for child, amount in zip(self._children, amounts, strict=True):
            if amount:
                child.inc(amount)

    def fail(self) -> None:
        """Count the chunk as failed although no exception leaves the block (bad input that the
        task reports in its ChunkRecord instead of raising), so Prometheus and the report agree."""
        self.failed = True

    @property
    def duration(self) -> float:
        """Seconds from entry to exit (to now while the chunk runs)."""
        return (self.t_end or time.time()) - self.t_start


@contextmanager
def chunk_metrics(
    dataset: str,
    stage: str,
    *,
    run: str | None = None,
    registry: CollectorRegistry | None = None,
) -> Iterator[ChunkMeter]:
    """Meter one chunk: in-flight gauge while it runs, duration histogram at exit, and the
    processed counter on success or the failed counter on an exception (which is re-raised) or
    after ``meter.fail()``.

    Args:
        dataset: dataset label.
        stage: stage label ("metadata", "skim", "analysis").
        run: run label (default: get_run_id()).
        registry: registry to use (default: the process's default registry, served by Dask).

    Yields:
        The chunk's meter.
    """
    metrics = worker_metrics(registry)
    key = {"run": run or get_run_id(), "dataset": dataset, "stage": stage, "worker": current_worker_label()}
    children = (
        metrics.events_read.labels(**key),
        metrics.events_selected.labels(**key),
        metrics.bytes_read.labels(**key),
        metrics.bytes_written.labels(**key),
    )
    meter = ChunkMeter(dataset, stage, key["run"], key["worker"], children)
    # Resolve every child at entry: the failed/processed series then exist at 0 before the first
    # failure, so rate() and increase() see the first increment.
    processed = metrics.chunks_processed.labels(**key)
    failed = metrics.chunks_failed.labels(**key)
    duration = metrics.chunk_duration.labels(**key)
    in_flight = metrics.chunks_in_flight.labels(**key)
    in_flight.inc()
    start = time.perf_counter()
    try:
        yield meter
    except Exception:
        failed.inc()
        raise
    else:
        (failed if meter.failed else processed).inc()
    finally:
        duration.observe(time.perf_counter() - start)
        meter.t_end = time.time()
        in_flight.dec()

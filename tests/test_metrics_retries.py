"""A chunk that raises once and succeeds on Dask's retry: the run report and the worker counters
must give the same attempts, failures and chunks (the report keeps one record per chunk, a worker
meters every attempt)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import REGISTRY
from rich.console import Console

from intccms.core.records import ChunkRecord
from intccms.metrics.worker import chunk_metrics, current_worker_label
from intccms.outputs.report import build_report
from intccms.plan.workitems import WorkItem
from intccms.runner.stage import run_stage

distributed = pytest.importorskip("distributed")

RUN = f"retries-{uuid.uuid4().hex[:8]}"
STAGE = "analysis"
FLAKY, BAD = 1, 2  # chunk 1 raises on its first attempt; chunk 2 is bad input, given up


def flaky_task(item: WorkItem, marker_dir: str) -> tuple[None, ChunkRecord]:
    """Like the job's tasks: one record per call, metered by chunk_metrics."""
    record = ChunkRecord(item.dataset, STAGE, item.file, item.entry_start, item.entry_stop,
                         worker=current_worker_label(), t_start=time.time())
    with chunk_metrics(item.dataset, STAGE, run=RUN) as meter:
        marker = Path(marker_dir) / f"chunk-{item.chunk_index}"
        if item.chunk_index == FLAKY and not marker.exists():
            marker.touch()
            msg = "connection reset by peer (transient)"
            raise ConnectionResetError(msg)
        if item.chunk_index == BAD:
            record.failed, record.error = True, "OSError: bad basket"
            meter.fail()
        else:
            meter.add(events_read=item.entries, bytes_read=10 * item.entries)
    record.events_read, record.bytes_read = meter.events_read, meter.bytes_read
    record.t_end = time.time()
    return None, record


@pytest.fixture(scope="module")
def client() -> Iterator[Any]:
    # In-process workers: their counters are this process's default registry, read directly.
    with (distributed.LocalCluster(n_workers=1, threads_per_worker=2, processes=False,
                                   dashboard_address="127.0.0.1:0") as cluster,
          distributed.Client(cluster) as c):
        yield c


def counter(name: str, **labels: str) -> float:
    """Sum of a worker series over the run's label sets that match ``labels``."""
    total = 0.0
    for family in REGISTRY.collect():
        for sample in family.samples:
            if sample.name == name and sample.labels.get("run") == RUN and all(
                    sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total


def test_retried_chunk_counts_the_same_in_report_and_prometheus(client: Any, tmp_path: Path) -> None:
    items = [WorkItem("ttbar", "f.root", 0, i, 100 * i, 100 * (i + 1)) for i in range(4)]
    outcome = run_stage(client, STAGE, items, flaky_task, lambda item: (str(tmp_path),), lambda *a: None,
                        retries=2, skip_bad_files=True, console=Console(quiet=True))
    assert (tmp_path / f"chunk-{FLAKY}").exists(), "the flaky chunk must have raised once"
    report = build_report(outcome.records, wall_time_s=1.0, n_cores=2)
    by_chunk = {r.entry_start // 100: r for r in outcome.records}
    assert by_chunk[FLAKY].attempts == 2 and not by_chunk[FLAKY].failed
    assert by_chunk[BAD].failed and by_chunk[BAD].attempts == 1
    # the report: 4 chunks, 5 attempts, 1 chunk given up, 2 failed attempts (retried + given up)
    assert (report.chunks, report.attempts, report.retried_chunks) == (4, 5, 1)
    assert (report.failed_chunks, report.failed_attempts) == (1, 2)
    # the worker counters meter attempts: the same numbers
    assert counter("intccms_chunk_duration_seconds_count") == report.attempts
    assert counter("intccms_chunks_failed_total") == report.failed_attempts
    assert counter("intccms_chunks_processed_total") == report.chunks - report.failed_chunks
    assert counter("intccms_events_read_total") == report.events_read == 300
    assert counter("intccms_bytes_read_total") == report.bytes_read == 3000
    stats = report.per_stage[STAGE]
    assert counter("intccms_chunks_failed_total", stage=STAGE, dataset="ttbar") == stats.failed_attempts == 2
    assert counter("intccms_chunk_duration_seconds_count", stage=STAGE) == stats.attempts == 5

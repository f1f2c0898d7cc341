"""Chunks that report bad input instead of raising are counted as failed, as in the run report."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from intccms.metrics.worker import chunk_metrics

LABELS = {"run": "r1", "dataset": "dy", "stage": "metadata", "worker": "local"}


def test_fail_counts_a_failed_chunk_without_an_exception() -> None:
    registry = CollectorRegistry()
    with chunk_metrics("dy", "metadata", run="r1", registry=registry) as meter:
        meter.add(bytes_read=512)
    with chunk_metrics("dy", "metadata", run="r1", registry=registry) as meter:
        meter.add(bytes_read=64)
        meter.fail()
    assert meter.failed
    value = registry.get_sample_value
    assert value("intccms_chunks_processed_total", LABELS) == 1
    assert value("intccms_chunks_failed_total", LABELS) == 1
    assert value("intccms_chunk_duration_seconds_count", LABELS) == 2
    assert value("intccms_bytes_read_total", LABELS) == 576
    assert value("intccms_chunks_in_flight", LABELS) == 0

"""Worker-side metering: bad input counts as a failed chunk, as in the run report; peak memory."""

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


def test_peak_memory_is_the_process_peak_not_the_rss_at_the_end() -> None:
    """A chunk's arrays are freed before its record is made: the record must still show the peak."""
    import json
    import subprocess
    import sys

    code = (
        "import json, numpy as np, psutil\n"
        "from intccms.runner.worker import peak_rss\n"
        "before = peak_rss()\n"
        "a = np.ones(2**25); a.sum(); del a\n"  # 256 MiB touched, then freed
        "print(json.dumps({'before': before, 'peak': peak_rss(), 'now': psutil.Process().memory_info().rss}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    got = json.loads(out.stdout.strip().splitlines()[-1])
    mib = 2**20
    assert got["peak"] >= 256 * mib, got  # the freed 256 MiB are in the peak
    assert got["peak"] >= got["now"] + 200 * mib, got  # while the RSS at the end has dropped

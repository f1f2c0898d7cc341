"""Worker and run metrics in private registries: counts, labels, failures, priming, overhead."""

from __future__ import annotations

import click
import pytest
from prometheus_client import CollectorRegistry, generate_latest

from intccms.metrics import names, worker
from intccms.metrics.overhead import measure_overhead
from intccms.metrics.preload import _split, dask_setup
from intccms.metrics.scheduler import RunMetrics
from intccms.metrics.worker import chunk_metrics, get_run_id, prime_worker_metrics, set_run_id


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture(autouse=True)
def _clean_run_id(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(worker, "_run_id", None)
    monkeypatch.delenv(names.RUN_ID_ENV, raising=False)


def value(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(name, labels)


LABELS = {"run": "r1", "dataset": "ttbar", "stage": "skim", "worker": "local"}


def test_counts_add_up_across_chunks(registry: CollectorRegistry) -> None:
    for n in (100, 250):
        with chunk_metrics("ttbar", "skim", run="r1", registry=registry) as meter:
            meter.add(events_read=n, bytes_read=10 * n)
            meter.add(events_selected=n // 10, bytes_written=3)
            assert value(registry, "intccms_chunks_in_flight", **LABELS) == 1
        assert (meter.events_read, meter.events_selected, meter.bytes_read) == (n, n // 10, 10 * n)
        assert meter.worker == "local"
        assert meter.t_end >= meter.t_start
    assert value(registry, "intccms_events_read_total", **LABELS) == 350
    assert value(registry, "intccms_events_selected_total", **LABELS) == 35
    assert value(registry, "intccms_bytes_read_total", **LABELS) == 3500
    assert value(registry, "intccms_bytes_written_total", **LABELS) == 6
    assert value(registry, "intccms_chunks_processed_total", **LABELS) == 2
    assert value(registry, "intccms_chunks_failed_total", **LABELS) == 0
    assert value(registry, "intccms_chunk_duration_seconds_count", **LABELS) == 2
    assert value(registry, "intccms_chunks_in_flight", **LABELS) == 0


def test_failure_is_counted_timed_and_reraised(registry: CollectorRegistry) -> None:
    with pytest.raises(OSError, match="bad basket"), chunk_metrics("ttbar", "skim", run="r1", registry=registry) as meter:
        meter.add(events_read=7)
        raise OSError("bad basket")
    assert value(registry, "intccms_chunks_failed_total", **LABELS) == 1
    assert value(registry, "intccms_chunks_processed_total", **LABELS) in (None, 0)
    assert value(registry, "intccms_chunk_duration_seconds_count", **LABELS) == 1
    assert value(registry, "intccms_chunks_in_flight", **LABELS) == 0
    # what was read before the failure is still counted, as the ChunkRecord would report it
    assert value(registry, "intccms_events_read_total", **LABELS) == 7


def test_negative_amount_is_rejected(registry: CollectorRegistry) -> None:
    with chunk_metrics("ttbar", "skim", registry=registry) as meter, pytest.raises(ValueError, match="ttbar"):
        meter.add(bytes_read=-1)


def test_run_label_from_env_and_setter(registry: CollectorRegistry, monkeypatch: pytest.MonkeyPatch) -> None:
    assert get_run_id() == names.DEFAULT_RUN_ID
    monkeypatch.setenv(names.RUN_ID_ENV, "from-env")
    assert get_run_id() == "from-env"
    set_run_id("from-setter")
    assert get_run_id() == "from-setter"
    with chunk_metrics("dy", "analysis", registry=registry) as meter:
        meter.add(events_read=1)
    assert value(registry, "intccms_events_read_total", run="from-setter", dataset="dy", stage="analysis", worker="local") == 1
    with pytest.raises(ValueError, match="non-empty"):
        set_run_id("")


def test_prime_publishes_zero_series(registry: CollectorRegistry) -> None:
    prime_worker_metrics(["ttbar", "dy"], ["skim"], run="r1", worker="w1", registry=registry)
    text = generate_latest(registry).decode()
    for dataset in ("ttbar", "dy"):
        lbl = f'dataset="{dataset}",run="r1",stage="skim",worker="w1"'
        assert f"intccms_events_read_total{{{lbl}}} 0.0" in text
        assert f"intccms_chunks_failed_total{{{lbl}}} 0.0" in text
    assert 'intccms_worker_info{run="r1",worker="w1"} 1.0' in text


def test_registration_is_idempotent(registry: CollectorRegistry) -> None:
    assert worker.worker_metrics(registry) is worker.worker_metrics(registry)
    RunMetrics("a", registry)
    RunMetrics("b", registry)  # a second run in the same process must not re-register names


def test_run_metrics(registry: CollectorRegistry) -> None:
    run = RunMetrics("r7", registry, config="ttbar_2018")
    run.planned(40, "skim")
    run.planned(12, "analysis")
    run.completed(stage="skim")
    run.completed(3, stage="skim")
    run.workers(wanted=8, present=5)
    got = run.values()
    assert got["planned"] == {"skim": 40, "analysis": 12}
    assert got["completed"] == {"skim": 4, "analysis": 0}
    assert (got["workers_wanted"], got["workers_present"]) == (8, 5)
    assert value(registry, "intccms_run_info", run="r7", config="ttbar_2018") == 1
    assert value(registry, names.RUN_LAST_PROGRESS, run="r7") > 1.7e9
    with pytest.raises(ValueError, match="skim"):
        run.completed(-1, stage="skim")


def test_preload_arguments() -> None:
    ctx = dask_setup.make_context("dask_setup", ["--datasets=a, b", "--stages=skim"])
    assert ctx.params == {"datasets": "a, b", "stages": "skim"}
    assert _split(ctx.params["datasets"]) == ["a", "b"]
    with pytest.raises(click.NoSuchOption):
        dask_setup.make_context("dask_setup", ["--dataset=a"])


def test_overhead_below_two_percent() -> None:
    result = measure_overhead(repeats=5)
    assert result.chunk_s > 0
    assert 0 < result.metrics_cost_s < result.chunk_s
    assert result.fraction < 0.02, result

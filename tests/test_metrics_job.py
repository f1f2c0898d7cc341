"""The real job under a real Prometheus.

``run_job`` runs the small demo (metadata -> skim -> analysis of the skims) on a 2-worker
LocalCluster whose workers and scheduler a Prometheus with the chart's configuration and rules
scrapes every second. What Prometheus holds must equal the job's own run report (report.json):
per stage and per worker, counters exactly, rates within the scrape interval. Then the job's
``prometheus.enabled`` option: the job starts its own server, which must have scraped every
target of the job and be gone afterwards; and the cost of the metrics on the job's chunks.
"""

from __future__ import annotations

import json
import os
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fixtures.demo import SMALL_2017, small_overrides
from fixtures.prometheus import (
    SCRAPE_INTERVAL,
    dashboards,
    panel_expressions,
    set_chart_targets,
    substitute,
)

from intccms.config import compose_config
from intccms.execute.job import run_job
from intccms.execute.results import JobResult
from intccms.metrics import names, worker
from intccms.metrics.local_prometheus import STATE_FILE, parse_duration, view_run_data
from intccms.metrics.overhead import job_overhead, time_chunk_metrics
from intccms.metrics.preload import WorkerMetricsPlugin
from intccms.metrics.server import PrometheusProcess, find_prometheus
from intccms.plan.datasets import generated_file_paths

distributed = pytest.importorskip("distributed")

pytestmark = [pytest.mark.prometheus, pytest.mark.e2e, pytest.mark.slow]

STAGES = ("metadata", "skim", "analysis")
SI = parse_duration(SCRAPE_INTERVAL)
# Two datasets of the small demo, nominal only: every stage runs several chunks on both workers.
DATASETS = [SMALL_2017[1], SMALL_2017[3]]
# Chunks of 1000 events: every stage lasts several scrape intervals, so Prometheus sees the run
# with chunks planned but not yet completed (the remaining-chunks series above 0).
JOB_ARGS = ("workflow=skim_and_analysis", "workflow.variations=[]", "workflow.run_plots=false",
            "workflow.chunksize=1000")


@pytest.fixture(scope="module")
def run_id() -> Iterator[str]:
    """A fresh run label, in the environment so the job and its workers use it."""
    rid = f"jobtest-{uuid.uuid4().hex[:8]}"
    mp = pytest.MonkeyPatch()
    mp.setattr(worker, "_run_id", None)
    mp.setenv(names.RUN_ID_ENV, rid)
    yield rid
    mp.undo()


@pytest.fixture(scope="module")
def cluster_client() -> Iterator[Any]:
    """Two single-threaded worker processes; each serves /metrics on its own HTTP port."""
    with (
        distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                                 dashboard_address="127.0.0.1:0") as cluster,
        distributed.Client(cluster) as client,
    ):
        client.wait_for_workers(2)
        yield client


def by_label(server: PrometheusProcess, label: str, expr: str) -> dict[str, float]:
    return {r["metric"][label]: float(r["value"][1]) for r in server.query(expr)}


def wait_for(server: PrometheusProcess, expr: str, what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.query(expr):
            return
        time.sleep(0.3)
    msg = f"Prometheus at {server.url} never satisfied {expr!r} ({what}) within {timeout:.0f} s"
    raise AssertionError(msg)


@pytest.fixture(scope="module")
def job_run(
    prometheus_server: PrometheusProcess,
    cluster_client: Any,
    run_id: str,
    demo_data: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> dict[str, Any]:
    """Run the job once, scraped by the chart-configured Prometheus; return what both saw."""
    out = tmp_path_factory.mktemp("job")
    # one unreadable file beside the good one: its metadata chunk fails and the file is skipped
    bad = out / "corrupt.root"
    bad.write_bytes(b"root" + os.urandom(2000))
    good = generated_file_paths(str(demo_data), DATASETS[0], "2017", 1)[0]
    cfg = compose_config("demo", small_overrides(
        demo_data, out, DATASETS, *JOB_ARGS, f"datasets.{DATASETS[0]}.files=[{good},{bad}]",
        "workflow.skip_bad_files=true",
    ))
    info = cluster_client.scheduler_info()
    set_chart_targets(prometheus_server, "worker",
                      [f"127.0.0.1:{w['services']['dashboard']}" for w in info["workers"].values()])
    set_chart_targets(prometheus_server, "scheduler", [f"127.0.0.1:{info['services']['dashboard']}"])
    wait_for(prometheus_server, 'count(up{job=~"intccms-.*"} == 1) == 3', "scheduler and both workers up")
    # Prime the run's series and let Prometheus see them at 0 before the first chunk (the job
    # primes them too, but a short job may finish its first chunks before the next scrape).
    t_primed = time.time()  # no sample of the run's series is older than this
    cluster_client.register_plugin(WorkerMetricsPlugin(run_id, DATASETS, STAGES))
    wait_for(prometheus_server, f'count(intccms_events_read_total{{run="{run_id}"}} == 0) == {2 * len(DATASETS) * len(STAGES)}',
             "primed series")
    t_before = time.time()
    result = run_job(cfg, client=cluster_client)
    t_after = time.time()
    report = json.loads((out / "report" / "report.json").read_text())
    total = report["events_read"]
    wait_for(prometheus_server, f'sum(intccms_events_read_total{{run="{run_id}"}}) == {total}', "final scrape")
    time.sleep(3 * SI)  # a few more scrapes and rule evaluations after the last change
    return {"result": result, "report": report, "run": run_id, "t_before": t_before, "t_after": t_after,
            "t_primed": t_primed, "bad": str(bad)}


def test_job_ran_every_stage_on_both_workers(job_run: dict[str, Any]) -> None:
    report = job_run["report"]
    result: JobResult = job_run["result"]
    assert set(report["per_stage"]) == set(STAGES)
    for stage in STAGES:
        assert report["per_stage"][stage]["chunks"] >= 2, stage
    assert report["failed_chunks"] == report["per_stage"]["metadata"]["failed"] == 1
    assert [f["file"] for f in report["failures"]] == [job_run["bad"]]
    assert job_run["bad"] in result.skipped
    assert len(report["per_worker"]) == 2, "both workers should have processed chunks"
    assert all(name.startswith("tcp://127.0.0.1:") for name in report["per_worker"])
    assert sum(r.stage == "analysis" for r in result.records) == report["per_stage"]["analysis"]["chunks"]


@pytest.mark.parametrize("field", ["events_read", "events_selected", "bytes_read", "bytes_written"])
def test_counters_per_stage_equal_the_report(prometheus_server: PrometheusProcess, job_run: dict, field: str) -> None:
    run, report = job_run["run"], job_run["report"]
    got = by_label(prometheus_server, "stage", f'sum by (stage) (intccms_{field}_total{{run="{run}"}})')
    expected = {stage: float(stats[field]) for stage, stats in report["per_stage"].items()}
    assert got == expected
    assert sum(got.values()) == report[field]


def test_chunks_per_stage_equal_the_report(prometheus_server: PrometheusProcess, job_run: dict) -> None:
    run, report = job_run["run"], job_run["report"]
    processed = by_label(prometheus_server, "stage", f'sum by (stage) (intccms_chunks_processed_total{{run="{run}"}})')
    failed = by_label(prometheus_server, "stage", f'sum by (stage) (intccms_chunks_failed_total{{run="{run}"}})')
    timed = by_label(prometheus_server, "stage", f'sum by (stage) (intccms_chunk_duration_seconds_count{{run="{run}"}})')
    seconds = by_label(prometheus_server, "stage", f'sum by (stage) (intccms_chunk_duration_seconds_sum{{run="{run}"}})')
    for stage, stats in report["per_stage"].items():
        # workers meter attempts; the report counts them the same way (no retries in this run)
        assert processed[stage] == stats["chunks"] - stats["failed"], stage
        assert failed[stage] == stats["failed_attempts"] == stats["failed"], stage
        assert timed[stage] == stats["attempts"] == stats["chunks"], stage
        # the report times a chunk from record creation to record end, the histogram inside it
        assert seconds[stage] == pytest.approx(stats["chunk_time_s"], abs=0.05 * stats["chunks"] + 0.05), stage
        assert seconds[stage] <= stats["chunk_time_s"] + 1e-3, stage


def test_per_worker_totals_equal_the_report(prometheus_server: PrometheusProcess, job_run: dict) -> None:
    run, report = job_run["run"], job_run["report"]
    for field in ("events_read", "bytes_read"):
        got = by_label(prometheus_server, "worker", f'sum by (worker) (intccms_{field}_total{{run="{run}"}})')
        assert got == {name: float(stats[field]) for name, stats in report["per_worker"].items()}, field


def extrapolation_bound(server: PrometheusProcess, selector: str, window_ms: int, at: float) -> float:
    """Largest relative amount by which rate() x window may exceed these series' increase.

    Every series of the run is at 0 at its first sample in the window (the window starts before
    the series were primed), so Prometheus extrapolates nothing at the start (a counter is not
    extrapolated below zero) and at the end by less than 1.1 average sample gaps: the excess
    over the true increase is below 1.1 x gap / sampled span. The gaps are the real scrape
    timestamps: a worker busy with a chunk answers scrapes late or not at all.
    """
    bound = 0.0
    for series in server.query(f"{selector}[{window_ms}ms]", at=at):
        points = [(float(t), float(v)) for t, v in series["values"]]
        assert points[0][1] == 0, f"{series['metric']} is not 0 at the window's start: {points[:3]}"
        if len(points) < 2 or points[-1][1] == 0:
            continue
        sampled = points[-1][0] - points[0][0]
        bound = max(bound, 1.1 * (sampled / (len(points) - 1)) / sampled)
    return bound


def assert_rate_matches(rate_times_window: float, total: float, bound: float, what: object) -> None:
    """rate() x window is the total plus at most ``bound`` of it (never less: no extrapolation
    at the start, and the window ends after the last change)."""
    assert total * (1 - 1e-9) <= rate_times_window <= total * (1 + bound + 1e-9), (what, rate_times_window, total, bound)


def test_per_worker_rates_match_the_report_within_scrape_interval(
    prometheus_server: PrometheusProcess, job_run: dict
) -> None:
    """rate() over the job's time span, times the span, gives each worker's report total, up to
    Prometheus's extrapolation at the end of each series (under 1.1 scrape gaps)."""
    run, report = job_run["run"], job_run["report"]
    end = time.time()  # after the final scrape (job_run waited for it): the last samples are the totals
    # Scrapes go on; one that started before ``end`` carries a timestamp before it but is stored
    # only when it completes (within a scrape interval). Wait for those, so that the rate and the
    # bound below are computed from the same samples.
    time.sleep(2 * SI + 0.5)
    window = end - job_run["t_primed"] + SI  # starts before any sample of the run's series
    window_ms = int(window * 1000)
    window = window_ms / 1000  # what Prometheus divides by
    for field in ("events_read", "bytes_read"):
        expr = f'sum by (worker) (rate(intccms_{field}_total{{run="{run}"}}[{window_ms}ms]))'
        rates = {r["metric"]["worker"]: float(r["value"][1]) for r in prometheus_server.query(expr, at=end)}
        assert set(rates) == set(report["per_worker"]), field
        for name, stats in report["per_worker"].items():
            selector = f'intccms_{field}_total{{run="{run}",worker="{name}"}}'
            bound = extrapolation_bound(prometheus_server, selector, window_ms, end)
            assert bound > 0, (field, name)
            assert_rate_matches(rates[name] * window, stats[field], bound, (field, name))
    # the job-wide rate agrees with the report's own event rate over its wall time
    total = prometheus_server.query(f'sum(rate(intccms_events_read_total{{run="{run}"}}[{window_ms}ms]))', at=end)
    bound = extrapolation_bound(prometheus_server, f'intccms_events_read_total{{run="{run}"}}', window_ms, end)
    assert_rate_matches(float(total[0]["value"][1]) * window, report["events_per_s"] * report["wall_time_s"],
                        bound, "job")


def test_recording_rules_see_the_job(prometheus_server: PrometheusProcess, job_run: dict) -> None:
    run = job_run["run"]
    window = f"{int(time.time() - job_run['t_before']) + 5}s"
    per_worker = prometheus_server.query(f'max_over_time(intccms_worker:events_read:rate1m{{run="{run}"}}[{window}])')
    assert len(per_worker) == 2 and all(float(r["value"][1]) > 0 for r in per_worker)
    gbps = prometheus_server.query(f'max_over_time(intccms_worker:bytes_read:gbps1m{{run="{run}"}}[{window}])')
    assert len(gbps) == 2 and all(float(r["value"][1]) > 0 for r in gbps)
    stages = by_label(prometheus_server, "stage", f'max_over_time(intccms_stage:events_read:rate1m{{run="{run}"}}[{window}])')
    assert stages["skim"] > 0 and stages["analysis"] > 0


def test_scheduler_side_run_metrics(prometheus_server: PrometheusProcess, job_run: dict) -> None:
    run, report = job_run["run"], job_run["report"]
    sched = f'job="intccms-scheduler",run="{run}"'
    planned = by_label(prometheus_server, "stage", f"intccms_run_chunks_planned{{{sched}}}")
    completed = by_label(prometheus_server, "stage", f"intccms_run_chunks_completed_total{{{sched}}}")
    for stage in STAGES:  # the metadata stage is counted too
        assert planned[stage] == report["per_stage"][stage]["chunks"], stage
        assert completed[stage] == planned[stage], stage
    remaining = prometheus_server.query(f'intccms:run_chunks_remaining{{run="{run}"}}')
    assert float(remaining[0]["value"][1]) == 0
    # while the job ran, chunks were planned but not yet completed
    span = f"{int(time.time() - job_run['t_before']) + 5}s"
    peak = prometheus_server.query(f'max_over_time(intccms:run_chunks_remaining{{run="{run}"}}[{span}])')
    assert float(peak[0]["value"][1]) > 0
    wanted = prometheus_server.query(f"intccms_run_workers_wanted{{{sched}}}")
    present = prometheus_server.query(f"intccms_run_workers_present{{{sched}}}")
    assert float(wanted[0]["value"][1]) == 2
    assert float(present[0]["value"][1]) == 2
    assert prometheus_server.query(f'intccms_run_info{{{sched},config="demo"}}')
    assert len(prometheus_server.query(f'{names.WORKER_INFO}{{job="intccms-workers",run="{run}"}}')) == 2


def test_every_dashboard_panel_shows_the_job(prometheus_server: PrometheusProcess, job_run: dict) -> None:
    window = f"{int(time.time() - job_run['t_before']) + 5}s"
    empty = [f"{name} / {title} / {ref}"
             for name, dash in dashboards().items()
             for title, ref, expr in panel_expressions(dash)
             if not prometheus_server.query(substitute(expr, job_run["run"], window))]
    assert empty == []


def test_metrics_overhead_on_the_jobs_chunks(cluster_client: Any, job_run: dict) -> None:
    """What chunk_metrics costs in a worker process, against this job's chunk times: < 2 %."""
    costs = cluster_client.run(time_chunk_metrics, 2000)
    assert len(costs) == 2
    cost = max(costs.values())
    overhead = job_overhead(job_run["report"], cost)
    assert set(overhead["per_stage"]) == set(STAGES)
    for stage in ("skim", "analysis"):
        assert overhead["per_stage"][stage]["fraction"] < 0.02, overhead
    assert overhead["fraction"] < 0.02, overhead
    assert 0 < overhead["metrics_cost_s"] < 1e-3


# --- the job's own Prometheus (prometheus.enabled) ---------------------------------------------


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.fixture(scope="module")
def job_with_own_prometheus(demo_data: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """``make run`` with ``prometheus.enabled=true``: the job starts its cluster and Prometheus."""
    try:
        find_prometheus()
    except FileNotFoundError as err:
        pytest.skip(str(err))
    out = tmp_path_factory.mktemp("job-own-prometheus")
    rid = f"ownprom-{uuid.uuid4().hex[:8]}"
    mp = pytest.MonkeyPatch()
    mp.setattr(worker, "_run_id", None)
    mp.setenv(names.RUN_ID_ENV, rid)
    try:
        cfg = compose_config("demo", small_overrides(
            demo_data, out, DATASETS[:1], "workflow.variations=[]", "workflow.run_plots=false",
            "prometheus.enabled=true", "prometheus.scrape_interval=1s", "cluster.n_workers=2",
        ))
        result = run_job(cfg)
    finally:
        mp.undo()
    state = json.loads((out / "prometheus" / STATE_FILE).read_text())
    return {"result": result, "state": state, "out": out, "run": rid}


def test_own_prometheus_is_stopped_after_the_job(job_with_own_prometheus: dict) -> None:
    state = job_with_own_prometheus["state"]
    assert state["running"] is False
    assert state["run"] == job_with_own_prometheus["run"]
    assert not _pid_alive(state["pid"])
    with pytest.raises(OSError):  # nothing listens on its port any more
        urllib.request.urlopen(f"{state['url']}/-/ready", timeout=2)  # noqa: S310 - loopback
    assert len(state["targets"]["worker"]) == 2 and len(state["targets"]["scheduler"]) == 1


def test_own_prometheus_scraped_the_jobs_targets(job_with_own_prometheus: dict) -> None:
    """Re-open the job's TSDB (under the output folder) and read what the job's server stored."""
    state, run = job_with_own_prometheus["state"], job_with_own_prometheus["run"]
    report = json.loads((job_with_own_prometheus["out"] / "report" / "report.json").read_text())
    with view_run_data(Path(state["tsdb"]).parent) as server:
        span = "1h"
        up = server.query(f"max_over_time(up[{span}])")
        scraped = {r["metric"]["instance"]: float(r["value"][1]) for r in up}
        targets = state["targets"]["worker"] + state["targets"]["scheduler"]
        assert scraped == {t: 1.0 for t in targets}
        # and successfully after the job's wait for the final counters began: the scrape it waits for
        # before stopping its server (any scrape may time out on a loaded machine, a worker busy
        # with a chunk too: its event loop waits for the GIL; so only a successful one counts)
        final = state["final_scrape"]
        assert final["complete"] is True
        samples = {r["metric"]["instance"]: r["values"] for r in server.query(f'up{{job=~"intccms-.*"}}[{span}]')}
        last_ok = {t: max(float(ts) for ts, v in values if float(v) == 1.0) for t, values in samples.items()}
        assert set(last_ok) == set(targets)
        assert all(stamp > final["since"] for stamp in last_ok.values()), (last_ok, final)
        jobs = {r["metric"]["instance"]: r["metric"]["job"] for r in up}
        assert {jobs[t] for t in state["targets"]["worker"]} == {"intccms-workers"}
        assert jobs[state["targets"]["scheduler"][0]] == "intccms-scheduler"
        events = server.query(f'sum(max_over_time(intccms_events_read_total{{run="{run}"}}[{span}]))')
        assert float(events[0]["value"][1]) == report["events_read"]
        assert server.query(f'max_over_time(intccms_run_workers_present{{run="{run}"}}[{span}]) == 2')
        # the chart's recording rules were loaded and evaluated on the run's series (the job may be
        # shorter than a few scrapes, so their values are not checked here)
        assert server.query(f'count_over_time(intccms:events_read:rate1m{{run="{run}"}}[{span}])')
        assert server.query(f'count_over_time(intccms_worker:bytes_read:gbps1m{{run="{run}"}}[{span}])')
    assert server.process.poll() is not None

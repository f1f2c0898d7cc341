"""Live metrics end to end: a LocalCluster reads a ROOT file chunk by chunk, workers export their
counters at /metrics, a real Prometheus (chart configuration and rules) scrapes workers and
scheduler, and its totals, rates, recording rules and every dashboard query are checked against
the workload's own ChunkRecords and the run report built from them."""

from __future__ import annotations

import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import cloudpickle
import pytest
from fixtures.prometheus import dashboards, panel_expressions, set_chart_targets, substitute

from intccms.core.records import ChunkRecord
from intccms.metrics import names, worker
from intccms.metrics.scheduler import run_metrics_for
from intccms.metrics.server import PrometheusProcess
from intccms.outputs.report import build_report

distributed = pytest.importorskip("distributed")

pytestmark = [pytest.mark.prometheus, pytest.mark.slow]

CHUNK = 20_000
DATASETS = ("ttbar", "dy")
STAGE = "skim"


def make_input(path: Path, n_events: int, seed: int) -> Path:
    """Realistic NanoAOD from the project's generator (semileptonic tt; LZMA 1, as the demo)."""
    from intccms.datagen import generate_file

    return Path(generate_file(path, "ttbar_semilep", "2018", n_events, seed, compression_level=1).path)


def process_chunk(dataset: str, url: str, start: int, stop: int, out_dir: str) -> ChunkRecord:
    """One skim chunk on a worker: read with uproot, select, write the selection, meter it all."""
    import awkward as ak
    import numpy as np
    import psutil
    import uproot

    from intccms.metrics.worker import chunk_metrics

    record = ChunkRecord(dataset, STAGE, url, start, stop, t_start=time.time())
    try:
        with chunk_metrics(dataset, STAGE) as meter:
            record.worker = meter.worker
            with uproot.open(url) as file:
                tree = file["Events"]
                if start >= tree.num_entries:
                    msg = f"entry range {start}-{stop} beyond {tree.num_entries} entries of {url}"
                    raise IndexError(msg)
                arrays = tree.arrays(["Jet_pt"], entry_start=start, entry_stop=stop)
                bytes_read = file.file.source.num_requested_bytes
            selected = arrays[ak.sum(arrays.Jet_pt > 30, axis=1) >= 2]
            out = Path(out_dir) / f"{dataset}_{start}_{stop}.npy"
            np.save(out, ak.to_numpy(ak.num(selected.Jet_pt)))
            meter.add(events_read=len(arrays), events_selected=len(selected), bytes_read=bytes_read,
                      bytes_written=out.stat().st_size)
    except IndexError as err:
        record.failed, record.error = True, f"IndexError: {err}"
    record.events_read, record.events_selected = meter.events_read, meter.events_selected
    record.bytes_read, record.bytes_written = meter.bytes_read, meter.bytes_written
    record.t_end = time.time()
    record.peak_rss = psutil.Process().memory_info().rss
    return record


@pytest.fixture(scope="module")
def run_id() -> Iterator[str]:
    rid = f"itest-{uuid.uuid4().hex[:8]}"
    mp = pytest.MonkeyPatch()
    mp.setattr(worker, "_run_id", None)
    mp.setenv(names.RUN_ID_ENV, rid)  # spawned worker processes inherit it
    yield rid
    mp.undo()


@pytest.fixture(scope="module")
def live_run(
    tmp_path_factory: pytest.TempPathFactory, prometheus_server: PrometheusProcess, run_id: str
) -> Iterator[dict]:
    """Run the workload on a 2-worker LocalCluster scraped by Prometheus; yield what it did."""
    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    tmp = tmp_path_factory.mktemp("workload")
    inputs = {ds: make_input(tmp / f"{ds}.root", 100_000 if ds == "ttbar" else 60_000, seed=i)
              for i, ds in enumerate(DATASETS)}
    out_dir = tmp / "skims"
    out_dir.mkdir()
    work = [(ds, str(path), s, s + CHUNK) for ds, path in inputs.items() for s in range(0, 100_000 if ds == "ttbar" else 60_000, CHUNK)]
    work.append(("dy", str(inputs["dy"]), 90_000, 90_000 + CHUNK))  # beyond the file: fails
    t_cluster = time.time()  # no sample of the run's series (primed at worker start) is older
    cluster = distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address="127.0.0.1:0",
        worker_dashboard_address="127.0.0.1:0", host="127.0.0.1",
        preload=["intccms.metrics.preload"], preload_argv=[f"--datasets={','.join(DATASETS)}", f"--stages={STAGE}"],
    )
    client = distributed.Client(cluster)
    try:
        client.wait_for_workers(2)
        info = client.scheduler_info()["workers"]
        worker_targets = [f"127.0.0.1:{w['services']['dashboard']}" for w in info.values()]
        set_chart_targets(prometheus_server, "worker", worker_targets)
        set_chart_targets(prometheus_server, "scheduler", [f"127.0.0.1:{cluster.scheduler.http_server.port}"])
        run = run_metrics_for(client, run_id, config="itest")
        run.planned(len(work), STAGE)
        run.workers(wanted=2, present=len(info))
        wait_for(prometheus_server, 'count(up{job=~"intccms-.*"} == 1) == 3', "all 3 targets up")
        wait_for(prometheus_server, f'count({names.WORKER_INFO}{{run="{run_id}"}}) == 2', "primed workers")
        t_start = time.time()
        futures = [client.submit(process_chunk, *item, str(out_dir), pure=False) for item in work]
        records: list[ChunkRecord] = []
        for future in distributed.as_completed(futures):
            records.append(future.result())
            run.completed(1, STAGE)
        wall = time.time() - t_start
        total = sum(r.events_read for r in records)
        wait_for(prometheus_server, f'sum(intccms_events_read_total{{run="{run_id}"}}) == {total}', "final scrape")
        wait_for(prometheus_server, f'sum(intccms_run_chunks_completed_total{{run="{run_id}"}}) == {len(work)}', "run gauges")
        time.sleep(3)  # a few more scrapes and rule evaluations after the last change
        yield {"records": records, "wall": wall, "t_start": t_start, "run": run_id, "n_work": len(work),
               "t_cluster": t_cluster}
    finally:
        client.close()
        cluster.close()
        cloudpickle.unregister_pickle_by_value(sys.modules[__name__])


def wait_for(server: PrometheusProcess, expr: str, what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.query(expr):
            return
        time.sleep(0.5)
    msg = f"Prometheus never satisfied {expr!r} ({what}) within {timeout:.0f} s"
    raise AssertionError(msg)


def by_worker(server: PrometheusProcess, expr: str, at: float | None = None) -> dict[str, float]:
    results = server.query(expr) if at is None else server.query(expr, at=at)
    return {r["metric"]["worker"]: float(r["value"][1]) for r in results}


def extrapolation_bound(server: PrometheusProcess, selector: str, window_s: int, at: float) -> float:
    """Largest share by which rate() x window may exceed the increase of these series: 1.1
    average sample gaps over the sampled span, from the series' own scrape timestamps (their
    first sample in the window must be 0, so nothing is extrapolated at the start)."""
    bound = 0.0
    for series in server.query(f"{selector}[{window_s}s]", at=at):
        points = [(float(t), float(v)) for t, v in series["values"]]
        assert points[0][1] == 0, f"{series['metric']} is not 0 at the window's start: {points[:3]}"
        if len(points) < 2 or points[-1][1] == 0:
            continue
        sampled = points[-1][0] - points[0][0]
        bound = max(bound, 1.1 * (sampled / (len(points) - 1)) / sampled)
    return bound


def test_counters_equal_the_workload_totals(prometheus_server: PrometheusProcess, live_run: dict) -> None:
    records: list[ChunkRecord] = live_run["records"]
    run = live_run["run"]
    assert len({r.worker for r in records}) == 2, "both workers should have processed chunks"
    assert sum(r.failed for r in records) == 1
    for field in ("events_read", "events_selected", "bytes_read", "bytes_written"):
        expected: dict[str, float] = {}
        for r in records:
            expected[r.worker] = expected.get(r.worker, 0) + getattr(r, field)
        got = by_worker(prometheus_server, f'sum by (worker) (intccms_{field}_total{{run="{run}"}})')
        assert got == expected, field
    failed_per_worker = {w: float(sum(r.failed for r in records if r.worker == w)) for w in {r.worker for r in records}}
    assert sorted(failed_per_worker.values()) == [0.0, 1.0]
    assert by_worker(prometheus_server, f'sum by (worker) (intccms_chunks_failed_total{{run="{run}"}})') == failed_per_worker
    failed = prometheus_server.query(f'sum(intccms_chunks_failed_total{{run="{run}"}})')
    processed = prometheus_server.query(f'sum(intccms_chunks_processed_total{{run="{run}"}})')
    assert float(failed[0]["value"][1]) == 1
    assert float(processed[0]["value"][1]) == len(records) - 1
    count = prometheus_server.query(f'sum(intccms_chunk_duration_seconds_count{{run="{run}"}})')
    assert float(count[0]["value"][1]) == len(records)
    remaining = prometheus_server.query(f'intccms:run_chunks_remaining{{run="{run}"}}')
    assert float(remaining[0]["value"][1]) == 0


def test_rates_match_within_scrape_tolerance(prometheus_server: PrometheusProcess, live_run: dict) -> None:
    records: list[ChunkRecord] = live_run["records"]
    run = live_run["run"]
    end = time.time()  # after the final scrape (live_run waited for it): the last samples are the totals
    window = int(end - live_run["t_cluster"]) + 2  # starts before any sample of the run's series
    for field in ("events_read", "bytes_read"):
        rates = by_worker(prometheus_server,
                          f'sum by (worker) (rate(intccms_{field}_total{{run="{run}"}}[{window}s]))', at=end)
        assert set(rates) == {r.worker for r in records}, field
        for name, rate in rates.items():
            expected = sum(getattr(r, field) for r in records if r.worker == name)
            # Tolerance from the real scrape timestamps: each series is 0 at its first sample in
            # the window, so rate() extrapolates nothing at the start and less than 1.1 average
            # scrape gaps at the end; rate x window exceeds the total by at most that share.
            bound = extrapolation_bound(prometheus_server, f'intccms_{field}_total{{run="{run}",worker="{name}"}}',
                                        window, end)
            assert bound > 0, (field, name)
            assert expected * (1 - 1e-9) <= rate * window <= expected * (1 + bound + 1e-9), (field, name, bound)
    # the recording rules see the run too
    peak = prometheus_server.query(f'max_over_time(intccms:events_read:rate1m{{run="{run}"}}[{window}s])')
    assert float(peak[0]["value"][1]) > 0
    per_worker = prometheus_server.query(f'max_over_time(intccms_worker:bytes_read:gbps1m{{run="{run}"}}[{window}s])')
    assert len(per_worker) == 2


def test_report_agrees_with_prometheus(prometheus_server: PrometheusProcess, live_run: dict) -> None:
    report = build_report(live_run["records"], wall_time_s=live_run["wall"], n_cores=2)
    run = live_run["run"]

    def total(metric: str) -> float:
        return float(prometheus_server.query(f'sum({metric}{{run="{run}"}})')[0]["value"][1])

    assert report.events_read == total("intccms_events_read_total")
    assert report.events_selected == total("intccms_events_selected_total")
    assert report.bytes_read == total("intccms_bytes_read_total")
    assert report.bytes_written == total("intccms_bytes_written_total")
    assert report.failed_chunks == report.failed_attempts == total("intccms_chunks_failed_total")
    assert report.chunks == report.attempts == total("intccms_chunk_duration_seconds_count")
    assert report.chunk_time_s == pytest.approx(total("intccms_chunk_duration_seconds_sum"), rel=0.05, abs=0.05)
    for name, stats in report.per_worker.items():
        got = by_worker(prometheus_server, f'sum by (worker) (intccms_events_read_total{{run="{run}"}})')
        assert stats.events_read == got[name]


def test_every_dashboard_expression_returns_data(prometheus_server: PrometheusProcess, live_run: dict) -> None:
    window = f"{int(time.time() - live_run['t_start']) + 10}s"
    run_selector = prometheus_server.query(f'count by (run) ({names.RUN_INFO}{{run="{live_run["run"]}"}})')
    assert run_selector, "the dashboards' run variable would be empty"
    empty = []
    for name, dash in dashboards().items():
        for title, ref, expr in panel_expressions(dash):
            if not prometheus_server.query(substitute(expr, live_run["run"], window)):
                empty.append(f"{name} / {title} / {ref}")
    assert empty == []

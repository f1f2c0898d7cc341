"""Local Prometheus start-up for `make run` users, and the scheduler-plugin variant of the run gauges."""

from __future__ import annotations

import shutil
import time
import urllib.request
import uuid
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, Counter, start_http_server

from intccms.metrics.scheduler import RemoteRunMetrics
from intccms.metrics.server import (
    PrometheusNotInstalledError,
    metrics_target,
    start_local_prometheus,
)


def test_missing_binary_names_the_install_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(PrometheusNotInstalledError, match="apt-get install -y --no-install-recommends prometheus"):
        start_local_prometheus(["127.0.0.1:1"], tmp_path)


def test_metrics_target_parsing() -> None:
    assert metrics_target("http://127.0.0.1:8787/status") == "127.0.0.1:8787"
    assert metrics_target("10.0.0.3:40000") == "10.0.0.3:40000"
    with pytest.raises(ValueError, match="host:port"):
        metrics_target("http://scheduler")


@pytest.mark.prometheus
@pytest.mark.skipif(shutil.which("prometheus") is None, reason="prometheus not installed (tests/setup/install_prometheus.sh)")
def test_local_prometheus_scrapes_a_target(tmp_path: Path) -> None:
    registry = CollectorRegistry()
    Counter("intccms_selftest", "scrape check", registry=registry).inc(42)
    http, thread = start_http_server(0, addr="127.0.0.1", registry=registry)
    try:
        target = f"127.0.0.1:{http.server_port}"
        with start_local_prometheus([target], tmp_path, scrape_interval="1s") as prom:
            deadline = time.monotonic() + 30
            result: list = []
            while not result and time.monotonic() < deadline:
                result = prom.query("intccms_selftest_total")
                time.sleep(0.3)
            assert result and float(result[0]["value"][1]) == 42
            assert result[0]["metric"]["intccms_role"] == "worker"
        assert prom.process.poll() is not None  # stopped on exit
    finally:
        http.shutdown()
        http.server_close()
        thread.join(5)


@pytest.mark.slow
def test_scheduler_plugin_serves_run_gauges() -> None:
    distributed = pytest.importorskip("distributed")
    run = f"plugin-{uuid.uuid4().hex[:8]}"
    with (
        distributed.LocalCluster(n_workers=1, processes=False, dashboard_address="127.0.0.1:0") as cluster,
        distributed.Client(cluster) as client,
    ):
        remote = RemoteRunMetrics(client, run, config="cfg")
        remote.planned(10, "skim")
        remote.completed(3, "skim")
        remote.workers(wanted=4, present=0)
        url = f"http://127.0.0.1:{cluster.scheduler.http_server.port}/metrics"
        with urllib.request.urlopen(url, timeout=10) as resp:  # noqa: S310 - loopback
            text = resp.read().decode()
    assert f'intccms_run_chunks_planned{{run="{run}",stage="skim"}} 10.0' in text
    assert f'intccms_run_chunks_completed_total{{run="{run}",stage="skim"}} 3.0' in text
    assert f'intccms_run_workers_wanted{{run="{run}"}} 4.0' in text
    # present comes from the scheduler itself, not from the job's argument
    assert f'intccms_run_workers_present{{run="{run}"}} 1.0' in text
    assert f'intccms_run_info{{config="cfg",run="{run}"}} 1.0' in text

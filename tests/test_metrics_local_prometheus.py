"""The job's local Prometheus (``prometheus.enabled``) around an in-process cluster: targets,
following new workers, stopping on errors and Ctrl-C, the missing-binary message, and viewing a
finished run's data."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from intccms.config.schema import PrometheusConfig
from intccms.metrics.local_prometheus import (
    STATE_FILE,
    chart_rule_files,
    cluster_targets,
    local_prometheus,
    parse_duration,
    view_run_data,
)

distributed = pytest.importorskip("distributed")

needs_prometheus = pytest.mark.skipif(
    shutil.which("prometheus") is None, reason="prometheus not installed (tests/setup/install_prometheus.sh)"
)


def settings(**over: Any) -> PrometheusConfig:
    return PrometheusConfig(**{"enabled": True, "scrape_interval": "1s", **over})


def console() -> tuple[Console, io.StringIO]:
    buffer = io.StringIO()
    return Console(file=buffer, width=400), buffer


@pytest.fixture(scope="module")
def cluster() -> Iterator[tuple[Any, Any]]:
    """A scheduler and one worker in this process, each with its own HTTP server (/metrics)."""
    with (
        distributed.LocalCluster(n_workers=1, processes=False, threads_per_worker=1, protocol="tcp://", host="127.0.0.1",
                                 dashboard_address="127.0.0.1:0") as cl,
        distributed.Client(cl) as client,
    ):
        yield cl, client


def test_parse_duration() -> None:
    assert parse_duration("5s") == 5.0
    assert parse_duration("500ms") == 0.5
    assert parse_duration("1.5m") == 90.0
    with pytest.raises(ValueError, match="scrape_interval"):
        parse_duration("5 seconds")


def test_chart_rules_are_found_in_a_checkout() -> None:
    assert [p.name for p in chart_rule_files()] == ["rules.yaml"]


def test_cluster_targets(cluster: tuple[Any, Any]) -> None:
    cl, client = cluster
    groups = cluster_targets(client)
    assert groups["scheduler"] == [f"127.0.0.1:{cl.scheduler.http_server.port}"]
    (worker,) = cl.workers.values()
    assert groups["worker"] == [f"127.0.0.1:{worker.http_server.port}"]


def test_disabled_starts_nothing(tmp_path: Path) -> None:
    out, _ = console()
    with local_prometheus(PrometheusConfig(), None, tmp_path, run_id="r", console=out) as server:  # type: ignore[arg-type]
        assert server is None
    assert not (tmp_path / "prometheus").exists()


def test_missing_binary_is_a_message_not_a_failure(
    cluster: tuple[Any, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    out, text = console()
    with local_prometheus(settings(), cluster[1], tmp_path, run_id="r", console=out) as server:
        assert server is None
    assert "apt-get install -y --no-install-recommends prometheus" in text.getvalue()
    assert "runs without Prometheus" in text.getvalue()


def test_missing_rule_file_is_named(cluster: tuple[Any, Any], tmp_path: Path) -> None:
    out, _ = console()
    with (
        pytest.raises(FileNotFoundError, match=r"nope\.yaml"),
        local_prometheus(settings(rule_files=[str(tmp_path / "nope.yaml")]), cluster[1], tmp_path,
                         run_id="r", console=out),
    ):
        pass


def wait_for(server: Any, expr: str, timeout: float = 60.0) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = server.query(expr)
        if result:
            return result
        time.sleep(0.3)
    msg = f"Prometheus at {server.url} never answered {expr!r} within {timeout:.0f} s"
    raise AssertionError(msg)


@needs_prometheus
@pytest.mark.prometheus
@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt])
def test_server_stops_when_the_job_fails(cluster: tuple[Any, Any], tmp_path: Path, error: type[BaseException]) -> None:
    out, text = console()
    with (
        pytest.raises(error),
        local_prometheus(settings(keep_running=600), cluster[1], tmp_path, run_id="failing", console=out) as server,
    ):
        assert server is not None
        assert server.url in text.getvalue()
        wait_for(server, 'count(up{job="intccms-workers"} == 1) == 1')
        raise error("job failed")
    assert server.process.poll() is not None  # stopped at once, without the keep_running wait
    state = json.loads((tmp_path / "prometheus" / STATE_FILE).read_text())
    assert state["running"] is False and state["pid"] == server.process.pid


@needs_prometheus
@pytest.mark.prometheus
def test_rules_loaded_new_workers_followed_and_data_kept(cluster: tuple[Any, Any], tmp_path: Path) -> None:
    cl, client = cluster
    out, text = console()
    with local_prometheus(settings(keep_running=0.5), client, tmp_path, run_id="follow", console=out) as server:
        assert server is not None
        wait_for(server, 'count(up{job="intccms-workers"} == 1) == 1')
        assert server.query('up{job="intccms-scheduler"} == 1')
        groups = json.loads((tmp_path / "prometheus" / "prometheus.yml").read_text())
        assert [Path(p).name for p in groups["rule_files"]] == ["rules.yaml"]
        cl.scale(2)
        client.wait_for_workers(2)
        wait_for(server, 'count(up{job="intccms-workers"} == 1) == 2')
    assert "stays up 0 s more" in text.getvalue() or "stays up 1 s more" in text.getvalue()
    assert server.process.poll() is not None
    cl.scale(1)
    # the stored data are served again by a viewer on the same TSDB
    with view_run_data(tmp_path / "prometheus") as viewer:
        assert viewer.query('max_over_time(up{job="intccms-workers"}[1h])')
    with pytest.raises(FileNotFoundError, match="tsdb"):
        view_run_data(tmp_path)


@needs_prometheus
@pytest.mark.prometheus
@pytest.mark.skipif(sys.platform != "linux", reason="parent-death signal is Linux only")
def test_server_dies_with_a_killed_job(tmp_path: Path) -> None:
    """A job killed with SIGKILL cannot stop its server; the kernel then does."""
    script = (
        "import sys, time\n"
        "from intccms.metrics.server import start_local_prometheus\n"
        f"server = start_local_prometheus([], {str(tmp_path)!r})\n"
        "print(server.process.pid, flush=True)\n"
        "time.sleep(120)\n"
    )
    job = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)  # noqa: S603
    try:
        assert job.stdout is not None
        pid = int(job.stdout.readline())
        os.kill(pid, 0)  # running
        job.kill()
        job.wait(10)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and Path(f"/proc/{pid}").exists():
            time.sleep(0.1)
        assert not Path(f"/proc/{pid}").exists(), "prometheus outlived its killed parent"
    finally:
        job.kill()
        job.wait(10)

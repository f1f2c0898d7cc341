"""A Prometheus server next to one job (``prometheus.enabled=true``), so ``make run`` users see the
run's numbers live without a monitoring stack.

:func:`local_prometheus` starts Debian's ``prometheus`` binary on 127.0.0.1 with the chart's
recording and alert rules, scraping the job's scheduler and workers through a file_sd file that a
background thread keeps in step with the cluster (workers that join later are scraped too). Its
data (TSDB, configuration, log and a ``server.json`` with URL and pid) go under
``<output_dir>/prometheus``, so the numbers can be looked at again after the run by pointing
another Prometheus at that ``tsdb`` folder. The server is stopped when the block ends, also on
errors and Ctrl-C.
"""

from __future__ import annotations

import argparse
import json
import logging
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from intccms.metrics.server import (
    PrometheusNotInstalledError,
    PrometheusProcess,
    PrometheusQueryError,
    start_local_prometheus,
)

if TYPE_CHECKING:
    from distributed import Client
    from rich.console import Console

__all__ = [
    "STATE_FILE", "chart_rule_files", "cluster_targets", "local_prometheus", "parse_duration", "view_run_data",
]

log = logging.getLogger(__name__)

#: Written into the data folder while the server runs (URL, pid, targets) and updated at stop.
STATE_FILE = "server.json"
CHART_RULES = Path(__file__).resolve().parents[3] / "charts" / "intccms" / "files" / "prometheus" / "rules.yaml"


class PrometheusSettings(Protocol):
    """The ``prometheus`` configuration section (:class:`intccms.config.schema.PrometheusConfig`)."""

    enabled: bool
    port: int
    keep_running: float
    scrape_interval: str
    rule_files: Sequence[str]


def parse_duration(text: str) -> float:
    """Seconds of a simple Prometheus duration (``"500ms"``, ``"5s"``, ``"1m"``).

    Raises:
        ValueError: for anything else, naming the value.
    """
    units = {"ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
    for suffix in ("ms", "s", "m", "h"):
        number = text.removesuffix(suffix)
        if number != text and number.replace(".", "", 1).isdigit():
            return float(number) * units[suffix]
    msg = f"prometheus.scrape_interval: {text!r} is not a duration like '5s', '500ms' or '1m'"
    raise ValueError(msg)


def chart_rule_files() -> list[Path]:
    """The chart's rules.yaml when running from a source checkout, else nothing."""
    return [CHART_RULES] if CHART_RULES.is_file() else []


def cluster_targets(client: Client) -> dict[str, list[str]]:
    """``host:port`` of the scheduler's and every worker's HTTP server (both serve ``/metrics``).

    Args:
        client: connected Dask client.

    Returns:
        role ("scheduler", "worker") -> targets; a process without an HTTP server is left out.
    """
    info = client.scheduler_info()
    groups: dict[str, list[str]] = {"scheduler": [], "worker": []}
    port = info.get("services", {}).get("dashboard")
    host = str(info.get("address", "")).rpartition("://")[2].rpartition(":")[0]
    if port and host:
        groups["scheduler"].append(f"{host}:{port}")
    for address, worker in sorted(info.get("workers", {}).items()):
        port = worker.get("services", {}).get("dashboard")
        host = worker.get("host") or address.rpartition("://")[2].rpartition(":")[0]
        if port and host:
            groups["worker"].append(f"{host}:{port}")
    return groups


class _TargetFollower(threading.Thread):
    """Rewrites the file_sd targets when the cluster's workers change (adaptive clusters)."""

    def __init__(self, server: PrometheusProcess, client: Client, every_s: float) -> None:
        super().__init__(name="intccms-prometheus-targets", daemon=True)
        self.server = server
        self.client = client
        self.every_s = every_s
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(self.every_s):
            try:
                groups = cluster_targets(self.client)
            except Exception as err:  # noqa: BLE001 - the client may be closing; targets stay as they were
                log.debug("cannot refresh Prometheus targets: %s", err)
                continue
            for role, targets in groups.items():
                if sorted(targets) != sorted(self.server.groups.get(role, [])):
                    self.server.set_targets(targets, role)


def _write_state(
    server: PrometheusProcess, run_id: str, running: bool, final_scrape: dict[str, Any] | None = None,
) -> None:
    """The server's state file; ``final_scrape`` says from when the job waited for the final counters
    (UNIX time ``since``) and whether every target was scraped successfully after it (``complete``)."""
    state = {"url": server.url, "pid": server.process.pid, "run": run_id, "running": running,
             "targets": server.groups, "tsdb": str(server.workdir / "tsdb"), "log": str(server.log_file),
             "final_scrape": final_scrape}
    (server.workdir / STATE_FILE).write_text(json.dumps(state, indent=1) + "\n")


def _first_scrape(server: PrometheusProcess, timeout: float) -> None:
    """Wait until every target was scraped once, so the run's start is recorded too."""
    expected = sum(len(targets) for targets in server.groups.values())
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if len(server.query('up{job=~"intccms-.*"}')) >= expected:
            return
        time.sleep(0.2)
    log.warning("Prometheus at %s did not scrape every target within %.0f s", server.url, timeout)


def _by_instance(result: list[dict[str, Any]]) -> dict[str, float]:
    return {r["metric"].get("instance", ""): float(r["value"][1]) for r in result}


def _final_scrape(server: PrometheusProcess, timeout: float, evaluation_s: float) -> dict[str, Any]:
    """Wait until every target was scraped successfully after now, and one rule evaluation more,
    so the TSDB holds the run's final counters and the recording rules computed on them.

    A scrape that timed out (a loaded machine, a worker whose event loop waits for the GIL)
    does not count: it misses the final counters. Scrapes after the successful one may still time
    out, so a target's very last sample can say ``up == 0``; the final counters are in all the same.

    Returns:
        ``{"since": UNIX time the wait began, "complete": every target scraped successfully after it}``.
    """
    since = time.time()
    expected = sum(len(targets) for targets in server.groups.values())
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            # timestamp() of a plain selector is the sample's own time (of a filtered one, the
            # query's), hence two queries joined on the instance
            stamps = _by_instance(server.query('timestamp(up{job=~"intccms-.*"})'))
            up = _by_instance(server.query('up{job=~"intccms-.*"}'))
        except PrometheusQueryError:
            return {"since": since, "complete": False}
        fresh = [t for t, stamp in stamps.items() if stamp > since and up.get(t) == 1.0]
        if len(fresh) >= expected:
            time.sleep(evaluation_s + 0.5)
            return {"since": since, "complete": True}
        time.sleep(0.2)
    log.warning("Prometheus at %s did not scrape every target once more within %.0f s", server.url, timeout)
    return {"since": since, "complete": False}


def _keep_running(server: PrometheusProcess, seconds: float, console: Console) -> None:
    console.print(f"Prometheus stays up {seconds:.0f} s more at {server.url} (Ctrl-C stops it now)")
    deadline = time.monotonic() + seconds
    try:
        while time.monotonic() < deadline and server.process.poll() is None:
            time.sleep(min(0.5, max(deadline - time.monotonic(), 0.0)))
    except KeyboardInterrupt:  # the run is done: Ctrl-C only ends the viewing time
        console.print("Stopping Prometheus.")


@contextmanager
def local_prometheus(
    settings: PrometheusSettings,
    client: Client,
    output_dir: str | Path,
    *,
    run_id: str,
    console: Console,
) -> Iterator[PrometheusProcess | None]:
    """Run a local Prometheus scraping the job's cluster for the duration of the block.

    Args:
        settings: the ``prometheus`` configuration section; nothing happens unless ``enabled``.
        client: the job's connected Dask client (its scheduler and workers are scraped).
        output_dir: the job's output folder; the server's data go to ``<output_dir>/prometheus``.
        run_id: the run label, shown with the URL.
        console: where the URL and messages go.

    Yields:
        The running server, or None when disabled or when ``prometheus`` is not installed (the
        job then runs without it, after a message saying how to install it).

    Raises:
        RuntimeError: the server was found but did not start (its log tail is included).
    """
    if not settings.enabled:
        yield None
        return
    interval = str(settings.scrape_interval)
    interval_s = parse_duration(interval)
    rules = [Path(p) for p in settings.rule_files] or chart_rule_files()
    missing = [str(p) for p in rules if not p.is_file()]
    if missing:
        msg = f"prometheus.rule_files: {missing} not found; give existing rule files or [] for the chart's rules"
        raise FileNotFoundError(msg)
    groups = cluster_targets(client)
    try:
        server = start_local_prometheus(
            groups["worker"], Path(output_dir) / "prometheus", int(settings.port),
            scheduler=groups["scheduler"][0] if groups["scheduler"] else None,
            scrape_interval=interval, rule_files=rules,
        )
    except PrometheusNotInstalledError as err:
        console.print(f"[yellow]prometheus.enabled=true, but {err}. The job runs without Prometheus.[/yellow]")
        yield None
        return
    follower = _TargetFollower(server, client, max(interval_s, 1.0))
    succeeded = False
    final: dict[str, Any] | None = None
    try:
        _write_state(server, run_id, running=True)
        console.print(f"Prometheus for run [bold]{run_id}[/bold]: {server.url} "
                      f"(graph: {server.url}/graph?g0.expr=intccms:events_read:rate1m)")
        follower.start()
        _first_scrape(server, timeout=2 * interval_s + 5.0)
        yield server
        succeeded = True
        final = _final_scrape(server, timeout=4 * interval_s + 10.0, evaluation_s=interval_s if rules else 0.0)
        if float(settings.keep_running) > 0:
            _keep_running(server, float(settings.keep_running), console)
    finally:
        follower.stopped.set()
        if follower.is_alive():
            follower.join(10.0)
        server.stop()
        _write_state(server, run_id, running=False, final_scrape=final)
        if succeeded:
            console.print(f"Prometheus stopped; its data stay in {server.workdir / 'tsdb'}")


def view_run_data(data_dir: str | Path, port: int = 0) -> PrometheusProcess:
    """Serve a finished run's stored numbers again: a Prometheus without targets on its TSDB.

    Args:
        data_dir: a job's ``<output_dir>/prometheus`` folder (holds ``tsdb``).
        port: listen port (0 picks a free one).

    Returns:
        The running server (stop() it); its own configuration and log go to ``<data_dir>/view``.

    Raises:
        FileNotFoundError: when ``data_dir`` has no ``tsdb`` folder.
    """
    data = Path(data_dir)
    if not (data / "tsdb").is_dir():
        msg = f"{data} has no tsdb folder; give a job's <output_dir>/prometheus folder"
        raise FileNotFoundError(msg)
    view = data / "view"
    view.mkdir(exist_ok=True)
    config = view / "prometheus.yml"
    # No scrape jobs: only the stored series. Long retention so old runs are not deleted.
    config.write_text(json.dumps({"global": {"scrape_interval": "1h"}, "scrape_configs": []}))
    return start_local_prometheus([], view, port, config_file=config, tsdb=data / "tsdb", retention="10y")


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m intccms.metrics.local_prometheus <output_dir>/prometheus``: look at a finished run."""

    parser = argparse.ArgumentParser(prog="python -m intccms.metrics.local_prometheus", description=main.__doc__)
    parser.add_argument("data_dir", type=Path, help="the job's <output_dir>/prometheus folder")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    server = view_run_data(args.data_dir, args.port)
    print(f"Prometheus with the stored run data: {server.url} (Ctrl-C stops it)")
    try:
        server.process.wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()


if __name__ == "__main__":
    main()

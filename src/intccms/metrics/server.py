"""A local Prometheus server for ``make run`` users (config option ``prometheus.enabled``).

Runs Debian's ``prometheus`` binary on 127.0.0.1 with a ``file_sd`` targets file, so targets can be
added while it runs (workers that join later) by calling :meth:`PrometheusProcess.set_targets`.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

INSTALL_HINT = "install it with `apt-get install -y --no-install-recommends prometheus` (tests/setup/install_prometheus.sh)"


class PrometheusNotInstalledError(FileNotFoundError):
    """The prometheus binary is not on PATH."""


class PrometheusQueryError(RuntimeError):
    """Prometheus answered a query with an error."""


def find_prometheus(binary: str = "prometheus") -> str:
    """Path of the ``prometheus`` (or ``promtool``) binary.

    Raises:
        PrometheusNotInstalledError: with the install command when it is missing.
    """
    path = shutil.which(binary)
    if path is None:
        msg = f"`{binary}` was not found on PATH; {INSTALL_HINT}"
        raise PrometheusNotInstalledError(msg)
    return path


def _stop_with_parent() -> None:
    """In the child before exec: Linux sends SIGTERM to Prometheus when the starting thread's
    process dies without cleaning up (SIGKILL, an unhandled SIGTERM), so no server is left behind."""
    # in the forked child only (prctl through libc)
    import ctypes

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGTERM))  # 1 = PR_SET_PDEATHSIG


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free right now on ``host`` (Prometheus cannot listen on port 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def metrics_target(url: str) -> str:
    """``host:port`` of a Dask dashboard URL (``http://127.0.0.1:8787/status`` -> ``127.0.0.1:8787``)."""
    parsed = urllib.parse.urlparse(url if "//" in url else f"//{url}")
    if not parsed.hostname or not parsed.port:
        msg = f"cannot find host:port in dashboard address {url!r}; pass e.g. 'http://127.0.0.1:8787'"
        raise ValueError(msg)
    return f"{parsed.hostname}:{parsed.port}"


def write_targets(path: Path, groups: dict[str, list[str]]) -> None:
    """Write a file_sd targets file atomically (Prometheus re-reads it on change).

    Args:
        path: targets JSON file.
        groups: role ("scheduler", "worker") -> ``host:port`` targets.
    """
    payload = [
        {"targets": sorted(targets), "labels": {"intccms_role": role}}
        for role, targets in groups.items()
        if targets
    ]
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(payload, indent=1))
    os.replace(tmp, path)


@dataclass
class PrometheusProcess:
    """A running Prometheus server; stop() it (or use it as a context manager)."""

    process: subprocess.Popen[bytes]
    port: int
    workdir: Path
    targets_file: Path
    log_file: Path
    groups: dict[str, list[str]] = field(default_factory=dict)

    @property
    def url(self) -> str:
        """Base URL of the HTTP API."""
        return f"http://127.0.0.1:{self.port}"

    def set_targets(self, targets: list[str], role: str = "worker") -> None:
        """Replace the targets of one role (picked up within the file_sd refresh)."""
        self.groups[role] = [metrics_target(t) for t in targets]
        write_targets(self.targets_file, self.groups)

    def query(self, expr: str, timeout: float = 10.0, *, at: float | None = None) -> list[dict[str, Any]]:
        """Run an instant PromQL query (now, or at UNIX time ``at``) and return its result vector."""
        params = {"query": expr} if at is None else {"query": expr, "time": f"{at:.3f}"}
        url = f"{self.url}/api/v1/query?" + urllib.parse.urlencode(params)
        try:
            with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 - loopback URL
                body = json.load(resp)
        except urllib.error.HTTPError as err:
            detail = err.read().decode(errors="replace")
            msg = f"Prometheus at {self.url} rejected query {expr!r}: {detail}"
            raise PrometheusQueryError(msg) from err
        if body.get("status") != "success":
            msg = f"Prometheus at {self.url} failed query {expr!r}: {body.get('error')}"
            raise PrometheusQueryError(msg)
        return list(body["data"]["result"])

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Block until ``/-/ready`` answers 200.

        Raises:
            RuntimeError: when the process exits or the timeout passes (log tail included).
        """
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                msg = f"prometheus exited with code {self.process.returncode}; log {self.log_file}:\n{self._tail()}"
                raise RuntimeError(msg)
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=1.0) as resp:  # noqa: S310
                    if resp.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.1)
        msg = f"prometheus on {self.url} not ready after {timeout:.0f} s; log {self.log_file}:\n{self._tail()}"
        raise RuntimeError(msg)

    def _tail(self, n: int = 20) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return "(no log)"

    def stop(self, timeout: float = 10.0) -> None:
        """Terminate the server (kill after ``timeout``)."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout)

    def __enter__(self) -> PrometheusProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def local_config(targets_file: Path, scrape_interval: str, rule_files: list[Path]) -> dict[str, Any]:
    """A Prometheus configuration with the chart's two jobs (``intccms-scheduler``,
    ``intccms-workers``), both fed by one file_sd file and split on its ``intccms_role`` label,
    so the chart's rules, dashboards and queries work unchanged on a local server."""
    jobs = []
    for job, role in (("intccms-scheduler", "scheduler"), ("intccms-workers", "worker")):
        jobs.append({
            "job_name": job,
            "metrics_path": "/metrics",
            "file_sd_configs": [{"files": [str(targets_file)], "refresh_interval": "5s"}],
            "relabel_configs": [{"source_labels": ["intccms_role"], "regex": role, "action": "keep"}],
        })
    return {
        "global": {"scrape_interval": scrape_interval, "evaluation_interval": scrape_interval},
        "rule_files": [str(p) for p in rule_files],
        "scrape_configs": jobs,
    }


def start_local_prometheus(
    targets: list[str],
    workdir: str | os.PathLike[str],
    port: int = 0,
    *,
    scheduler: str | None = None,
    scrape_interval: str = "5s",
    rule_files: list[Path] | None = None,
    config_file: Path | None = None,
    retention: str = "1d",
    tsdb: Path | None = None,
    wait: float = 30.0,
) -> PrometheusProcess:
    """Start Prometheus on 127.0.0.1 scraping ``targets`` (worker dashboard addresses).

    Args:
        targets: worker ``host:port`` or dashboard URLs whose ``/metrics`` to scrape.
        workdir: directory for the config, targets file, TSDB and log.
        port: listen port (0 picks a free one).
        scheduler: scheduler dashboard address (its ``/metrics`` carries the run gauges).
        scrape_interval: global scrape and rule-evaluation interval.
        rule_files: recording/alert rule files to load.
        config_file: use this configuration instead of the generated one (its file_sd must read
            ``<workdir>/targets.json``).
        retention: TSDB retention.
        tsdb: TSDB folder (default ``<workdir>/tsdb``); an earlier run's folder shows its data again.
        wait: seconds to wait for readiness (0: do not wait).

    Returns:
        The running server.

    Raises:
        PrometheusNotInstalledError: when ``prometheus`` is not installed.
    """
    binary = find_prometheus()
    work = Path(workdir)
    work.mkdir(parents=True, exist_ok=True)
    targets_file = work / "targets.json"
    groups = {"worker": [metrics_target(t) for t in targets]}
    if scheduler:
        groups["scheduler"] = [metrics_target(scheduler)]
    write_targets(targets_file, groups)
    if config_file is None:
        config_file = work / "prometheus.yml"
        # JSON is valid YAML, so no YAML writer is needed at run time.
        config_file.write_text(json.dumps(local_config(targets_file, scrape_interval, rule_files or []), indent=1))
    listen = port or free_port()
    log_file = work / "prometheus.log"
    with log_file.open("wb") as log:
        process = subprocess.Popen(  # noqa: S603 - fixed binary and arguments
            [
                binary,
                f"--config.file={config_file}",
                f"--storage.tsdb.path={tsdb or work / 'tsdb'}",
                f"--storage.tsdb.retention.time={retention}",
                f"--web.listen-address=127.0.0.1:{listen}",
                "--web.enable-lifecycle",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=work,
            preexec_fn=_stop_with_parent if sys.platform == "linux" else None,  # noqa: PLW1509
        )
    server = PrometheusProcess(process, listen, work, targets_file, log_file, groups)
    if wait:
        try:
            server.wait_ready(wait)
        except BaseException:
            server.stop()
            raise
    return server

"""The facility as podman containers reads from an XRootD server that demands GSI, with the
proxy mounted into the job, scheduler and worker containers from the chart's Secret volume.

The chart is rendered with ``grid.proxy.secretName`` and ``grid.certificates.hostPath``; the
proxy Secret's content is a valid proxy of the grid fixture's test user (tests/fixtures/grid.py).
The Secret volume becomes a read-only folder holding the proxy with mode 0400, owned by the
container user; the CA directory a read-only bind mount (images/facility/pod_specs.py). The GSI
server runs on the host, listening on every interface; the containers dial it by a name that
resolves to the host's address on the facility network, and its host certificate carries that
name. The job (analysis on root:// inputs) runs from the chart's Job spec on the operator's
scheduler and two workers; its histograms equal a local run on the same files.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from fixtures.facility import (
    DATA_MOUNT,
    N_WORKERS,
    FacilityHandle,
    JobRun,
    pm,
    start_facility,
    wait_for_workers,
)
from fixtures.grid import GridPKI, GridServer, issue, publish_inputs, start_gsi_server
from rich.console import Console
from test_facility import _assert_same_histograms, _hists
from test_grid_jobs import secret_markers

from intccms.config import compose_config
from intccms.execute.job import run_job
from intccms.execute.prepare import ensure_inputs
from intccms.plan.run import with_generated_files

pytestmark = [pytest.mark.facility, pytest.mark.slow, pytest.mark.xrootd, pytest.mark.timeout(1500)]

# The name the containers dial: it resolves (--add-host) to the host's address on the facility
# network, and it is the CN of the GSI server's host certificate.
GSI_HOST = "grid-storage.intccms.test"
PROXY_SECRET = "intccms-facility-proxy"
PROXY_PATH = "/etc/grid-security/intccms-proxy/x509up"
CERT_DIR = "/etc/grid-security/certificates"
DATASETS = ["TTToSemiLeptonic_2017", "SingleMuon_2017"]
EVENTS = {"TTToSemiLeptonic_2017": 2000, "SingleMuon_2017": 1000}


def analysis_overrides(data_dir: str, out: str) -> list[str]:
    """A tiny analysis-only job (no skims): the facility job and the local run share these."""
    over = [f"paths.generated_data={data_dir}", f"output_dir={out}",
            f"dataset_selection=[{','.join(DATASETS)}]", "workflow=analysis",
            "workflow.run_statistics=false", "workflow.run_plots=false", "workflow.chunksize=1000",
            "storage.timeout_s=10", "storage.retries=1"]
    return over + [f"datasets.{n}.generate.events_per_file={e}" for n, e in EVENTS.items()]


@dataclass
class GridRun:
    handle: FacilityHandle
    job: JobRun
    local_dir: Path
    events: int  # events in the inputs
    proxy: Path
    server: GridServer
    urls: list[str]
    worker_env: dict[str, dict[str, str | None]]
    inspected: dict[str, dict[str, Any]]
    stat: dict[str, str]  # container -> "mode uid" of the proxy inside it
    logs: dict[str, str]
    worker_ips: list[str]
    server_log: str


@pytest.fixture(scope="module")
def facility_gsi(grid_pki: GridPKI) -> Iterator[GridServer]:
    """A GSI-only XRootD server whose host certificate names GSI_HOST."""
    host = issue(grid_pki.ca, grid_pki.root, "facility-host", f"/DC=org/DC=intccms-test/CN={GSI_HOST}",
                 host=True)
    server = start_gsi_server(dataclasses.replace(grid_pki, host=host))
    try:
        yield server
    finally:
        server.stop()


def _publish(cfg: Any, server: GridServer) -> tuple[list[str], list[str]]:  # noqa: ANN401
    """Copy the generated inputs into the server's export; their URLs and the overrides."""
    over, urls = [], []
    for name in DATASETS:
        dataset_urls = [f"root://{GSI_HOST}:{server.port}/{dest}"
                        for dest in publish_inputs(server, name, list(cfg.datasets[name].files))]
        over.append(f"datasets.{name}.files=[{','.join(dataset_urls)}]")
        urls += dataset_urls
    return over, urls


def _worker_grid_env(scheduler_ip: str, security: Any) -> dict[str, dict[str, str | None]]:  # noqa: ANN401
    """X509_USER_PROXY / X509_CERT_DIR in each worker process, asked through the scheduler."""
    import warnings

    from distributed import Client
    from distributed.versions import VersionMismatchWarning

    with warnings.catch_warnings():
        # The host's Python is a newer 3.11 patch release than the image's Debian one.
        warnings.simplefilter("ignore", VersionMismatchWarning)
        scheme = "tls" if security is not None else "tcp"
        with Client(f"{scheme}://{scheduler_ip}:8786", security=security, timeout=30) as client:
            proxies = client.run(os.getenv, "X509_USER_PROXY")
            certdirs = client.run(os.getenv, "X509_CERT_DIR")
    return {w: {"X509_USER_PROXY": proxies[w], "X509_CERT_DIR": certdirs[w]} for w in proxies}


@pytest.fixture(scope="module")
def grid_run(facility_images: dict[str, Any], dask_operator: Any, facility_state: Path,  # noqa: ANN401
             grid_pki: GridPKI, facility_gsi: GridServer, dask_client: Any,  # noqa: ANN401
             tmp_path_factory: pytest.TempPathFactory) -> Iterator[GridRun]:
    # Inputs of their own sizes, in their own folder (the session's demo_data has other sizes).
    demo_data = tmp_path_factory.mktemp("facility-grid-data")
    local_out = tmp_path_factory.mktemp("facility-grid-local")
    cfg = compose_config("demo", analysis_overrides(str(demo_data), str(local_out)))
    cfg = with_generated_files(cfg)
    ensure_inputs(cfg, console=Console(quiet=True))
    local = run_job(cfg, client=dask_client, console=Console(quiet=True))
    assert local.histograms_path is not None
    files_over, urls = _publish(cfg, facility_gsi)
    # The job and the workers read the generated corrections through a read-only mount as uid 1000.
    demo_data.chmod(0o755)
    for path in demo_data.rglob("*"):
        path.chmod(0o755 if path.is_dir() else 0o644)

    proxy = grid_pki.proxy("facility")
    certdir = grid_pki.ca.certdir
    certdir.chmod(0o755)
    values = {"grid": {"proxy": {"secretName": PROXY_SECRET},
                       "certificates": {"hostPath": str(certdir)}}}
    facility, handle = start_facility(dask_operator, facility_images, facility_state, demo_data, [],
                                      values=values,
                                      secrets={PROXY_SECRET: {"x509up": proxy.read_text()}},
                                      host_aliases=(GSI_HOST,))
    try:
        wait_for_workers(handle, N_WORKERS)
        job = handle.run_job("grid", [*analysis_overrides(DATA_MOUNT, "/work/outputs/grid"), *files_over,
                                      "credentials.require=x509"], timeout=600)
        assert job.exit_code == 0, f"the job failed:\n{job.logs[-4000:]}"
        worker_env = _worker_grid_env(facility.ip(handle.scheduler), handle.client_security())
        names = [handle.scheduler, *handle.workers, job.container]
        inspected = {n: pm.inspect("container", n) or {} for n in names}
        # As the running scheduler and workers see it (the job container has exited).
        stat = {n: pm.podman("exec", n, "stat", "-L", "-c", "%a %u", PROXY_PATH).stdout.strip()
                for n in (handle.scheduler, *handle.workers)}
        logs = {n: facility.logs(n, 100000) for n in names}
        worker_ips = [facility.ip(w) for w in handle.workers]
        events = sum(EVENTS[n] * len(cfg.datasets[n].files) for n in DATASETS)
        yield GridRun(handle, job, local.histograms_path.parent, events, proxy, facility_gsi, urls, worker_env,
                      inspected, stat, logs, worker_ips, facility_gsi.log_text())
    finally:
        facility.down()


def _mounts(data: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {m["Destination"]: m for m in data.get("Mounts") or []}


def _env(data: dict[str, Any]) -> dict[str, str]:
    return dict(e.split("=", 1) for e in data.get("Config", {}).get("Env") or [])


def test_job_reads_the_gsi_servers_files_and_matches_the_local_run(grid_run: GridRun) -> None:
    report = grid_run.job.report()
    assert report["failed_chunks"] == 0
    assert report["events_read"] == grid_run.events
    assert len(report["per_worker"]) == N_WORKERS
    _assert_same_histograms(_hists(grid_run.local_dir), _hists(grid_run.job.output_dir))
    # The server completes a login only after GSI authentication: both worker containers,
    # from their own addresses on the facility network, logged in.
    logins = [line for line in grid_run.server_log.splitlines() if " login as " in line]
    for ip in grid_run.worker_ips:
        assert [line for line in logins if f"@[::ffff:{ip}]" in line], (ip, grid_run.server_log[-3000:])


def test_workers_read_with_the_proxy_from_the_secret_volume(grid_run: GridRun, grid_pki: GridPKI) -> None:
    handle = grid_run.handle
    assert len(grid_run.worker_env) == N_WORKERS
    for env in grid_run.worker_env.values():
        assert env == {"X509_USER_PROXY": PROXY_PATH, "X509_CERT_DIR": CERT_DIR}
    for name in (handle.scheduler, *handle.workers, grid_run.job.container):
        data = grid_run.inspected[name]
        assert _env(data)["X509_USER_PROXY"] == PROXY_PATH, name
        mounts = _mounts(data)
        proxy_mount = mounts[os.path.dirname(PROXY_PATH)]
        assert proxy_mount["RW"] is False, name
        assert (Path(proxy_mount["Source"]) / "x509up").read_text() == grid_run.proxy.read_text()
        secret_file = Path(proxy_mount["Source"]) / "x509up"
        assert (secret_file.stat().st_mode & 0o777, secret_file.stat().st_uid) == (0o400, 1000), name
        assert mounts[CERT_DIR]["RW"] is False, name
        assert mounts[CERT_DIR]["Source"] == str(grid_pki.ca.certdir), name
    for name in (handle.scheduler, *handle.workers):
        assert grid_run.stat[name] == "400 1000", name


def test_no_proxy_or_key_content_in_manifests_env_or_logs(grid_run: GridRun, grid_pki: GridPKI) -> None:
    markers = secret_markers(grid_run.proxy, grid_pki.user.key)
    assert len(markers) > 20
    manifests = yaml.safe_dump_all(grid_run.handle.rendered)
    assert [o for o in grid_run.handle.rendered if o["kind"] == "Secret"
            and o["metadata"]["name"] == PROXY_SECRET] == []
    texts = {"manifests": manifests, **{f"logs {n}": t for n, t in grid_run.logs.items()},
             **{f"env/args {n}": repr(d.get("Config", {}).get("Env")) + repr(d.get("Config", {}).get("Cmd"))
                + repr(d.get("Args")) for n, d in grid_run.inspected.items()}}
    outputs = [p for p in grid_run.job.output_dir.rglob("*") if p.is_file()]
    assert outputs
    texts |= {str(p): p.read_bytes().decode(errors="replace") for p in outputs}
    for marker in markers:
        for where, text in texts.items():
            assert marker not in text, where

"""Whole jobs (``run_job``) with skims on S3 and XRootD: identical histograms to local skims,
no secret anywhere, clear authentication errors, and resuming after the server went away.

The demo is cut to a few thousand events and two variation patterns so that each job takes
seconds. Every simulated process has at most two chunks, so its histogram sums are exact
whatever order the chunks finish in (``a + b == b + a``); data chunks hold integer counts, so
their sums are exact too. That is what lets the comparisons be bit for bit.

Interrupting a server: moto keeps its state in memory, so the S3 server is frozen with
SIGSTOP (it accepts connections but never answers, like an unreachable host) and thawed with
SIGCONT; the XRootD server is really stopped and started again on the same port and export
directory.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import pickle
import signal
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import fsspec
import numpy as np
import pytest
from distributed import Client
from fixtures.demo import two_worker_cluster
from fixtures.graphs import GraphRecorder, recorded
from fixtures.s3 import S3Server, start_s3_server
from fixtures.xrootd import XRootDServer, start_xrootd_server, xrootd_missing_reason
from rich.console import Console

from intccms.config import compose_config
from intccms.execute.job import run_job
from intccms.execute.results import JobResult
from intccms.storage import (
    Manifest,
    StorageAuthError,
    StorageOptions,
    StorageUnreachableError,
    exists_complete,
    open_source,
)
from intccms.storage.credentials import (
    CREDENTIAL_VARS,
    ENV_S3_ACCESS_KEY_ID,
    ENV_S3_ENDPOINT,
    ENV_S3_SECRET_ACCESS_KEY,
    XROOTD_CLIENT_TOKEN_VAR,
)

pytestmark = pytest.mark.e2e
BUCKET = "intccms-e2e"
# One era; the signal and tt in one and two files of one chunk each, data in three chunks.
DATASETS = {"ZPrimeToTT_M2000_W200_2017": (1, 800), "TTToSemiLeptonic_2017": (2, 800),
            "SingleMuon_2017": (1, 2400)}
N_PARTS = 1 + 2 + 3
TIMEOUT_S, RETRIES = 2.0, 1  # the storage group of every job here (XrdCl fixes them per process)


def overrides(data: Path, out: Path, *extra: str, workflow: str = "skim_and_analysis"
              ) -> list[str]:
    """A small demo job with a subset of the variations (skim then analyse by default)."""
    over = [f"paths.generated_data={data}", f"output_dir={out}",
            f"dataset_selection=[{','.join(DATASETS)}]", f"workflow={workflow}",
            "workflow.run_statistics=false", "workflow.run_plots=false",
            "workflow.chunksize=1000", "workflow.variations=[jesFlavorQCD_*,pileup_*]",
            f"storage.timeout_s={TIMEOUT_S}", f"storage.retries={RETRIES}",
            "datasets.SingleMuon_2017.generate.params.processes=[{kind:ttbar_semilep}]"]
    for name, (n_files, events) in DATASETS.items():
        over += [f"datasets.{name}.generate.n_files={n_files}",
                 f"datasets.{name}.generate.events_per_file={events}"]
    return over + list(extra)


@dataclass
class Env:
    """Module state: generated inputs, a Dask client and the local-skim reference run."""

    data: Path
    client: Client
    reference: JobResult


def job(data: Path, client: Client, out: Path, *extra: str, workflow: str = "skim_and_analysis",
        console: Console | None = None) -> JobResult:
    """Run the real job on the module's cluster."""
    cfg = compose_config("demo", overrides(data, out, *extra, workflow=workflow))
    return run_job(cfg, client=client, console=console or Console(quiet=True))


@contextlib.contextmanager
def credential_env(**values: str) -> Iterator[None]:
    """Set the INTCCMS_* variables of the driver (the job ships them to workers)."""
    with pytest.MonkeyPatch.context() as mp:
        for var in (*CREDENTIAL_VARS, XROOTD_CLIENT_TOKEN_VAR):
            mp.delenv(var, raising=False)
        for var, value in values.items():
            mp.setenv(var, value)
        yield


def s3_env(server: S3Server, secret: str | None = None) -> contextlib.AbstractContextManager[None]:
    return credential_env(**{ENV_S3_ACCESS_KEY_ID: server.key,
                             ENV_S3_SECRET_ACCESS_KEY: secret or server.secret,
                             ENV_S3_ENDPOINT: server.endpoint})


def s3_fs(server: S3Server) -> fsspec.AbstractFileSystem:
    return fsspec.filesystem("s3", key=server.key, secret=server.secret, skip_instance_cache=True,
                             client_kwargs={"endpoint_url": server.endpoint})


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory, dask_client: Client) -> Env:
    """The module's inputs (generated apart from the session's demo data: other sizes), the
    session's cluster and the reference run with skims on local disk."""
    data = tmp_path_factory.mktemp("storage-generated")
    with credential_env():
        reference = job(data, dask_client, tmp_path_factory.mktemp("local"))
    return Env(data, dask_client, reference)


@pytest.fixture(scope="module")
def s3(env: Env, s3_server: S3Server) -> S3Server:
    """The shared S3 test server, with the bucket, after the reference run."""
    s3_fs(s3_server).mkdir(BUCKET)
    return s3_server


@pytest.fixture(scope="module")
def xrootd(env: Env, xrootd_server: XRootDServer) -> XRootDServer:
    """The shared XRootD test server, after the reference run."""
    return xrootd_server


def histograms(result: JobResult) -> dict[str, Any]:
    assert result.histograms_path is not None
    with open(result.histograms_path, "rb") as handle:
        return pickle.load(handle)["histograms"]


def assert_identical(result: JobResult, reference: JobResult) -> None:
    """Every histogram equal bin for bin (values and variances, flow bins included)."""
    got, want = histograms(result), histograms(reference)
    assert sorted(got) == sorted(want)
    for channel, per_obs in want.items():
        assert sorted(got[channel]) == sorted(per_obs)
        for obs, h in per_obs.items():
            g = got[channel][obs]
            assert list(g.axes["process"]) == list(h.axes["process"])
            assert list(g.axes["variation"]) == list(h.axes["variation"])
            np.testing.assert_array_equal(g.view(flow=True).value, h.view(flow=True).value)
            np.testing.assert_array_equal(g.view(flow=True).variance, h.view(flow=True).variance)
    assert sum(h.sum().value for h in want["CMS_WORKSHOP"].values()) > 0


def skim_records(result: JobResult) -> int:
    return len([r for r in result.records if r.stage == "skim"])


def manifest_parts(skim_dir: str, options: StorageOptions) -> list[dict[str, Any]]:
    return [p for name in DATASETS
            for p in Manifest.load(f"{skim_dir}/{name}/manifest.json", options).parts]


def test_reference_run_has_every_part(env: Env) -> None:
    assert skim_records(env.reference) == N_PARTS
    skims = env.reference.output_dir / "skims"
    assert len(list(skims.rglob("part_*.parquet"))) == N_PARTS


# -- S3 ---------------------------------------------------------------------------------------
def output_files(root: Path) -> dict[str, bytes]:
    return {str(p): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def _worker_metrics_port(dask_worker: Any) -> int:
    return int(dask_worker.http_server.port)


def exported_bytes_read(client: Client, stage: str) -> float:
    """intccms_bytes_read_total of ``stage`` summed over every worker's /metrics (all runs)."""
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    total = 0.0
    for port in client.run(_worker_metrics_port).values():
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:  # noqa: S310
            text = resp.read().decode()
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == "intccms_bytes_read_total" and sample.labels.get("stage") == stage:
                    total += sample.value
    return total


def check_bytes_read_against_server(result: JobResult, served: list[dict[str, Any]], exported: float) -> None:
    """The job's bytes read from S3 (report.json, and the workers' exported counter) against the
    body bytes the moto server really sent for the skim parts (its own count, ranged GETs).

    Only the analysis of the skims reads from S3 here: the inputs and the metadata are local.
    """
    import json

    report = json.loads((result.output_dir / "report" / "report.json").read_text())
    analysis = [r for r in result.records if r.stage == "analysis"]
    assert analysis and all(r.file.startswith(f"s3://{BUCKET}/") for r in analysis)
    reported = report["per_stage"]["analysis"]["bytes_read"]
    assert reported == sum(r.bytes_read for r in analysis)
    gets = [r for r in served if r["method"] == "GET" and "/part_" in r["path"] and r["status"] < 300]
    sent = sum(r["bytes"] for r in gets)
    assert sent > 0 and any(r["bytes"] > 0 for r in gets)
    # What the job reports is what it exports: the same per-chunk numbers, exactly.
    assert exported == reported
    # Tolerance: none needed, both count response bodies of the same ranged GETs; allow 1 % for
    # future clients (e.g. a read-ahead the reader does not attribute to a chunk).
    assert abs(reported - sent) <= 0.01 * sent, (reported, sent)


@pytest.mark.s3
def test_s3_skims_give_identical_histograms_and_no_secret_anywhere(
        env: Env, s3: S3Server, tmp_path: Path, caplog: pytest.LogCaptureFixture,
        capfd: pytest.CaptureFixture[str]) -> None:
    secret, key = s3.secret.encode(), s3.key.encode()
    skim_dir = f"s3://{BUCKET}/run1"
    console_text = io.StringIO()
    caplog.set_level(logging.DEBUG)
    # Fresh worker processes: their loggers are as a new worker's (DEBUG records of the S3
    # client are forwarded), whatever earlier tests did to the session's workers.
    with s3_env(s3), two_worker_cluster() as client:
        client.register_plugin(GraphRecorder())
        client.forward_logging(level=logging.DEBUG)  # worker log records reach caplog
        res = job(env.data, client, tmp_path / "s3", "storage=s3", f"workflow.skim_dir={skim_dir}",
                  console=Console(file=console_text, force_terminal=False, width=200))
        exported_before = exported_bytes_read(client, "analysis")
        s3.reset_records()
        again = job(env.data, client, tmp_path / "s3-skimmed", "storage=s3",
                    f"workflow.skim_dir={skim_dir}", workflow="skimmed_input")
        served = s3.records()
        exported = exported_bytes_read(client, "analysis") - exported_before
        client.unforward_logging()
        blobs = client.run_on_scheduler(recorded)
    assert skim_records(res) == N_PARTS
    check_bytes_read_against_server(again, served, exported)
    assert_identical(res, env.reference)
    assert_identical(again, env.reference)
    fs = s3_fs(s3)
    objects = fs.find(f"{BUCKET}/run1")
    assert len([o for o in objects if "/part_" in o]) == N_PARTS
    assert not [o for o in objects if ".intccms-tmp-" in o]
    # Where the secret must not be: task graph, outputs, manifests, logs, console.
    assert len(blobs) >= N_PARTS
    # The tasks carry the storage options, their credentials as variable names only.
    assert any(b"StorageOptions" in b and ENV_S3_SECRET_ACCESS_KEY.encode() in b for b in blobs)
    for blob in blobs:
        assert secret not in blob and key not in blob
    files = {**output_files(res.output_dir), **output_files(again.output_dir)}
    assert any(name.endswith("config.yaml") for name in files)
    assert any(name.endswith("metadata.json") for name in files)
    files.update({o: fs.cat_file(o) for o in objects})
    for name, content in files.items():
        assert secret not in content, name
        assert key not in content, name
    out, err = capfd.readouterr()
    everything = caplog.text + out + err + console_text.getvalue()
    assert "skim" in console_text.getvalue()
    assert "botocore" in caplog.text  # debug records of the S3 client (and of workers) came in
    assert s3.secret not in everything
    # The access key id is an identifier, not a secret: botocore's own DEBUG records show it
    # in the standard Authorization header. At the levels a job logs at it never appears.
    shown = [r.getMessage() for r in caplog.records if r.levelno >= logging.INFO]
    assert not [m for m in shown if s3.key in m]
    assert s3.key not in out + err + console_text.getvalue()


@pytest.mark.s3
def test_s3_wrong_credentials_fail_fast_naming_the_endpoint(env: Env, s3: S3Server,
                                                            tmp_path: Path) -> None:
    wrong = "WRONG-e2e-secret-0123456789abcdef"
    start = time.monotonic()
    with s3_env(s3, secret=wrong), pytest.raises(StorageAuthError) as info:
        job(env.data, env.client, tmp_path, "storage=s3", f"workflow.skim_dir=s3://{BUCKET}/auth")
    assert time.monotonic() - start < 15
    assert s3.endpoint in str(info.value)
    assert "INTCCMS_S3_SECRET_ACCESS_KEY" in str(info.value)
    text = "".join(traceback.format_exception(info.value))
    assert wrong not in text and s3.secret not in text


@pytest.mark.s3
def test_s3_wrong_credentials_on_workers_fail_fast(env: Env, s3: S3Server, tmp_path: Path) -> None:
    """The driver's key is right but the workers' is not: the first write fails, not retried."""
    wrong = "WRONG-worker-secret-0123456789"
    from intccms.storage import CredentialsPlugin
    from intccms.storage.credentials import Credentials, Secret

    bad = Credentials(Secret(ENV_S3_ACCESS_KEY_ID, s3.key), Secret(ENV_S3_SECRET_ACCESS_KEY, wrong))
    register = env.client.register_plugin
    with s3_env(s3), pytest.MonkeyPatch.context() as mp:
        # The job registers the driver's credentials; hand the workers the wrong ones instead.
        mp.setattr(env.client, "register_plugin",
                   lambda plugin, *a, **k: register(CredentialsPlugin(bad), *a, **k)
                   if isinstance(plugin, CredentialsPlugin) else register(plugin, *a, **k))
        start = time.monotonic()
        with pytest.raises(Exception) as info:  # noqa: PT011 - checked below
            job(env.data, env.client, tmp_path, "storage=s3", f"workflow.skim_dir=s3://{BUCKET}/wauth")
        elapsed = time.monotonic() - start
    env.client.register_plugin(CredentialsPlugin(Credentials()))  # forget the wrong values
    chain = list(_chain(info.value))
    assert any(isinstance(e, StorageAuthError) for e in chain), chain
    assert s3.endpoint in str(info.value)
    text = "".join(traceback.format_exception(info.value))
    assert wrong not in text and s3.secret not in text
    assert elapsed < 20


def _chain(exc: BaseException | None) -> Iterator[BaseException]:
    while exc is not None:
        yield exc
        exc = exc.__cause__ or exc.__context__


def stop_after_saves(n: int, stop: Callable[[], None]) -> contextlib.AbstractContextManager[Any]:
    """Call ``stop`` right after the job has saved its ``n``-th manifest (some parts are in)."""
    mp = pytest.MonkeyPatch()
    original = Manifest.save
    count = {"saves": 0}

    def save(self: Manifest) -> None:
        original(self)
        count["saves"] += 1
        if count["saves"] == n:
            stop()

    mp.setattr(Manifest, "save", save)

    @contextlib.contextmanager
    def ctx() -> Iterator[Any]:
        try:
            yield count
        finally:
            mp.undo()

    return ctx()


def check_resume(env: Env, tmp_path: Path, skim_dir: str, options: StorageOptions,
                 interrupt: Callable[[], None], resume: Callable[[], None], *extra: str) -> None:
    """Interrupt a skim job after two manifest saves; check the error, the parts, the rerun."""
    bound = 4 * (RETRIES + 1) * TIMEOUT_S + 20
    start = time.monotonic()
    with stop_after_saves(2, interrupt), pytest.raises(Exception) as info:  # noqa: PT011
        job(env.data, env.client, tmp_path / "first", *extra, f"workflow.skim_dir={skim_dir}",
            "workflow.retries=0")
    elapsed = time.monotonic() - start
    chain = list(_chain(info.value))
    assert any(isinstance(e, StorageUnreachableError) for e in chain), chain
    assert "unreachable" in str(info.value)
    assert elapsed < bound, f"took {elapsed:.1f}s, more than {bound:.1f}s"
    resume()
    committed = manifest_parts(skim_dir, options)
    assert 2 <= len(committed) < N_PARTS
    for part in committed:
        assert exists_complete(part["url"], options)
        with open_source(part["url"], options=options) as src:
            assert src.num_entries == part["entries"]
    rerun = job(env.data, env.client, tmp_path / "second", *extra, f"workflow.skim_dir={skim_dir}")
    assert skim_records(rerun) == N_PARTS - len(committed)
    # Read back in this process right after the rerun saved them (no stale cached reads).
    assert len(manifest_parts(skim_dir, options)) == N_PARTS
    assert_identical(rerun, env.reference)


@pytest.mark.s3
def test_s3_frozen_server_fails_in_bounded_time_and_rerun_writes_only_missing_parts(
        env: Env, tmp_path: Path) -> None:
    server = start_s3_server()
    try:
        s3_fs(server).mkdir(BUCKET)
        options = StorageOptions(s3_endpoint=server.endpoint, timeout_s=TIMEOUT_S,
                                 retries=RETRIES)
        with s3_env(server):
            check_resume(env, tmp_path, f"s3://{BUCKET}/resume", options,
                         lambda: os.kill(server.process.pid, signal.SIGSTOP),
                         lambda: os.kill(server.process.pid, signal.SIGCONT), "storage=s3")
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(server.process.pid, signal.SIGCONT)
        server.stop()


# -- XRootD -----------------------------------------------------------------------------------
QUERY_NOISE = 16 * 1024
"""Each statistics query is a link of its own, whose response (about 1-2 kB) the server accounts
when it closes: increments this small are the polling itself, never a worker's reads."""


def xrootd_bytes_out_after(server: XRootDServer, before: int, timeout: float = 30.0) -> int:
    """The server's bytes-out statistic once the closed links have been accounted: it has grown
    by more than the queries' own bytes and then stayed so for 2 s (each worker's links close on
    their own time)."""
    deadline = time.monotonic() + timeout
    value, since = server.link_bytes_out(), time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.25)
        now = server.link_bytes_out()
        if now - value > QUERY_NOISE:
            value, since = now, time.monotonic()
        elif value - before > QUERY_NOISE and time.monotonic() - since >= 2.0:
            return value
    msg = f"the XRootD server's bytes out never settled within {timeout:.0f} s"
    raise AssertionError(msg)


def check_xrootd_bytes_read(result: JobResult, sent: int, exported: float, *, links: int) -> None:
    """The job's bytes read over XRootD (report.json and the workers' exported counter) against
    what the XRootD server says it sent (its own link statistics)."""
    import json

    report = json.loads((result.output_dir / "report" / "report.json").read_text())
    analysis = [r for r in result.records if r.stage == "analysis"]
    assert analysis and all(r.file.startswith("root://") for r in analysis)
    reported = report["per_stage"]["analysis"]["bytes_read"]
    assert reported == sum(r.bytes_read for r in analysis) > 0
    assert exported == reported  # the report and the exported counter: the same numbers
    # The server's figure adds protocol framing: per link a handshake, login, open/stat/close
    # replies and 8-16 B per response, plus the statistics replies of the queries themselves
    # (measured: about 2 KiB over 1.4 MB read by 2 workers). The driver's own link (manifests)
    # may also close inside the window. Allow 8 KiB per link (the workers', the driver's and
    # one per statistics query) + 1 % for the per-response headers.
    assert reported <= sent <= reported * 1.01 + 8 * 1024 * (links + 3), (reported, sent)


@pytest.mark.xrootd
def test_xrootd_skims_give_identical_histograms(env: Env, xrootd: XRootDServer,
                                                tmp_path: Path) -> None:
    skim_dir = xrootd.url("run1")
    # xrootd accounts a link's bytes when the link closes, and workers keep theirs open: each
    # run gets its own worker processes, gone when it ends, so the read-only run's links alone
    # close between `before` and `sent`. (Fresh clusters, not Client.restart: a restarted
    # nanny's new worker once failed to come back on a loaded machine.)
    with credential_env():
        with two_worker_cluster() as client:
            res = job(env.data, client, tmp_path / "x", f"workflow.skim_dir={skim_dir}")
        before = xrootd.link_bytes_out()
        with two_worker_cluster() as client:
            again = job(env.data, client, tmp_path / "x-skimmed", f"workflow.skim_dir={skim_dir}",
                        workflow="skimmed_input")
            exported = exported_bytes_read(client, "analysis")  # fresh worker processes: this run only
            n_workers = len(client.nthreads())
        sent = xrootd_bytes_out_after(xrootd, before) - before
    check_xrootd_bytes_read(again, sent, exported, links=n_workers)
    assert skim_records(res) == N_PARTS
    assert_identical(res, env.reference)
    assert_identical(again, env.reference)
    written = sorted(p.name for p in (xrootd.export / "run1").rglob("*") if p.is_file())
    assert len([n for n in written if n.startswith("part_")]) == N_PARTS
    assert not [n for n in written if ".intccms-tmp-" in n]


def restart_after_error_window(server: XRootDServer) -> None:
    """Restart the server, then let the workers' XRootD clients leave their error window.

    After a fatal connection error XrdCl fails every request to that server at once for
    ``StreamErrorWindow`` seconds (the job sets it to ``storage.timeout_s``); a worker whose
    last attempt at the stopped server ended just before the rerun would fail it unreached.
    """
    server.restart()
    time.sleep(TIMEOUT_S + 1.0)


@pytest.mark.xrootd
def test_xrootd_stopped_server_fails_in_bounded_time_and_rerun_writes_only_missing_parts(
        env: Env, tmp_path: Path) -> None:
    reason = xrootd_missing_reason()
    if reason:
        pytest.skip(reason)
    server = start_xrootd_server()
    try:
        options = StorageOptions(timeout_s=TIMEOUT_S, retries=RETRIES)
        with credential_env():
            check_resume(env, tmp_path, server.url("resume"), options, server.halt,
                         lambda: restart_after_error_window(server))
    finally:
        server.stop()


# -- storage outages are not "bad input files" --------------------------------------------------
@pytest.fixture
def silent_store_options() -> Iterator[StorageOptions]:
    """Storage options for an S3 endpoint that accepts connections and never answers."""
    import socket

    from intccms.storage import Credentials, Secret

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        endpoint = f"http://127.0.0.1:{sock.getsockname()[1]}"
        yield StorageOptions(timeout_s=1, retries=0, credentials=Credentials(
            Secret(ENV_S3_ACCESS_KEY_ID, "k"), Secret(ENV_S3_SECRET_ACCESS_KEY, "s"), endpoint))


@pytest.mark.s3
def test_unreachable_input_is_an_error_not_a_skippable_bad_file(silent_store_options: StorageOptions) -> None:
    """With skip_bad_files a bad file is dropped; an unreachable store must stop the job."""
    from intccms.execute.tasks import skim_task
    from intccms.physics.functors import Functor
    from intccms.plan.workitems import WorkItem

    item = WorkItem("DY", "s3://bkt/in/part_0.parquet", 0, 0, 0, 10)
    keep_all = Functor("numpy.ones_like", ("run",))
    with pytest.raises(StorageUnreachableError, match=r"part_0\.parquet"):
        skim_task(item, "/nowhere/out.parquet", "parquet", ("*",), frozenset(), keep_all,
                  {"run": ("run",)}, {}, silent_store_options, None)


@pytest.mark.s3
def test_unreachable_input_at_the_metadata_step_is_an_error(silent_store_options: StorageOptions) -> None:
    """Metadata reports a bad file per file, but an unreachable store stops the job there too."""
    from intccms.plan.metadata import file_metadata

    with pytest.raises(StorageUnreachableError, match=r"nano_0\.root"):
        file_metadata("s3://bkt/in/nano_0.root", False, silent_store_options)

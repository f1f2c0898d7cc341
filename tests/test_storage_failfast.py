"""Rejected credentials and unreachable storage stop a stage at their first occurrence: Dask's
``workflow.retries`` do not repeat them (storage's own bounded retries still apply)."""

from __future__ import annotations

import time
import traceback
from pathlib import Path

import pytest
from fixtures.credentials import s3_env
from fixtures.demo import small_overrides
from fixtures.s3 import S3Server
from rich.console import Console

from intccms.config import compose_config
from intccms.core.records import ChunkRecord
from intccms.execute.job import run_job
from intccms.plan.workitems import WorkItem
from intccms.runner.stage import run_stage
from intccms.storage import StorageAuthError, StorageUnreachableError
from intccms.storage.credentials import (
    ENV_S3_ACCESS_KEY_ID,
    ENV_S3_SECRET_ACCESS_KEY,
)

DEFAULT_RETRIES = int(compose_config("demo", []).workflow.retries)


def _items(n: int) -> list[WorkItem]:
    return [WorkItem("ds", f"s3://b/f{i}.root", i, 0, 0, 10) for i in range(n)]


def _counting_task(calls: Path, error: type[BaseException] | None):
    """A task that appends one line per attempt to ``calls`` (shared by the worker processes)."""

    def task(item: WorkItem) -> tuple[None, ChunkRecord]:
        with open(calls, "a") as handle:
            handle.write(f"{item.file}\n")
        if error is not None:
            raise error(f"storage endpoint http://127.0.0.1:9 rejected {item.file}")
        return None, ChunkRecord(dataset=item.dataset, stage="t", file=item.file, entry_start=0,
                                 entry_stop=10)

    return task


def _attempts(calls: Path) -> list[str]:
    return calls.read_text().splitlines() if calls.exists() else []


@pytest.mark.parametrize("error", [StorageAuthError, StorageUnreachableError])
def test_storage_errors_are_not_retried_by_dask(dask_client, tmp_path: Path,
                                                error: type[BaseException]) -> None:
    assert DEFAULT_RETRIES >= 1
    calls = tmp_path / "calls"
    with pytest.raises(error) as info:
        run_stage(dask_client, "skim", _items(1), _counting_task(calls, error), lambda item: (),
                  lambda item, payload: None, retries=DEFAULT_RETRIES, skip_bad_files=True,
                  console=Console(quiet=True))
    assert _attempts(calls) == ["s3://b/f0.root"]  # once, not 1 + retries
    assert "http://127.0.0.1:9" in str(info.value) and "s3://b/f0.root" in str(info.value)
    assert "not retried" in str(info.value)


def test_other_task_errors_are_still_retried(dask_client, tmp_path: Path) -> None:
    calls = tmp_path / "calls"
    with pytest.raises(RuntimeError, match=f"failed after {DEFAULT_RETRIES} retries"):
        run_stage(dask_client, "skim", _items(1), _counting_task(calls, ZeroDivisionError),
                  lambda item: (), lambda item, payload: None, retries=DEFAULT_RETRIES,
                  skip_bad_files=True, console=Console(quiet=True))
    assert len(_attempts(calls)) == DEFAULT_RETRIES + 1


def test_successful_tasks_pass_through(dask_client, tmp_path: Path) -> None:
    calls = tmp_path / "calls"
    seen: list[str] = []
    outcome = run_stage(dask_client, "skim", _items(3), _counting_task(calls, None), lambda item: (),
                        lambda item, payload: seen.append(item.file), retries=DEFAULT_RETRIES,
                        skip_bad_files=False, console=Console(quiet=True))
    assert sorted(seen) == sorted(r.file for r in outcome.records) == [i.file for i in _items(3)]


@pytest.mark.e2e
@pytest.mark.s3
def test_wrong_worker_credentials_fail_once_per_chunk_with_default_retries(
        dask_client, demo_data: Path, s3_server: S3Server, tmp_path: Path) -> None:
    """The driver's key is right, the workers' secret is wrong: every upload is rejected; with
    the default ``workflow.retries`` no chunk's upload is tried more than once."""
    import fsspec

    from intccms.execute.prepare import ensure_inputs
    from intccms.plan.run import with_generated_files
    from intccms.storage import CredentialsPlugin
    from intccms.storage.credentials import Credentials, Secret

    bucket = "intccms-failfast"
    fsspec.filesystem("s3", key=s3_server.key, secret=s3_server.secret, skip_instance_cache=True,
                      client_kwargs={"endpoint_url": s3_server.endpoint}).mkdir(bucket)
    wrong = "WRONG-failfast-secret-0123456789"
    bad = Credentials(Secret(ENV_S3_ACCESS_KEY_ID, s3_server.key), Secret(ENV_S3_SECRET_ACCESS_KEY, wrong))
    register = dask_client.register_plugin
    cfg = compose_config("demo", small_overrides(
        demo_data, tmp_path / "out", ["TTToSemiLeptonic_2017"], "workflow=skim",
        f"workflow.skim_dir=s3://{bucket}/skims", "storage=s3", "storage.timeout_s=5", "storage.retries=1"))
    assert int(cfg.workflow.retries) == DEFAULT_RETRIES
    with s3_env(s3_server) as mp:
        mp.setattr(dask_client, "register_plugin",
                   lambda plugin, *a, **k: register(CredentialsPlugin(bad), *a, **k)
                   if isinstance(plugin, CredentialsPlugin) else register(plugin, *a, **k))
        cfg = with_generated_files(cfg)  # generate the inputs first: the time to fail is measured
        ensure_inputs(cfg, console=Console(quiet=True))
        s3_server.reset_records()
        start = time.monotonic()
        try:
            with pytest.raises(StorageAuthError) as info:
                run_job(cfg, client=dask_client, console=Console(quiet=True))
            elapsed = time.monotonic() - start
        finally:
            register(CredentialsPlugin(Credentials()))  # forget the wrong values
    assert s3_server.endpoint in str(info.value) and "not retried" in str(info.value)
    assert wrong not in "".join(traceback.format_exception(info.value))
    rejected: dict[str, int] = {}
    for r in s3_server.records():
        if r["status"] == 403 and r["method"] == "PUT":
            rejected[r["path"]] = rejected.get(r["path"], 0) + 1
    assert rejected, s3_server.records()
    assert max(rejected.values()) == 1, rejected  # with Dask retries each would be 1 + retries
    assert elapsed < 40, elapsed


@pytest.mark.e2e
@pytest.mark.s3
def test_a_missing_bucket_stops_a_skim_at_once_and_is_named(
        dask_client, demo_data: Path, s3_server: S3Server, tmp_path: Path) -> None:
    """No bucket, no skim: each chunk's upload is tried once, and the error names the bucket
    instead of sending the user to check the path of an object."""
    from intccms.execute.prepare import ensure_inputs
    from intccms.plan.run import with_generated_files
    from intccms.storage import BucketNotFoundError

    bucket = "intccms-no-such-bucket"
    cfg = compose_config("demo", small_overrides(
        demo_data, tmp_path / "out", ["TTToSemiLeptonic_2017"], "workflow=skim",
        f"workflow.skim_dir=s3://{bucket}/skims", "storage=s3", "storage.timeout_s=5"))
    assert int(cfg.workflow.retries) == DEFAULT_RETRIES >= 1
    with s3_env(s3_server):
        cfg = with_generated_files(cfg)
        ensure_inputs(cfg, console=Console(quiet=True))
        s3_server.reset_records()
        with pytest.raises(BucketNotFoundError) as info:
            run_job(cfg, client=dask_client, console=Console(quiet=True))
    message = str(info.value)
    assert f"bucket '{bucket}' does not exist on {s3_server.endpoint}" in message, message
    assert "check the path" not in message and "not retried" in message
    puts: dict[str, int] = {}
    for r in s3_server.records():
        if r["method"] == "PUT" and r["path"].startswith(f"/{bucket}/"):
            puts[r["path"]] = puts.get(r["path"], 0) + 1
    assert puts and max(puts.values()) == 1, puts  # with Dask retries each would be 1 + retries

"""A job whose ``output_dir`` is on the moto S3 server: histograms, report, provenance and the
metadata cache are published there, and a rerun reads the cache back from S3."""

from __future__ import annotations

import contextlib
import pickle
import shutil
from collections.abc import Iterator
from pathlib import Path

import fsspec
import numpy as np
import pytest
import uproot
from fixtures.demo import small_overrides
from fixtures.s3 import S3Server
from rich.console import Console

from intccms.config import compose_config
from intccms.execute.job import JobResult, run_job
from intccms.storage import StorageOptions
from intccms.storage.credentials import (
    CREDENTIAL_VARS,
    ENV_S3_ACCESS_KEY_ID,
    ENV_S3_ENDPOINT,
    ENV_S3_SECRET_ACCESS_KEY,
)
from intccms.storage.outputs import STAGING_ENV, OutputLocation

pytestmark = [pytest.mark.e2e, pytest.mark.s3]
BUCKET = "intccms-outputs"
DATASETS = ["TTToSemiLeptonic_2017", "SingleMuon_2017"]


@contextlib.contextmanager
def s3_env(server: S3Server) -> Iterator[None]:
    """The driver's INTCCMS_* variables for the server (the job ships them to the workers)."""
    with pytest.MonkeyPatch.context() as mp:
        for var in CREDENTIAL_VARS:
            mp.delenv(var, raising=False)
        mp.setenv(ENV_S3_ACCESS_KEY_ID, server.key)
        mp.setenv(ENV_S3_SECRET_ACCESS_KEY, server.secret)
        mp.setenv(ENV_S3_ENDPOINT, server.endpoint)
        yield


def s3_fs(server: S3Server) -> fsspec.AbstractFileSystem:
    return fsspec.filesystem("s3", key=server.key, secret=server.secret, skip_instance_cache=True,
                             client_kwargs={"endpoint_url": server.endpoint})


@pytest.fixture(scope="module")
def s3(s3_server: S3Server) -> S3Server:
    s3_fs(s3_server).mkdir(BUCKET)
    return s3_server


def _job(client, data: Path, out: str) -> JobResult:
    cfg = compose_config("demo", small_overrides(data, out, DATASETS, "workflow.run_plots=false",
                                                 "workflow.variations=[pileup_*]"))
    return run_job(cfg, client=client, console=Console(quiet=True))


def test_output_dir_on_s3_publishes_outputs_and_rerun_reuses_metadata_cache(
        dask_client, demo_data: Path, s3: S3Server, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # a local "s3:" folder would appear here
    staging = tmp_path / "staging"
    monkeypatch.setenv(STAGING_ENV, str(staging))
    url = f"s3://{BUCKET}/run"
    fs = s3_fs(s3)
    with s3_env(s3):
        first = _job(dask_client, demo_data, url)
    assert first.output_url == url and str(first.output_dir).startswith(str(staging))
    assert not (tmp_path / "s3:").exists()
    prefix = f"{BUCKET}/run"
    stored = set(fs.find(prefix))
    for name in ("histograms/histograms.pkl", "histograms/histograms.root", "report/report.json",
                 "metadata.json", "provenance/config.yaml"):
        assert f"{prefix}/{name}" in stored, (name, sorted(stored))
    assert not [k for k in stored if ".intccms-tmp-" in k]
    # What is on S3 is what the job wrote, byte for byte.
    for local in first.output_dir.rglob("*"):
        if local.is_file():
            key = f"{prefix}/{local.relative_to(first.output_dir).as_posix()}"
            assert fs.cat_file(key) == local.read_bytes(), key
    hists = pickle.loads(fs.cat_file(f"{prefix}/histograms/histograms.pkl"))["histograms"]
    h = hists["CMS_WORKSHOP"]["mtt"]
    nominal = h[{"process": "TTToSemiLeptonic", "variation": "nominal"}].values(flow=True)
    assert nominal.sum() > 0
    with fs.open(f"{prefix}/histograms/histograms.root", "rb") as handle:
        root = uproot.open(handle)
        np.testing.assert_allclose(root["CMS_WORKSHOP__mtt__TTToSemiLeptonic"].values(flow=True), nominal)
    n_files = sum(1 for r in first.records if r.stage == "metadata")
    assert n_files >= len(DATASETS)

    # Rerun from another machine's point of view: no local staging left.
    shutil.rmtree(staging)
    with s3_env(s3):
        second = _job(dask_client, demo_data, url)
    assert [r for r in second.records if r.stage == "metadata"] == []  # counts came from S3
    again = pickle.loads(fs.cat_file(f"{prefix}/histograms/histograms.pkl"))["histograms"]
    np.testing.assert_array_equal(
        again["CMS_WORKSHOP"]["mtt"][{"process": "TTToSemiLeptonic", "variation": "nominal"}].values(flow=True),
        nominal)


def test_local_output_dir_is_written_in_place(tmp_path: Path) -> None:
    out = tmp_path / "out"
    loc = OutputLocation(str(out), StorageOptions())
    assert loc.local == out and out.is_dir() and not loc.remote
    (out / "metadata.json").write_text("{}")
    assert loc.publish() == [] and loc.restore("metadata.json")


def test_publish_is_atomic_and_skips_unchanged_files(s3: S3Server, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(STAGING_ENV, str(tmp_path))
    with s3_env(s3):
        loc = OutputLocation(f"s3://{BUCKET}/unit", StorageOptions(timeout_s=5, retries=0))
        (loc.local / "report").mkdir()
        (loc.local / "report" / "report.json").write_text('{"a": 1}')
        (loc.local / ".x.intccms-tmp-abc").write_text("partial")
        assert loc.publish() == [f"s3://{BUCKET}/unit/report/report.json"]
        assert loc.publish() == []  # unchanged: not uploaded again
        (loc.local / "metadata.json").write_text('{"cache": 1}')
        assert loc.publish(loc.local / "metadata.json") == [f"s3://{BUCKET}/unit/metadata.json"]
        again = OutputLocation(f"s3://{BUCKET}/unit", StorageOptions(timeout_s=5, retries=0))
    assert (again.local / "metadata.json").read_text() == '{"cache": 1}'
    assert not (again.local / "report").exists()  # only the cache is read back

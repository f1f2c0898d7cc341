"""A job whose ``output_dir`` is on the moto S3 server: histograms, report, provenance and the
metadata cache are published there, and a rerun reads the cache back from S3. The local staging
folder is private to the run and removed at its end; links another user planted are not followed."""

from __future__ import annotations

import hashlib
import logging
import os
import pickle
import stat
import tempfile
from pathlib import Path

import fsspec
import numpy as np
import pytest
import uproot
from fixtures.credentials import s3_env
from fixtures.demo import small_overrides
from fixtures.s3 import S3Server
from rich.console import Console

from intccms.config import compose_config
from intccms.execute.job import run_job
from intccms.execute.results import JobResult
from intccms.storage import StorageOptions
from intccms.storage.outputs import STAGING_ENV, STAGING_PREFIX, OutputLocation

pytestmark = [pytest.mark.e2e, pytest.mark.s3]
BUCKET = "intccms-outputs"
DATASETS = ["TTToSemiLeptonic_2017", "SingleMuon_2017"]




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
    assert first.output_url == url and first.remote and first.output_dir.parent == staging
    assert not first.output_dir.exists() and list(staging.iterdir()) == []  # staging removed
    assert not (tmp_path / "s3:").exists()
    prefix = f"{BUCKET}/run"
    stored = set(fs.find(prefix))
    for name in ("histograms/histograms.pkl", "histograms/histograms.root", "report/report.json",
                 "metadata.json", "provenance/config.yaml"):
        assert f"{prefix}/{name}" in stored, (name, sorted(stored))
    assert not [k for k in stored if ".intccms-tmp-" in k]
    hists = pickle.loads(fs.cat_file(f"{prefix}/histograms/histograms.pkl"))["histograms"]
    h = hists["CMS_WORKSHOP"]["mtt"]
    nominal = h[{"process": "TTToSemiLeptonic", "variation": "nominal"}].values(flow=True)
    assert nominal.sum() > 0
    with fs.open(f"{prefix}/histograms/histograms.root", "rb") as handle:
        root = uproot.open(handle)
        np.testing.assert_allclose(root["CMS_WORKSHOP__mtt__TTToSemiLeptonic"].values(flow=True), nominal)
    n_files = sum(1 for r in first.records if r.stage == "metadata")
    assert n_files >= len(DATASETS)

    # Rerun: no local staging is left, so it starts from the store.
    with s3_env(s3):
        second = _job(dask_client, demo_data, url)
    assert [r for r in second.records if r.stage == "metadata"] == []  # counts came from S3
    again = pickle.loads(fs.cat_file(f"{prefix}/histograms/histograms.pkl"))["histograms"]
    np.testing.assert_array_equal(
        again["CMS_WORKSHOP"]["mtt"][{"process": "TTToSemiLeptonic", "variation": "nominal"}].values(flow=True),
        nominal)


def old_staging_path(root: Path, url: str) -> Path:
    """Where a remote output used to be staged: predictable by any local user."""
    return root / "intccms-outputs" / hashlib.sha256(url.encode()).hexdigest()[:16]


def test_planted_links_at_predictable_staging_paths_are_not_followed(
        dask_client, demo_data: Path, s3: S3Server, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Another local user links the old, predictable staging path to their own folder."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(STAGING_ENV, raising=False)
    shared_tmp = tmp_path / "tmp"  # stands for /tmp: the job's default staging parent
    shared_tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(shared_tmp))
    attacker = tmp_path / "attacker"
    attacker.mkdir()
    url = f"s3://{BUCKET}/planted"
    planted = old_staging_path(shared_tmp, url)
    planted.parent.mkdir()
    planted.symlink_to(attacker, target_is_directory=True)
    with s3_env(s3):
        result = _job(dask_client, demo_data, url)
    assert list(attacker.iterdir()) == []  # nothing was written through the links
    assert planted.is_symlink() and list(planted.parent.iterdir()) == [planted]
    assert result.output_dir.parent == shared_tmp and not result.output_dir.exists()
    assert [p.name for p in shared_tmp.iterdir()] == ["intccms-outputs"]  # staging removed
    stored = set(s3_fs(s3).find(f"{BUCKET}/planted"))
    for name in ("histograms/histograms.pkl", "report/report.json", "metadata.json",
                 "provenance/config.yaml"):
        assert f"{BUCKET}/planted/{name}" in stored, (name, sorted(stored))


def test_staging_folder_is_fresh_private_and_removed(s3: S3Server, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(STAGING_ENV, str(tmp_path))
    url = f"s3://{BUCKET}/private"
    options = StorageOptions(timeout_s=5, retries=0)
    with s3_env(s3), OutputLocation(url, options) as loc, OutputLocation(url, options) as other:
        st = loc.local.lstat()
        assert stat.S_ISDIR(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o700
        assert st.st_uid == os.getuid()
        assert loc.local.parent == tmp_path and loc.local.name.startswith(STAGING_PREFIX)
        assert other.local != loc.local  # each run its own folder, never a shared one
        (loc.local / "report").mkdir()
        (loc.local / "report" / "report.json").write_text("{}")
    assert list(tmp_path.iterdir()) == []
    with s3_env(s3), pytest.raises(KeyError), OutputLocation(url, options) as failed:
        raise KeyError("the run failed")
    assert not failed.local.exists()  # removed on failure too


def test_staging_removal_errors_are_not_hidden(s3: S3Server, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch,
                                               caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv(STAGING_ENV, str(tmp_path))
    options = StorageOptions(timeout_s=5, retries=0)

    def refuse(path: object, *args: object, **kwargs: object) -> None:
        raise PermissionError(13, "Permission denied", str(path))

    with s3_env(s3):
        loc = OutputLocation(f"s3://{BUCKET}/stuck", options)
    monkeypatch.setattr("intccms.storage.outputs.shutil.rmtree", refuse)
    with pytest.raises(PermissionError):
        loc.remove()
    with caplog.at_level(logging.WARNING, logger="intccms.storage.outputs"):
        loc.remove(best_effort=True)  # a failed run is unwinding: reported, not raised
    assert f"could not remove the staging folder {loc.local}" in caplog.text


def test_local_output_dir_is_written_in_place(tmp_path: Path) -> None:
    out = tmp_path / "out"
    loc = OutputLocation(str(out), StorageOptions())
    assert loc.local == out and out.is_dir() and not loc.remote
    (out / "metadata.json").write_text("{}")
    assert loc.publish() == [] and loc.restore("metadata.json")


def test_publish_is_atomic_and_skips_unchanged_files(s3: S3Server, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(STAGING_ENV, str(tmp_path))
    with s3_env(s3), OutputLocation(f"s3://{BUCKET}/unit", StorageOptions(timeout_s=5, retries=0)) as loc:
        (loc.local / "report").mkdir()
        (loc.local / "report" / "report.json").write_text('{"a": 1}')
        (loc.local / ".x.intccms-tmp-abc").write_text("partial")
        assert loc.publish() == [f"s3://{BUCKET}/unit/report/report.json"]
        assert loc.publish() == []  # unchanged: not uploaded again
        (loc.local / "metadata.json").write_text('{"cache": 1}')
        assert loc.publish(loc.local / "metadata.json") == [f"s3://{BUCKET}/unit/metadata.json"]
    with s3_env(s3), OutputLocation(f"s3://{BUCKET}/unit", StorageOptions(timeout_s=5, retries=0)) as again:
        assert (again.local / "metadata.json").read_text() == '{"cache": 1}'
        assert not (again.local / "report").exists()  # only the cache is read back

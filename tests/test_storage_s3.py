"""Storage on a real S3 endpoint (moto server with IAM auth): round trips, atomic commits,
byte counting checked against the bytes the server sent, auth and reachability errors."""

from __future__ import annotations

import pickle
import re
import socket
import time
import traceback
from collections.abc import Iterator

import awkward as ak
import fsspec
import pytest
from fixtures.s3 import S3Server, start_s3_server
from test_storage_local import FORMATS, assert_same, compressed_column_bytes, nano_columns

from intccms.storage import (
    Credentials,
    Manifest,
    Secret,
    StorageAuthError,
    StorageOptions,
    StorageUnreachableError,
    exists_complete,
    open_source,
    remove,
    write_part,
)
from intccms.storage.schemes import TEMP_MARKER, backend_for

pytestmark = pytest.mark.s3
BUCKET = "intccms-test"


def options_for(server: S3Server, key: str | None = None, secret: str | None = None,
                timeout_s: float = 10.0, retries: int = 1) -> StorageOptions:
    creds = Credentials(Secret("INTCCMS_S3_ACCESS_KEY_ID", key or server.key),
                        Secret("INTCCMS_S3_SECRET_ACCESS_KEY", secret or server.secret),
                        server.endpoint)
    return StorageOptions(timeout_s=timeout_s, retries=retries, credentials=creds)


@pytest.fixture(scope="module")
def s3(s3_server: S3Server) -> Iterator[tuple[S3Server, StorageOptions]]:
    options = options_for(s3_server)
    fs = fsspec.filesystem("s3", **options.fsspec_kwargs("s3"))
    fs.mkdir(BUCKET)
    yield s3_server, options


def keys(options: StorageOptions, prefix: str) -> list[str]:
    fs = fsspec.filesystem("s3", **options.fsspec_kwargs("s3"))
    return fs.find(f"{BUCKET}/{prefix}", withdirs=False)


@pytest.mark.parametrize(("fmt", "ext"), FORMATS)
def test_round_trip(s3: tuple[S3Server, StorageOptions], fmt: str, ext: str) -> None:
    _, options = s3
    data = nano_columns(300)
    url = f"s3://{BUCKET}/rt/{fmt}/part.{ext}"
    part = write_part(data, url, fmt, options=options)
    assert part.entries == 300
    assert exists_complete(url, options)
    with open_source(url, options=options) as src:
        assert src.num_entries == 300
        assert sorted(src.columns()) == sorted(data)
        assert_same(src.read(list(data)), data)
        window = src.read(["Muon_pt"], 10, 20)["Muon_pt"]
        assert ak.to_list(window) == ak.to_list(data["Muon_pt"][10:20])
    assert keys(options, f"rt/{fmt}") == [f"{BUCKET}/rt/{fmt}/part.{ext}"]


def test_failed_write_leaves_no_object(s3: tuple[S3Server, StorageOptions]) -> None:
    _, options = s3
    url = f"s3://{BUCKET}/atomic/part.root"
    backend = backend_for(url, options)
    with pytest.raises(KeyboardInterrupt), backend.staging(url) as local:
        with open(local, "wb") as handle:
            handle.write(b"root" + b"\0" * 4096)
        raise KeyboardInterrupt
    with pytest.raises(ValueError, match="differ in length"):
        write_part({"a": [1, 2], "b": [1]}, url, "ttree", options=options)
    assert keys(options, "atomic") == []
    assert not exists_complete(url, options)


def test_temp_leftover_and_truncated_object_are_ignored(
        s3: tuple[S3Server, StorageOptions]) -> None:
    _, options = s3
    fs = fsspec.filesystem("s3", **options.fsspec_kwargs("s3"))
    good = f"s3://{BUCKET}/left/good.parquet"
    write_part(nano_columns(100), good, "parquet", options=options)
    blob = fs.cat_file(good[5:])
    leftover = f"{BUCKET}/left/.p1.parquet{TEMP_MARKER}abc"
    fs.pipe_file(leftover, blob)
    fs.pipe_file(f"{BUCKET}/left/cut.parquet", blob[: len(blob) // 2])
    assert exists_complete(good, options)
    assert not exists_complete("s3://" + leftover, options)
    assert not exists_complete(f"s3://{BUCKET}/left/cut.parquet", options)
    manifest = Manifest(f"s3://{BUCKET}/left/manifest.json", "DY", options=options)
    manifest.add({"url": good, "entries": 100})
    manifest.save()
    assert Manifest.load(manifest.url, options).urls() == [good]
    remove(good, options)
    assert not exists_complete(good, options)


@pytest.mark.parametrize(("fmt", "ext"), FORMATS)
def test_bytes_read_matches_server(s3: tuple[S3Server, StorageOptions], fmt: str, ext: str
                                   ) -> None:
    server, options = s3
    url = f"s3://{BUCKET}/bytes/part.{ext}"
    data = nano_columns(100_000, seed=3)
    size = write_part(data, url, fmt, options=options).bytes
    fs = fsspec.filesystem("s3", **options.fsspec_kwargs("s3"))
    with fs.open(url[5:], "rb") as handle:
        compressed = compressed_column_bytes(handle, "MET_pt", parquet=ext == "parquet")
    server.reset_records()
    with open_source(url, options=options) as src:
        src.read(["MET_pt"])
        counted = src.bytes_read
    sent = server.bytes_sent(f"{BUCKET}/bytes/part.{ext}")
    # Tolerance: none needed, both count response bodies; allow 1 % for future clients.
    assert abs(counted - sent) <= 0.01 * sent
    assert compressed < counted < size / 3


def test_wrong_credentials_raise_auth_error(s3: tuple[S3Server, StorageOptions]) -> None:
    server, options = s3
    url = f"s3://{BUCKET}/auth/part.parquet"
    write_part(nano_columns(10), url, "parquet", options=options)
    wrong_secret = "WRONG-secret-value-0123456789"
    for bad in (options_for(server, secret=wrong_secret),
                options_for(server, key="AKIAUNKNOWN0000", secret=wrong_secret)):
        start = time.monotonic()
        with pytest.raises(StorageAuthError) as info:
            open_source(url, options=bad)
        assert time.monotonic() - start < 5, "auth failures must not be retried"
        text = "".join(traceback.format_exception(info.value))
        assert server.endpoint in str(info.value)
        assert wrong_secret not in text
        assert server.secret not in text
        assert wrong_secret.encode() not in pickle.dumps(bad)
    with pytest.raises(StorageAuthError, match=re.escape(server.endpoint)):
        write_part(nano_columns(10), url, "parquet", options=options_for(server, secret="x"))


def test_stopped_server_is_unreachable_within_bound() -> None:
    server = start_s3_server()
    options = options_for(server, timeout_s=2, retries=1)
    fs = fsspec.filesystem("s3", **options.fsspec_kwargs("s3"))
    fs.mkdir(BUCKET)
    url = f"s3://{BUCKET}/gone/part.parquet"
    write_part(nano_columns(10), url, "parquet", options=options)
    server.stop()
    start = time.monotonic()
    with pytest.raises(StorageUnreachableError) as info:
        open_source(url, options=options)
    assert time.monotonic() - start < (options.retries + 1) * options.timeout_s + 3
    assert url in str(info.value)


def test_silent_server_times_out_within_bound() -> None:
    # A socket that accepts connections (kernel backlog) but never answers.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        endpoint = f"http://127.0.0.1:{sock.getsockname()[1]}"
        creds = Credentials(Secret("K", "k"), Secret("S", "s"), endpoint)
        options = StorageOptions(timeout_s=1, retries=1, credentials=creds)
        start = time.monotonic()
        with pytest.raises(StorageUnreachableError, match=r"s3://b/k\.root"):
            open_source("s3://b/k.root", options=options)
        # attempts x timeout, plus botocore's jittered backoff (< 2**retries s), plus slack
        bound = (options.retries + 1) * options.timeout_s + 2**options.retries + 2
        assert time.monotonic() - start < bound


def read_on_worker(url: str, options: StorageOptions) -> list[float]:
    """Task body: runs in a worker process where the Secret resolves from its environment."""
    with open_source(url, options=options) as src:
        return src.read(["MET_pt"])["MET_pt"].tolist()


@pytest.mark.slow
def test_credentials_reach_dask_workers_only_through_the_plugin(
        s3: tuple[S3Server, StorageOptions]) -> None:
    distributed = pytest.importorskip("distributed")
    from intccms.storage import CredentialsPlugin
    from intccms.storage.credentials import MissingCredentialError

    server, options = s3
    url = f"s3://{BUCKET}/dask/part.parquet"
    data = nano_columns(50)
    write_part(data, url, "parquet", options=options)
    assert options.credentials is not None
    assert server.secret.encode() not in pickle.dumps(options)
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=True,
                                  dashboard_address="127.0.0.1:0") as cluster, \
            distributed.Client(cluster) as client:
        future = client.submit(read_on_worker, url, options, pure=False)
        with pytest.raises(MissingCredentialError, match="INTCCMS_S3_ACCESS_KEY_ID"):
            future.result(timeout=60)
        client.register_plugin(CredentialsPlugin(options.credentials))
        values = client.submit(read_on_worker, url, options, pure=False).result(timeout=60)
    assert values == pytest.approx(data["MET_pt"].tolist())


def test_dataset_glob_on_s3_uses_the_storage_options(s3: tuple[S3Server, StorageOptions],
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from intccms.plan.datasets import resolve_dataset
    from intccms.storage.credentials import CREDENTIAL_VARS

    server, options = s3
    for var in (*CREDENTIAL_VARS, "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(var, raising=False)  # only the options know the endpoint and keys
    for name in ("nano_0.root", "nano_1.root", "nano_2.parquet"):
        write_part(nano_columns(5), f"s3://{BUCKET}/glob/ds/{name}", "ttree" if name.endswith("root")
                   else "parquet", options=options)
    write_part(nano_columns(5), f"s3://{BUCKET}/glob/other/nano_9.root", "ttree", options=options)
    fs = fsspec.filesystem("s3", **options.fsspec_kwargs("s3"))
    fs.pipe(f"{BUCKET}/glob/ds/.nano_3.root{TEMP_MARKER}abc", b"partial")
    spec = {"files": [f"s3://{BUCKET}/glob/ds/*.root"], "era": "2017", "xsec": 1.0}
    ds = resolve_dataset("ds", spec, options)
    assert ds.files == (f"s3://{BUCKET}/glob/ds/nano_0.root", f"s3://{BUCKET}/glob/ds/nano_1.root")
    with open_source(ds.files[1], options=options) as src:
        assert src.num_entries == 5
    with pytest.raises(StorageAuthError, match=re.escape(server.endpoint)):
        resolve_dataset("ds", spec, options_for(server, secret="WRONG-glob-secret"))

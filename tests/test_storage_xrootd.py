"""Storage on a real XRootD server: round trips, atomic commits, byte counting checked
against the server's own link statistics, unreachable-server errors."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import awkward as ak
import pytest
from fixtures.xrootd import XRootDServer, start_xrootd_server, xrootd_missing_reason
from test_storage_local import FORMATS, assert_same, compressed_column_bytes, nano_columns

from intccms.storage import (
    Manifest,
    StorageOptions,
    StorageUnreachableError,
    exists_complete,
    open_source,
    remove,
    write_part,
)
from intccms.storage.schemes import TEMP_MARKER, backend_for

pytestmark = pytest.mark.xrootd
OPTIONS = StorageOptions(timeout_s=10, retries=1)
SRC = Path(__file__).resolve().parents[1] / "src"


@pytest.mark.parametrize(("fmt", "ext"), FORMATS)
def test_round_trip(xrootd_server: XRootDServer, fmt: str, ext: str) -> None:
    data = nano_columns(300)
    url = xrootd_server.url("rt", fmt, f"part.{ext}")
    part = write_part(data, url, fmt, options=OPTIONS)
    assert part.entries == 300
    assert exists_complete(url, OPTIONS)
    with open_source(url, options=OPTIONS) as src:
        assert sorted(src.columns()) == sorted(data)
        assert_same(src.read(list(data)), data)
        window = src.read(["Jet_eta"], 50, 60)["Jet_eta"]
        assert ak.to_list(window) == ak.to_list(data["Jet_eta"][50:60])
    # Only the committed file is on the server: the temporary upload was renamed.
    assert os.listdir(xrootd_server.export / "rt" / fmt) == [f"part.{ext}"]


def test_overwrite_and_remove(xrootd_server: XRootDServer) -> None:
    url = xrootd_server.url("ow", "p.parquet")
    write_part({"x": list(range(5))}, url, "parquet", options=OPTIONS)
    write_part({"x": list(range(8))}, url, "parquet", options=OPTIONS)
    with open_source(url, options=OPTIONS) as src:
        assert src.num_entries == 8
    remove(url, OPTIONS)
    assert not exists_complete(url, OPTIONS)


def test_interrupted_write_and_leftovers(xrootd_server: XRootDServer) -> None:
    url = xrootd_server.url("atomic", "part.root")
    backend = backend_for(url, OPTIONS)
    with pytest.raises(KeyboardInterrupt), backend.staging(url) as local:
        Path(local).write_bytes(b"root" + b"\0" * 4096)
        raise KeyboardInterrupt
    assert not exists_complete(url, OPTIONS)
    good = xrootd_server.url("atomic", "good.root")
    write_part(nano_columns(100), good, "ttree", options=OPTIONS)
    blob = (xrootd_server.export / "atomic" / "good.root").read_bytes()
    # What an interrupted upload leaves behind: a temp name and/or a cut file.
    leftover = xrootd_server.url("atomic", f".part.root{TEMP_MARKER}dead")
    with backend.filesystem(leftover).open(backend.path(leftover), "wb") as handle:
        handle.write(blob)
    with backend.filesystem(url).open(backend.path(url) + ".cut.root", "wb") as handle:
        handle.write(blob[: len(blob) // 2])
    assert not exists_complete(leftover, OPTIONS)
    assert not exists_complete(url + ".cut.root", OPTIONS)
    assert not exists_complete(url, OPTIONS)
    manifest = Manifest(xrootd_server.url("atomic", "manifest.json"), "DY", options=OPTIONS)
    manifest.add({"url": good, "entries": 100})
    manifest.save()
    assert Manifest.load(manifest.url, OPTIONS).urls() == [good]


def test_manifest_replaced_in_place_reads_back_fresh(xrootd_server: XRootDServer
                                                    ) -> None:
    url = xrootd_server.url("fresh", "manifest.json")
    manifest = Manifest(url, "DY", options=OPTIONS)
    manifest.add({"url": "a.parquet", "entries": 1})
    manifest.save()
    assert Manifest.load(url, OPTIONS).urls() == ["a.parquet"]
    manifest.add({"url": "b.parquet", "entries": 2})
    manifest.save()
    # A read handle kept open on the replaced file would still list only a.parquet.
    assert Manifest.load(url, OPTIONS).urls() == ["a.parquet", "b.parquet"]


READER = """
import json, sys
from intccms.storage import StorageOptions, open_source
with open_source(sys.argv[1], options=StorageOptions(timeout_s=10)) as src:
    src.read(["MET_pt"])
    print(json.dumps({"bytes_read": src.bytes_read}))
"""


def server_out_after(server: XRootDServer, before: int, timeout: float = 10.0) -> int:
    """Wait until the server has accounted the closed client link, return its ``out`` total."""
    deadline = time.monotonic() + timeout
    value = server.link_bytes_out()
    while value == before and time.monotonic() < deadline:
        time.sleep(0.2)
        value = server.link_bytes_out()
    # Settle: the client may have used more than one link.
    time.sleep(0.5)
    return server.link_bytes_out()


@pytest.mark.slow
@pytest.mark.parametrize(("fmt", "ext"), FORMATS)
def test_bytes_read_matches_server_statistics(xrootd_server: XRootDServer,
                                              fmt: str, ext: str) -> None:
    url = xrootd_server.url("bytes", f"part.{ext}")
    size = write_part(nano_columns(100_000, seed=5), url, fmt, options=OPTIONS).bytes
    before = xrootd_server.link_bytes_out()
    # xrootd accounts a link's bytes when it closes: read in a child process that exits.
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    out = subprocess.run([sys.executable, "-c", READER, url], capture_output=True, text=True,
                         timeout=120, check=True, env=env).stdout
    counted = json.loads(out.strip().splitlines()[-1])["bytes_read"]
    sent = server_out_after(xrootd_server, before) - before
    # The server's figure adds protocol framing (handshake, login, 8-16 B per response,
    # open/stat/close replies and one statistics reply): allow 16 KiB + 2 %.
    assert counted <= sent <= counted * 1.02 + 16 * 1024
    assert counted < size / 3
    local = xrootd_server.export / "bytes" / f"part.{ext}"
    assert compressed_column_bytes(str(local), "MET_pt") < counted


def test_stopped_server_is_unreachable_within_bound() -> None:
    reason = xrootd_missing_reason()
    if reason:
        pytest.skip(reason)
    server = start_xrootd_server()
    url = server.url("gone.parquet")
    # XrdCl fixes connection timeouts per server channel when first contacted: same options.
    options = StorageOptions(timeout_s=2, retries=1)
    write_part({"x": [1, 2, 3]}, url, "parquet", options=options)
    server.stop()
    start = time.monotonic()
    with pytest.raises(StorageUnreachableError) as info:
        open_source(url, options=options)
    assert time.monotonic() - start < (options.retries + 1) * options.timeout_s + 3
    assert url in str(info.value)


def test_dataset_glob_on_xrootd(xrootd_server: XRootDServer) -> None:
    from intccms.plan.datasets import resolve_dataset

    for name in ("nano_0.root", "nano_1.root"):
        write_part(nano_columns(5), xrootd_server.url("glob", "ds", name), "ttree", options=OPTIONS)
    write_part(nano_columns(5), xrootd_server.url("glob", "other", "nano_2.root"), "ttree", options=OPTIONS)
    (xrootd_server.export / "glob" / "ds" / f".nano_3.root{TEMP_MARKER}x").write_bytes(b"partial")
    ds = resolve_dataset("ds", {"files": [xrootd_server.url("glob", "ds", "*.root")], "era": "2017",
                                "xsec": 1.0}, OPTIONS)
    assert ds.files == (xrootd_server.url("glob", "ds", "nano_0.root"),
                        xrootd_server.url("glob", "ds", "nano_1.root"))
    with open_source(ds.files[0], options=OPTIONS) as src:
        assert src.num_entries == 5


AS_USER = """
import json, os, subprocess, sys, types
# The fixture module needs only the standard library (and pytest's decorator, stubbed here):
# the project's interpreter lives where an unprivileged user cannot read it.
sys.modules["pytest"] = types.SimpleNamespace(fixture=lambda **k: (lambda f: f))
sys.path.insert(0, sys.argv[1])
from fixtures.xrootd import start_xrootd_server, xrootd_missing_reason
reason = xrootd_missing_reason()
server = start_xrootd_server()
try:
    src = os.path.join(server.workdir, "probe-src")
    with open(src, "w") as handle:
        handle.write("written as " + str(os.geteuid()))
    copy = subprocess.run(["xrdcp", "-f", src, server.url("probe.txt")], capture_output=True,
                          text=True, timeout=60)
    print(json.dumps({"reason": reason, "rc": copy.returncode, "err": copy.stderr[-300:],
                      "content": (server.export / "probe.txt").read_text(),
                      "owner": (server.export / "probe.txt").stat().st_uid}))
finally:
    server.stop()
"""


@pytest.mark.skipif(os.geteuid() != 0 or not Path("/usr/bin/python3").exists()
                    or shutil.which("runuser") is None,
                    reason="needs root (to become an unprivileged user), runuser and /usr/bin/python3")
def test_server_fixture_runs_as_an_unprivileged_user() -> None:
    """Without root the fixture starts xrootd as the current user (no ``-R``) and it serves writes."""
    import pwd

    nobody = pwd.getpwnam("nobody").pw_uid
    done = subprocess.run(["runuser", "-u", "nobody", "--", "env", "HOME=/tmp", "/usr/bin/python3",
                           "-c", AS_USER, str(Path(__file__).resolve().parent)],
                          capture_output=True, text=True, timeout=120, cwd="/tmp", check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["reason"] is None  # not skipped for not being root
    assert result["rc"] == 0, result["err"]
    assert result["content"] == f"written as {nobody}" and result["owner"] == nobody

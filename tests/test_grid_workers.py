"""Grid credentials reach the workers as paths: local workers use the driver's files, deployed
workers keep the files their own deployment mounts, and a worker that cannot use the file in
effect stops the job at plugin setup with the worker and the file named."""

from __future__ import annotations

import os
import pickle
from collections.abc import Iterator
from pathlib import Path

import pytest
from fixtures.grid import GridPKI, TokenIssuer

from intccms.storage import Credentials, GridCredentialError, Secret
from intccms.storage.plugin import CredentialsPlugin, credentials_plugin

GRID_VARS = ("X509_USER_PROXY", "X509_CERT_DIR", "BEARER_TOKEN", "BEARER_TOKEN_FILE",
             "INTCCMS_XROOTD_TOKEN")


@pytest.fixture
def worker_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    """A worker process's environment: no grid variables; restored afterwards (the plugin
    writes os.environ directly)."""
    saved = dict(os.environ)
    for var in GRID_VARS:
        monkeypatch.delenv(var, raising=False)
    yield monkeypatch
    os.environ.clear()
    os.environ.update(saved)


class FakeWorker:
    address = "tcp://10.0.0.7:40000"


def grid_creds(pki: GridPKI, proxy: Path, token: Path | None = None) -> Credentials:
    return Credentials(x509_proxy=str(proxy), x509_cert_dir=str(pki.ca.certdir),
                       bearer_token_file=str(token) if token else None)


def test_local_workers_get_the_drivers_paths(grid_pki: GridPKI, token_issuer: TokenIssuer,
                                             tmp_path: Path, worker_env: pytest.MonkeyPatch) -> None:
    proxy = grid_pki.proxy("worker-local")
    token = token_issuer.token_file(tmp_path / "token", "storage.read:/")
    worker_env.setenv("BEARER_TOKEN", "stale-value-the-client-would-try-first")
    plugin = credentials_plugin(grid_creds(grid_pki, proxy, token), "local")
    assert plugin is not None
    blob = pickle.dumps(plugin)
    assert str(proxy).encode() in blob and str(token).encode() in blob
    for secret_line in (proxy.read_text().splitlines()[1], token.read_text().strip()):
        assert secret_line.encode() not in blob
    assert "paths=['BEARER_TOKEN_FILE', 'X509_CERT_DIR', 'X509_USER_PROXY']" in repr(plugin)
    pickle.loads(blob).setup(FakeWorker())
    assert os.environ["X509_USER_PROXY"] == str(proxy)
    assert os.environ["BEARER_TOKEN_FILE"] == str(token)
    assert "BEARER_TOKEN" not in os.environ  # it would shadow the chosen token file


def test_deployed_workers_keep_their_own_files(grid_pki: GridPKI, worker_env: pytest.MonkeyPatch) -> None:
    drivers, workers = grid_pki.proxy("worker-driver"), grid_pki.proxy("worker-own")
    plugin = credentials_plugin(grid_creds(grid_pki, drivers), "kubernetes")
    assert plugin is not None and "require_worker_env" in repr(plugin)
    worker_env.setenv("X509_USER_PROXY", str(workers))  # mounted from the chart's Secret
    pickle.loads(pickle.dumps(plugin)).setup(FakeWorker())
    assert os.environ["X509_USER_PROXY"] == str(workers)
    os.environ.pop("X509_USER_PROXY")
    pickle.loads(pickle.dumps(plugin)).setup(FakeWorker())  # a shared file system: the driver's
    assert os.environ["X509_USER_PROXY"] == str(drivers)


@pytest.mark.parametrize("case", ["missing", "expired", "token-mode"])
def test_worker_that_cannot_use_the_file_stops_the_job(grid_pki: GridPKI, token_issuer: TokenIssuer,
                                                       tmp_path: Path, worker_env: pytest.MonkeyPatch,
                                                       case: str) -> None:
    if case == "missing":
        creds = grid_creds(grid_pki, tmp_path / "not-mounted-here")
        expected = f"X509 proxy {tmp_path / 'not-mounted-here'} (X509_USER_PROXY) does not exist"
    elif case == "expired":
        creds = grid_creds(grid_pki, grid_pki.proxy("worker-expired", hours=1, past_s=7200))
        expected = "expired"
    else:
        token = token_issuer.token_file(tmp_path / "token", "storage.read:/")
        token.chmod(0o644)
        creds = Credentials(x509_cert_dir=str(grid_pki.ca.certdir), bearer_token_file=str(token))
        expected = "chmod 600"
    plugin = CredentialsPlugin(creds, require_worker_env=True)
    with pytest.raises(GridCredentialError, match=r"grid credentials on worker tcp://10\.0\.0\.7:40000") as info:
        plugin.setup(FakeWorker())
    assert expected in str(info.value)
    assert "grid.proxySecret" in str(info.value)


def test_value_token_still_travels_as_before(worker_env: pytest.MonkeyPatch) -> None:
    creds = Credentials(xrootd_token=Secret("BEARER_TOKEN", "tok-VALUE-x"))
    remote = CredentialsPlugin(creds, require_worker_env=True)
    assert b"tok-VALUE-x" not in pickle.dumps(remote)
    assert "BEARER_TOKEN" in repr(remote)  # the worker must have its own BEARER_TOKEN
    CredentialsPlugin(creds).setup(None)
    assert os.environ["BEARER_TOKEN"] == "tok-VALUE-x"


def test_group_readable_token_is_handed_over_as_a_private_copy(
        grid_pki: GridPKI, token_issuer: TokenIssuer, tmp_path: Path, worker_env: pytest.MonkeyPatch) -> None:
    """A Secret volume under fsGroup is 0440 whatever its defaultMode; the XRootD client refuses
    group-readable token files, so the worker uses a private 0600 copy that follows renewals."""
    from intccms.storage.grid import refresh_token_copy

    mounted = token_issuer.token_file(tmp_path / "token", "storage.read:/")
    mounted.chmod(0o440)
    worker_env.setenv("BEARER_TOKEN_FILE", str(mounted))  # the chart's mount
    plugin = CredentialsPlugin(Credentials(x509_cert_dir=str(grid_pki.ca.certdir),
                                           bearer_token_file=str(mounted)), require_worker_env=True)
    plugin.setup(FakeWorker())
    copy = Path(os.environ["BEARER_TOKEN_FILE"])
    assert copy != mounted and (copy.stat().st_mode & 0o777) == 0o600
    assert copy.read_text() == mounted.read_text()
    mounted.chmod(0o640)
    mounted.write_text(token_issuer.token("storage.read:/ storage.modify:/") + "\n")  # renewed
    refresh_token_copy()
    assert copy.read_text() == mounted.read_text()

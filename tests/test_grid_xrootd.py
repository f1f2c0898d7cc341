"""The storage layer against XRootD servers that demand grid credentials (real servers on
loopback, tests/fixtures/grid.py): a valid proxy or token reads and writes; every refusal is a
``GridCredentialError`` that says which credential and why, within seconds (never retried).

Each scenario runs in its own process: the XRootD client keeps its authenticated connections
and its security plugins' state for the life of a process."""

from __future__ import annotations

from pathlib import Path

import pytest
from fixtures.grid import GridPKI, GridServer, TokenIssuer, storage_scenario

pytestmark = pytest.mark.xrootd
SRC = Path(__file__).resolve().parents[1] / "src"
BOUND_S = 10.0  # a refused login is final: no retry, no connection window


def refused(result: dict[str, object]) -> str:
    assert result["ok"] is False, result
    assert "GridCredentialError" in result["type"], result  # type: ignore[operator]
    assert "StorageAuthError" in result["types"], result  # type: ignore[operator]
    assert float(result["seconds"]) < BOUND_S, result  # type: ignore[arg-type]
    return str(result["message"])


# -- GSI -----------------------------------------------------------------------------------------
def test_gsi_valid_proxy_writes_and_reads(gsi_server: GridServer, grid_pki: GridPKI) -> None:
    proxy = grid_pki.proxy("xrd-good")
    url = gsi_server.url("gsi", "part.parquet")
    env = {"X509_USER_PROXY": str(proxy), "X509_CERT_DIR": str(grid_pki.ca.certdir)}
    assert storage_scenario(url, "write", SRC, **env)["entries"] == 7
    assert storage_scenario(url, "read", SRC, **env)["entries"] == 7
    assert (gsi_server.export / "gsi" / "part.parquet").is_file()


@pytest.mark.parametrize(("case", "expected"), [
    ("expired", r"expired \S+.* ago \(at "),
    ("untrusted", "was issued by CA /DC=org/DC=elsewhere/CN=Untrusted Test CA, which is not in the CA directory"),
    ("none", "no grid credential here: no X509 proxy"),
    ("trusted-only-here", "look valid here"),
])
def test_gsi_refusals_say_which(gsi_server: GridServer, grid_pki: GridPKI, tmp_path: Path,
                                case: str, expected: str) -> None:
    import re

    certdir = grid_pki.ca.certdir
    if case == "expired":
        proxy = grid_pki.proxy("xrd-expired", hours=1, past_s=7200)
    elif case == "none":
        proxy = tmp_path / "x509up_absent"
    else:
        proxy = grid_pki.proxy(f"xrd-{case}", rogue=True)
        # The client trusts the rogue CA too: only the server knows it is not trusted there.
        certdir = grid_pki.both_certdir if case == "trusted-only-here" else certdir
    env = {"X509_CERT_DIR": str(certdir)}
    if case != "none":
        env["X509_USER_PROXY"] = str(proxy)
    message = refused(storage_scenario(gsi_server.url("gsi", "refused.parquet"), "write", SRC, **env))
    assert f"XRootD server root://{gsi_server.host} rejected the login" in message
    assert re.search(expected, message), message
    if case == "trusted-only-here":
        assert "may not trust this CA" in message and "CN=Rogue User" in message
    if case != "none":
        assert "-----BEGIN" not in message and proxy.read_text().splitlines()[1] not in message


# -- tokens --------------------------------------------------------------------------------------
def token_env(path: Path, pki: GridPKI) -> dict[str, str]:
    return {"BEARER_TOKEN_FILE": str(path), "X509_CERT_DIR": str(pki.ca.certdir)}


def test_token_with_the_right_scopes_writes_and_reads(token_server: GridServer, token_issuer: TokenIssuer,
                                                      grid_pki: GridPKI, tmp_path: Path) -> None:
    token = token_issuer.token_file(tmp_path / "rw", "storage.read:/ storage.modify:/")
    url = token_server.url("tok", "part.parquet")
    assert storage_scenario(url, "write", SRC, **token_env(token, grid_pki))["entries"] == 7
    assert storage_scenario(url, "read", SRC, **token_env(token, grid_pki))["entries"] == 7
    # A Kubernetes Secret volume under fsGroup is 0440; the client alone would refuse it.
    token.chmod(0o440)
    assert storage_scenario(url, "read", SRC, **token_env(token, grid_pki))["entries"] == 7
    if token_server.keys_from == "https":  # the server fetched the issuer's keys itself
        assert {"/.well-known/openid-configuration", "/jwks"} <= set(token_issuer.requests)


def test_token_refusals_say_which(token_server: GridServer, token_issuer: TokenIssuer,
                                  grid_pki: GridPKI, tmp_path: Path) -> None:
    rw = token_issuer.token_file(tmp_path / "rw", "storage.read:/ storage.modify:/")
    existing = token_server.url("tok", "existing.parquet")
    assert storage_scenario(existing, "write", SRC, **token_env(rw, grid_pki))["ok"] is True
    read_only = token_issuer.token_file(tmp_path / "ro", "storage.read:/")
    assert storage_scenario(existing, "read", SRC, **token_env(read_only, grid_pki))["ok"] is True
    message = refused(storage_scenario(token_server.url("tok", "denied.parquet"), "write", SRC,
                                       **token_env(read_only, grid_pki)))
    assert "refused" in message and "has scope 'storage.read:/'" in message
    assert "storage.create or storage.modify" in message
    expired = token_issuer.token_file(tmp_path / "expired", "storage.read:/", lifetime_s=-600)
    message = refused(storage_scenario(existing, "read", SRC, **token_env(expired, grid_pki)))
    assert "rejected the login" in message and f"bearer token {expired} (BEARER_TOKEN_FILE) expired" in message
    message = refused(storage_scenario(existing, "read", SRC, X509_CERT_DIR=str(grid_pki.ca.certdir)))
    assert "no grid credential here" in message and "no bearer token (looked at" in message
    for path in (rw, read_only, expired):
        assert path.read_text().strip() not in message

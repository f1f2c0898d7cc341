"""Grid credentials as configuration: where the proxy, the CA directory and the token are found
(the XRootD client's own order), the ``credentials`` group, and what travels (paths only)."""

from __future__ import annotations

import pickle
from collections.abc import Iterator
from pathlib import Path

import pytest

from intccms.config import ConfigError, compose_config
from intccms.storage import Credentials, Secret, load_credentials
from intccms.storage.grid import GridSettings, client_environ, locate

GRID_VARS = ("X509_USER_PROXY", "X509_CERT_DIR", "BEARER_TOKEN", "BEARER_TOKEN_FILE",
             "INTCCMS_XROOTD_TOKEN", "XDG_RUNTIME_DIR", "INTCCMS_S3_ACCESS_KEY_ID",
             "INTCCMS_S3_SECRET_ACCESS_KEY", "INTCCMS_S3_ENDPOINT")
TOKEN_VALUE = "eyJhbGciOiJub25lIn0.eyJzdWIiOiJ0ZXN0In0.c2lnbmF0dXJl-never-shown"


@pytest.fixture
def no_grid_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    for var in GRID_VARS:
        monkeypatch.delenv(var, raising=False)
    yield monkeypatch


def test_proxy_and_ca_dir_discovery(no_grid_env: pytest.MonkeyPatch) -> None:
    found = locate(environ={}, uid=1234)
    assert (found.proxy.path, found.proxy.explicit) == ("/tmp/x509up_u1234", False)
    assert found.cert_dir.path == "/etc/grid-security/certificates"
    found = locate(environ={"X509_USER_PROXY": "/p/x509", "X509_CERT_DIR": "/ca"}, uid=1)
    assert (found.proxy.path, found.proxy.origin, found.proxy.explicit) == ("/p/x509", "X509_USER_PROXY", True)
    assert found.cert_dir.path == "/ca"
    configured = GridSettings(x509_proxy="/cfg/proxy", x509_cert_dir="/cfg/ca")
    found = locate(configured, environ={"X509_USER_PROXY": "/p/x509"}, uid=1)
    assert (found.proxy.path, found.proxy.origin) == ("/cfg/proxy", "credentials.x509_proxy")
    assert found.cert_dir.path == "/cfg/ca"


def test_token_discovery_follows_the_wlcg_order(tmp_path: Path) -> None:
    runtime = tmp_path / "run"
    runtime.mkdir()
    (runtime / "bt_u7").write_text("t")
    env = {"XDG_RUNTIME_DIR": str(runtime)}
    assert locate(environ=env, uid=7).token.path == str(runtime / "bt_u7")  # type: ignore[union-attr]
    env["BEARER_TOKEN_FILE"] = "/file/token"
    assert locate(environ=env, uid=7).token.path == "/file/token"  # type: ignore[union-attr]
    env["BEARER_TOKEN"] = TOKEN_VALUE
    token = locate(environ=env, uid=7).token
    assert token is not None and (token.path, token.env_var) == (None, "BEARER_TOKEN")
    env["INTCCMS_XROOTD_TOKEN"] = TOKEN_VALUE  # the project's own variable comes first
    assert locate(environ=env, uid=7).token.env_var == "INTCCMS_XROOTD_TOKEN"  # type: ignore[union-attr]
    configured = locate(GridSettings(bearer_token_file="/cfg/token"), environ=env, uid=7).token
    assert configured is not None and configured.origin == "credentials.bearer_token_file"
    none = locate(environ={}, uid=99999)
    assert none.token is None and "/tmp/bt_u99999" in none.token_candidates


def test_client_environ_carries_paths_and_unshadows_the_token_file() -> None:
    env, unset = client_environ(locate(GridSettings(bearer_token_file="/t", x509_proxy="/p"),
                                       environ={"BEARER_TOKEN": "x"}, uid=1))
    assert env == {"X509_USER_PROXY": "/p", "BEARER_TOKEN_FILE": "/t",
                   "X509_CERT_DIR": "/etc/grid-security/certificates"}
    assert unset == ("BEARER_TOKEN",)  # the client would try a BEARER_TOKEN value first
    # Nothing in use, nothing named: no grid variable at all (anonymous and S3 jobs unchanged).
    assert client_environ(locate(environ={}, uid=99999)) == ({}, ())


def test_credentials_carry_grid_paths_never_contents(tmp_path: Path, no_grid_env: pytest.MonkeyPatch) -> None:
    proxy = tmp_path / "proxy.pem"
    proxy.write_text("-----BEGIN CERTIFICATE-----\nPROXY-CONTENT\n")
    no_grid_env.setenv("X509_USER_PROXY", str(proxy))
    creds = load_credentials(tmp_path, GridSettings(x509_cert_dir=str(tmp_path)))
    assert creds.x509_proxy == str(proxy) and creds.x509_cert_dir == str(tmp_path)
    blob = pickle.dumps(creds)
    assert b"PROXY-CONTENT" not in blob and str(proxy).encode() in blob
    assert creds.environ() == {"X509_USER_PROXY": str(proxy), "X509_CERT_DIR": str(tmp_path)}


def test_xrootd_token_variable_keeps_working(tmp_path: Path, no_grid_env: pytest.MonkeyPatch) -> None:
    (tmp_path / ".env").write_text(f"INTCCMS_XROOTD_TOKEN={TOKEN_VALUE}\n")
    creds = load_credentials(tmp_path)
    assert creds.xrootd_token == Secret("INTCCMS_XROOTD_TOKEN")
    assert creds.environ()["BEARER_TOKEN"] == TOKEN_VALUE  # handed to the client as before
    assert TOKEN_VALUE not in repr(creds)
    assert TOKEN_VALUE.encode() not in pickle.dumps(creds)
    no_grid_env.setenv("BEARER_TOKEN", "other")
    assert load_credentials(tmp_path).xrootd_token == Secret("INTCCMS_XROOTD_TOKEN")
    assert Credentials().environ() == {}


def test_credentials_group_is_typed_and_checked() -> None:
    assert compose_config("demo").credentials.require == "none"
    assert compose_config("run2_skim").credentials.require == "any"  # CMS redirectors
    cfg = compose_config("demo", ["credentials.x509_proxy=/p", "credentials.min_lifetime_h=6"])
    settings = GridSettings.from_config(cfg.credentials)
    assert (settings.x509_proxy, settings.min_lifetime_s) == ("/p", 6 * 3600)
    with pytest.raises(ConfigError, match="did you mean 'x509_proxy'"):
        compose_config("demo", ["credentials.x509_prox=/p"])
    with pytest.raises(ConfigError, match=r"credentials\.require"):
        compose_config("demo", ["credentials.require=kerberos"])
    with pytest.raises(ConfigError, match=r"credentials\.bearer_token_file must be a path") as info:
        compose_config("demo", [f"credentials.bearer_token_file={TOKEN_VALUE}"])
    assert TOKEN_VALUE not in str(info.value)
    with pytest.raises(ConfigError, match="min_lifetime_h"):
        compose_config("demo", ["credentials.min_lifetime_h=-1"])
    with pytest.raises(ConfigError, match="token_min_lifetime_h"):
        compose_config("demo", ["credentials.token_min_lifetime_h=-1"])


def test_grid_settings_reject_unknown_requirement() -> None:
    with pytest.raises(ValueError, match=r"credentials\.require"):
        GridSettings(require="kerberos")

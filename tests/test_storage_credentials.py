"""Credentials: masked, pickled as variable names, resolved where used."""

from __future__ import annotations

import os
import pickle
from collections.abc import Iterator
from pathlib import Path

import pytest

from intccms.storage import Credentials, Secret, StorageOptions, load_credentials
from intccms.storage.credentials import (
    ENV_S3_ACCESS_KEY_ID,
    ENV_S3_SECRET_ACCESS_KEY,
    MissingCredentialError,
)
from intccms.storage.plugin import CredentialsPlugin

SECRET = "s3cr3t-VALUE-never-shown"
KEY = "AKIA-test-key-id"


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    """No credential variables; the whole environment is restored afterwards (the plugin
    writes to ``os.environ`` directly, which monkeypatch would not undo)."""
    saved = dict(os.environ)
    for var in (ENV_S3_ACCESS_KEY_ID, ENV_S3_SECRET_ACCESS_KEY, "INTCCMS_S3_ENDPOINT",
                "INTCCMS_XROOTD_TOKEN", "BEARER_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    yield monkeypatch
    os.environ.clear()
    os.environ.update(saved)


def creds() -> Credentials:
    return Credentials(Secret(ENV_S3_ACCESS_KEY_ID, KEY), Secret(ENV_S3_SECRET_ACCESS_KEY, SECRET),
                       "http://127.0.0.1:9")


def test_secret_is_masked_everywhere() -> None:
    options = StorageOptions(credentials=creds())
    for text in (repr(options), str(options), repr(creds()), f"{creds().s3_secret_access_key}"):
        assert SECRET not in text
        assert KEY not in text


def test_pickle_carries_names_not_values(clean_env: pytest.MonkeyPatch) -> None:
    blob = pickle.dumps(StorageOptions(credentials=creds()))
    assert SECRET.encode() not in blob
    assert KEY.encode() not in blob
    assert ENV_S3_SECRET_ACCESS_KEY.encode() in blob
    restored = pickle.loads(blob)
    with pytest.raises(MissingCredentialError, match=ENV_S3_ACCESS_KEY_ID):
        restored.fsspec_kwargs("s3")
    clean_env.setenv(ENV_S3_ACCESS_KEY_ID, "worker-key")
    clean_env.setenv(ENV_S3_SECRET_ACCESS_KEY, "worker-secret")
    kwargs = restored.fsspec_kwargs("s3")
    assert (kwargs["key"], kwargs["secret"]) == ("worker-key", "worker-secret")
    assert kwargs["client_kwargs"]["endpoint_url"] == "http://127.0.0.1:9"


def test_fsspec_kwargs_bound_timeouts_and_retries() -> None:
    kwargs = StorageOptions(timeout_s=3, retries=4, credentials=creds()).fsspec_kwargs("s3")
    assert kwargs["config_kwargs"]["connect_timeout"] == 3
    assert kwargs["config_kwargs"]["retries"]["total_max_attempts"] == 5
    assert StorageOptions(timeout_s=2.5).fsspec_kwargs("root") == {"timeout": 3}
    assert StorageOptions().fsspec_kwargs("file") == {}


def test_half_set_credentials_are_rejected(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv(ENV_S3_ACCESS_KEY_ID, KEY)
    with pytest.raises(MissingCredentialError, match="half set"):
        StorageOptions().fsspec_kwargs("s3")


def test_load_credentials_env_wins_over_dotenv(tmp_path: Path,
                                              clean_env: pytest.MonkeyPatch) -> None:
    (tmp_path / ".env").write_text(
        f"# comment\n{ENV_S3_ACCESS_KEY_ID}=file-key\n"
        f'{ENV_S3_SECRET_ACCESS_KEY}="{SECRET}"\nINTCCMS_S3_ENDPOINT=http://h:1\n')
    loaded = load_credentials(tmp_path)
    assert loaded.s3_secret_access_key is not None
    assert loaded.s3_secret_access_key.reveal() == SECRET
    assert loaded.s3_endpoint == "http://h:1"
    clean_env.setenv(ENV_S3_ACCESS_KEY_ID, "env-key")
    assert load_credentials(tmp_path).s3_access_key_id.reveal() == "env-key"  # type: ignore[union-attr]
    assert SECRET not in repr(loaded)


def test_load_credentials_without_dotenv(tmp_path: Path, clean_env: pytest.MonkeyPatch) -> None:
    loaded = load_credentials(tmp_path)
    assert loaded.s3_secret_access_key is None
    assert "key" not in StorageOptions(credentials=loaded).fsspec_kwargs("s3")


def test_example_env_lists_the_variables() -> None:
    text = (Path(__file__).resolve().parents[1] / ".env.example").read_text()
    for var in (ENV_S3_ACCESS_KEY_ID, ENV_S3_SECRET_ACCESS_KEY, "INTCCMS_S3_ENDPOINT"):
        assert f"{var}=" in text
    assert SECRET not in text


def test_plugin_sets_worker_environment(clean_env: pytest.MonkeyPatch) -> None:
    plugin = CredentialsPlugin(creds())
    assert SECRET not in repr(plugin)
    plugin.setup(worker=None)
    assert os.environ[ENV_S3_SECRET_ACCESS_KEY] == SECRET
    checker = CredentialsPlugin(require_worker_env=True)
    assert SECRET.encode() not in pickle.dumps(checker)
    checker.setup(worker=None)
    clean_env.delenv(ENV_S3_SECRET_ACCESS_KEY)
    with pytest.raises(MissingCredentialError, match="mount the storage Secret"):
        checker.setup(worker=None)


@pytest.mark.parametrize("kind", ["kubernetes", "address"])
def test_deployed_workers_get_names_not_values(clean_env: pytest.MonkeyPatch, kind: str) -> None:
    from intccms.config.schema import ClusterKind
    from intccms.storage.plugin import credentials_plugin

    plugin = credentials_plugin(creds(), ClusterKind(kind))
    blob = pickle.dumps(plugin)
    assert SECRET.encode() not in blob and KEY.encode() not in blob
    assert ENV_S3_SECRET_ACCESS_KEY.encode() in blob
    with pytest.raises(MissingCredentialError, match=ENV_S3_SECRET_ACCESS_KEY):
        pickle.loads(blob).setup(worker=None)  # a worker without the mounted Secret
    clean_env.setenv(ENV_S3_ACCESS_KEY_ID, "worker-key")
    clean_env.setenv(ENV_S3_SECRET_ACCESS_KEY, "worker-secret")
    pickle.loads(blob).setup(worker=None)
    assert os.environ[ENV_S3_SECRET_ACCESS_KEY] == "worker-secret"  # its own value, untouched


def test_local_workers_get_values_and_no_credentials_no_plugin(clean_env: pytest.MonkeyPatch) -> None:
    from intccms.storage.plugin import credentials_plugin

    assert credentials_plugin(None, "kubernetes") is None
    assert credentials_plugin(Credentials(), "local") is None
    pickle.loads(pickle.dumps(credentials_plugin(creds(), "local"))).setup(worker=None)
    assert os.environ[ENV_S3_SECRET_ACCESS_KEY] == SECRET


def test_worker_env_check_asks_only_for_the_drivers_variables(clean_env: pytest.MonkeyPatch) -> None:
    token_only = Credentials(xrootd_token=Secret("INTCCMS_XROOTD_TOKEN", "tok-VALUE"))
    plugin = CredentialsPlugin(token_only, require_worker_env=True)
    assert b"tok-VALUE" not in pickle.dumps(plugin)
    with pytest.raises(MissingCredentialError, match="INTCCMS_XROOTD_TOKEN"):
        plugin.setup(worker=None)
    clean_env.setenv("INTCCMS_XROOTD_TOKEN", "worker-token")
    plugin.setup(worker=None)  # no S3 variables needed for an XRootD-only job

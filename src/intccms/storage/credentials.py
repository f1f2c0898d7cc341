"""Credentials that never leave the process as plain text.

A :class:`Secret` remembers the *name* of the environment variable it came from. Its
``repr``/``str`` are masked and it pickles as that name only, so a Secret inside
:class:`~intccms.storage.options.StorageOptions` can travel in a Dask task graph, a config
dump or a log line without carrying the value: it resolves again from the environment of
the process that unpickles it (a deferred, worker-evaluated value). Workers therefore need
the variables set, either by the deployment (a mounted Kubernetes Secret exported as env
vars, the recommended route) or by :class:`CredentialsPlugin`.

Grid credentials (an X509 proxy, the CA directory, a bearer token in a file) are carried as
*paths* (:mod:`.grid` finds them): a proxy or token file is read by the XRootD client where it
is used, so a renewed file reaches every process that points at it and no content travels.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dotenv import dotenv_values

from intccms.storage.grid import (
    ENV_CERT_DIR,
    ENV_PROXY,
    ENV_TOKEN_FILE,
    GridLocations,
    GridSettings,
    client_environ,
    locate,
)

ENV_S3_ACCESS_KEY_ID = "INTCCMS_S3_ACCESS_KEY_ID"
ENV_S3_SECRET_ACCESS_KEY = "INTCCMS_S3_SECRET_ACCESS_KEY"
ENV_S3_ENDPOINT = "INTCCMS_S3_ENDPOINT"
ENV_XROOTD_TOKEN = "INTCCMS_XROOTD_TOKEN"
# The XRootD client reads a bearer token (WLCG/SciTokens) from this variable itself.
XROOTD_CLIENT_TOKEN_VAR = "BEARER_TOKEN"
CREDENTIAL_VARS = (ENV_S3_ACCESS_KEY_ID, ENV_S3_SECRET_ACCESS_KEY, ENV_S3_ENDPOINT,
                   ENV_XROOTD_TOKEN)


class MissingCredentialError(LookupError):
    """A credential variable is not set in this process (e.g. on a Dask worker)."""


class Secret:
    """A credential value that is masked when shown and pickled as its variable name.

    Args:
        env_var (str): Environment variable the value is read from (and re-read from after
            unpickling).
        value (str | None): The value known in this process; ``None`` reads ``env_var``
            lazily.
    """

    __slots__ = ("_value", "env_var")

    def __init__(self, env_var: str, value: str | None = None) -> None:
        self.env_var = env_var
        self._value = value

    def reveal(self) -> str:
        """Return the plain value; only call this where it is handed to a client library.

        Raises:
            MissingCredentialError: If neither a local value nor the variable is set.
        """
        if self._value is not None:
            return self._value
        value = os.environ.get(self.env_var)
        if value is None:
            msg = (f"credential variable {self.env_var} is not set in this process; set it in "
                   "the environment (workers: mounted Secret or CredentialsPlugin) or in .env")
            raise MissingCredentialError(msg)
        return value

    def is_set(self) -> bool:
        """Return whether a value is available in this process."""
        return self._value is not None or self.env_var in os.environ

    def __repr__(self) -> str:
        return f"Secret(env_var={self.env_var!r}, value='***')"

    __str__ = __repr__

    def __reduce__(self) -> tuple[Any, ...]:
        # Only the variable name crosses a pickle boundary; the value is resolved remotely.
        return (Secret, (self.env_var,))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other.env_var == self.env_var

    def __hash__(self) -> int:
        return hash(("Secret", self.env_var))


@dataclass(frozen=True)
class Credentials:
    """Storage credentials; every sensitive field is a :class:`Secret`.

    Attributes:
        s3_access_key_id: S3 access key id (treated as sensitive too).
        s3_secret_access_key: S3 secret access key.
        s3_endpoint: S3 endpoint URL (not secret), e.g. ``http://minio:9000``.
        xrootd_token: Bearer token given as a value (``INTCCMS_XROOTD_TOKEN`` or
            ``BEARER_TOKEN``) for XRootD servers that require one.
        x509_proxy: Path of the X509 proxy file (not secret; the file is).
        x509_cert_dir: Path of the CA directory.
        bearer_token_file: Path of the bearer-token file, when the token comes from a file.
    """

    s3_access_key_id: Secret | None = None
    s3_secret_access_key: Secret | None = None
    s3_endpoint: str | None = None
    xrootd_token: Secret | None = None
    x509_proxy: str | None = None
    x509_cert_dir: str | None = None
    bearer_token_file: str | None = None

    @classmethod
    def from_environ(cls) -> Credentials:
        """Reference the ``INTCCMS_*`` variables, resolved lazily where they are used, and the
        grid credential files this process finds (:func:`intccms.storage.grid.locate`)."""
        grid = locate()
        token_var = grid.token.env_var if grid.token is not None else None
        return cls(
            s3_access_key_id=Secret(ENV_S3_ACCESS_KEY_ID),
            s3_secret_access_key=Secret(ENV_S3_SECRET_ACCESS_KEY),
            s3_endpoint=os.environ.get(ENV_S3_ENDPOINT) or None,
            xrootd_token=Secret(token_var or ENV_XROOTD_TOKEN),
            **_grid_paths(grid),
        )

    def environ(self) -> dict[str, str]:
        """Return the variables (with plain values) that recreate these credentials.

        Used to hand credentials to workers; never log the result. Grid credentials appear as
        their paths (``X509_USER_PROXY``, ``X509_CERT_DIR``, ``BEARER_TOKEN_FILE``).
        """
        env: dict[str, str] = {}
        for secret in (self.s3_access_key_id, self.s3_secret_access_key, self.xrootd_token):
            if secret is not None and secret.is_set():
                env[secret.env_var] = secret.reveal()
        if self.s3_endpoint:
            env[ENV_S3_ENDPOINT] = self.s3_endpoint
        if ENV_XROOTD_TOKEN in env:
            env[XROOTD_CLIENT_TOKEN_VAR] = env[ENV_XROOTD_TOKEN]
        env.update(self.grid_environ())
        return env

    def grid_environ(self) -> dict[str, str]:
        """The grid credential paths as the XRootD client's variables (no contents)."""
        paths = {ENV_PROXY: self.x509_proxy, ENV_CERT_DIR: self.x509_cert_dir,
                 ENV_TOKEN_FILE: self.bearer_token_file}
        return {var: path for var, path in paths.items() if path}

    def shadowing_vars(self) -> tuple[str, ...]:
        """Variables to remove so the client uses these credentials: a ``BEARER_TOKEN`` value
        would win over the chosen token file."""
        if self.bearer_token_file and self.xrootd_token is None:
            return (XROOTD_CLIENT_TOKEN_VAR,)
        return ()


def _grid_paths(grid: GridLocations) -> dict[str, str | None]:
    """Credentials fields of the grid files the client will use."""
    env, _ = client_environ(grid)
    return {"x509_proxy": env.get(ENV_PROXY), "x509_cert_dir": env.get(ENV_CERT_DIR),
            "bearer_token_file": env.get(ENV_TOKEN_FILE)}


def parse_dotenv(path: Path) -> dict[str, str]:
    """The ``KEY=value`` pairs of a ``.env`` file (python-dotenv's reading: comments, quotes,
    ``export``); keys without a value are left out. Nothing is put into the environment."""
    return {key: value for key, value in dotenv_values(path, interpolate=False).items() if value is not None}


def _default_repo_root() -> Path:
    return Path(__file__).resolve().parents[3]


def load_credentials(repo_root: str | Path | None = None,
                     grid: GridSettings | None = None) -> Credentials:
    """Load credentials from the process environment, then an untracked ``.env``.

    The environment wins over ``.env`` so that deployments (Kubernetes Secrets exported as
    variables) override a developer's file.

    Args:
        repo_root: Directory holding ``.env``; defaults to the repository root of this source
            tree (``.env`` is gitignored; ``.env.example`` lists the variables).
        grid: The ``credentials`` group (where the proxy, CA directory and token file are);
            ``None`` discovers them from the environment.

    Returns:
        Credentials: Secrets bound to their variable names; grid files as paths.
    """
    root = Path(repo_root) if repo_root is not None else _default_repo_root()
    dotenv = root / ".env"
    file_values = parse_dotenv(dotenv) if dotenv.is_file() else {}

    def pick(var: str) -> str | None:
        return os.environ.get(var) or file_values.get(var) or None

    def secret(var: str) -> Secret | None:
        value = pick(var)
        return Secret(var, value) if value is not None else None

    located = grid_locations(repo_root, grid)
    token_var = located.token.env_var if located.token is not None else None
    return Credentials(
        s3_access_key_id=secret(ENV_S3_ACCESS_KEY_ID),
        s3_secret_access_key=secret(ENV_S3_SECRET_ACCESS_KEY),
        s3_endpoint=pick(ENV_S3_ENDPOINT),
        xrootd_token=secret(token_var) if token_var else None,
        **_grid_paths(located),
    )


def grid_environ(repo_root: str | Path | None = None) -> dict[str, str]:
    """This process's variables, with ``INTCCMS_XROOTD_TOKEN`` also taken from ``.env``: where
    grid credentials are looked for (and a token given as a value is read)."""
    root = Path(repo_root) if repo_root is not None else _default_repo_root()
    dotenv = root / ".env"
    file_values = parse_dotenv(dotenv) if dotenv.is_file() else {}
    env = dict(os.environ)
    if not env.get(ENV_XROOTD_TOKEN) and file_values.get(ENV_XROOTD_TOKEN):
        env[ENV_XROOTD_TOKEN] = file_values[ENV_XROOTD_TOKEN]
    return env


def grid_locations(repo_root: str | Path | None = None,
                   grid: GridSettings | None = None) -> GridLocations:
    """Where the grid credentials are, with ``INTCCMS_XROOTD_TOKEN`` also taken from ``.env``."""
    return locate(grid, grid_environ(repo_root))


__all__ = [
    "CREDENTIAL_VARS",
    "Credentials",
    "MissingCredentialError",
    "Secret",
    "grid_environ",
    "grid_locations",
    "load_credentials",
    "parse_dotenv",
]

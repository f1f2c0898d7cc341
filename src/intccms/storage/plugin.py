"""Hand storage credentials to Dask workers.

Trade-off: a ``WorkerPlugin`` is pickled once and sent through the scheduler, which keeps it
to replay on workers that join later, so the plain values *do* pass the scheduler (once, not
in every task). Prefer giving workers the ``INTCCMS_*`` variables from a mounted Kubernetes
Secret; then use ``CredentialsPlugin(require_worker_env=True)``, which carries no values and
only checks at setup that the variables are present, failing early with a clear message.

Grid credentials travel as *paths* in every mode (``X509_USER_PROXY``, ``X509_CERT_DIR``,
``BEARER_TOKEN_FILE``): the worker's XRootD client reads the file itself, so a renewed proxy
or token reaches running workers and no content passes the scheduler. Local workers use the
driver's files; deployed workers keep the paths their own deployment sets (a mounted Secret)
and take the driver's only where they have none. At setup every worker checks that the files
in effect there are readable and not expired, so a worker that cannot reach them stops the job
at once with the file named, instead of failing its first read with "Auth failed".

:func:`credentials_plugin` picks the mode from the cluster kind: on ``kubernetes`` and
``address`` clusters (workers deployed with their own environment) only variable names are
sent; on a ``local`` cluster (workers are children of the driver) the values are.
"""

from __future__ import annotations

import os
from typing import Any

from distributed import WorkerPlugin

from intccms.storage.credentials import (
    ENV_S3_ACCESS_KEY_ID,
    ENV_S3_ENDPOINT,
    ENV_S3_SECRET_ACCESS_KEY,
    ENV_XROOTD_TOKEN,
    XROOTD_CLIENT_TOKEN_VAR,
    Credentials,
    MissingCredentialError,
)
from intccms.storage.errors import GridCredentialError
from intccms.storage.grid import (
    ENV_CERT_DIR,
    ENV_PROXY,
    ENV_TOKEN_FILE,
    Location,
    export_client_environ,
)
from intccms.storage.grid_check import proxy_status, token_status

# Cluster kinds whose workers get the credential variables from their own deployment.
WORKER_ENV_KINDS = frozenset({"kubernetes", "address"})


class CredentialsPlugin(WorkerPlugin):
    """Set (or check) the ``INTCCMS_*`` credential variables on every worker at setup.

    Args:
        credentials: Credentials whose values are shipped to workers. With
            ``require_worker_env=True`` only the names of the variables they were read from
            are kept (the variables each worker must have); ``None`` checks the S3 pair.
        require_worker_env: Only verify that workers already have the variables.
    """

    name = "intccms-credentials"

    def __init__(self, credentials: Credentials | None = None, *,
                 require_worker_env: bool = False) -> None:
        self._require_worker_env = require_worker_env
        # Paths, not contents: carried in both modes.
        self._paths = credentials.grid_environ() if credentials is not None else {}
        self._unset = credentials.shadowing_vars() if credentials is not None else ()
        values = {k: v for k, v in (credentials.environ() if credentials is not None else {}).items()
                  if k not in self._paths}
        self._environ: dict[str, str] = {} if require_worker_env else values
        self._required: tuple[str, ...] = ()
        if require_worker_env:
            names = set(values) if credentials is not None else {ENV_S3_ACCESS_KEY_ID, ENV_S3_SECRET_ACCESS_KEY}
            # The endpoint travels (not secret) in the storage options; the client token
            # variable is set on the worker from INTCCMS_XROOTD_TOKEN.
            derived = {XROOTD_CLIENT_TOKEN_VAR} if ENV_XROOTD_TOKEN in names else set()
            self._required = tuple(sorted(names - {ENV_S3_ENDPOINT} - derived))

    def __repr__(self) -> str:
        paths = f", paths={sorted(self._paths)!r}" if self._paths else ""
        if self._require_worker_env:
            return f"CredentialsPlugin(require_worker_env={list(self._required)!r}{paths})"
        return f"CredentialsPlugin(variables={sorted(self._environ)!r}{paths})"

    def setup(self, worker: Any) -> None:
        """Export the variables into the worker process or check they are there; point the
        XRootD client at the grid credential files and check them."""
        if self._require_worker_env:
            missing = [v for v in self._required if v not in os.environ]
            if missing:
                msg = (f"worker lacks credential variables {missing}; mount the storage Secret "
                       "as environment variables in the worker pod spec")
                raise MissingCredentialError(msg)
            export_client_environ(self._paths, keep_own=True)  # the deployment's own path wins
        else:
            os.environ.update(self._environ)
            export_client_environ(self._paths, self._unset)
        if self._paths:
            check_worker_files(getattr(worker, "address", "this worker"))


def check_worker_files(where: str) -> None:
    """The grid files in effect in this process are readable and not expired.

    Raises:
        GridCredentialError: naming the worker, the variable and the file.
    """

    cert_dir = Location(os.environ.get(ENV_CERT_DIR, ""), ENV_CERT_DIR, True)
    problems = []
    if os.environ.get(ENV_PROXY):
        status = proxy_status(Location(os.environ[ENV_PROXY], ENV_PROXY, True), cert_dir, 0.0)
        problems += [status.problem] if status.problem else []
    if os.environ.get(ENV_TOKEN_FILE):
        token = token_status(Location(os.environ[ENV_TOKEN_FILE], ENV_TOKEN_FILE, True), (), 0.0)
        problems += [token.problem] if token is not None and token.problem else []
        if not os.path.isdir(cert_dir.path or ""):
            problems.append(f"CA directory {cert_dir.path or '(X509_CERT_DIR unset)'} does not exist")
    if problems:
        msg = (f"grid credentials on worker {where}: " + "; ".join(str(p) for p in problems)
               + "; mount the files on every worker (chart: grid.proxySecret / grid.tokenSecret) or "
                 "set X509_USER_PROXY / BEARER_TOKEN_FILE / X509_CERT_DIR in the worker's environment")
        raise GridCredentialError(msg)


def credentials_plugin(credentials: Credentials | None, cluster_kind: Any) -> CredentialsPlugin | None:
    """The plugin a job registers for its cluster kind, or ``None`` without credentials.

    Args:
        credentials: The driver's credentials (``load_credentials()``).
        cluster_kind: ``local``, ``kubernetes`` or ``address`` (``cluster.kind``, str or enum).

    Returns:
        CredentialsPlugin | None: Names only on ``kubernetes``/``address`` (workers read the
        values from their own environment, e.g. a mounted Secret); values on ``local``.
    """
    if credentials is None or not credentials.environ():
        return None
    kind = str(getattr(cluster_kind, "value", cluster_kind))
    return CredentialsPlugin(credentials, require_worker_env=kind in WORKER_ENV_KINDS)


__all__ = ["WORKER_ENV_KINDS", "CredentialsPlugin", "check_worker_files", "credentials_plugin"]

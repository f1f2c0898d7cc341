"""Hand storage credentials to Dask workers.

Trade-off: a ``WorkerPlugin`` is pickled once and sent through the scheduler, which keeps it
to replay on workers that join later, so the plain values *do* pass the scheduler (once, not
in every task). Prefer giving workers the ``INTCCMS_*`` variables from a mounted Kubernetes
Secret; then use ``CredentialsPlugin(require_worker_env=True)``, which carries no values and
only checks at setup that the variables are present, failing early with a clear message.

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
    XROOTD_CLIENT_TOKEN_VAR,
    Credentials,
    MissingCredentialError,
)

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
        self._environ: dict[str, str] = (
            {} if require_worker_env or credentials is None else credentials.environ()
        )
        self._required: tuple[str, ...] = ()
        if require_worker_env:
            names = (set(credentials.environ()) if credentials is not None
                     else {ENV_S3_ACCESS_KEY_ID, ENV_S3_SECRET_ACCESS_KEY})
            # The endpoint travels (not secret) in the storage options; the client token
            # variable is set on the worker from INTCCMS_XROOTD_TOKEN.
            self._required = tuple(sorted(names - {ENV_S3_ENDPOINT, XROOTD_CLIENT_TOKEN_VAR}))

    def __repr__(self) -> str:
        if self._require_worker_env:
            return f"CredentialsPlugin(require_worker_env={list(self._required)!r})"
        return f"CredentialsPlugin(variables={sorted(self._environ)!r})"

    def setup(self, worker: Any) -> None:
        """Export the variables into the worker process or check they are there."""
        if self._require_worker_env:
            missing = [v for v in self._required if v not in os.environ]
            if missing:
                msg = (f"worker lacks credential variables {missing}; mount the storage Secret "
                       "as environment variables in the worker pod spec")
                raise MissingCredentialError(msg)
            return
        os.environ.update(self._environ)


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


__all__ = ["WORKER_ENV_KINDS", "CredentialsPlugin", "credentials_plugin"]

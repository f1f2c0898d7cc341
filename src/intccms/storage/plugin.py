"""Hand storage credentials to Dask workers.

Trade-off: a ``WorkerPlugin`` is pickled once and sent through the scheduler, which keeps it
to replay on workers that join later, so the plain values *do* pass the scheduler (once, not
in every task). Prefer giving workers the ``INTCCMS_*`` variables from a mounted Kubernetes
Secret; then use ``CredentialsPlugin(require_worker_env=True)``, which carries no values and
only checks at setup that the variables are present, failing early with a clear message.
"""

from __future__ import annotations

import os
from typing import Any

from distributed import WorkerPlugin

from intccms.storage.credentials import (
    ENV_S3_ACCESS_KEY_ID,
    ENV_S3_SECRET_ACCESS_KEY,
    Credentials,
    MissingCredentialError,
)


class CredentialsPlugin(WorkerPlugin):
    """Set (or check) the ``INTCCMS_*`` credential variables on every worker at setup.

    Args:
        credentials: Credentials whose values are shipped to workers; ``None`` with
            ``require_worker_env=True`` ships nothing.
        require_worker_env: Only verify that workers already have the variables.
    """

    name = "intccms-credentials"

    def __init__(self, credentials: Credentials | None = None, *,
                 require_worker_env: bool = False) -> None:
        self._require_worker_env = require_worker_env
        self._environ: dict[str, str] = (
            {} if require_worker_env or credentials is None else credentials.environ()
        )

    def __repr__(self) -> str:
        return f"CredentialsPlugin(variables={sorted(self._environ)!r})"

    def setup(self, worker: Any) -> None:
        """Export the variables into the worker process or check they are there."""
        if self._require_worker_env:
            missing = [v for v in (ENV_S3_ACCESS_KEY_ID, ENV_S3_SECRET_ACCESS_KEY)
                       if v not in os.environ]
            if missing:
                msg = (f"worker lacks credential variables {missing}; mount the storage Secret "
                       "as environment variables in the worker pod spec")
                raise MissingCredentialError(msg)
            return
        os.environ.update(self._environ)


__all__ = ["CredentialsPlugin"]

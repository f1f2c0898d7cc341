"""Per-call storage settings; safe to pickle into task graphs (secrets travel as names)."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from intccms.storage.credentials import ENV_S3_ENDPOINT, Credentials, MissingCredentialError

READER_KWARGS_KEYS = ("root", "parquet")


@dataclass
class StorageOptions:
    """How to reach storage.

    Attributes:
        s3_endpoint: S3 endpoint URL; falls back to the credentials' endpoint, then
            ``INTCCMS_S3_ENDPOINT``.
        timeout_s: Connect/read timeout per request in seconds.
        retries: Extra attempts after a failed request (auth failures are never retried).
        credentials: Storage credentials; ``None`` reads ``INTCCMS_*`` variables where used.
        min_upload_mib_s: Slowest average upload rate accepted; an upload attempt is given
            ``timeout_s`` plus its size at this rate before it is abandoned (see
            :meth:`upload_deadline`).
        reader_kwargs: Per read format (``"root"`` for TTree and RNTuple, ``"parquet"``) extra
            keyword arguments for the reader: ``uproot.open`` options for ROOT,
            ``pyarrow.parquet.ParquetFile`` options for parquet (``storage.reader_kwargs``).
    """

    s3_endpoint: str | None = None
    timeout_s: float = 30.0
    retries: int = 2
    credentials: Credentials | None = None
    min_upload_mib_s: float = 1.0
    reader_kwargs: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        unknown = sorted(set(self.reader_kwargs) - set(READER_KWARGS_KEYS))
        if unknown:
            msg = (f"storage.reader_kwargs has unknown format(s) {unknown}; use "
                   f"{list(READER_KWARGS_KEYS)} ('root' covers TTree and RNTuple inputs)")
            raise ValueError(msg)

    def reader_kwargs_for(self, fmt: str) -> dict[str, Any]:
        """Return the reader keyword arguments of a read format (``"root"`` or ``"parquet"``)."""
        return dict(self.reader_kwargs.get(fmt) or {})

    def upload_deadline(self, size: int) -> float:
        """Seconds one upload attempt of ``size`` bytes may take before it is abandoned.

        The HTTP client's read timeout does not fire while a request with a body waits for
        an answer from a server that accepted the connection but stopped responding, so
        uploads get this wall-clock deadline on top of the per-request timeouts.
        """
        return self.timeout_s + size / (max(self.min_upload_mib_s, 1e-3) * 1024 * 1024)

    def resolved_credentials(self) -> Credentials:
        """Return the configured credentials or lazy references to the environment."""
        return self.credentials if self.credentials is not None else Credentials.from_environ()

    def endpoint(self) -> str | None:
        """Return the S3 endpoint in effect (not secret; used in error messages)."""
        creds = self.resolved_credentials()
        return self.s3_endpoint or creds.s3_endpoint or os.environ.get(ENV_S3_ENDPOINT) or None

    def fsspec_kwargs(self, scheme: str) -> dict[str, Any]:
        """Build fsspec ``storage_options`` for a scheme, resolving secrets *here*.

        Call this where the filesystem is used (on the worker); never log the result.

        Args:
            scheme (str): ``"file"``, ``"s3"`` or ``"root"``.

        Returns:
            dict: Keyword arguments for the fsspec filesystem of that scheme.
        """
        if scheme == "file":
            return {}
        if scheme == "s3":
            return self._s3_kwargs()
        if scheme == "root":
            return {"timeout": max(1, math.ceil(self.timeout_s))}
        msg = f"no storage options for scheme {scheme!r}; expected file, s3 or root"
        raise ValueError(msg)

    def _s3_kwargs(self) -> dict[str, Any]:
        creds = self.resolved_credentials()
        kwargs: dict[str, Any] = {
            "config_kwargs": {
                "connect_timeout": self.timeout_s,
                "read_timeout": self.timeout_s,
                # botocore retries connection errors and timeouts; s3fs's own retry loop is
                # switched off by the backend so the worst case stays (retries+1) x timeout.
                "retries": {"total_max_attempts": self.retries + 1, "mode": "standard"},
            },
        }
        endpoint = self.endpoint()
        if endpoint:
            kwargs["client_kwargs"] = {"endpoint_url": endpoint}
        key_id, secret = creds.s3_access_key_id, creds.s3_secret_access_key
        if self.credentials is not None and (key_id is not None or secret is not None):
            # Explicit credentials must resolve here (e.g. on a worker after unpickling);
            # silently falling back to anonymous access would hide a deployment error.
            if key_id is None or secret is None:
                msg = ("S3 credentials are half set: need both INTCCMS_S3_ACCESS_KEY_ID and "
                       f"INTCCMS_S3_SECRET_ACCESS_KEY for endpoint {endpoint}")
                raise MissingCredentialError(msg)
            kwargs["key"], kwargs["secret"] = key_id.reveal(), secret.reveal()
        elif key_id is not None and secret is not None and key_id.is_set() and secret.is_set():
            kwargs["key"], kwargs["secret"] = key_id.reveal(), secret.reveal()
        elif (key_id is not None and key_id.is_set()) != (secret is not None and secret.is_set()):
            msg = ("S3 credentials are half set: need both INTCCMS_S3_ACCESS_KEY_ID and "
                   f"INTCCMS_S3_SECRET_ACCESS_KEY for endpoint {endpoint}")
            raise MissingCredentialError(msg)
        return kwargs


__all__ = ["StorageOptions"]

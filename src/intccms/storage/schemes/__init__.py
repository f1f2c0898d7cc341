"""One backend class per URL scheme (file, s3, root) for filesystem concerns.

A backend knows how to reach bytes (an fsspec filesystem with the right credentials and
timeouts), how to commit a finished file atomically, and how to turn client exceptions
into :mod:`intccms.storage.errors`. It does not care what the bytes mean; formats do.
"""

from __future__ import annotations

from intccms.storage.options import StorageOptions
from intccms.storage.schemes.base import (
    TEMP_MARKER,
    Backend,
    is_temporary_name,
    temporary_name,
)
from intccms.storage.schemes.local import FileBackend
from intccms.storage.schemes.s3 import S3Backend
from intccms.storage.schemes.xrootd import XRootDBackend, configure_xrootd_client
from intccms.storage.urls import scheme_of

_BACKENDS: dict[str, type[Backend]] = {b.scheme: b for b in (FileBackend, S3Backend, XRootDBackend)}


def backend_for(url: str, options: StorageOptions | None = None) -> Backend:
    """Pick the backend class for ``url``'s scheme.

    Args:
        url (str): Storage URL.
        options (StorageOptions | None): Defaults to ``StorageOptions()``.

    Returns:
        Backend: A backend bound to the options.
    """
    return _BACKENDS[scheme_of(url)](options or StorageOptions())


__all__ = [
    "TEMP_MARKER",
    "Backend",
    "FileBackend",
    "S3Backend",
    "XRootDBackend",
    "backend_for",
    "configure_xrootd_client",
    "is_temporary_name",
    "temporary_name",
]

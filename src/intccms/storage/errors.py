"""Storage errors people can act on: each names the URL (never a secret) and suggests a fix."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class StorageError(OSError):
    """Base class of every storage failure raised by :mod:`intccms.storage`."""


class StorageAuthError(StorageError, PermissionError):
    """The storage endpoint rejected the credentials (wrong key, secret or token)."""


class GridCredentialError(StorageAuthError):
    """A grid credential (X509 proxy, bearer token) is missing, unreadable, expired, about to
    expire, untrusted, or was refused by an XRootD server; the message says which."""


class StorageUnreachableError(StorageError, ConnectionError):
    """The storage server did not answer within the configured timeout and retries."""


class StorageNotFoundError(StorageError, FileNotFoundError):
    """The URL does not exist on a reachable, authorised server."""


class BucketNotFoundError(StorageNotFoundError):
    """The S3 bucket itself does not exist: a wrong URL or a missing setup step, never one bad
    file, and no retry can create it."""


class IncompletePartError(StorageError):
    """A part exists but is not a complete, readable file of its format."""


class CorruptFileError(StorageError):
    """The file was read but its bytes cannot be decoded (not ROOT, damaged compressed data,
    inconsistent records): bad input that no retry can fix, so it is named, not retried."""


# Failures no Dask retry can fix and that are never one bad input file: they stop the job at
# their first occurrence (rather than being retried, or skipped with ``skip_bad_files``).
FATAL_STORAGE_ERRORS: tuple[type[StorageError], ...] = (
    StorageAuthError, StorageUnreachableError, BucketNotFoundError,
)


class MissingColumnError(KeyError):
    """A requested column is not in the source; lists the closest available names.

    Subclasses ``KeyError`` (like uproot's ``KeyInFileError``) so callers that treat a
    missing column as a missing key keep working.
    """

    def __init__(self, column: str, url: str, available: Iterable[str]) -> None:
        self.column = column
        self.url = url
        close = difflib.get_close_matches(column, list(available), n=5, cutoff=0.5)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        self.message = f"column {column!r} not found in {url}.{hint}"
        super().__init__(self.message)

    def __str__(self) -> str:
        return self.message


__all__ = [
    "FATAL_STORAGE_ERRORS",
    "BucketNotFoundError",
    "CorruptFileError",
    "GridCredentialError",
    "IncompletePartError",
    "MissingColumnError",
    "StorageAuthError",
    "StorageError",
    "StorageNotFoundError",
    "StorageUnreachableError",
]

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


class IncompletePartError(StorageError):
    """A part exists but is not a complete, readable file of its format."""


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
    "GridCredentialError",
    "IncompletePartError",
    "MissingColumnError",
    "StorageAuthError",
    "StorageError",
    "StorageNotFoundError",
    "StorageUnreachableError",
]

"""The backend interface, temporary names and the mapping of client errors."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import uuid
from abc import ABC, abstractmethod
from collections.abc import Iterator
from typing import Any, ClassVar

import fsspec

from intccms.storage.errors import (
    StorageAuthError,
    StorageError,
    StorageNotFoundError,
    StorageUnreachableError,
)
from intccms.storage.options import StorageOptions
from intccms.storage.urls import join, split_name

TEMP_MARKER = ".intccms-tmp-"
COPY_CHUNK = 8 * 1024 * 1024


def temporary_name(url: str) -> str:
    """Return a unique hidden temporary URL in the same directory/prefix as ``url``."""
    parent, name = split_name(url)
    return join(parent, f".{name}{TEMP_MARKER}{uuid.uuid4().hex[:12]}")


def is_temporary_name(url: str) -> bool:
    """Return whether ``url`` names an uncommitted temporary file (to ignore in listings)."""
    return TEMP_MARKER in split_name(url)[1]


_UNREACHABLE_NAMES = ("connect", "timeout", "unreachable", "endpointconnection")
_UNREACHABLE_TEXT = ("connection refused", "operation expired", "connection error", "timed out",
                     "timeout", "could not connect", "socket error", "[fatal]", "unreachable",
                     "no route")
_AUTH_TEXT = ("invalidaccesskeyid", "signaturedoesnotmatch", "access denied", "accessdenied",
              "forbidden", "auth failed", "authentication", "permission denied",
              "not authorized", "[3010]")
_NOT_FOUND_TEXT = ("no such file", "not found", "nosuchkey", "nosuchbucket", "[3011]")


class Backend(ABC):
    """Filesystem concerns of one URL scheme.

    Args:
        options (StorageOptions): Endpoint, timeouts, retries and credentials.
    """

    scheme: ClassVar[str]

    def __init__(self, options: StorageOptions) -> None:
        self.options = options
        self._fs: fsspec.AbstractFileSystem | None = None

    # -- reaching bytes -------------------------------------------------------------------
    @abstractmethod
    def _make_filesystem(self, url: str) -> fsspec.AbstractFileSystem: ...

    @abstractmethod
    def path(self, url: str) -> str:
        """Return the filesystem path for ``url``."""

    def filesystem(self, url: str) -> fsspec.AbstractFileSystem:
        """Return the (lazily created) fsspec filesystem serving ``url``."""
        if self._fs is None:
            self._fs = self._make_filesystem(url)
        return self._fs

    def endpoint(self, url: str) -> str:
        """Return the server a URL lives on, for error messages (no credentials)."""
        return url

    def open_unbuffered(self, url: str) -> Any:
        """Open ``url`` for reading without read-ahead, so each read is one request."""
        with self.errors(url):
            return self.filesystem(url).open(self.path(url), "rb", cache_type="none")

    def size(self, url: str) -> int:
        """Return the size of ``url`` in bytes."""
        with self.errors(url):
            return int(self.filesystem(url).size(self.path(url)))

    def exists(self, url: str) -> bool:
        """Return whether ``url`` exists."""
        with self.errors(url):
            return bool(self.filesystem(url).exists(self.path(url)))

    def read_bytes(self, url: str, start: int | None = None, end: int | None = None) -> bytes:
        """Read a whole object or a byte range of it."""
        with self.errors(url):
            return self.filesystem(url).cat_file(self.path(url), start=start, end=end)

    def remove(self, url: str) -> None:
        """Delete ``url``; a missing file is not an error."""
        with self.errors(url):
            fs = self.filesystem(url)
            if fs.exists(self.path(url)):
                fs.rm(self.path(url))

    # -- atomic writes --------------------------------------------------------------------
    @contextlib.contextmanager
    def staging(self, url: str) -> Iterator[str]:
        """Yield a local path to write ``url``'s content to; commit it atomically on success.

        On any exception nothing is left at ``url`` and the temporary file is removed.
        """
        tmpdir = tempfile.mkdtemp(prefix="intccms-stage-")
        local = os.path.join(tmpdir, split_name(url)[1] or "part")
        try:
            yield local
            self.commit(local, url)
        finally:
            shutil.rmtree(tmpdir, ignore_errors=True)

    @abstractmethod
    def commit(self, local: str, url: str) -> None:
        """Publish a finished local file at ``url`` so that readers see all of it or nothing."""

    # -- errors ---------------------------------------------------------------------------
    @contextlib.contextmanager
    def errors(self, url: str) -> Iterator[None]:
        """Translate client exceptions into storage errors naming ``url``."""
        try:
            yield
        except StorageError:
            raise
        except Exception as exc:
            translated = self.translate(exc, url)
            if translated is None:
                raise
            raise translated from exc

    def translate(self, exc: BaseException, url: str) -> StorageError | None:
        """Map a client exception to an auth / unreachable / not-found storage error."""
        names = " ".join(cls.__name__.lower() for cls in type(exc).__mro__)
        text = str(exc).lower()
        where = self.endpoint(url)
        if isinstance(exc, PermissionError) or any(t in text for t in _AUTH_TEXT):
            msg = (f"storage endpoint {where} rejected the credentials for {url}; check "
                   "INTCCMS_S3_ACCESS_KEY_ID / INTCCMS_S3_SECRET_ACCESS_KEY (or the token)")
            return StorageAuthError(msg)
        if isinstance(exc, FileNotFoundError) or any(t in text for t in _NOT_FOUND_TEXT):
            return StorageNotFoundError(f"{url} does not exist on {where}; check the path")
        unreachable = any(n in names for n in _UNREACHABLE_NAMES) or any(
            t in text for t in _UNREACHABLE_TEXT)
        if unreachable:
            msg = (f"storage at {where} is unreachable for {url} (timeout "
                   f"{self.options.timeout_s:g}s, {self.options.retries} retries): "
                   f"{type(exc).__name__}: {str(exc)[:200]}; check that the server runs and "
                   "the URL/port")
            return StorageUnreachableError(msg)
        return None

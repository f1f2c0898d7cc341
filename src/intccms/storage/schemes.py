"""One backend class per URL scheme (file, s3, root) for filesystem concerns.

A backend knows how to reach bytes (an fsspec filesystem with the right credentials and
timeouts), how to commit a finished file atomically, and how to turn client exceptions
into :mod:`intccms.storage.errors`. It does not care what the bytes mean; formats do.
"""

from __future__ import annotations

import contextlib
import math
import os
import shutil
import tempfile
import uuid
from abc import ABC, abstractmethod
from collections.abc import Iterator
from typing import Any, ClassVar

import fsspec

from intccms.storage.credentials import XROOTD_CLIENT_TOKEN_VAR
from intccms.storage.errors import (
    StorageAuthError,
    StorageError,
    StorageNotFoundError,
    StorageUnreachableError,
)
from intccms.storage.options import StorageOptions
from intccms.storage.urls import join, local_path, root_endpoint, root_path, scheme_of, split_name

TEMP_MARKER = ".intccms-tmp-"
_COPY_CHUNK = 8 * 1024 * 1024


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


class FileBackend(Backend):
    """Local (or POSIX-mounted) disk; commits with ``os.replace`` in the same directory."""

    scheme = "file"

    def _make_filesystem(self, url: str) -> fsspec.AbstractFileSystem:
        return fsspec.filesystem("file")

    def path(self, url: str) -> str:
        """Return the absolute OS path."""
        return os.path.abspath(local_path(url))

    def translate(self, exc: BaseException, url: str) -> StorageError | None:
        """Local disks know only "missing" and "not allowed"; no credentials are involved."""
        if isinstance(exc, FileNotFoundError):
            return StorageNotFoundError(f"{url} does not exist; check the path")
        if isinstance(exc, PermissionError):
            return StorageAuthError(f"no permission to access {url}; check file ownership")
        return None

    @contextlib.contextmanager
    def staging(self, url: str) -> Iterator[str]:
        """Stage next to the destination so the final ``os.replace`` is a rename."""
        final = self.path(url)
        os.makedirs(os.path.dirname(final), exist_ok=True)
        tmp = temporary_name(final)
        try:
            yield tmp
            self.commit(tmp, url)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.remove(tmp)

    def commit(self, local: str, url: str) -> None:
        """Fsync then rename over the destination (atomic on POSIX)."""
        with open(local, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(local, self.path(url))


class S3Backend(Backend):
    """S3 via s3fs.

    Commit uploads the finished file straight to the final key: a single PUT, or a multipart
    upload for large files, and S3 only makes an object visible once the PUT or the
    CompleteMultipartUpload has succeeded, so readers never see a partial part.
    """

    scheme = "s3"

    def _make_filesystem(self, url: str) -> fsspec.AbstractFileSystem:
        fs = fsspec.filesystem("s3", **self.options.fsspec_kwargs("s3"))
        # s3fs retries transient errors itself (class default 5) on top of botocore's own
        # retries; one s3fs attempt keeps the total bounded by StorageOptions.retries.
        fs.retries = 1
        return fs

    def path(self, url: str) -> str:
        """Return ``bucket/key``."""
        return url.split("://", 1)[1]

    def endpoint(self, url: str) -> str:
        """Return the S3 endpoint URL."""
        return self.options.endpoint() or "the default AWS S3 endpoint"

    def commit(self, local: str, url: str) -> None:
        """Upload in one PUT (or one completed multipart upload) to the final key."""
        with self.errors(url):
            self.filesystem(url).put_file(local, self.path(url))


def configure_xrootd_client(options: StorageOptions) -> None:
    """Bound how long the XRootD client tries to connect (its defaults allow minutes).

    XrdCl settings are process-wide and a server's channel keeps the values in force when it
    was first contacted, so use one StorageOptions per process (as the stages do).
    """
    from XRootD.client import EnvPutInt

    window = max(1, math.ceil(options.timeout_s))
    EnvPutInt("ConnectionWindow", window)
    EnvPutInt("ConnectionRetry", max(1, options.retries + 1))
    EnvPutInt("RequestTimeout", window * max(1, options.retries + 1))
    EnvPutInt("StreamErrorWindow", window)


class XRootDBackend(Backend):
    """XRootD via fsspec-xrootd; commits by uploading to a temporary name then ``mv``."""

    scheme = "root"

    def _make_filesystem(self, url: str) -> fsspec.AbstractFileSystem:
        configure_xrootd_client(self.options)
        token = self.options.resolved_credentials().xrootd_token
        if token is not None and token.is_set():
            # The XRootD client's token plugin reads the bearer token from the environment.
            os.environ[XROOTD_CLIENT_TOKEN_VAR] = token.reveal()
        kwargs = self.options.fsspec_kwargs("root")
        host = root_endpoint(url).split("://", 1)[1]
        # The listings cache goes stale after writes (see ENVIRONMENT.md).
        return fsspec.filesystem("root", hostid=host, use_listings_cache=False, **kwargs)

    def path(self, url: str) -> str:
        """Return the absolute path on the server."""
        return root_path(url)

    def endpoint(self, url: str) -> str:
        """Return ``root://host:port``."""
        return root_endpoint(url)

    def commit(self, local: str, url: str) -> None:
        """Stream to a hidden temporary name beside the target, then rename on the server."""
        fs = self.filesystem(url)
        final = self.path(url)
        tmp = temporary_name(final)
        with self.errors(url):
            fs.makedirs(os.path.dirname(final), exist_ok=True)
            try:
                with open(local, "rb") as src, fs.open(tmp, "wb") as dst:
                    while chunk := src.read(_COPY_CHUNK):
                        dst.write(chunk)
                if fs.exists(final):
                    fs.rm(final)  # XRootD mv refuses to overwrite
                fs.mv(tmp, final)
            except BaseException:
                with contextlib.suppress(Exception):
                    fs.rm(tmp)
                raise


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
    "is_temporary_name",
    "temporary_name",
]

"""Local (or POSIX-mounted) disk."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import fsspec

from intccms.storage.errors import StorageAuthError, StorageError, StorageNotFoundError
from intccms.storage.schemes.base import Backend, temporary_name
from intccms.storage.urls import local_path


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

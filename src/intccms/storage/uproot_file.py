"""An uproot file opened through the storage backends, for readers that want uproot itself.

coffea's NanoEventsFactory reads lazily from an open ``uproot.ReadOnlyDirectory``; opening that
directory here, with the backend's filesystem, credentials, timeouts and byte-counting source,
makes a processor read local, S3 and XRootD inputs exactly as the analysis does, and report the
bytes storage really sent.
"""

from __future__ import annotations

import uuid
from types import TracebackType
from typing import Self

from intccms.storage.errors import StorageError, StorageNotFoundError
from intccms.storage.formats.root import open_root
from intccms.storage.options import StorageOptions
from intccms.storage.schemes import backend_for


class UprootFile:
    """An open ROOT file: the uproot directory, the bytes received, its UUID.

    Args:
        url: Local path, ``s3://bucket/key`` or ``root://host:port//path``.
        tree: A tree the file must hold (checked at open, so a file without it is named).
        options: Storage options; ``options.reader_kwargs["root"]`` go to ``uproot.open``.

    Attributes:
        url: The URL opened.
        directory: The ``uproot.ReadOnlyDirectory`` to read from.
    """

    def __init__(self, url: str, tree: str, options: StorageOptions | None = None) -> None:
        self.url = url
        opts = options or StorageOptions()
        self._backend = backend_for(url, opts)
        self.directory, self._source = open_root(self._backend, url, opts.reader_kwargs_for("root"))
        try:
            names = {k.split(";")[0] for k in self.directory.keys(recursive=False)}
        except BaseException:
            self.directory.close()
            raise
        if tree not in names:
            self.directory.close()
            msg = f"{url} has no tree {tree!r} (it has {sorted(names)})"
            raise StorageNotFoundError(msg)

    @property
    def bytes_read(self) -> int:
        """Bytes received from storage so far."""
        return int(self._source.counter.total)

    @property
    def uuid(self) -> str:
        """The file's UUID as coffea reports it (``events.metadata["fileuuid"]``)."""
        return str(uuid.UUID(bytes=bytes(self.directory.file.fUUID)))

    def translate(self, err: BaseException) -> StorageError | None:
        """The storage error (auth, unreachable, not found) a client exception stands for."""
        return err if isinstance(err, StorageError) else self._backend.translate(err, self.url)

    def close(self) -> None:
        """Close the file and its source."""
        self.directory.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def open_uproot(url: str, tree: str = "Events", options: StorageOptions | None = None) -> UprootFile:
    """Open ``url`` for uproot-level reads through the storage backend (use as a context manager).

    Raises:
        StorageNotFoundError: the file or the tree does not exist.
        StorageAuthError, StorageUnreachableError: as for every storage read.
    """
    return UprootFile(url, tree, options)


__all__ = ["UprootFile", "open_uproot"]

"""Reading inputs: :func:`open_source` returns a :class:`ColumnSource` for any scheme/format."""

from __future__ import annotations

from collections.abc import Sequence
from types import TracebackType

import awkward as ak

from intccms.storage.counting import ByteCounter
from intccms.storage.errors import MissingColumnError
from intccms.storage.formats import format_from_extension, reader_for
from intccms.storage.options import StorageOptions
from intccms.storage.schemes import backend_for
from intccms.storage.urls import extension_of


class ColumnSource:
    """An open input file: its columns, entry count and a trustworthy byte count.

    Attributes:
        url: The URL opened.
        fmt: ``"root"`` or ``"parquet"``.
        kind: ``"ttree"``, ``"rntuple"`` or ``"parquet"``.
        num_entries: Entries in the tree/table.
    """

    def __init__(self, url: str, fmt: str, tree: str, options: StorageOptions) -> None:
        self.url = url
        self._counter = ByteCounter()
        self._backend = backend_for(url, options)
        self._reader = reader_for(fmt).open(self._backend, url, tree, self._counter,
                                            options.reader_kwargs_for(fmt))
        self.fmt = self._reader.fmt
        self.kind = getattr(self._reader, "kind", self.fmt)
        self.num_entries = int(self._reader.num_entries)
        self._columns: list[str] | None = None

    @property
    def bytes_read(self) -> int:
        """Bytes received from storage so far (headers, metadata and column data)."""
        return self._counter.total

    def columns(self) -> list[str]:
        """Return the flat NanoAOD column names (``Jet_pt``, ``nJet``, ``run``, ...)."""
        if self._columns is None:
            self._columns = self._reader.columns()
        return list(self._columns)

    def read(self, columns: Sequence[str], entry_start: int = 0,
             entry_stop: int | None = None) -> dict[str, ak.Array]:
        """Read columns for ``[entry_start, entry_stop)``.

        Args:
            columns: Flat names; jagged ones come back jagged, counters flat.
            entry_start: First entry (clipped to the file).
            entry_stop: One past the last entry; ``None`` means the end.

        Returns:
            dict[str, ak.Array]: One array per requested column, in request order.

        Raises:
            MissingColumnError: Naming the URL, the column and the closest names.
        """
        available = set(self.columns())
        for name in columns:
            if name not in available:
                raise MissingColumnError(name, self.url, available)
        stop = self.num_entries if entry_stop is None else min(entry_stop, self.num_entries)
        start = max(0, min(entry_start, stop))
        with self._backend.errors(self.url):
            return self._reader.read(list(dict.fromkeys(columns)), start, stop)

    def close(self) -> None:
        """Close the file and its connections."""
        self._reader.close()

    def __enter__(self) -> ColumnSource:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"ColumnSource({self.url!r}, fmt={self.fmt!r}, num_entries={self.num_entries})"


def open_source(url: str, *, fmt: str | None = None, tree: str = "Events",
                options: StorageOptions | None = None) -> ColumnSource:
    """Open an input for column reads.

    Args:
        url: Local path, ``s3://bucket/key`` or ``root://host:port//path``.
        fmt: ``"root"`` (TTree or RNTuple, detected) or ``"parquet"``; ``None`` uses the
            extension.
        tree: Tree/RNTuple name in ROOT files (ignored for parquet).
        options: Endpoint, timeouts, retries, credentials and the per-format reader options
            (``options.reader_kwargs[fmt]``, ``storage.reader_kwargs`` in the configuration).

    Returns:
        ColumnSource: Use as a context manager.
    """
    chosen = fmt or format_from_extension(url, extension_of(url))
    return ColumnSource(url, chosen, tree, options or StorageOptions())

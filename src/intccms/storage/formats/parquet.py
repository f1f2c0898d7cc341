"""Parquet (zstd) through awkward/pyarrow; reads row groups through a counting file."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import awkward as ak
import pyarrow.parquet as pq

from intccms.storage.counting import CountingFile
from intccms.storage.formats.base import Format, Reader
from intccms.storage.formats.columns import with_counters

if TYPE_CHECKING:
    from intccms.storage.counting import ByteCounter
    from intccms.storage.schemes import Backend

MAGIC = b"PAR1"
DEFAULT_WRITER = {"compression": "zstd", "row_group_size": 1 << 20}


class ParquetReader(Reader):
    """Columns of one parquet file; reads only the row groups an entry range touches."""

    fmt = "parquet"

    def __init__(self, fileobj: CountingFile, url: str,
                 reader_kwargs: Mapping[str, Any] | None = None) -> None:
        self._file = fileobj
        self._url = url
        self._pf = pq.ParquetFile(fileobj, **(reader_kwargs or {}))
        self.num_entries = self._pf.metadata.num_rows

    def columns(self) -> list[str]:
        """Return the top-level field names."""
        return list(self._pf.schema_arrow.names)

    def read(self, columns: Sequence[str], entry_start: int, entry_stop: int
             ) -> dict[str, ak.Array]:
        """Read the row groups overlapping the range, then slice to it."""
        groups, first = [], None
        offset = 0
        for i in range(self._pf.num_row_groups):
            n = self._pf.metadata.row_group(i).num_rows
            if offset < entry_stop and offset + n > entry_start:
                groups.append(i)
                first = offset if first is None else first
            offset += n
        if not groups or entry_stop <= entry_start:
            table = self._pf.schema_arrow.empty_table().select(list(columns))
            first = entry_start
        else:
            assert first is not None  # the offset of the first group read
            table = self._pf.read_row_groups(groups, columns=list(columns))
        table = table.slice(entry_start - first, entry_stop - entry_start)
        record = ak.from_arrow(table)
        return {name: record[name] for name in columns}

    def close(self) -> None:
        """Close the underlying file."""
        self._file.close()


class ParquetFormat(Format):
    """Flat NanoAOD-style columns as one parquet table (zstd by default)."""

    name = "parquet"

    def write(self, arrays: Mapping[str, ak.Array], local_path: str,
              writer_kwargs: Mapping[str, Any]) -> None:
        """Write a record of the columns; ``writer_kwargs`` go to ``ak.to_parquet``."""
        kwargs = {**DEFAULT_WRITER, **writer_kwargs}
        ak.to_parquet(ak.zip(with_counters(arrays), depth_limit=1), local_path, **kwargs)

    def open(self, backend: Backend, url: str, tree: str, counter: ByteCounter,
             reader_kwargs: Mapping[str, Any] | None = None) -> Reader:
        """Open ``url`` unbuffered so every byte pyarrow asks for is counted once;
        ``reader_kwargs`` go to ``pyarrow.parquet.ParquetFile`` (e.g. ``buffer_size``)."""
        fileobj = CountingFile(backend.open_unbuffered(url), counter)
        with backend.errors(url):
            try:
                return ParquetReader(fileobj, url, reader_kwargs)
            except BaseException:
                fileobj.close()
                raise

    def is_complete(self, backend: Backend, url: str, size: int) -> bool:
        """Check both magic numbers and that the footer metadata parses."""
        if size < 12:
            return False
        head, tail = backend.read_bytes(url, 0, 4), backend.read_bytes(url, size - 4, size)
        if head != MAGIC or tail != MAGIC:
            return False
        fileobj = backend.open_unbuffered(url)
        try:
            pq.read_metadata(fileobj)
        except Exception:  # noqa: BLE001 - any unreadable footer means: not a complete file
            return False
        finally:
            fileobj.close()
        return True

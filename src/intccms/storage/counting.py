"""Count the bytes storage really sends, at the transport layer.

Counting happens where bytes arrive from the filesystem (``cat_file``/``cat_ranges`` of the
fsspec filesystem that uproot's source calls, or ``read`` of an unbuffered fsspec file used
by pyarrow), so coalesced and read-ahead ranges are counted as sent, and nothing is
estimated from file sizes.
"""

from __future__ import annotations

import contextlib
import threading
from typing import Any

import fsspec
from uproot.source.file import MemmapSource
from uproot.source.fsspec import FSSpecLoopExecutor, FSSpecSource


class ByteCounter:
    """A thread-safe running total of bytes received."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.total = 0
        self.requests = 0

    def add(self, nbytes: int, requests: int = 1) -> None:
        """Add ``nbytes`` received in ``requests`` requests."""
        with self._lock:
            self.total += nbytes
            self.requests += requests


def _payload_size(results: Any) -> int:
    return sum(len(r) for r in results if isinstance(r, bytes | bytearray | memoryview))


class CountingFileSystem:
    """Proxy of an fsspec filesystem that counts the bytes returned by its range reads."""

    def __init__(self, fs: fsspec.AbstractFileSystem, counter: ByteCounter) -> None:
        self._fs = fs
        self._counter = counter

    def __getattr__(self, name: str) -> Any:
        return getattr(self._fs, name)

    def cat_file(self, path: str, start: int | None = None, end: int | None = None,
                 **kwargs: Any) -> bytes:
        """Read one byte range and count it."""
        data = self._fs.cat_file(path, start=start, end=end, **kwargs)
        self._counter.add(len(data))
        return data

    def cat_ranges(self, paths: list[str], starts: list[int], ends: list[int],
                   **kwargs: Any) -> list[bytes]:
        """Read several byte ranges (thread path) and count them."""
        results = self._fs.cat_ranges(paths, starts, ends, **kwargs)
        self._counter.add(_payload_size(results), len(paths))
        return results

    async def _cat_ranges(self, paths: list[str], starts: list[int], ends: list[int],
                          **kwargs: Any) -> list[bytes]:
        """Read several byte ranges (async path) and count them."""
        results = await self._fs._cat_ranges(paths, starts, ends, **kwargs)
        self._counter.add(_payload_size(results), len(paths))
        return results

    def close(self) -> None:
        """Filesystems are shared instances; closing the proxy leaves them open."""


class CountingFSSpecSource(FSSpecSource):
    """uproot source reading through a prepared fsspec filesystem and counting bytes.

    Pass ``intccms_fs`` (filesystem) and ``intccms_path`` (path on it) through
    ``uproot.open(..., handler=CountingFSSpecSource)``; the total is in ``.counter``.
    """

    def __init__(self, file_path: str, coalesce_config: Any = None, **options: Any) -> None:
        self._given_fs: fsspec.AbstractFileSystem = options.pop("intccms_fs")
        self._given_path: str = options.pop("intccms_path")
        self.counter = ByteCounter()
        super().__init__(file_path, coalesce_config, **options)

    def _open(self) -> None:
        # Reuse the filesystem configured by the storage backend (credentials, timeouts)
        # instead of letting fsspec build a second one from the URL.
        self._executor = FSSpecLoopExecutor()
        self._open_file = contextlib.nullcontext()
        self._fs = CountingFileSystem(self._given_fs, self.counter)
        self._file_path = self._given_path
        self._async_impl = self._given_fs.async_impl
        self._closed = False


class CountingMemmapSource(MemmapSource):
    """uproot's memory-mapped local source, counting every byte range it hands out.

    Local reads skip fsspec: a memory map is uproot's fastest local path, and the ranges it
    serves are the bytes taken from disk (or the page cache).
    """

    def __init__(self, file_path: str, **options: Any) -> None:
        self.counter = ByteCounter()
        super().__init__(file_path, **options)

    def chunk(self, start: int, stop: int) -> Any:
        """Serve one range and count it."""
        result = super().chunk(start, stop)
        self.counter.add(stop - start)
        return result

    def chunks(self, ranges: list[tuple[int, int]], notifications: Any) -> Any:
        """Serve several ranges and count them."""
        result = super().chunks(ranges, notifications)
        self.counter.add(sum(stop - start for start, stop in ranges), len(ranges))
        return result


class CountingFile:
    """Proxy of a binary file object that counts the bytes its reads return.

    Open the underlying fsspec file unbuffered (``cache_type="none"``) so each read is one
    request to storage and the count equals what was transferred.
    """

    def __init__(self, fileobj: Any, counter: ByteCounter) -> None:
        self._f = fileobj
        self._counter = counter

    def __getattr__(self, name: str) -> Any:
        return getattr(self._f, name)

    def read(self, size: int = -1) -> bytes:
        """Read and count."""
        data = self._f.read(size)
        self._counter.add(len(data))
        return data

    def readinto(self, buffer: Any) -> int:
        """Read into a buffer and count."""
        data = self.read(len(memoryview(buffer)))
        memoryview(buffer)[: len(data)] = data
        return len(data)

    def __enter__(self) -> CountingFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self._f.close()


__all__ = ["ByteCounter", "CountingFSSpecSource", "CountingFile", "CountingFileSystem",
           "CountingMemmapSource"]

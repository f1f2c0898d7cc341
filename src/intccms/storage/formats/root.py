"""ROOT input through uproot: TTree or RNTuple, detected from the object in the file."""

from __future__ import annotations

import contextlib
import lzma
import struct
import zlib
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import awkward as ak
import cramjam
import uproot

from intccms.storage.counting import CountingFSSpecSource, CountingMemmapSource
from intccms.storage.errors import (
    FATAL_STORAGE_ERRORS,
    CorruptFileError,
    StorageNotFoundError,
)
from intccms.storage.formats.base import Format, Reader

if TYPE_CHECKING:
    from intccms.storage.counting import ByteCounter
    from intccms.storage.schemes import Backend

ROOT_MAGIC = b"root"

# What uproot raises when a file's bytes cannot be decoded: damaged compressed blocks, records
# that do not deserialise, offsets and sizes that contradict each other. Network errors are
# not among them (the backend maps those, and an outage is retried, a corrupt file never);
# ValueError, uproot's other complaint about a file, is bad input already.
DECODE_ERRORS: tuple[type[BaseException], ...] = (
    cramjam.DecompressionError, zlib.error, lzma.LZMAError, uproot.DeserializationError,
    struct.error, IndexError, AssertionError, OverflowError,
)


@contextlib.contextmanager
def decoding(url: str) -> Iterator[None]:
    """Turn an error decoding ``url``'s bytes into a :class:`CorruptFileError` naming the file,
    so it is bad input (skipped or named) instead of a failure Dask retries to no avail."""
    try:
        yield
    except DECODE_ERRORS as exc:
        problem = " ".join(str(exc).split())  # uproot's messages span lines
        msg = (f"{url} is corrupt: its data cannot be decoded ({type(exc).__name__}: {problem}); "
               "replace or remove the file")
        raise CorruptFileError(msg) from exc


def not_a_root_file(backend: Backend, url: str) -> CorruptFileError | None:
    """The error for a readable file that does not start with ROOT's magic bytes (asked only
    after uproot failed, so a good file costs no extra read)."""
    try:
        head = backend.read_bytes(url, 0, len(ROOT_MAGIC))
    except OSError:
        return None
    if head == ROOT_MAGIC:
        return None
    what = "it is empty (0 bytes)" if not head else f"it begins with {head!r}, not {ROOT_MAGIC!r}"
    return CorruptFileError(f"{url} is not a ROOT file: {what}")


# Errors open_root passes on as they are: the job stops on them, they are not "not ROOT".
_PASSED_THROUGH: tuple[type[Exception], ...] = (*FATAL_STORAGE_ERRORS, StorageNotFoundError)


def open_root(backend: Backend, url: str, reader_kwargs: Mapping[str, Any] | None = None
              ) -> tuple[Any, Any]:
    """Open a ROOT file through the backend's filesystem with a byte-counting source.

    ``reader_kwargs`` are ``uproot.open`` options (e.g. ``begin_chunk_size``); the source
    handler and the filesystem are the backend's, so they cannot be overridden.

    Returns:
        tuple: The uproot file and its source (whose ``counter`` holds the bytes received).
    """
    extra = dict(reader_kwargs or {})
    fixed = sorted(set(extra) & {"handler", "intccms_fs", "intccms_path"})
    if fixed:
        msg = f"storage.reader_kwargs.root cannot set {fixed} (the storage backend chooses them)"
        raise ValueError(msg)
    try:
        with backend.errors(url), decoding(url):
            handle = _open_handle(backend, url, extra)
    except _PASSED_THROUGH:
        raise
    except Exception as exc:
        # A text file named .root fails as "too short" or "corrupt": say what it is instead.
        not_root = not_a_root_file(backend, url)
        if not_root is not None:
            raise not_root from exc
        raise
    return handle, handle.file.source


def _open_handle(backend: Backend, url: str, extra: Mapping[str, Any]) -> Any:
    if backend.scheme == "file":
        return uproot.open({backend.path(url): None}, handler=CountingMemmapSource, **extra)
    return uproot.open(
        {url: None},
        handler=CountingFSSpecSource,
        intccms_fs=backend.filesystem(url),
        intccms_path=backend.path(url),
        **{"timeout": backend.options.timeout_s, **extra},
    )


def kind_of(obj: Any) -> str:
    """Return ``"ttree"`` or ``"rntuple"`` for an uproot object."""
    return "rntuple" if "RNTuple" in type(obj).__name__ else "ttree"


class RootReader(Reader):
    """Columns of one TTree or RNTuple; the byte total comes from the source's counter."""

    fmt = "root"

    def __init__(self, handle: Any, source: Any, url: str, tree: str,
                 counter: ByteCounter) -> None:
        self._handle = handle
        self._url = url
        self._source = source
        self._outer = counter
        self._seen = 0
        names = [k.split(";")[0] for k in handle.keys(recursive=False)]
        if tree not in names:
            handle.close()
            msg = f"{url} has no tree {tree!r} (it has {sorted(set(names))}); pass tree=..."
            raise StorageNotFoundError(msg)
        self._obj = handle[tree]
        self.kind = kind_of(self._obj)
        self.num_entries = int(self._obj.num_entries)
        self.sync_bytes()

    def sync_bytes(self) -> None:
        """Copy new bytes from uproot's source counter into the reader's counter."""
        total = self._source.counter.total
        self._outer.add(total - self._seen, 0)
        self._seen = total

    def columns(self) -> list[str]:
        """Return the flat branch / field names."""
        return list(self._obj.keys())

    def read(self, columns: Sequence[str], entry_start: int, entry_stop: int
             ) -> dict[str, ak.Array]:
        """Read the columns for the entry range (jagged stays jagged, counters flat)."""
        if not columns:
            return {}
        try:
            with decoding(self._url):
                record = self._obj.arrays(filter_name=list(columns), entry_start=entry_start,
                                          entry_stop=entry_stop, library="ak")
        finally:
            self.sync_bytes()
        return {name: record[name] for name in columns}

    def close(self) -> None:
        """Close the uproot file (and its source)."""
        self.sync_bytes()
        self._handle.close()


class RootFormat(Format):
    """Reads TTree and RNTuple inputs (NanoAOD, or skims written by this package)."""

    name = "root"

    def open(self, backend: Backend, url: str, tree: str, counter: ByteCounter,
             reader_kwargs: Mapping[str, Any] | None = None) -> Reader:
        """Open ``url`` (``reader_kwargs``: ``uproot.open`` options) and locate ``tree``."""
        handle, source = open_root(backend, url, reader_kwargs)
        try:
            with backend.errors(url), decoding(url):
                return RootReader(handle, source, url, tree, counter)
        except BaseException:
            handle.close()
            raise

    def is_complete(self, backend: Backend, url: str, size: int) -> bool:
        """Check the header magic, then that uproot can read the directory and a tree."""
        if size < 64 or backend.read_bytes(url, 0, 4) != ROOT_MAGIC:
            return False
        try:
            handle, _ = open_root(backend, url)
            with handle:
                # A ROOT file records its own end; a short file was cut off mid-write.
                if handle.file.fEND != size:
                    return False
                for key in handle.keys(recursive=False):
                    obj = handle[key]
                    if hasattr(obj, "num_entries"):
                        _ = obj.num_entries
                        _ = obj.keys()
        except Exception:  # noqa: BLE001 - any unreadable structure means: not a complete file
            return False
        return True

"""One class per on-disk format (parquet, TTree, RNTuple) behind one interface.

Formats turn flat NanoAOD-style column dictionaries into files and back; they do not care
where the bytes live (that is :mod:`intccms.storage.schemes`).
"""

from __future__ import annotations

from intccms.storage.formats.base import Format, Reader
from intccms.storage.formats.parquet import ParquetFormat
from intccms.storage.formats.rntuple import RNTupleFormat
from intccms.storage.formats.root import RootFormat
from intccms.storage.formats.ttree import TTreeFormat

WRITE_FORMATS: dict[str, type[Format]] = {
    "parquet": ParquetFormat,
    "ttree": TTreeFormat,
    "rntuple": RNTupleFormat,
}
READ_FORMATS: dict[str, type[Format]] = {
    "parquet": ParquetFormat,
    "root": RootFormat,
    "ttree": RootFormat,
    "rntuple": RootFormat,
}
_EXTENSIONS = {"parquet": "parquet", "parq": "parquet", "pq": "parquet", "root": "root"}


def format_from_extension(url: str, ext: str) -> str:
    """Return the read format for a file extension.

    Raises:
        ValueError: For an unknown extension, naming the URL.
    """
    try:
        return _EXTENSIONS[ext]
    except KeyError:
        msg = (f"cannot tell the format of {url!r} from its extension {ext!r}; pass fmt='root' "
               "or fmt='parquet'")
        raise ValueError(msg) from None


def writer_for(fmt: str) -> Format:
    """Return the writer of a format (``parquet``, ``ttree``, ``rntuple``)."""
    try:
        return WRITE_FORMATS[fmt]()
    except KeyError:
        msg = f"unknown output format {fmt!r}; expected one of {sorted(WRITE_FORMATS)}"
        raise ValueError(msg) from None


def reader_for(fmt: str) -> Format:
    """Return the reader of a format (``root`` covers TTree and RNTuple, or ``parquet``)."""
    try:
        return READ_FORMATS[fmt]()
    except KeyError:
        msg = f"unknown input format {fmt!r}; expected one of {sorted(READ_FORMATS)}"
        raise ValueError(msg) from None


__all__ = ["Format", "ParquetFormat", "RNTupleFormat", "Reader", "RootFormat", "TTreeFormat",
           "format_from_extension", "reader_for", "writer_for"]

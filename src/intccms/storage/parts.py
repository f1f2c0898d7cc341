"""Writing parts atomically and checking that committed parts are complete."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import awkward as ak

from intccms.storage.errors import StorageNotFoundError
from intccms.storage.formats import format_from_extension, reader_for, writer_for
from intccms.storage.formats.columns import check_lengths
from intccms.storage.options import StorageOptions
from intccms.storage.schemes import backend_for, is_temporary_name
from intccms.storage.urls import extension_of


@dataclass(frozen=True)
class WrittenPart:
    """A committed output part.

    Attributes:
        url: Where it is.
        entries: Number of entries written.
        bytes: File size in bytes.
    """

    url: str
    entries: int
    bytes: int


def write_part(arrays: Mapping[str, ak.Array], url: str, fmt: str, *,
               options: StorageOptions | None = None,
               writer_kwargs: Mapping[str, Any] | None = None) -> WrittenPart:
    """Write flat NanoAOD-style columns to ``url`` atomically.

    The file is written under a temporary name and only then published (``os.replace``
    locally; one PUT / completed multipart upload on S3; temporary name + ``mv`` on
    XRootD), so an interrupted write never leaves anything at ``url``.

    Args:
        arrays: Column name -> array; jagged columns keep their ``Coll_field`` names and
            get an ``nColl`` counter.
        url: Destination.
        fmt: ``"parquet"``, ``"ttree"`` or ``"rntuple"``.
        options: Storage options.
        writer_kwargs: Format options (compression, level, basket_entries, row_group_size).

    Returns:
        WrittenPart: url, entries and bytes of the committed file.
    """
    writer = writer_for(fmt)
    entries = check_lengths(arrays, url)
    backend = backend_for(url, options)
    with backend.staging(url) as local:
        writer.write(arrays, local, writer_kwargs or {})
        size = os.path.getsize(local)
    return WrittenPart(url=url, entries=entries, bytes=size)


def exists_complete(url: str, options: StorageOptions | None = None) -> bool:
    """Return whether ``url`` holds a complete, readable part (size > 0, valid header/footer).

    Temporary names left by interrupted writes are never complete.
    """
    if is_temporary_name(url):
        return False
    backend = backend_for(url, options)
    try:
        if not backend.exists(url):
            return False
        size = backend.size(url)
    except StorageNotFoundError:
        return False
    if size <= 0:
        return False
    fmt = format_from_extension(url, extension_of(url))
    return reader_for(fmt).is_complete(backend, url, size)


def remove(url: str, options: StorageOptions | None = None) -> None:
    """Delete ``url`` if it exists."""
    backend_for(url, options).remove(url)

"""The interface every format implements."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import awkward as ak

if TYPE_CHECKING:
    from intccms.storage.counting import ByteCounter
    from intccms.storage.schemes import Backend


class Reader(ABC):
    """An open input: lists columns, reads entry ranges, closes."""

    fmt: str
    num_entries: int

    @abstractmethod
    def columns(self) -> list[str]:
        """Return the flat column names."""

    @abstractmethod
    def read(self, columns: Sequence[str], entry_start: int, entry_stop: int
             ) -> dict[str, ak.Array]:
        """Read existing columns for ``[entry_start, entry_stop)``."""

    @abstractmethod
    def close(self) -> None:
        """Release files and connections."""


class Format(ABC):
    """Writer and reader of one on-disk format."""

    name: ClassVar[str]

    def write(self, arrays: Mapping[str, ak.Array], local_path: str,
              writer_kwargs: Mapping[str, Any]) -> None:
        """Write flat NanoAOD-style columns to a local file."""
        msg = f"format {self.name!r} is read-only here; write 'ttree', 'rntuple' or 'parquet'"
        raise NotImplementedError(msg)

    @abstractmethod
    def open(self, backend: Backend, url: str, tree: str, counter: ByteCounter,
             reader_kwargs: Mapping[str, Any] | None = None) -> Reader:
        """Open ``url`` for reading through ``backend``, counting bytes in ``counter``.

        ``reader_kwargs`` are the format's reader options (``storage.reader_kwargs.<format>``).
        """

    @abstractmethod
    def is_complete(self, backend: Backend, url: str, size: int) -> bool:
        """Return whether the file at ``url`` (of ``size`` bytes) is complete and readable."""

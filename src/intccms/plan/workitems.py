"""Split files into chunks (entry ranges): the unit of work of every stage."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class WorkItem:
    """One entry range of one file of one dataset."""

    dataset: str
    file: str
    file_index: int
    chunk_index: int
    entry_start: int
    entry_stop: int

    @property
    def entries(self) -> int:
        return self.entry_stop - self.entry_start


def chunk_file(
    dataset: str, file: str, file_index: int, num_entries: int, chunksize: int,
    max_chunks: int | None = None,
) -> list[WorkItem]:
    """Equal-size chunks of at most ``chunksize`` entries covering ``[0, num_entries)``."""
    if chunksize <= 0:
        msg = f"workflow.chunksize must be positive, got {chunksize}"
        raise ValueError(msg)
    if num_entries <= 0:
        return []
    n_chunks = -(-num_entries // chunksize)
    size = -(-num_entries // n_chunks)
    items = [
        WorkItem(dataset, file, file_index, i, i * size, min((i + 1) * size, num_entries))
        for i in range(n_chunks)
        if i * size < num_entries
    ]
    if max_chunks is not None:
        items = items[:max_chunks]
    return items


def total_entries(items: Iterable[WorkItem]) -> int:
    """Entries covered by a set of work items."""
    return sum(item.entries for item in items)

"""Record the byte ranges uproot asks storage for, and name the branches they belong to.

The storage layer picks the uproot source (:mod:`intccms.storage.counting`); while
:func:`record_ranges` is active, every range those sources serve is also noted, per file, before
any coalescing of remote reads. Mapping the ranges onto the baskets of a tree tells which
branches a piece of code really read: no list of branches is written by hand.
"""

from __future__ import annotations

import bisect
import contextlib
import threading
from collections.abc import Iterator
from typing import Any

from intccms.storage.counting import CountingFSSpecSource, CountingMemmapSource

_LOCK = threading.Lock()


class RangeLog:
    """Byte ranges ``(start, stop)`` served per file path while recording."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.ranges: dict[str, list[tuple[int, int]]] = {}

    def add(self, path: str, start: int, stop: int) -> None:
        """Note one range of ``path``."""
        with self._lock:
            self.ranges.setdefault(path, []).append((int(start), int(stop)))

    def for_file(self, path: str) -> list[tuple[int, int]]:
        """Ranges of one file (matched on the path's end, as sources store paths differently)."""
        out: list[tuple[int, int]] = []
        for key, ranges in self.ranges.items():
            if key == path or path.endswith(key) or key.endswith(path):
                out.extend(ranges)
        return sorted(out)


@contextlib.contextmanager
def record_ranges() -> Iterator[RangeLog]:
    """Record every range the project's uproot sources serve in this process.

    Only one recording runs at a time; the sources behave exactly as without it.
    """
    log = RangeLog()
    patched: list[tuple[type, str, Any]] = []

    def wrap(cls: type, name: str, single: bool) -> None:
        original = cls.__dict__.get(name) or getattr(cls, name)

        def chunk(self: Any, start: int, stop: int, *args: Any, **kwargs: Any) -> Any:
            log.add(str(self.file_path), start, stop)
            return original(self, start, stop, *args, **kwargs)

        def chunks(self: Any, ranges: Any, *args: Any, **kwargs: Any) -> Any:
            for start, stop in ranges:
                log.add(str(self.file_path), start, stop)
            return original(self, ranges, *args, **kwargs)

        patched.append((cls, name, cls.__dict__.get(name)))
        setattr(cls, name, chunk if single else chunks)

    with _LOCK:
        try:
            for cls in (CountingMemmapSource, CountingFSSpecSource):
                wrap(cls, "chunk", single=True)
                wrap(cls, "chunks", single=False)
            yield log
        finally:
            for cls, name, original in reversed(patched):
                if original is None:
                    delattr(cls, name)
                else:
                    setattr(cls, name, original)


def branches_read(tree: Any, ranges: list[tuple[int, int]]) -> list[str]:
    """Branches of ``tree`` with at least one basket wholly inside a recorded range.

    Args:
        tree: an uproot TTree of the traced file.
        ranges: sorted ``(start, stop)`` byte ranges served for that file.

    Returns:
        Branch names in tree order.
    """
    if not ranges:
        return []
    starts = [r[0] for r in ranges]
    reach: list[int] = []
    best = -1
    for _, stop in ranges:  # furthest stop among ranges starting at or before each start
        best = max(best, stop)
        reach.append(best)
    out = []
    for branch in tree.values():
        n = int(branch.member("fWriteBasket"))  # baskets written on their own (not embedded)
        seeks = branch.member("fBasketSeek")
        sizes = branch.member("fBasketBytes")
        for i in range(min(n, len(sizes))):
            seek, size = int(seeks[i]), int(sizes[i])
            if size <= 0:
                continue
            k = bisect.bisect_right(starts, seek) - 1
            if k >= 0 and reach[k] >= seek + size:
                out.append(branch.name)
                break
    return out

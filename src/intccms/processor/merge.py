"""Merge chunk outputs on the workers in a tree whose shape depends only on what is merged.

Results arrive in any order; :class:`OrderedTree` takes them in plan order (file, then entry
range) and combines them like a binary counter: the n-th kept result joins a stack of
partial sums of 1, 2, 4, ... consecutive results, and equal-sized neighbours are combined as
soon as both exist. The shape, and so every floating-point sum, is a function of the sequence
of kept results alone: not of completion order, worker count or retries, and a run that drops a
bad file equals, bit for bit, a run that never had it. Combining is delegated (a Dask task on
futures), so the driver holds handles, never outputs; the live partial sums are at most
log2(n) + the results waiting for an earlier one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from coffea.processor import accumulate

T = TypeVar("T")


class MergeError(RuntimeError):
    """Two outputs could not be added; names the chunks on each side."""


@dataclass
class OrderedTree(Generic[T]):
    """Combine values given by position, in position order, in a fixed-shape tree.

    Args:
        combine: ``combine(left, right)`` for two consecutive runs of values (left first).

    Positions ``0 .. n-1`` are each settled exactly once, with a value or with ``None`` (left
    out, e.g. a dropped file); values are combined as soon as every earlier position is settled.
    """

    combine: Callable[[T, T], T]
    _next: int = 0
    _waiting: dict[int, T | None] = field(default_factory=dict)
    _stack: list[tuple[int, T]] = field(default_factory=list)  # (number of values, partial sum)

    def put(self, position: int, value: T | None) -> None:
        """Settle ``position`` with ``value`` (``None``: nothing to merge there)."""
        if position < self._next or position in self._waiting:
            msg = f"position {position} was settled twice"
            raise ValueError(msg)
        self._waiting[position] = value
        while self._next in self._waiting:
            ready = self._waiting.pop(self._next)
            self._next += 1
            if ready is not None:
                self._push(ready)

    def _push(self, value: T) -> None:
        size, acc = 1, value
        while self._stack and self._stack[-1][0] == size:
            left_size, left = self._stack.pop()
            size, acc = left_size + size, self.combine(left, acc)
        self._stack.append((size, acc))

    @property
    def settled(self) -> int:
        """Positions settled in order so far."""
        return self._next

    @property
    def held(self) -> int:
        """Values held: partial sums plus values waiting for an earlier position."""
        return len(self._stack) + sum(v is not None for v in self._waiting.values())

    def result(self, expected: int) -> T | None:
        """The combination of every kept value (``None`` when none was kept).

        Raises:
            RuntimeError: fewer than ``expected`` positions are settled (a result would be lost).
        """
        if self._next != expected or self._waiting:
            msg = f"{expected - self._next} of {expected} positions are not settled; the merge is incomplete"
            raise RuntimeError(msg)
        if not self._stack:
            return None
        _, acc = self._stack[-1]
        for _, left in reversed(self._stack[:-1]):
            acc = self.combine(left, acc)
        return acc


def merge_outputs(left: Any, right: Any, left_label: str, right_label: str) -> Any:
    """``accumulate([left, right])`` into a new object (a retried merge must find its inputs
    unchanged, so neither is modified in place).

    Raises:
        MergeError: naming the chunks on each side and coffea's reason.
    """
    try:
        return accumulate([left, right])
    except Exception as err:
        msg = f"cannot merge the outputs of {left_label} and of {right_label}: {type(err).__name__}: {err}"
        raise MergeError(msg) from err


__all__ = ["MergeError", "OrderedTree", "merge_outputs"]

"""What ``coffea.processor.accumulate`` can merge, checked where the output is made.

A chunk's output that cannot be added to the next one would only fail in a merge task, far from
the ``process()`` that made it; checking it on the worker names the offending key, its type,
and the chunk.
"""

from __future__ import annotations

from collections.abc import MutableMapping, MutableSet
from typing import Any

import awkward as ak
from coffea.processor.accumulator import Addable


class NotAnAccumulatorError(TypeError):
    """A processor output (or a value inside it) cannot be accumulated."""


_HINT = ("outputs are accumulators: dicts of hist.Hist, processor.defaultdict_accumulator, "
         "processor.column_accumulator, sets, numbers")


def check_accumulator(value: Any, where: str = "output") -> None:
    """Raise unless ``value`` (and every value of its mappings) can be accumulated.

    ``None`` and awkward arrays are refused too: coffea drops a ``None`` output silently, and
    adding awkward arrays adds them element by element instead of concatenating them (use
    ``processor.column_accumulator``).

    Raises:
        NotAnAccumulatorError: naming the key path (``output['mass']['DY']``) and the type.
    """
    if value is None:
        msg = f"{where} is None; process() must return the chunk's accumulator ({_HINT})"
        raise NotAnAccumulatorError(msg)
    if isinstance(value, ak.Array | ak.Record):
        msg = (f"{where} is an awkward {type(value).__name__}, which accumulates by element-wise "
               "addition; wrap columns in processor.column_accumulator (of numpy arrays)")
        raise NotAnAccumulatorError(msg)
    if isinstance(value, MutableMapping):
        for key, item in value.items():
            check_accumulator(item, f"{where}[{key!r}]")
        return
    if isinstance(value, MutableSet | Addable):
        return
    msg = f"{where} is a {type(value).__module__}.{type(value).__qualname__}, which cannot be accumulated ({_HINT})"
    raise NotAnAccumulatorError(msg)


__all__ = ["NotAnAccumulatorError", "check_accumulator"]

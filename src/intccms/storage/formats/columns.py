"""Flat NanoAOD naming: jagged ``Coll_field`` columns share a counter ``nColl``."""

from __future__ import annotations

from collections.abc import Mapping

import awkward as ak
import numpy as np


def is_jagged(array: ak.Array) -> bool:
    """Return whether the outer dimension of ``array`` is variable-length."""
    content = ak.type(array).content
    while isinstance(content, ak.types.OptionType):
        content = content.content
    return isinstance(content, ak.types.ListType)


def counter_name(collection: str) -> str:
    """Return the NanoAOD counter branch name of a collection (``Jet`` -> ``nJet``)."""
    return f"n{collection}"


def collection_of(column: str) -> str:
    """Return the collection prefix of a jagged column (``Jet_pt`` -> ``Jet``)."""
    return column.split("_", 1)[0] if "_" in column else column


def check_lengths(arrays: Mapping[str, ak.Array], where: str) -> int:
    """Return the common number of entries; raise naming the first mismatching column."""
    lengths = {name: len(arr) for name, arr in arrays.items()}
    if not lengths:
        msg = f"nothing to write to {where}: no columns given"
        raise ValueError(msg)
    first = next(iter(lengths.items()))
    for name, n in lengths.items():
        if n != first[1]:
            msg = (f"columns for {where} differ in length: {first[0]} has {first[1]} entries, "
                   f"{name} has {n}")
            raise ValueError(msg)
    return first[1]


def with_counters(arrays: Mapping[str, ak.Array]) -> dict[str, ak.Array]:
    """Add the ``nColl`` counter of every jagged collection that lacks one.

    coffea's NanoAOD schema needs the counters to rebuild collections, so every format
    stores them; existing counters are kept and checked against the data.
    """
    out = {name: ak.Array(arr) for name, arr in arrays.items()}
    for name, arr in list(out.items()):
        if not is_jagged(arr):
            continue
        counts = ak.num(arr, axis=1)
        cname = counter_name(collection_of(name))
        if cname not in out:
            out[cname] = ak.values_astype(counts, np.int32)
        elif not ak.all(ak.Array(out[cname]) == counts):
            msg = f"column {name} does not match its counter {cname}; fix the skim selection"
            raise ValueError(msg)
    return out

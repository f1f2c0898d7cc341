"""TTree output in NanoAOD layout (``nJet`` counter + ``Jet_pt`` branches) via ``mktree``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import awkward as ak
import uproot

from intccms.storage.formats.columns import (
    collection_of,
    counter_name,
    is_jagged,
    with_counters,
)
from intccms.storage.formats.compression import root_compression
from intccms.storage.formats.root import RootFormat

TREE = "Events"


def group_for_mktree(arrays: Mapping[str, ak.Array]) -> dict[str, ak.Array]:
    """Zip jagged ``Coll_field`` columns into one record per collection.

    uproot then writes one shared ``nColl`` counter and ``Coll_field`` branches, as NanoAOD
    does; the counters already present in ``arrays`` are dropped because mktree makes them.
    """
    full = with_counters(arrays)
    groups: dict[str, dict[str, ak.Array]] = {}
    flat: dict[str, ak.Array] = {}
    for name, arr in full.items():
        if is_jagged(arr) and "_" in name:
            coll, field = name.split("_", 1)
            groups.setdefault(coll, {})[field] = arr
        else:
            flat[name] = arr
    counters = {counter_name(c) for c in groups} | {
        counter_name(collection_of(n)) for n, a in flat.items() if is_jagged(a)}
    out: dict[str, ak.Array] = {n: a for n, a in flat.items() if n not in counters}
    for coll, fields in groups.items():
        out[coll] = ak.zip(fields, depth_limit=2)
    return out


class TTreeFormat(RootFormat):
    """Writes a NanoAOD-style TTree; reading is shared with :class:`RootFormat`."""

    name = "ttree"

    def write(self, arrays: Mapping[str, ak.Array], local_path: str,
              writer_kwargs: Mapping[str, Any]) -> None:
        """Write ``arrays`` as tree ``Events``.

        Args:
            arrays: Flat NanoAOD-style columns.
            local_path: Destination file.
            writer_kwargs: ``compression``, ``level``, ``basket_entries`` (entries per basket),
                ``tree`` (name, default ``Events``).
        """
        data = group_for_mktree(arrays)
        entries = len(next(iter(data.values())))
        step = int(writer_kwargs.get("basket_entries", max(entries, 1)))
        with uproot.recreate(local_path, compression=root_compression(writer_kwargs)) as out:
            tree = out.mktree(
                writer_kwargs.get("tree", TREE),
                {name: arr.type for name, arr in data.items()},
                counter_name=counter_name,
                field_name=lambda outer, inner: f"{outer}_{inner}",
            )
            for start in range(0, entries, step):
                tree.extend({name: arr[start:start + step] for name, arr in data.items()})

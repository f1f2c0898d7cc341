"""RNTuple output: uproot writes ``f["Events"] = {...}`` as an RNTuple with flat field names."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import awkward as ak
import uproot

from intccms.storage.formats.columns import with_counters
from intccms.storage.formats.compression import root_compression
from intccms.storage.formats.root import RootFormat

TREE = "Events"


class RNTupleFormat(RootFormat):
    """Writes an RNTuple with counters included; reading is shared with :class:`RootFormat`."""

    name = "rntuple"

    def write(self, arrays: Mapping[str, ak.Array], local_path: str,
              writer_kwargs: Mapping[str, Any]) -> None:
        """Write ``arrays`` as RNTuple ``Events`` (``compression``, ``level``, ``tree``)."""
        data = with_counters(arrays)
        with uproot.recreate(local_path, compression=root_compression(writer_kwargs)) as out:
            out[writer_kwargs.get("tree", TREE)] = data

"""uproot compression settings from plain writer options."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import uproot

_ALGORITHMS = {"zstd": uproot.ZSTD, "lzma": uproot.LZMA, "zlib": uproot.ZLIB, "lz4": uproot.LZ4}


def root_compression(writer_kwargs: Mapping[str, Any]) -> Any:
    """Return an uproot compression object (default ZSTD level 5: fast to read back).

    Args:
        writer_kwargs: May hold ``compression`` (name, uproot object or None) and ``level``.
    """
    choice = writer_kwargs.get("compression", "zstd")
    if choice is None or not isinstance(choice, str):
        return choice
    try:
        algorithm = _ALGORITHMS[choice.lower()]
    except KeyError:
        msg = f"unknown ROOT compression {choice!r}; expected one of {sorted(_ALGORITHMS)}"
        raise ValueError(msg) from None
    return algorithm(int(writer_kwargs.get("level", 5)))

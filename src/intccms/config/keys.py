"""Key suggestions from the schema dataclasses: the one "did you mean" of every group."""

from __future__ import annotations

import dataclasses
import difflib
import typing
from typing import Any


def unknown_key_message(full_key: str, allowed: list[str]) -> str:
    """``"a.b.kye is not a known key; did you mean 'key'? Valid keys under 'a.b': ..."``.

    The one wording of an unknown key in every group, so a user learns to read it once.
    """
    parent, _, key = full_key.rpartition(".")
    close = difflib.get_close_matches(key, allowed, n=3)
    guess = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    return f"{full_key} is not a known key{guess} Valid keys under '{parent or '<root>'}': {', '.join(allowed)}"


def did_you_mean(full_key: str, root: type, prefix: str = "") -> str | None:
    """:func:`unknown_key_message` for ``full_key`` below the schema dataclass ``root``.

    It walks the schema's dataclass types (through optional groups and dictionaries of
    dataclasses), so it also works where the composed node is None (``statistics``, ``mva``,
    ``cluster.kubernetes`` not selected). ``prefix`` is where ``root`` sits in the whole
    configuration (``"mva."``), so the message names the full key. None when the parent of
    ``full_key`` is not a dataclass of the schema.
    """
    parent = full_key.rpartition(".")[0]
    allowed = schema_keys(parent, root)
    return unknown_key_message(prefix + full_key, allowed) if allowed else None


def schema_keys(path: str, root: type) -> list[str]:
    """Field names of the schema dataclass at a dotted path (``[]`` where there is none).

    Path parts that index a dictionary of dataclasses (``datasets.<name>``) step into its
    value type.
    """
    cls: Any = root
    for part in filter(None, path.split(".")):
        if typing.get_origin(cls) is dict:  # dict[str, X]: this part is a name, step into X
            cls = _dataclass_in(typing.get_args(cls)[1])
        elif dataclasses.is_dataclass(cls):
            cls = _dataclass_in(typing.get_type_hints(cls).get(part))
        else:
            return []
    return sorted(f.name for f in dataclasses.fields(cls)) if dataclasses.is_dataclass(cls) else []


def dict_entry_schema(path: str, root: type) -> type | None:
    """The dataclass of the entries when ``path`` is a ``dict[str, <dataclass>]`` of the schema
    (``datasets``, ``analysis.channels``, ``mva.features``), else None."""
    cls: Any = root
    for part in filter(None, path.split(".")):
        if typing.get_origin(cls) is dict:
            cls = _dataclass_in(typing.get_args(cls)[1])
        elif dataclasses.is_dataclass(cls):
            cls = _dataclass_in(typing.get_type_hints(cls).get(part))
        else:
            return None
    if typing.get_origin(cls) is not dict:
        return None
    entry = _dataclass_in(typing.get_args(cls)[1])
    return entry if isinstance(entry, type) and dataclasses.is_dataclass(entry) else None


def _dataclass_in(hint: Any) -> Any:  # noqa: ANN401
    """The dataclass (or ``dict[str, X]``) inside ``X | None``; None for anything else."""
    if dataclasses.is_dataclass(hint) or typing.get_origin(hint) is dict:
        return hint
    for arg in typing.get_args(hint):
        if arg is not type(None):
            return _dataclass_in(arg)
    return None


def schema_error(prefix: str, schema: type, err: Exception) -> str:
    """An OmegaConf error of merging a group over its schema as one line naming the full key
    (``prefix`` is where the group sits, e.g. ``"mva."``), with the suggestions for a typo."""
    key = str(getattr(err, "full_key", "") or "")
    unknown = did_you_mean(key, schema, prefix) if key and "not in" in str(err) else None
    if unknown is not None:
        return unknown
    where = f"{prefix}{key}" if key else prefix.rstrip(".")
    return f"{where}: {str(getattr(err, 'msg', err)).splitlines()[0]}"

"""Assemble NanoAOD collections (``Jet``, ``Muon``, ``PuppiMET``...) from flat branches."""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Mapping
from typing import Any

import awkward as ak
import numpy as np

from intccms.physics.jagged import take_events


def branch_names(
    collections: Mapping[str, Iterable[str]],
    event_columns: Iterable[str],
    *,
    exclude: Iterable[str] = (),
) -> list[str]:
    """Flat branch names a set of collections and event columns reads.

    Args:
        collections: collection name -> fields (``{"Jet": ["pt", "eta"]}``).
        event_columns: per-event branches read as they are.
        exclude: branches to leave out, names or globs (e.g. simulation-only branches for data).

    Returns:
        Sorted, de-duplicated branch names such as ``Jet_pt``.
    """
    names = {f"{coll}_{fld}" for coll, fields in collections.items() for fld in fields}
    names.update(event_columns)
    return sorted(n for n in names if not excluded(n, exclude))


def excluded(name: str, patterns: Iterable[str]) -> bool:
    """Whether a branch matches one of ``patterns`` (exact names or globs like ``GenPart_*``)."""
    return any(fnmatch.fnmatchcase(name, p) for p in patterns)


def resolve_fields(
    collections: Mapping[str, Iterable[str]], constants: Mapping[str, Any]
) -> dict[str, tuple[str, ...]]:
    """Expand era constants among a collection's fields (``HLT: ["@triggers"]``).

    Trigger paths differ between eras (``HLT_TkMu50`` exists only in 2016 NanoAOD), so a
    collection may name its fields through an era constant; each era then reads only the
    branches its files really have.

    Args:
        collections: collection name -> fields, where a field ``@name`` stands for the list
            (or single value) of the era constant ``name``.
        constants: the era's constants (``{"triggers": ["Mu50"], ...}``).

    Returns:
        Collection name -> the fields with every ``@name`` replaced, de-duplicated in order.

    Raises:
        KeyError: a field names an era constant that does not exist.
    """
    out: dict[str, tuple[str, ...]] = {}
    for coll, fields in collections.items():
        resolved: list[str] = []
        for fld in fields:
            if fld.startswith("@"):
                name = fld[1:]
                if name not in constants:
                    msg = (f"collection {coll}: field '{fld}' names no era constant "
                           f"(known: {sorted(constants)})")
                    raise KeyError(msg)
                value = constants[name]
                values = [value] if isinstance(value, str) else list(value)
                resolved.extend(str(v) for v in values)
            else:
                resolved.append(fld)
        out[coll] = tuple(dict.fromkeys(resolved))
    return out


def build_events(
    columns: Mapping[str, ak.Array],
    collections: Mapping[str, Iterable[str]],
    event_columns: Iterable[str],
) -> dict[str, ak.Array]:
    """Zip flat branches into records, one per collection, plus the event columns.

    Fields whose branch was not read (simulation-only fields of data) are left out of the
    record, so a function that needs them fails loudly instead of seeing zeros.

    Args:
        columns: branch name -> array, as read from storage.
        collections: collection name -> fields.
        event_columns: per-event branches passed through.

    Returns:
        Name -> array: a record array per collection, a plain array per event column.
    """
    events: dict[str, ak.Array] = {}
    for coll, fields in collections.items():
        present = {fld: columns[f"{coll}_{fld}"] for fld in fields if f"{coll}_{fld}" in columns}
        if present:
            events[coll] = ak.zip(present, with_name=None)
    for name in event_columns:
        if name in columns:
            events[name] = columns[name]
    return events


def num_events(events: Mapping[str, ak.Array]) -> int:
    """Number of events in an events mapping (all members have the same length)."""
    for value in events.values():
        return len(value)
    return 0


def filter_events(events: Mapping[str, ak.Array], mask: ak.Array) -> dict[str, ak.Array]:
    """Keep the events where ``mask`` is true in every member of the mapping."""

    flags = np.asarray(ak.to_numpy(mask), dtype=bool) if not isinstance(mask, np.ndarray) else mask
    return {name: take_events(value, flags) for name, value in events.items()}

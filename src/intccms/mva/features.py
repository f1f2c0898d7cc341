"""Feature functions and the feature matrix.

A feature is a function of named inputs (collections, objects, event columns, ``@constants``)
returning one number per event, referenced by import path like an observable. The functions
here cover the reference channel (one muon, one fat jet, at least two jets); any importable
function works.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import awkward as ak
import numpy as np

from intccms.physics.functors import call_shared, import_function
from intccms.physics.jagged import FlatCollection, counts_of, flat_view, object_field, record_fields


class FeatureError(KeyError):
    """A feature cannot be computed from the events (e.g. an input is missing)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


@dataclass(frozen=True)
class FeatureSpec:
    """One feature: its name, function, inputs and parameters (stored with the model)."""

    name: str
    function: str
    inputs: tuple[str, ...] = ()
    params: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "function": self.function, "inputs": list(self.inputs),
                "params": dict(self.params)}

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> FeatureSpec:
        return cls(name=str(doc["name"]), function=str(doc["function"]),
                   inputs=tuple(doc.get("inputs", ())), params=dict(doc.get("params", {})))


def specs_from_config(features: Mapping[str, Any]) -> tuple[FeatureSpec, ...]:
    """Feature specs in configuration order from ``mva.features``: the validated group, or plain
    mappings ``name -> {function, inputs, params}`` (a score observable's ``params.features``)."""
    specs = []
    for name, f in features.items():
        if isinstance(f, Mapping):
            specs.append(FeatureSpec(name=str(name), function=str(f["function"]),
                                     inputs=tuple(f.get("inputs") or ()), params=dict(f.get("params") or {})))
        else:
            specs.append(FeatureSpec(name=str(name), function=str(f.function), inputs=tuple(f.inputs),
                                     params=dict(f.params)))
    return tuple(specs)


def input_names(specs: Sequence[FeatureSpec]) -> tuple[str, ...]:
    """Every input the features read, in order of first use: the score observable's inputs."""
    names: list[str] = []
    for spec in specs:
        names.extend(n for n in spec.inputs if n not in names)
    return tuple(names)


def feature_matrix(specs: Sequence[FeatureSpec], namespace: Mapping[str, Any], n: int) -> np.ndarray:
    """Evaluate every feature on ``n`` events: an ``(n, len(specs))`` float64 array.

    Raises:
        FeatureError: an input is not in ``namespace``, or a feature returns the wrong shape;
            the message names the feature.
    """
    out = np.empty((n, len(specs)), dtype=np.float64)
    _VIEWS.memo = {}  # features of one matrix share the flat views of their inputs
    try:
        _fill_matrix(out, specs, namespace, n)
    finally:
        _VIEWS.memo = None
    return out


def _fill_matrix(out: np.ndarray, specs: Sequence[FeatureSpec], namespace: Mapping[str, Any], n: int) -> None:
    for j, spec in enumerate(specs):
        missing = [name for name in spec.inputs if name not in namespace]
        if missing:
            known = sorted(k for k in namespace if not k.startswith("_"))
            msg = (f"mva feature '{spec.name}' ({spec.function}) needs {missing}, which the events "
                   f"do not have (available: {known}); read it in analysis.collections or "
                   "event_columns, or define it under analysis.objects")
            raise FeatureError(msg)
        func = import_function(spec.function)
        # A feature that is also an observable of the fill (mtt) is computed once (shared_results).
        values = np.asarray(call_shared(spec.function, func, [namespace[k] for k in spec.inputs], spec.params),
                            dtype=np.float64)
        if values.shape != (n,):
            msg = f"mva feature '{spec.name}' ({spec.function}) returned shape {values.shape}, expected ({n},)"
            raise FeatureError(msg)
        out[:, j] = values


# -- feature functions ------------------------------------------------------------------------
# On flat arrays with offsets (intccms.physics.jagged), so a JES fill that recomputes the score
# 54 times per chunk pays numpy calls, not awkward dispatch.

_VIEWS = threading.local()  # per thread: id(array) -> (array, offsets, flat view) during one matrix


def _offsets_and_view(objects: ak.Array) -> tuple[np.ndarray, FlatCollection | None]:
    memo: dict[int, Any] | None = getattr(_VIEWS, "memo", None)
    hit = memo.get(id(objects)) if memo is not None else None
    if hit is not None and hit[0] is objects:
        return hit[1], hit[2]
    view = flat_view(objects)
    if view is not None:
        offsets = np.asarray(view.offsets, dtype=np.int64)
    else:
        counts = counts_of(objects)
        offsets = np.zeros(len(counts) + 1, dtype=np.int64)
        np.cumsum(counts, out=offsets[1:])
    if memo is not None:
        memo[id(objects)] = (objects, offsets, view)
    return offsets, view


def _per_event(objects: ak.Array, field_name: str) -> tuple[np.ndarray, np.ndarray]:
    """Offsets (events + 1) and the flat values of one field of every object."""
    offsets, view = _offsets_and_view(objects)
    values = view.fields[field_name] if view is not None else object_field(objects, field_name)
    return offsets, np.asarray(values, dtype=np.float64)


def leading(objects: ak.Array, field_name: str = "pt", index: int = 0, default: float = 0.0) -> np.ndarray:
    """A field of the ``index``-th object (0 = leading); ``default`` where there is none."""
    offsets, values = _per_event(objects, field_name)
    where = offsets[:-1] + index
    has = where < offsets[1:]
    out = np.full(len(has), float(default))
    out[has] = values[where[has]]
    return out


def count(objects: ak.Array) -> np.ndarray:
    """Number of objects per event."""
    return np.diff(_offsets_and_view(objects)[0]).astype(np.float64)


def scalar_sum(objects: ak.Array, field_name: str = "pt") -> np.ndarray:
    """Sum of a field over the objects of each event (``pt`` gives HT); objects are added in
    order, so an event's value does not depend on the other events."""
    offsets, values = _per_event(objects, field_name)
    out = np.zeros(len(offsets) - 1)
    counts = np.diff(offsets)
    for k in range(int(counts.max()) if len(counts) else 0):
        has = counts > k
        out[has] += values[offsets[:-1][has] + k]
    return out


def maximum(objects: ak.Array, field_name: str, default: float = 0.0) -> np.ndarray:
    """Largest value of a field over the objects of each event (e.g. the highest b-tag score)."""
    offsets, values = _per_event(objects, field_name)
    counts = np.diff(offsets)
    out = np.full(len(counts), float(default))
    has = counts > 0
    if np.any(has):
        out[has] = np.maximum.reduceat(values, offsets[:-1][has]) if len(values) else default
    return out


def met(met_record: ak.Array, field_name: str = "pt") -> np.ndarray:
    """A field of the per-event MET record."""
    return record_fields(met_record, (field_name,))[field_name]


def _phi(objects: ak.Array) -> np.ndarray:
    if isinstance(objects, ak.Array) and objects.ndim > 1:
        return leading(objects, "phi")
    return record_fields(objects, ("phi",))["phi"]


def delta_phi(first: ak.Array, second: ak.Array) -> np.ndarray:
    """|Δφ| in [0, π] between the leading object of ``first`` and ``second`` (an object
    collection, whose leading entry is used, or a per-event record such as MET)."""
    d = np.abs(_phi(first) - _phi(second)) % (2 * np.pi)
    return np.where(d > np.pi, 2 * np.pi - d, d)


def delta_r(first: ak.Array, second: ak.Array) -> np.ndarray:
    """ΔR between the leading objects of two collections."""
    deta = leading(first, "eta") - leading(second, "eta")
    return np.hypot(deta, delta_phi(first, second))

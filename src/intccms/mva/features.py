"""Feature functions and the feature matrix.

A feature is a function of named inputs (collections, objects, event columns, ``@constants``)
returning one number per event, referenced by import path like an observable. The functions
here cover the reference channel (one muon, one fat jet, at least two jets); any importable
function works.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import awkward as ak
import numpy as np

from intccms.physics.functors import import_function


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
    """Feature specs in configuration order from ``mva.features``."""
    return tuple(
        FeatureSpec(name=name, function=str(f.function), inputs=tuple(f.inputs), params=dict(f.params))
        for name, f in features.items()
    )


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
    for j, spec in enumerate(specs):
        missing = [name for name in spec.inputs if name not in namespace]
        if missing:
            known = sorted(k for k in namespace if not k.startswith("_"))
            msg = (f"mva feature '{spec.name}' ({spec.function}) needs {missing}, which the events "
                   f"do not have (available: {known}); read it in analysis.collections or "
                   "event_columns, or define it under analysis.objects")
            raise FeatureError(msg)
        func = import_function(spec.function)
        values = np.asarray(func(*[namespace[k] for k in spec.inputs], **spec.params), dtype=np.float64)
        if values.shape != (n,):
            msg = f"mva feature '{spec.name}' ({spec.function}) returned shape {values.shape}, expected ({n},)"
            raise FeatureError(msg)
        out[:, j] = values
    return out


# -- feature functions ------------------------------------------------------------------------

def _flat(values: ak.Array) -> np.ndarray:
    return np.asarray(ak.to_numpy(values), dtype=np.float64)


def _nth(objects: ak.Array, field_name: str, index: int, default: float) -> np.ndarray:
    padded = ak.pad_none(objects[field_name], index + 1, axis=1)[:, index]
    return _flat(ak.fill_none(padded, default))


def leading(objects: ak.Array, field_name: str = "pt", index: int = 0, default: float = 0.0) -> np.ndarray:
    """A field of the ``index``-th object (0 = leading); ``default`` where there is none."""
    return _nth(objects, field_name, index, default)


def count(objects: ak.Array) -> np.ndarray:
    """Number of objects per event."""
    return _flat(ak.num(objects, axis=1))


def scalar_sum(objects: ak.Array, field_name: str = "pt") -> np.ndarray:
    """Sum of a field over the objects of each event (``pt`` gives HT)."""
    return _flat(ak.sum(objects[field_name], axis=1))


def maximum(objects: ak.Array, field_name: str, default: float = 0.0) -> np.ndarray:
    """Largest value of a field over the objects of each event (e.g. the highest b-tag score)."""
    return _flat(ak.fill_none(ak.max(objects[field_name], axis=1), default))


def met(met_record: ak.Array, field_name: str = "pt") -> np.ndarray:
    """A field of the per-event MET record."""
    return _flat(met_record[field_name])


def delta_phi(first: ak.Array, second: ak.Array) -> np.ndarray:
    """|Δφ| in [0, π] between the leading object of ``first`` and ``second`` (an object
    collection, whose leading entry is used, or a per-event record such as MET)."""
    phi1 = _nth(first, "phi", 0, 0.0)
    phi2 = _nth(second, "phi", 0, 0.0) if second.ndim > 1 else _flat(second["phi"])
    d = np.abs(phi1 - phi2) % (2 * np.pi)
    return np.where(d > np.pi, 2 * np.pi - d, d)


def delta_r(first: ak.Array, second: ak.Array) -> np.ndarray:
    """ΔR between the leading objects of two collections."""
    deta = _nth(first, "eta", 0, 0.0) - _nth(second, "eta", 0, 0.0)
    return np.hypot(deta, delta_phi(first, second))

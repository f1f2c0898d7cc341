"""Event-weight corrections (pileup, muon SFs, b-tag shape) and their up/down sources.

Per-object scale factors are reduced to one number per event: the leading object's value
(``leading``; events without the object get 1) or the product over all objects (``product``).
A source restricted to some flavours changes only those objects; the others keep the nominal.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import awkward as ak
import numpy as np

from intccms.physics.corrections.inputs import FlatEvaluator, InputSpec, event_fields, flat_fields


@dataclass(frozen=True)
class WeightSource:
    """An up/down pair: variation base name, selectors, and the flavours it applies to."""

    variation: str
    up: str
    down: str
    flavours: tuple[int, ...] | None = None


class WeightCorrection:
    """One event-weight correction evaluated on flat arrays in as few calls as possible."""

    def __init__(
        self,
        *,
        name: str,
        evaluator: FlatEvaluator,
        nominal: str,
        obj: str | None,
        reduction: str,
        flavour_field: str,
        sources: Sequence[WeightSource],
        linked: Sequence[WeightSource],
    ) -> None:
        self.name = name
        self.evaluator = evaluator
        self.nominal_selector = nominal
        self.object = obj
        self.reduction = reduction
        self.flavour_field = flavour_field
        self.sources = list(sources)
        self.linked = list(linked)
        if reduction not in {"leading", "product"}:
            msg = f"correction '{name}': reduction must be 'leading' or 'product', not '{reduction}'"
            raise ValueError(msg)

    @property
    def specs(self) -> list[InputSpec]:
        return self.evaluator.specs

    def _objects(self, namespace: Mapping[str, Any]) -> ak.Array:
        objects = namespace[self.object]
        if self.reduction == "leading":
            objects = objects[:, :1]
        return objects

    def evaluate(
        self, namespace: Mapping[str, Any], selectors: Sequence[WeightSource | None], direction: str | None = None
    ) -> list[np.ndarray]:
        """Per-event weights for the nominal (``None``) and for each given source/direction.

        Args:
            namespace: events and objects (``muons``, ``jets``, ``Pileup``...).
            selectors: ``None`` for the nominal, or a source evaluated in ``direction``.
            direction: "up" or "down" for the sources.

        Returns:
            One array per selector, one value per event.
        """
        if self.object is None:
            fields = event_fields(namespace, self.specs)
            out = []
            for src in selectors:
                sel = self.nominal_selector if src is None else getattr(src, direction or "up")
                out.append(self.evaluator(fields, sel))
            return out
        objects = self._objects(namespace)
        counts = np.asarray(ak.to_numpy(ak.num(objects, axis=1)))
        fields = flat_fields(objects, self.specs)
        nominal = self.evaluator(fields, self.nominal_selector) if len(counts) else np.ones(0)
        flavours = None
        results = []
        for src in selectors:
            if src is None:
                values = nominal
            else:
                sel = getattr(src, direction or "up")
                values = nominal.copy()
                if src.flavours is not None:
                    if flavours is None:
                        flavours = np.asarray(
                            ak.to_numpy(ak.flatten(objects[self.flavour_field], axis=1))
                        )
                    where = np.isin(flavours, src.flavours)
                    if np.any(where):
                        subset = {k: v[where] for k, v in fields.items()}
                        values[where] = self.evaluator(subset, sel)
                elif len(values):
                    values = self.evaluator(fields, sel)
            results.append(_reduce(values, counts))
        return results


def _reduce(values: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Product of per-object values per event (empty events give 1)."""
    if len(values) == 0:
        return np.ones(len(counts))
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    out = np.ones(len(counts))
    nonempty = counts > 0
    if np.any(nonempty):
        # reduceat over the starts of non-empty events: each product runs to the next start.
        out[nonempty] = np.multiply.reduceat(values, starts[nonempty])
    return out

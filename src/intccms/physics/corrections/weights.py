"""Event-weight corrections (pileup, muon SFs, b-tag shape) and their up/down sources.

Per-object scale factors are reduced to one number per event: the leading object's value
(``leading``; events without the object get 1) or the product over all objects (``product``).
A source restricted to some flavours changes only those objects; the others keep the nominal.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from intccms.physics.corrections.inputs import FlatEvaluator, InputSpec, event_fields, resolve_field
from intccms.physics.corrections.staged_table import Layout, Prepared, StagedCorrection
from intccms.physics.jagged import FlatCollection, TakenFields, as_flat, take_fields

EAGER_SELECTORS = 4
"""Selectors one evaluation must ask for before objects seen for the first time are prepared for
the two-stage table: a preparation costs about as much as four correctionlib evaluations."""


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
        # Object variation base name -> its linked source with the configured JES source filled
        # in (set by EraCorrections.from_config, which knows the era's object variations).
        self.links: dict[str, WeightSource] = {}
        # Two-stage evaluation (staged_table) when objects of one chunk are evaluated again and
        # again with only the input ``late`` changed: set by :meth:`stage_on`.
        self._staged: StagedCorrection | None = None
        self._prepared: tuple[tuple[np.ndarray, ...], dict[Layout, Prepared | None], dict[Any, Any]] | None = None
        if reduction not in {"leading", "product"}:
            msg = f"correction '{name}': reduction must be 'leading' or 'product', not '{reduction}'"
            raise ValueError(msg)

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_prepared": None}  # a chunk's arrays stay with the chunk

    def stage_on(self, varied_fields: set[str]) -> None:
        """Evaluate in two stages when exactly one input reads a field of ``varied_fields`` (the
        fields an object variation changes) and the others read fields of the objects."""
        ev = self.evaluator
        late = [s for s in self.specs if s.field in varied_fields and not s.absolute]
        fixed = [s for s in self.specs if not s.systematic and s not in late]
        if (self.object is None or len(late) != 1 or ev._systematic is None
                or any(s.field is None for s in fixed)):
            return
        self._staged = StagedCorrection(ev.path, ev.key, late[0].name)

    def selectors(self) -> list[str]:
        """Every selector this correction evaluates: nominal, its sources' and its linked sources'."""
        sources = [*self.sources, *self.links.values()]
        return [self.nominal_selector, *(getattr(src, d) for src in sources for d in ("up", "down"))]

    def warm(self) -> None:
        """Build what the first chunks would otherwise build: each selector's slice (or the
        whole correction) parsed, and the two-stage table's leaves of every selector (read back
        from correctionlib; ~20 ms each for the b-tag shape)."""
        selectors = self.selectors()
        self.evaluator.warm(selectors)
        if self._staged is not None:
            for selector in selectors:
                self._staged.cells(selector)
            category = self._flavour_input
            for src in self.links.values():
                if src.flavours is not None and category is not None:
                    for direction in ("up", "down"):
                        self._staged.merged(getattr(src, direction), self.nominal_selector, category, src.flavours)

    def _staged_values(self, taken: TakenFields, positions: np.ndarray | None,
                       fields: Mapping[str, np.ndarray], selector: str, eager: bool) -> np.ndarray | None:
        """Values of the objects ``taken`` (at ``positions`` of them) through the two-stage
        table, or ``None`` where it does not apply (correctionlib then)."""
        staged = self._staged
        assert staged is not None
        cells = staged.cells(selector)
        if cells is None:
            return None
        prepared = self._prepare(taken.source, cells.layout, eager)
        if prepared is None:
            return None
        rows = taken.rows if positions is None else taken.rows.take(positions)
        late = self.evaluator.converted(staged.late, fields[staged.late])
        out, exact = StagedCorrection.evaluate(cells, prepared, rows, late)
        if exact.any():
            out[exact] = self.evaluator(_subset(fields, exact), selector)
        return out

    def _merged_values(self, taken: TakenFields, fields: Mapping[str, np.ndarray], objects: Mapping[str, np.ndarray],
                       src: WeightSource, direction: str, eager: bool) -> np.ndarray | None:
        """Values of a source restricted to some flavours, with the nominal for the other objects,
        in one pass of the two-stage table (``None`` where its leaves do not allow it)."""
        staged = self._staged
        category = self._flavour_input
        assert staged is not None and src.flavours is not None
        selector = getattr(src, direction)
        cells = None if category is None else staged.merged(selector, self.nominal_selector, category, src.flavours)
        if cells is None:
            return None
        prepared = self._prepare(taken.source, cells.layout, eager)
        if prepared is None:
            return None
        late = self.evaluator.converted(staged.late, fields[staged.late])
        out, exact = StagedCorrection.evaluate(cells, prepared, taken.rows, late)
        if exact.any():  # next to an edge: correctionlib, with each object's own selector
            member = np.isin(objects[self.flavour_field], src.flavours)
            for wanted, where in ((selector, exact & member), (self.nominal_selector, exact & ~member)):
                if where.any():
                    out[where] = self.evaluator(_subset(fields, where), wanted)
        return out

    @property
    def _flavour_input(self) -> str | None:
        """The correction input that reads the flavour field, if one does."""
        return next((s.name for s in self.specs if s.field == self.flavour_field and not s.absolute), None)

    def _prepare(self, source: Mapping[str, np.ndarray], layout: Layout, eager: bool) -> Prepared | None:
        """The fixed part of the source objects for ``layout``, once per chunk: the source's
        fields are the same arrays in every fill of a chunk (only the varied ones are new).

        Objects seen for the first time are prepared only when ``eager`` (the call evaluates
        enough selectors to repay it); otherwise correctionlib evaluates them, as a chunk with a
        single evaluation (no variations) would not repay the preparation, and they are prepared
        when seen again."""
        staged = self._staged
        assert staged is not None
        specs = [s for s in self.specs if not s.systematic and s.name != staged.late]
        arrays = tuple(resolve_field(source, s.field) for s in specs if s.field is not None)
        known = self._prepared
        if known is None or len(known[0]) != len(arrays) or any(a is not b for a, b in zip(known[0], arrays, strict=True)):
            known = self._prepared = (arrays, {}, {})
            if not eager:
                return None
        if layout not in known[1]:
            fixed = {}
            for spec, values in zip(specs, arrays, strict=True):
                values = np.asarray(values)
                fixed[spec.name] = self.evaluator.converted(spec.name, np.abs(values) if spec.absolute else values)
            (late,) = [s for s in self.specs if s.name == staged.late]
            assert late.field is not None  # stage_on: the late input reads a varied field
            reference = self.evaluator.converted(late.name, np.asarray(resolve_field(source, late.field)))
            known[1][layout] = staged.prepare(layout, fixed, reference, known[2]) if all(
                isinstance(v, np.ndarray) for v in arrays) else None
        return known[1][layout]

    def _evaluate(self, fields: Mapping[str, np.ndarray], selector: str, taken: TakenFields | None,
                  positions: np.ndarray | None = None, eager: bool = False) -> np.ndarray:
        if taken is not None:
            values = self._staged_values(taken, positions, fields, selector, eager)
            if values is not None:
                return values
        return self.evaluator(fields, selector)

    @property
    def specs(self) -> list[InputSpec]:
        return self.evaluator.specs

    def _objects(self, namespace: Mapping[str, Any]) -> FlatCollection:
        """The objects the SFs apply to: all of them, or the leading one of each event."""
        assert self.object is not None  # only per-object corrections get here
        names = [spec.field for spec in self.specs if spec.field] + [self.flavour_field]
        flat = as_flat(namespace[self.object], names)
        if self.reduction != "leading":
            return flat
        has = flat.counts > 0
        offsets = np.zeros(len(flat) + 1, dtype=np.int64)
        np.cumsum(has, out=offsets[1:])
        first = flat.offsets[:-1][has]
        return FlatCollection(offsets, take_fields(flat.fields, first))

    def evaluate(
        self,
        namespace: Mapping[str, Any],
        selectors: Sequence[WeightSource | tuple[WeightSource, str] | None],
        direction: str | None = None,
    ) -> list[np.ndarray]:
        """Per-event weights for the nominal (``None``) and for each requested source.

        Each correctionlib selector is evaluated once per call, and a source restricted to some
        flavours is evaluated only on those objects (the others take the nominal), so ask for
        everything a fill needs in one call.

        Args:
            namespace: events and objects (``muons``, ``jets``, ``Pileup``...).
            selectors: ``None`` for the nominal, a source (evaluated in ``direction``), or a
                ``(source, direction)`` pair.
            direction: "up" or "down" for sources given without a direction.

        Returns:
            One array per selector, one value per event.
        """
        requests = [
            None if item is None else item if isinstance(item, tuple) else (item, direction or "up")
            for item in selectors
        ]
        if self.object is None:
            fields = event_fields(namespace, self.specs)
            return [
                self.evaluator(fields, self.nominal_selector if req is None else getattr(req[0], req[1]))
                for req in requests
            ]
        objects = self._objects(namespace)
        counts = objects.counts
        if int(counts.sum()) == 0:
            return [np.ones(len(counts)) for _ in requests]
        by_name = {spec.name: spec for spec in self.specs if spec.field is not None}
        lazy = LazyFields(
            list(by_name), lambda name: event_fields(objects.fields, [by_name[name]])[name])
        taken = objects.fields if self._staged is not None and isinstance(objects.fields, TakenFields) else None
        eager = len(requests) >= EAGER_SELECTORS
        nominal = self._evaluate(lazy, self.nominal_selector, taken, None, eager) if None in requests else None
        # The objects of the flavours a source applies to, and their inputs: once per flavour set
        # (the b-tag sources share two), not once per source.
        split: dict[tuple[int, ...], tuple[np.ndarray, np.ndarray, LazyFields]] = {}
        results = []
        for req in requests:
            if req is None:
                assert nominal is not None  # evaluated above: None is among the requests
                values = nominal
            else:
                src, sel = req[0], getattr(req[0], req[1])
                if src.flavours is None:
                    values = self._evaluate(lazy, sel, taken, None, eager)
                elif taken is not None and (
                        merged := self._merged_values(taken, lazy, objects.fields, src, req[1], eager)) is not None:
                    values = merged
                else:
                    if src.flavours not in split:
                        where = np.isin(objects.fields[self.flavour_field], src.flavours)
                        split[src.flavours] = (where, ~where, _subset(lazy, where))
                    where, rest, subset = split[src.flavours]
                    values = np.empty(len(where))
                    if np.any(where):
                        values[where] = self._evaluate(subset, sel, taken, np.flatnonzero(where), eager)
                    if np.any(rest):
                        values[rest] = (nominal[rest] if nominal is not None
                                        else self._evaluate(_subset(lazy, rest), self.nominal_selector,
                                                            taken, np.flatnonzero(rest), eager))
            results.append(_reduce(values, objects))
        return results


class LazyFields(Mapping[str, np.ndarray]):
    """Input arrays computed when first read: the two-stage table reads only the late input,
    correctionlib all of them."""

    def __init__(self, names: Sequence[str], compute: Callable[[str], np.ndarray]) -> None:
        self._names = list(names)
        self._compute = compute
        self._done: dict[str, np.ndarray] = {}

    def __getitem__(self, name: str) -> np.ndarray:
        values = self._done.get(name)
        if values is None:
            if name not in self._names:
                raise KeyError(name)
            values = self._compute(name)
            self._done[name] = values
        return values

    def __iter__(self) -> Iterator[str]:
        return iter(self._names)

    def __len__(self) -> int:
        return len(self._names)


def _subset(fields: Mapping[str, np.ndarray], where: np.ndarray) -> LazyFields:
    index = np.flatnonzero(where)
    return LazyFields(list(fields), lambda name: fields[name].take(index))


def _reduce(values: np.ndarray, objects: FlatCollection) -> np.ndarray:
    """Product of per-object values per event (empty events give 1)."""
    counts = objects.counts
    if len(values) == 0:
        return np.ones(len(counts))
    starts = objects.offsets[:-1] - objects.offsets[0] if objects.offsets[0] else objects.offsets[:-1]
    if counts.all():  # every event has objects (jets after a two-jet cut): no gaps to skip
        return np.asarray(np.multiply.reduceat(values, starts), dtype=np.float64)
    out = np.ones(len(counts))
    where = np.flatnonzero(counts)
    if len(where):
        # reduceat over the starts of non-empty events: each product runs to the next start.
        out[where] = np.multiply.reduceat(values, starts.take(where))
    return out

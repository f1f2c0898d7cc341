"""Jet energy corrections re-applied from raw pT, and JES uncertainties as object variations.

Follows ANALYSIS.md: raw pT = pT (1 - rawFactor) (mass likewise); the levels are applied in
sequence, each with JetPt the pT after the previous level; the mass scales by the same product.
A JES source δ = source(JetEta, corrected pT) scales pT and mass by 1 ± δ.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import awkward as ak
import numpy as np

from intccms.physics.corrections.formula_table import compile_formula_table
from intccms.physics.corrections.inputs import FlatEvaluator, InputSpec, resolve_field
from intccms.physics.corrections.jes_table import Evaluate, JesSourceTable, compile_sources
from intccms.physics.corrections.loading import correction_inputs, is_identity
from intccms.physics.jagged import FlatCollection, as_flat, flat_view


@dataclass(frozen=True)
class JesSource:
    """A JES uncertainty source: correctionlib key and variation base name."""

    source: str
    key: str
    variation: str


class JetEnergyCorrection:
    """Object correction of one collection (``Jet``) with its JES uncertainty sources."""

    def __init__(
        self,
        *,
        name: str,
        collection: str,
        path: str,
        levels: Sequence[str],
        level_inputs: Mapping[str, str],
        sources: Sequence[JesSource],
        era: str,
        raw_factor: str = "rawFactor",
        target: str = "pt",
        also_scaled: Sequence[str] = ("mass",),
    ) -> None:
        self.name = name
        self.collection = collection
        self.path = path
        self.era = era
        self.level_inputs = dict(level_inputs)
        self.raw_factor = raw_factor
        self.target = target
        self.also_scaled = tuple(f for f in also_scaled if f != target)
        # Level inputs that take the running corrected target ("@pt"): JetPt in CMS files.
        self._running = [k for k, v in self.level_inputs.items() if v == f"@{target}"]
        unknown = [v for v in self.level_inputs.values() if v.startswith("@") and v != f"@{target}"]
        if unknown:
            msg = f"level_inputs {unknown} name no corrected field (the corrected field is '@{target}')"
            raise KeyError(msg)
        self.sources = list(sources)
        # Levels that give exactly 1 everywhere (an MC jet's L3Absolute and L2L3Residual) are
        # checked like the others but not evaluated: multiplying by 1 changes no bit.
        self._levels = [self._evaluator(key) for key in levels if not is_identity(path, key)]
        self._uncertainties = {s.variation: self._evaluator(s.key) for s in self.sources}
        # All sources through one bin lookup where their corrections allow it (same numbers);
        # built at the first chunk, so that a driver checking the configuration never pays it.
        self._table: JesSourceTable | None = None
        self._table_built = False

    def _evaluator(self, key: str) -> FlatEvaluator:
        specs = []
        for input_name, _ in correction_inputs(self.path, key, era=self.era):
            if input_name not in self.level_inputs:
                msg = (
                    f"correction '{self.name}' (era {self.era}): input '{input_name}' of key '{key}' "
                    f"in {self.path} has no entry in level_inputs {sorted(self.level_inputs)}"
                )
                raise KeyError(msg)
            specs.append(InputSpec(name=input_name))
        return FlatEvaluator(self.path, key, specs, era=self.era)

    def warm(self) -> None:
        """Build what the first chunk would otherwise build: the sources' shared lookup table,
        and every level and source parsed (a source evaluates the jets on its table's bin edges,
        and a jet clipped into the table's eta range is on one: most chunks have some)."""
        self._source_table()
        for evaluator in (*self._levels, *self._uncertainties.values()):
            evaluator.warm()
        for level in self._levels:
            compile_formula_table(level.path, level.key)

    def _source_table(self) -> JesSourceTable | None:
        if not self._table_built:
            self._table = compile_sources(self.path, [s.key for s in self.sources])
            self._table_built = True
        return self._table

    @property
    def variation_bases(self) -> list[str]:
        """Base names of the object variations (``jesFlavorQCD``, ``jesAbsoluteStat_2017``...)."""
        return [s.variation for s in self.sources]

    def _flat_inputs(self, jets: FlatCollection, events: Mapping[str, Any]) -> dict[str, np.ndarray]:
        values: dict[str, np.ndarray] = {}
        for name, source in self.level_inputs.items():
            if source.startswith("@"):
                continue
            if source in events and source not in jets.fields:
                per_event = np.asarray(ak.to_numpy(resolve_field(events, source)), dtype=np.float64)
                values[name] = np.repeat(per_event, jets.counts)
            else:
                values[name] = np.asarray(resolve_field(jets.fields, source), dtype=np.float64)
        return values

    def apply(self, events: Mapping[str, Any], wanted: Collection[str] | None = None) -> CorrectedJets:
        """Corrected jets of ``events[collection]``, ready to be varied by the sources in ``wanted``.

        ``wanted`` (variation base names; all when ``None``) limits the sources to those whose
        variations the job fills.
        """
        jets = events[self.collection]
        view = flat_view(jets)
        scaled = (self.target, *self.also_scaled)
        names = [*scaled, self.raw_factor, *(s for s in self.level_inputs.values() if not s.startswith("@"))]
        flat = view if view is not None else as_flat(jets, names)
        raw_scale = 1.0 - np.asarray(flat.fields[self.raw_factor], dtype=np.float64)
        raw = {f: np.asarray(flat.fields[f], dtype=np.float64) * raw_scale for f in scaled}
        fields = self._flat_inputs(flat, events)
        total = np.ones_like(raw_scale)
        for level in self._levels:
            for name in self._running:
                fields[name] = raw[self.target] * total
            total = total * _level_values(level, fields)
        corrected = {f: v * total for f, v in raw.items()}
        for name in self._running:  # the JES sources see the fully corrected target
            fields[name] = corrected[self.target]
        sources: dict[str, Evaluate] = {
            var: ev for var, ev in self._uncertainties.items() if wanted is None or var in wanted}
        table = self._source_table() if sources else None
        lookup = table.lookup(fields) if table is not None else None
        if lookup is not None:
            keys = {s.variation: s.key for s in self.sources}
            sources = {var: lookup.source(keys[var], sources[var]) for var in sources}
        return CorrectedJets(jets=jets, counts=flat.counts, values=corrected, target=self.target,
                             sources=sources, inputs=fields, flat=view)


def _level_values(level: FlatEvaluator, fields: Mapping[str, np.ndarray]) -> np.ndarray:
    """One JEC level's factor for every jet: through its formula table where the level has that
    form (the same numbers), else correctionlib."""
    table = compile_formula_table(level.path, level.key)
    if table is None:
        return level(fields, None)
    inputs = {spec.name: level.converted(spec.name, fields[spec.name]) for spec in level.specs}
    return table.evaluate(inputs, lambda picked: level({k: v.take(picked) for k, v in fields.items()}, None))


@dataclass
class CorrectedJets:
    """Nominal corrected jets plus what is needed to build each JES-varied copy cheaply.

    A source's uncertainty is evaluated when its variation is first asked for and kept only
    until the next source, so memory does not grow with the number of sources.
    """

    jets: ak.Array
    counts: np.ndarray
    values: Mapping[str, np.ndarray]  # corrected target (pt) and the fields scaled with it
    target: str
    sources: Mapping[str, Evaluate]
    inputs: Mapping[str, np.ndarray]
    flat: FlatCollection | None = None
    _last: tuple[str, np.ndarray] | None = None
    _order: tuple[str, np.ndarray] | None = None

    def delta(self, variation: str) -> np.ndarray:
        """Relative uncertainty δ of one source for every jet."""
        if self._last is None or self._last[0] != variation:
            if variation not in self.sources:
                msg = f"JES source '{variation}' was not requested (known: {sorted(self.sources)})"
                raise KeyError(msg)
            self._last = (variation, self.sources[variation](self.inputs, None))
        return self._last[1]

    @property
    def pt(self) -> np.ndarray:
        """The corrected target of every jet (flat)."""
        return self.values[self.target]

    @property
    def mass(self) -> np.ndarray:
        return self.values["mass"]

    def _with(self, values: Mapping[str, np.ndarray]) -> ak.Array:
        if self.flat is not None:
            if self._order is None and self.sources:  # the nominal order, likely that of every variation
                self._order = (self.target, self.flat.with_fields(self.values).descending(self.target))
            return self.flat.with_fields(values, self._order).to_array()
        out = self.jets
        for name, flat in values.items():
            out = ak.with_field(out, ak.unflatten(flat, self.counts), name)
        return out

    def nominal(self) -> ak.Array:
        """Jets with corrected pT and mass."""
        return self._with(self.values)

    def varied(self, variation: str, direction: str) -> ak.Array:
        """Jets of one JES source shifted up (1 + δ) or down (1 − δ)."""
        delta = self.delta(variation)
        scale = np.add(1.0, delta) if direction == "up" else np.subtract(1.0, delta)  # as 1 ± 1·δ
        return self._with({name: v * scale for name, v in self.values.items()})

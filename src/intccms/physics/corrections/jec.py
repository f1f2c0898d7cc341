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

from intccms.physics.corrections.inputs import FlatEvaluator, InputSpec, resolve_field
from intccms.physics.corrections.loading import get_correction
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
    ) -> None:
        self.name = name
        self.collection = collection
        self.path = path
        self.era = era
        self.level_inputs = dict(level_inputs)
        self.sources = list(sources)
        self._levels = [self._evaluator(key) for key in levels]
        self._uncertainties = {s.variation: self._evaluator(s.key) for s in self.sources}

    def _evaluator(self, key: str) -> FlatEvaluator:
        correction = get_correction(self.path, key, era=self.era)
        specs = []
        for inp in correction.inputs:
            if inp.name not in self.level_inputs:
                msg = (
                    f"correction '{self.name}' (era {self.era}): input '{inp.name}' of key '{key}' "
                    f"in {self.path} has no entry in level_inputs {sorted(self.level_inputs)}"
                )
                raise KeyError(msg)
            specs.append(InputSpec(name=inp.name))
        return FlatEvaluator(self.path, key, specs, era=self.era)

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

    def apply(self, events: Mapping[str, Any], wanted: Collection[str] | None = None) -> "CorrectedJets":
        """Corrected jets of ``events[collection]``, ready to be varied by the sources in ``wanted``.

        ``wanted`` (variation base names; all when ``None``) limits the sources to those whose
        variations the job fills.
        """
        jets = events[self.collection]
        view = flat_view(jets)
        names = ["pt", "mass", "rawFactor", *(s for s in self.level_inputs.values() if not s.startswith("@"))]
        flat = view if view is not None else as_flat(jets, names)
        raw_scale = 1.0 - np.asarray(flat.fields["rawFactor"], dtype=np.float64)
        pt = np.asarray(flat.fields["pt"], dtype=np.float64) * raw_scale
        mass = np.asarray(flat.fields["mass"], dtype=np.float64) * raw_scale
        fields = self._flat_inputs(flat, events)
        total = np.ones_like(pt)
        for level in self._levels:
            fields["JetPt"] = pt * total
            total = total * level(fields, None)
        pt_corr = pt * total
        mass_corr = mass * total
        fields["JetPt"] = pt_corr
        sources = {var: ev for var, ev in self._uncertainties.items() if wanted is None or var in wanted}
        return CorrectedJets(jets=jets, counts=flat.counts, pt=pt_corr, mass=mass_corr, sources=sources,
                             inputs=fields, flat=view)


@dataclass
class CorrectedJets:
    """Nominal corrected jets plus what is needed to build each JES-varied copy cheaply.

    A source's uncertainty is evaluated when its variation is first asked for and kept only
    until the next source, so memory does not grow with the number of sources.
    """

    jets: ak.Array
    counts: np.ndarray
    pt: np.ndarray
    mass: np.ndarray
    sources: Mapping[str, FlatEvaluator]
    inputs: Mapping[str, np.ndarray]
    flat: FlatCollection | None = None
    _last: tuple[str, np.ndarray] | None = None

    def delta(self, variation: str) -> np.ndarray:
        """Relative uncertainty δ of one source for every jet."""
        if self._last is None or self._last[0] != variation:
            if variation not in self.sources:
                msg = f"JES source '{variation}' was not requested (known: {sorted(self.sources)})"
                raise KeyError(msg)
            self._last = (variation, self.sources[variation](self.inputs, None))
        return self._last[1]

    def _with(self, pt: np.ndarray, mass: np.ndarray) -> ak.Array:
        if self.flat is not None:
            return self.flat.with_fields(pt=pt, mass=mass).to_array()
        out = ak.with_field(self.jets, ak.unflatten(pt, self.counts), "pt")
        return ak.with_field(out, ak.unflatten(mass, self.counts), "mass")

    def nominal(self) -> ak.Array:
        """Jets with corrected pT and mass."""
        return self._with(self.pt, self.mass)

    def varied(self, variation: str, direction: str) -> ak.Array:
        """Jets of one JES source shifted up (1 + δ) or down (1 − δ)."""
        sign = 1.0 if direction == "up" else -1.0
        scale = 1.0 + sign * self.delta(variation)
        return self._with(self.pt * scale, self.mass * scale)

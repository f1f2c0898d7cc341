"""Turn configured correction inputs into the flat arrays correctionlib evaluates."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import awkward as ak
import correctionlib._core
import numpy as np

from intccms.physics.corrections.loading import (
    correction_inputs,
    get_correction,
    input_ranges,
    systematic_slice,
)


@dataclass(frozen=True)
class InputSpec:
    """One input slot of a correction (see ``CorrectionInputConfig``)."""

    name: str
    field: str | None = None
    literal: str | None = None
    systematic: bool = False
    absolute: bool = False


def resolve_field(source: Any, path: str) -> Any:
    """Field ``a.b`` of a record array or of a mapping of event members."""
    head, _, rest = path.partition(".")
    value = source[head]
    return resolve_field(value, rest) if rest else value


class FlatEvaluator:
    """Evaluate one correctionlib correction on flat numpy inputs, clipped into its range."""

    def __init__(self, path: str, key: str, specs: list[InputSpec], *, era: str) -> None:
        self.path = path
        self.key = key
        self.era = era
        self.specs = specs
        inputs = correction_inputs(path, key, era=era)  # checks the file and the key
        self._ranges = input_ranges(path, key)
        self._real_inputs = {name for name, kind in inputs if kind == "real"}
        self._int_inputs = {name for name, kind in inputs if kind == "int"}
        self._systematic = next((s.name for s in specs if s.systematic), None)

    @property
    def _correction(self) -> correctionlib._core.Correction:
        """The whole correction, parsed when first evaluated (once per process: cached by file
        and key); a correction evaluated only through its systematic slices never is."""
        return get_correction(self.path, self.key, era=self.era)

    def _correction_for(self, selector: str | None) -> tuple[correctionlib._core.Correction, bool]:
        """The correction that evaluates ``selector``: its systematic slice where the correction
        has one on this input (``True``: the selector is not an argument), else the whole one."""
        if self._systematic is not None and selector is not None:
            sliced = systematic_slice(self.path, self.key, selector)
            if sliced is not None and sliced[0] == self._systematic:
                return sliced[1], True
        return self._correction, False

    def warm(self, selectors: Sequence[str | None] = (None,)) -> None:
        """Parse what evaluating ``selectors`` parses (the slice of each, or the whole
        correction), so that a worker's warm-up pays it and not its first chunk."""
        for selector in selectors:
            self._correction_for(selector)

    def __call__(self, fields: Mapping[str, np.ndarray], selector: str | None) -> np.ndarray:
        """Evaluate with ``fields`` (input name -> flat array) and the systematic ``selector``."""
        correction, sliced = self._correction_for(selector)
        args: list[Any] = []
        for spec in self.specs:
            if spec.systematic:
                if not sliced:
                    args.append(selector)
            elif spec.literal is not None:
                args.append(spec.literal)
            else:
                args.append(self.converted(spec.name, fields[spec.name]))
        if not any(isinstance(a, np.ndarray) for a in args):
            return np.asarray(correction.evaluate(*args), dtype=np.float64)
        return np.asarray(correction.evalv(*args), dtype=np.float64)

    def converted(self, name: str, values: np.ndarray) -> np.ndarray:
        """Input ``name`` as correctionlib receives it: reals as float64 clipped into the
        table's range, integers as int64."""
        if name in self._real_inputs:
            return self._clip(name, np.asarray(values, dtype=np.float64))
        if name in self._int_inputs:
            return np.ascontiguousarray(values, dtype=np.int64)
        return values

    def _clip(self, name: str, values: np.ndarray) -> np.ndarray:
        bounds = self._ranges.get(name)
        if bounds is None:
            return values
        low, high = bounds
        if np.isfinite(high):
            high = np.nextafter(high, -np.inf)
        return np.clip(values, low, high)


def event_fields(source: Any, specs: list[InputSpec]) -> dict[str, np.ndarray]:
    """Numpy arrays of the fields the specs read (``abs`` applied), one value per entry.

    ``source`` is a flat record array or a mapping of event members (``Pileup.nTrueInt``).
    """
    out: dict[str, np.ndarray] = {}
    for spec in specs:
        if spec.field is None:
            continue
        values = resolve_field(source, spec.field)
        values = values if isinstance(values, np.ndarray) else np.asarray(ak.to_numpy(values))
        out[spec.name] = np.abs(values) if spec.absolute else values
    return out

"""A picklable, hashable description of one era's corrections, built once per process.

The plan carries this (not the built :class:`EraCorrections`, whose correctionlib objects are
large and not meant to travel in task graphs); each worker builds it on first use and keeps it.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from intccms.physics.corrections import EraCorrections, file_memo


@dataclass(frozen=True)
class CorrectionsSpec:
    """One era's corrections: era values, definitions and names, as JSON so the spec hashes."""

    era: str
    era_json: str
    definitions_json: str
    names: tuple[str, ...]
    jsonpog_root: str

    @classmethod
    def create(cls, era: str, era_cfg: Mapping[str, Any], definitions: Mapping[str, Any],
               names: list[str], jsonpog_root: str) -> CorrectionsSpec:
        return cls(era, json.dumps(era_cfg, sort_keys=True), json.dumps(definitions, sort_keys=True),
                   tuple(names), jsonpog_root)

    def build(self) -> EraCorrections:
        """The era's corrections, loaded once per process and spec (a warm-up thread and the
        first chunk asking at once wait for one build, not two)."""
        with _BUILDING:
            return _build_corrections(self)

    def warm(self) -> EraCorrections:
        """:meth:`build`, and the lookup tables the first chunks would build (a worker's warm-up;
        a chunk asking meanwhile waits for it rather than building the same tables alongside)."""
        with _BUILDING:
            corrections = _build_corrections(self)
            corrections.warm()
            file_memo.save()  # the next worker on this machine reads what this one derived
            return corrections


_BUILDING = threading.Lock()


@lru_cache(maxsize=16)
def _build_corrections(spec: CorrectionsSpec) -> EraCorrections:
    return EraCorrections.from_config(
        spec.era, json.loads(spec.era_json), json.loads(spec.definitions_json), spec.names,
        spec.jsonpog_root,
    )

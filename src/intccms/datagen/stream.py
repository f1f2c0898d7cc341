"""Skimmed event streams: generate, simulate, filter, and keep exact bookkeeping.

A stream draws blocks of generator-level events (up to :data:`BLOCK` at a time, so memory
stays bounded), simulates them and keeps those passing the production skim
(:func:`intccms.datagen.reco.passes_skim`). It records, for every kept event, how many
events were tried and their summed generator weight up to it, so that when a file takes
``k`` events the ``Runs`` tree can store the count and sum of weights of exactly the
unskimmed sample those ``k`` events were cut from, divided by the generator-level
phase-space probability ``p_gen``: the same numbers a CMS skim keeps from its parent.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import awkward as ak
import numpy as np

from intccms.datagen.processes import Process
from intccms.datagen.reco import SKIM_DESCRIPTION, Columns, simulate, to_columns
from intccms.datagen.truth import TruthBuilder

__all__ = ["BLOCK", "SkimStream", "concat_columns"]

BLOCK = 100_000
_MIN_BLOCK = 2_000
_PRE_FAT_PT = 320.0
_PRE_MU_PT = 40.0


def concat_columns(parts: list[Columns]) -> Columns:
    """Concatenate column dictionaries event-wise."""
    if len(parts) == 1:
        return parts[0]
    out: Columns = {}
    for key in parts[0]:
        values = [p[key] for p in parts]
        if isinstance(values[0], np.ndarray):
            out[key] = np.concatenate(values)
        else:
            out[key] = ak.concatenate(values)
    return out


def _take(columns: Columns, sl: slice) -> Columns:
    return {k: v[sl] for k, v in columns.items()}


@dataclass
class SkimStream:
    """Events of one process passing the skim, with the tried count and sum of weights."""

    process: Process
    era: str
    rng: np.random.Generator
    is_data: bool = False
    max_tries: int = 0
    tried: int = 0  # tries up to the last event handed out
    sumw: float = 0.0
    _buffer: list[Columns] = field(default_factory=list)
    _cum_tries: list[np.ndarray] = field(default_factory=list)
    _cum_sumw: list[np.ndarray] = field(default_factory=list)
    _drawn_tries: int = 0
    _drawn_sumw: float = 0.0
    _accepted: int = 0

    def _buffered(self) -> int:
        return sum(len(c) for c in self._cum_tries)

    def _draw_block(self, need: int) -> None:
        rate = (self._accepted + 1.0) / (self._drawn_tries + 50.0)
        size = int(np.clip(need / max(rate, 1e-4) * 1.2, _MIN_BLOCK, BLOCK))
        rng = self.rng
        tb = TruthBuilder(size, rng, self.process.slots)
        self.process.fill(tb)
        weights = self.process.gen_weights(rng, size).astype(np.float64)
        # cheap generator-level preselection: the skim cannot pass without these
        pre = tb.preselect(_PRE_FAT_PT, _PRE_MU_PT)
        reco, keep = simulate(rng, tb.build(pre), self.era, is_data=self.is_data)
        assert tb.rows is not None
        positions = tb.rows[pre[keep]]
        cum_w = np.cumsum(weights)
        if positions.size:
            columns = to_columns(reco, np.arange(keep.size))
            if not self.is_data:
                columns["genWeight"] = weights[positions].astype(np.float32)
            self._buffer.append(columns)
            self._cum_tries.append(self._drawn_tries + positions + 1)
            self._cum_sumw.append(self._drawn_sumw + cum_w[positions])
        self._drawn_tries += size
        self._drawn_sumw += float(cum_w[-1])
        self._accepted += positions.size
        if self.max_tries and self._drawn_tries > self.max_tries and self._buffered() < need:
            p = dict(self.process.params)
            msg = (f"process {self.process.kind!r} {p} in era {self.era!r}: only "
                   f"{self._accepted} of {self._drawn_tries} generated events pass the skim "
                   f"({SKIM_DESCRIPTION}); this sample cannot fill the requested file, choose "
                   f"a higher HT bin or fewer events")
            raise RuntimeError(msg)

    def take(self, k: int) -> Columns:
        """Hand out the next ``k`` skimmed events (columns) and advance the bookkeeping."""
        if k <= 0:
            msg = f"take() needs a positive number of events, got {k}"
            raise ValueError(msg)
        while self._buffered() < k:
            self._draw_block(k - self._buffered())
        columns = concat_columns(self._buffer)
        tries = np.concatenate(self._cum_tries)
        sumw = np.concatenate(self._cum_sumw)
        self.tried, self.sumw = int(tries[k - 1]), float(sumw[k - 1])
        rest = len(tries) - k
        self._buffer = [_take(columns, slice(k, None))] if rest else []
        self._cum_tries = [tries[k:]] if rest else []
        self._cum_sumw = [sumw[k:]] if rest else []
        return _take(columns, slice(0, k))

"""The analysis of one chunk: skim, objects, selections, observables, weights and fills.

Designed for many variations at a fixed cost:

* cuts that do not depend on a varied collection (e.g. the muon and fat-jet cuts when only
  jets vary) are evaluated once, and every later step runs only on the *candidate* events
  that pass them, usually a few percent of the chunk;
* weight-only variations reuse the nominal selection and observable: they are extra weight
  columns of one fill (a single ``np.bincount`` for all of them);
* object variations (JES) recompute only the objects, cuts and observables that depend on the
  varied collection, and the weights linked to them (``varies_with``);
* a variation produced only by other eras is filled with this era's nominal weight, so merged
  histograms hold the same variations for every process.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import awkward as ak
import numpy as np

from intccms.physics import compiled
from intccms.physics.corrections.era import EraCorrections, linked_source
from intccms.physics.corrections.weights import WeightCorrection
from intccms.physics.events import (
    branch_names,
    build_events,
    filter_events,
    num_events,
    resolve_fields,
)
from intccms.physics.functors import Functor, shared_results
from intccms.physics.jagged import take_events
from intccms.physics.lumimask import in_golden_json


@dataclass(frozen=True)
class Observable:
    """An observable functor with its uniform binning."""

    functor: Functor
    bins: int
    start: float
    stop: float


@dataclass(frozen=True)
class Channel:
    """Channel cuts (beyond the baseline) and the observables it fills."""

    cuts: Mapping[str, Functor]
    observables: tuple[str, ...]
    use_baseline: bool = True


@dataclass(frozen=True)
class AnalysisPlan:
    """Everything a worker needs to analyse chunks; picklable and free of secrets."""

    collections: Mapping[str, tuple[str, ...]]
    event_columns: tuple[str, ...]
    mc_only: frozenset[str]
    skim: Functor
    objects: Mapping[str, Functor]
    baseline: Mapping[str, Functor]
    channels: Mapping[str, Channel]
    observables: Mapping[str, Observable]
    variations: tuple[str, ...]
    # Events a worker process analyses before it loads the compiled kernels (None: never;
    # ``workflow.compiled_kernels_after``).
    compiled_kernels_after: int | None = None

    def variation_index(self) -> dict[str, int]:
        return {name: i for i, name in enumerate(self.variations)}

    def collections_for(self, constants: Mapping[str, Any]) -> dict[str, tuple[str, ...]]:
        """The collections one era reads, with era constants among the fields expanded."""
        return resolve_fields(self.collections, constants)


@dataclass(frozen=True)
class ChunkContext:
    """Per-dataset facts for a chunk: era constants, normalisation, data or simulation."""

    process: str
    era: str
    is_data: bool
    norm: float = 1.0
    golden_json: str | None = None
    constants: Mapping[str, Any] = field(default_factory=dict)


@dataclass
class ChunkResult:
    """Histogram contents of one chunk: ``(channel, observable) -> array[var, bin, (w, w²)]``."""

    process: str
    hists: dict[tuple[str, str], np.ndarray]
    cutflow: dict[str, float]
    events_selected: int


def _call_mask(functor: Functor, namespace: Mapping[str, Any], n: int) -> np.ndarray:
    mask = np.asarray(functor(namespace), dtype=bool)
    if mask.shape != (n,):
        msg = f"cut {functor.function} returned shape {mask.shape}, expected ({n},)"
        raise ValueError(msg)
    return mask


def _bin_index(values: np.ndarray, obs: Observable) -> np.ndarray:
    """Bin numbers with underflow 0 and overflow ``bins + 1``; NaN goes nowhere (-1)."""
    finite = np.isfinite(values)
    scaled = (np.where(finite, values, obs.start) - obs.start) * (obs.bins / (obs.stop - obs.start))
    idx = np.clip(np.floor(scaled), -1, obs.bins).astype(np.int64) + 1
    if not finite.all():
        idx[~finite] = -1
    return idx


def _product(arrays: Iterable[np.ndarray], n: int) -> np.ndarray:
    """Element-wise product of per-event arrays (ones when there are none)."""
    out = np.ones(n)
    for values in arrays:
        out = out * values
    return out


class _TakenEvents(Mapping[str, Any]):
    """The ``chosen`` events of a namespace, each member taken when first read."""

    def __init__(self, namespace: Mapping[str, Any], chosen: np.ndarray) -> None:
        self._namespace = namespace
        self._chosen = chosen
        self._taken: dict[str, Any] = {}

    def __getitem__(self, name: str) -> Any:
        if name.startswith("@"):
            return self._namespace[name]
        if name not in self._taken:
            self._taken[name] = take_events(self._namespace[name], self._chosen)
        return self._taken[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._namespace)

    def __len__(self) -> int:
        return len(self._namespace)


def _spread(values: np.ndarray, chosen: np.ndarray) -> np.ndarray:
    """Per-event ``values`` of the ``chosen`` events, placed among all events (1 elsewhere)."""
    full = np.ones(len(chosen))
    full[np.flatnonzero(chosen)] = values  # an index array: a boolean one is 3-4x slower
    return full


FILL_BLOCK = 16
"""Weight columns per ``np.bincount``: temporaries stay at 16 x the selected events, however
many variations a fill writes."""


@dataclass(frozen=True)
class WeightColumns:
    """The weights one fill writes: ``factors[k] * base`` into histogram row ``rows[k]``.

    Kept as separate per-event arrays and multiplied out block by block, so that memory grows
    with the histograms, not with the number of variations times the chunk.
    """

    base: np.ndarray
    factors: Sequence[np.ndarray]
    rows: np.ndarray

    def block(self, events: np.ndarray, start: int, stop: int) -> np.ndarray:
        columns = np.stack([f[events] for f in self.factors[start:stop]], axis=1)
        return columns * self.base[events][:, None]


def _fill(out: np.ndarray, idx: np.ndarray, events: np.ndarray, weights: WeightColumns) -> None:
    """Add the weights of ``events`` (bin numbers ``idx``) into ``out[row, bin, (w, w²)]``."""
    ok = idx >= 0
    if not ok.all():
        idx = np.compress(ok, idx)
        events = np.compress(ok, events)
    if idx.size == 0:
        return
    nrows, nbins = out.shape[0], out.shape[1]
    for start in range(0, len(weights.rows), FILL_BLOCK):
        stop = min(start + FILL_BLOCK, len(weights.rows))
        flat_w = weights.block(events, start, stop).ravel()
        flat_idx = (weights.rows[None, start:stop] * nbins + idx[:, None]).ravel()
        sumw = np.bincount(flat_idx, weights=flat_w, minlength=nrows * nbins)
        sumw2 = np.bincount(flat_idx, weights=flat_w * flat_w, minlength=nrows * nbins)
        out[..., 0] += sumw.reshape(nrows, nbins)
        out[..., 1] += sumw2.reshape(nrows, nbins)


class ChunkAnalysis:
    """Analyse chunks of one dataset with a fixed plan and era corrections."""

    def __init__(self, plan: AnalysisPlan, ctx: ChunkContext, corrections: EraCorrections | None):
        self.plan = plan
        self.ctx = ctx
        self.corrections = None if ctx.is_data else corrections
        self.var_index = plan.variation_index()
        self.collections = plan.collections_for(ctx.constants)
        varying_collections = (
            {c.collection for c in self.corrections.objects} if self.corrections else set()
        )
        self.varying = self._propagate(varying_collections)

    def _propagate(self, roots: set[str]) -> set[str]:
        """Names (collections and objects) that change when ``roots`` change."""
        varying = set(roots)
        for name, functor in self.plan.objects.items():
            if any(i in varying for i in functor.inputs):
                varying.add(name)
        return varying

    def _depends(self, functor: Functor) -> bool:
        return any(i in self.varying for i in functor.inputs)

    def branches(self) -> list[str]:

        exclude = self.plan.mc_only if self.ctx.is_data else frozenset()
        return branch_names(self.collections, self.plan.event_columns, exclude=exclude)

    def run(self, columns: Mapping[str, ak.Array]) -> ChunkResult:
        """Analyse one chunk of columns (flat NanoAOD branch names)."""
        plan, ctx = self.plan, self.ctx
        compiled.before_chunk(plan.compiled_kernels_after)
        events = build_events(columns, self.collections, plan.event_columns)
        n_read = num_events(events)
        compiled.after_chunk(n_read)
        cutflow: dict[str, float] = {"read": float(n_read)}
        ns: dict[str, Any] = dict(events)
        ns.update({f"@{k}": v for k, v in ctx.constants.items()})
        keep = _call_mask(plan.skim, ns, n_read)
        if ctx.is_data and ctx.golden_json:
            keep &= in_golden_json(ctx.golden_json, events["run"], events["luminosityBlock"])
        events = filter_events(events, keep)
        cutflow["skim"] = float(np.count_nonzero(keep))
        ns = dict(events)
        ns.update({f"@{k}": v for k, v in ctx.constants.items()})
        n = num_events(events)

        # Objects and cuts that no variation changes: once per chunk, on all skimmed events.
        for name, functor in plan.objects.items():
            if name not in self.varying:
                ns[name] = functor(ns)
        candidate = np.ones(n, dtype=bool)
        for functor in plan.baseline.values():
            if not self._depends(functor):
                candidate &= _call_mask(functor, ns, n)
        channel_fixed: dict[str, np.ndarray] = {}
        any_channel = np.zeros(n, dtype=bool)
        for ch_name, channel in plan.channels.items():
            mask = np.ones(n, dtype=bool)
            for functor in channel.cuts.values():
                if not self._depends(functor):
                    mask &= _call_mask(functor, ns, n)
            channel_fixed[ch_name] = mask
            any_channel |= mask
        candidate &= any_channel
        cutflow["candidates"] = float(np.count_nonzero(candidate))

        cand_ns: dict[str, Any] = {
            k: (take_events(v, candidate) if not k.startswith("@") else v) for k, v in ns.items()
        }
        channel_fixed = {k: v[candidate] for k, v in channel_fixed.items()}
        n_cand = int(np.count_nonzero(candidate))
        hists = {
            (ch, obs): np.zeros((len(plan.variations), plan.observables[obs].bins + 2, 2))
            for ch, channel in plan.channels.items()
            for obs in channel.observables
        }
        selected = np.zeros(n_cand, dtype=bool)
        if n_cand:
            selected = self._fill_all(cand_ns, channel_fixed, n_cand, hists, cutflow)
        return ChunkResult(
            process=ctx.process,
            hists=hists,
            cutflow=cutflow,
            events_selected=int(np.count_nonzero(selected)),
        )

    def _base_weight(self, ns: Mapping[str, Any], n: int) -> np.ndarray:
        if self.ctx.is_data:
            return np.ones(n)
        gen = np.asarray(ak.to_numpy(ns["genWeight"]), dtype=np.float64)
        return gen * self.ctx.norm

    def _fill_all(
        self,
        ns: dict[str, Any],
        channel_fixed: Mapping[str, np.ndarray],
        n: int,
        hists: dict[tuple[str, str], np.ndarray],
        cutflow: dict[str, float],
    ) -> np.ndarray:
        corr = self.corrections
        if corr is None:
            weights = WeightColumns(self._base_weight(ns, n), [np.ones(n)], np.asarray([0]))
            return self._fill_once(ns, channel_fixed, n, hists, weights, cutflow)
        wanted = {name.rsplit("_", 1)[0] for name in self.var_index}
        corrected = {obj.collection: obj.apply(ns, wanted) for obj in corr.objects}
        for collection, jets in corrected.items():
            ns[collection] = jets.nominal()
        base = self._base_weight(ns, n)
        nominal_ns = self._varying_objects(ns)

        # Nominal fill: nominal weight, every weight variation, and foreign-era names. Weights of
        # objects that no variation changes are evaluated on every candidate when object
        # variations follow (their fills pick their own events from them); the others, and all
        # of them in a chunk without object variations, only on the events the nominal fill selects.
        factors: dict[str, np.ndarray] = {}
        shifted: dict[str, dict[str, np.ndarray]] = {}
        object_fills = any(f"{variation}_{direction}" in self.var_index for obj in corr.objects
                           for variation in obj.variation_bases for direction in ("up", "down"))
        on_chosen = {wc.name for wc in corr.weights
                     if not object_fills or (wc.object is not None and wc.object in self.varying)}
        for wc in corr.weights:
            if wc.name not in on_chosen:
                self._nominal_factors(wc, nominal_ns, None, factors, shifted)

        def nominal_weights(chosen: np.ndarray, sub_ns: Mapping[str, Any]) -> WeightColumns:
            for wc in corr.weights:
                if wc.name in on_chosen:
                    self._nominal_factors(wc, sub_ns, chosen, factors, shifted)
            return self._nominal_columns(corr, base, factors, shifted, n)

        selected = self._fill_once(nominal_ns, channel_fixed, n, hists, nominal_weights, cutflow)
        fixed = self._fixed_prefix(factors, n)

        # Object variations: recompute what depends on the varied collection, and the weights
        # that depend on varied objects (with their linked source where one is configured).
        for obj in corr.objects:
            for variation in obj.variation_bases:
                for direction in ("up", "down"):
                    name = f"{variation}_{direction}"
                    if name not in self.var_index:
                        continue
                    var_ns = dict(ns)
                    var_ns[obj.collection] = corrected[obj.collection].varied(variation, direction)
                    var_ns = self._varying_objects(var_ns)
                    row = np.asarray([self.var_index[name]])

                    def varied_weights(chosen: np.ndarray, sub_ns: Mapping[str, Any],
                                       variation: str = variation, direction: str = direction,
                                       row: np.ndarray = row) -> WeightColumns:
                        factor = self._varied_factor(sub_ns, chosen, factors, fixed, variation, direction)
                        return WeightColumns(base, [factor], row)

                    self._fill_once(var_ns, channel_fixed, n, hists, varied_weights, None)
        return selected

    def _nominal_factors(self, wc: WeightCorrection, ns: Mapping[str, Any], chosen: np.ndarray | None,
                         factors: dict[str, np.ndarray], shifted: dict[str, dict[str, np.ndarray]]) -> None:
        """Evaluate one weight's nominal and its sources' shifts; on the ``chosen`` events of
        ``ns`` (the others get 1, and are not filled) or, with ``chosen=None``, on all of them."""
        requests = [(src, d) for src in wc.sources for d in ("up", "down")
                    if f"{src.variation}_{d}" in self.var_index]
        values = wc.evaluate(ns, [None, *requests])
        if chosen is not None:
            values = [_spread(v, chosen) for v in values]
        factors[wc.name] = values[0]
        shifted[wc.name] = {f"{src.variation}_{d}": v for (src, d), v in zip(requests, values[1:], strict=True)}

    def _nominal_columns(self, corr: EraCorrections, base: np.ndarray, factors: Mapping[str, np.ndarray],
                         shifted: Mapping[str, Mapping[str, np.ndarray]], n: int) -> WeightColumns:
        """The nominal fill's weight columns: the nominal (factors multiplied in configuration
        order), each weight source's shift times the other factors, and the nominal again for
        the variations only other eras produce."""
        ordered = [factors[wc.name] for wc in corr.weights]
        nominal_factor = _product(ordered, n)
        columns = [0]
        weight_cols = [nominal_factor]
        for wc in corr.weights:
            others = _product((f for other, f in zip(corr.weights, ordered, strict=True) if other is not wc), n)
            for name, shift in shifted[wc.name].items():
                if name in self.var_index:
                    columns.append(self.var_index[name])
                    weight_cols.append(others * shift)
        produced = set(corr.variation_names())
        for name, index in self.var_index.items():
            if index and name not in produced:
                columns.append(index)
                weight_cols.append(nominal_factor)
        return WeightColumns(base, weight_cols, np.asarray(columns))

    def _fixed_prefix(self, factors: Mapping[str, np.ndarray], n: int) -> tuple[np.ndarray, int]:
        """The product of the leading weights (configuration order) that no object variation
        changes, and how many they are: one product per chunk instead of one per object variation.
        """
        corr = self.corrections
        assert corr is not None
        prefix = np.ones(n)
        count = 0
        for wc in corr.weights:
            if wc.object is not None and wc.object in self.varying:
                break
            prefix = prefix * factors[wc.name]
            count += 1
        return prefix, count

    def _varied_factor(self, sub_ns: Mapping[str, Any], chosen: np.ndarray,
                       factors: Mapping[str, np.ndarray], fixed: tuple[np.ndarray, int],
                       variation: str, direction: str) -> np.ndarray:
        """The event weight of an object variation, evaluated only on the ``chosen`` events (those
        some channel selects in this variation; the others are never filled), whose members
        ``sub_ns`` holds.

        Factors multiply in configuration order, as for every event of the nominal fill, so a
        chosen event's weight does not depend on which other events were chosen; ``fixed`` is the
        product of the leading factors that do not vary (:meth:`_fixed_prefix`).
        """
        corr = self.corrections
        assert corr is not None
        prefix, skipped = fixed
        picked = np.flatnonzero(chosen)
        factor = prefix.take(picked)
        for wc in corr.weights[skipped:]:
            if wc.object is None or wc.object not in self.varying:
                factor = factor * factors[wc.name].take(picked)
                continue
            factor = factor * wc.evaluate(sub_ns, [linked_source(wc, variation)], direction)[0]
        return _spread(factor, chosen)

    def _varying_objects(self, ns: Mapping[str, Any]) -> dict[str, Any]:
        out = dict(ns)
        for name, functor in self.plan.objects.items():
            if name in self.varying:
                out[name] = functor(out)
        return out

    def _fill_once(
        self,
        ns: Mapping[str, Any],
        channel_fixed: Mapping[str, np.ndarray],
        n: int,
        hists: dict[tuple[str, str], np.ndarray],
        weights: WeightColumns | Callable[[np.ndarray, Mapping[str, Any]], WeightColumns],
        cutflow: dict[str, float] | None,
    ) -> np.ndarray:
        """Select every channel, then fill its observables with ``weights`` (or with the weights
        built for the selected events, when given as a function of the selection and of their
        members)."""
        plan = self.plan
        base_mask = np.ones(n, dtype=bool)
        for functor in plan.baseline.values():
            if self._depends(functor):
                base_mask &= _call_mask(functor, ns, n)
        if cutflow is not None:
            cutflow["baseline"] = float(np.count_nonzero(base_mask))
        any_selected = np.zeros(n, dtype=bool)
        masks: dict[str, np.ndarray] = {}
        for ch_name, channel in plan.channels.items():
            mask = channel_fixed[ch_name].copy()
            if channel.use_baseline:
                mask &= base_mask
            for functor in channel.cuts.values():
                if self._depends(functor):
                    mask &= _call_mask(functor, ns, n)
            any_selected |= mask
            if cutflow is not None:
                cutflow[f"channel:{ch_name}"] = float(np.count_nonzero(mask))
            masks[ch_name] = mask
        if not np.any(any_selected):
            return any_selected
        # The selected events of ``ns``, each member taken once for the weights and for every
        # channel that selects exactly them (the only channel, in a one-channel analysis).
        chosen_ns = _TakenEvents(ns, any_selected)
        if not isinstance(weights, WeightColumns):
            weights = weights(any_selected, chosen_ns)
        for ch_name, channel in plan.channels.items():
            mask = masks[ch_name]
            if not np.any(mask):
                continue
            events = np.flatnonzero(mask)
            # The channel's events are taken once for all its observables, which then share
            # results (a classifier score whose features include an observable computes it once).
            wanted = dict.fromkeys(k for o in channel.observables for k in plan.observables[o].functor.inputs)
            source = chosen_ns if np.array_equal(mask, any_selected) else _TakenEvents(ns, mask)
            sub = {k: source[k] for k in wanted}
            with shared_results():
                for obs_name in channel.observables:
                    obs = plan.observables[obs_name]
                    values = np.asarray(obs.functor(sub), dtype=np.float64)
                    _fill(hists[(ch_name, obs_name)], _bin_index(values, obs), events, weights)
        return any_selected

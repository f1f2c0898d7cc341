"""The training set: features and physics weights of the events selected in one channel.

Each chunk is read and selected on a Dask worker exactly as the nominal analysis fill does
(skim function, nominal JEC, objects, baseline, channel cuts, ``genWeight × σL/Σw`` times the
nominal event-weight corrections), from NanoAOD or from skims alike; only the feature matrix and
the weights travel back. Chunks are concatenated in a fixed order, so the set does not depend
on which worker finished first.
"""

from __future__ import annotations

import fnmatch
import time
from collections.abc import Mapping, Sequence
from typing import Any

import awkward as ak
import numpy as np

from intccms.core.records import ChunkRecord
from intccms.metrics.worker import current_worker_label
from intccms.mva.features import FeatureSpec, feature_matrix
from intccms.mva.train import TrainingSet
from intccms.physics.corrections import EraCorrections
from intccms.physics.corrections.spec import CorrectionsSpec
from intccms.physics.events import branch_names, build_events, filter_events, num_events
from intccms.physics.lumimask import in_golden_json
from intccms.physics.pipeline import AnalysisPlan, ChunkContext
from intccms.plan.workitems import WorkItem
from intccms.runner.worker import INPUT_ERRORS, raise_if_not_input
from intccms.storage import StorageOptions, open_source


def _mask(functor: Any, ns: Mapping[str, Any], n: int) -> np.ndarray:
    mask = np.asarray(functor(ns), dtype=bool)
    if mask.shape != (n,):
        msg = f"cut {functor.function} returned shape {mask.shape}, expected ({n},)"
        raise ValueError(msg)
    return mask


def select_channel(
    plan: AnalysisPlan, ctx: ChunkContext, corrections: EraCorrections | None, channel: str,
    columns: Mapping[str, ak.Array],
) -> tuple[dict[str, Any], np.ndarray]:
    """Nominal selection of one chunk in ``channel``.

    Returns:
        The namespace (collections, objects, event columns, ``@constants``) of the selected
        events, and their nominal weights.
    """
    consts = {f"@{k}": v for k, v in ctx.constants.items()}
    events = build_events(columns, plan.collections_for(ctx.constants), plan.event_columns)
    n = num_events(events)
    keep = _mask(plan.skim, {**events, **consts}, n)
    if ctx.is_data and ctx.golden_json:
        keep &= in_golden_json(ctx.golden_json, events["run"], events["luminosityBlock"])
    ns: dict[str, Any] = {**filter_events(events, keep), **consts}
    n = int(np.count_nonzero(keep))
    if corrections is not None:
        for obj in corrections.objects:
            ns[obj.collection] = obj.apply(ns).nominal()
    for name, functor in plan.objects.items():
        ns[name] = functor(ns)
    ch = plan.channels[channel]
    mask = np.ones(n, dtype=bool)
    if ch.use_baseline:
        for functor in plan.baseline.values():
            mask &= _mask(functor, ns, n)
    for functor in ch.cuts.values():
        mask &= _mask(functor, ns, n)
    selected = {k: (v if k.startswith("@") else v[mask]) for k, v in ns.items()}
    n_sel = int(np.count_nonzero(mask))
    if ctx.is_data:
        return selected, np.ones(n_sel)
    weight = np.asarray(ak.to_numpy(selected["genWeight"]), dtype=np.float64) * ctx.norm
    if corrections is not None and n_sel:
        for wc in corrections.weights:
            weight = weight * wc.evaluate(selected, [None])[0]
    return selected, weight


def training_chunk_task(
    item: WorkItem, ctx: ChunkContext, plan: AnalysisPlan, channel: str,
    features: tuple[FeatureSpec, ...], corrections: CorrectionsSpec | None,
    options: StorageOptions | None,
) -> tuple[dict[str, np.ndarray] | None, ChunkRecord]:
    """Read one chunk, select the channel's events, return their features and weights."""

    record = ChunkRecord(dataset=item.dataset, stage="mva_training", file=item.file,
                         entry_start=item.entry_start, entry_stop=item.entry_stop,
                         worker=current_worker_label(), t_start=time.time())
    exclude = plan.mc_only if ctx.is_data else frozenset()
    branches = branch_names(plan.collections_for(ctx.constants), plan.event_columns, exclude=exclude)
    try:
        with open_source(item.file, options=options) as source:
            columns = source.read(branches, item.entry_start, item.entry_stop)
            record.bytes_read = int(source.bytes_read)
    except INPUT_ERRORS as err:
        record.failed, record.error, record.t_end = True, f"{type(err).__name__}: {item.file}: {err}", time.time()
        raise_if_not_input(err)
        return None, record
    selected, weight = select_channel(plan, ctx, corrections.build() if corrections else None, channel, columns)
    x = feature_matrix(features, selected, len(weight))
    record.events_read, record.events_selected, record.t_end = item.entries, len(weight), time.time()
    return {"x": x, "weight": weight}, record


def class_of(process: str, signal: Sequence[str], background: Sequence[str]) -> int | None:
    """1 for a signal process, 0 for background, None for neither; both is an error."""
    is_sig = any(fnmatch.fnmatchcase(process, p) for p in signal)
    is_bkg = any(fnmatch.fnmatchcase(process, p) for p in background)
    if is_sig and is_bkg:
        msg = (f"process '{process}' matches both mva.classes.signal {list(signal)} and "
               f"mva.classes.background {list(background)}; make the patterns exclusive")
        raise ValueError(msg)
    return 1 if is_sig else 0 if is_bkg else None


def assemble(parts: Mapping[WorkItem, dict[str, np.ndarray]], labels: Mapping[str, int],
             n_features: int) -> TrainingSet:
    """Concatenate chunk results in (dataset, file, chunk) order with their class labels."""
    order = sorted(parts, key=lambda it: (it.dataset, it.file_index, it.chunk_index, it.entry_start))
    xs = [parts[it]["x"] for it in order]
    ws = [parts[it]["weight"] for it in order]
    ys = [np.full(len(parts[it]["weight"]), labels[it.dataset], dtype=np.int8) for it in order]
    ds = [np.full(len(parts[it]["weight"]), it.dataset, dtype=object) for it in order]
    if not order:
        return TrainingSet(np.empty((0, n_features)), np.empty(0, np.int8), np.empty(0))
    counts: dict[str, int] = {}
    for it in order:
        counts[it.dataset] = counts.get(it.dataset, 0) + len(parts[it]["weight"])
    return TrainingSet(x=np.concatenate(xs), y=np.concatenate(ys), weight=np.concatenate(ws),
                       dataset=np.concatenate(ds), origin={"events_per_dataset": counts})

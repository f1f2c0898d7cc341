"""The training stage (``workflow.run_mva_training``) and the start-up checks of the ``mva``
group and of score observables.

Training runs where the job runs: the training set is built on the Dask workers (one task per
chunk, like the analysis), the fit happens in the job process, and the model is written to
``mva.output`` through :mod:`intccms.storage`, from where every worker reads it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from distributed import Client
from rich.console import Console

from intccms.config.mva import ModelKind, MvaConfig, MvaConfigError, to_plain
from intccms.mva.dataset import assemble, class_of, training_chunk_task
from intccms.mva.features import FeatureSpec, input_names, specs_from_config
from intccms.mva.model import ModelMismatchError, check_versions, compare_features, read_meta
from intccms.mva.observable import clear_cache
from intccms.mva.train import limit_per_class, train
from intccms.physics.normalisation import normalisation_factor
from intccms.physics.pipeline import AnalysisPlan, ChunkContext
from intccms.plan.items import analysis_items
from intccms.plan.run import RunPlan
from intccms.runner.stage import run_stage

log = logging.getLogger(__name__)

SCORE_FUNCTION = "intccms.mva.observable.score"


def _known_inputs(plan: AnalysisPlan, constants: Mapping[str, Mapping[str, Any]]) -> set[str]:
    names = set(plan.collections) | set(plan.event_columns) | set(plan.objects)
    for consts in constants.values():
        names |= {f"@{k}" for k in consts}
    return names


def check_mva(run: RunPlan) -> MvaConfig | None:
    """Start-up checks: the ``mva`` group (when present or training is on) and every score
    observable (its model must exist unless this job trains it, and match the features).

    Raises:
        MvaConfigError: the message names the key under ``mva.`` or ``analysis.observables.``.
    """
    assert run.analysis is not None
    plan, constants, options = run.analysis, run.constants(), run.storage
    training = run.workflow.run_mva_training
    mva = run.mva
    if training and mva is None:
        raise MvaConfigError("mva: no configuration; add 'mva: <name>' (a file in conf/mva/) to the defaults")
    if mva is not None:
        if mva.channel not in plan.channels:
            msg = f"mva.channel: '{mva.channel}' is not a channel (known: {sorted(plan.channels)})"
            raise MvaConfigError(msg)
        known = _known_inputs(plan, constants)
        for name, feat in mva.features.items():
            missing = [i for i in feat.inputs if i not in known]
            if missing:
                msg = (f"mva.features.{name}.inputs: {missing} are not collections, event columns, "
                       f"objects or @constants of this analysis (known: {sorted(known)})")
                raise MvaConfigError(msg)
    for obs_name, obs in plan.observables.items():
        if obs.functor.function == SCORE_FUNCTION:
            _check_score_observable(obs_name, obs.functor, mva, training, options)
    return mva


def _check_score_observable(name: str, functor: Any, mva: MvaConfig | None, training: bool,
                            options: Any) -> None:
    where = f"analysis.observables.{name}"
    url = functor.params.get("model")
    if not url:
        raise MvaConfigError(f"{where}.params.model: name the model folder (e.g. ${{mva.output}})")
    expected = specs_from_config(mva.features) if mva is not None else None
    wanted = functor.params.get("features")
    own = specs_from_config(wanted) if isinstance(wanted, Mapping) else None
    if training and mva is not None and str(url) == str(mva.output):
        # This job writes the model: it will have exactly the features of the mva group.
        if own is not None and own != expected:
            msg = (f"{where}.params.features: the definitions differ from mva.features, which this "
                   "job trains the model on; set it to ${mva.features}")
            raise MvaConfigError(msg)
        _check_inputs(where, functor, input_names(expected or ()), "mva.features")
        return
    try:
        meta = read_meta(str(url), options)
    except FileNotFoundError as err:
        raise MvaConfigError(f"{where}.params.model: {err}") from None
    check_versions(meta, str(url))
    stored = [f["name"] for f in meta["features"]]
    if wanted is not None and list(wanted) != stored:
        msg = (f"{where}.params.features: model {url} was trained on features {stored}, "
               f"the observable expects {list(wanted)}; retrain it (workflow.run_mva_training=true)")
        raise MvaConfigError(msg)
    # Same names are not enough: compare every definition (function, inputs, params) with the
    # mva group and with the observable's own definitions when it lists them.
    model_specs = [FeatureSpec.from_dict(d) for d in meta["features"]]
    for source, specs in (("mva.features", expected), (f"{where}.params.features", own)):
        if specs is None:
            continue
        try:
            compare_features(model_specs, specs, str(url))
        except ModelMismatchError as err:
            msg = f"{where}.params.model: {err} (compared with {source})"
            raise MvaConfigError(msg) from None
    _check_inputs(where, functor, tuple(meta["inputs"]), f"model {url}")


def _check_inputs(where: str, functor: Any, needed: tuple[str, ...], source: str) -> None:
    if tuple(functor.inputs) != tuple(needed):
        msg = (f"{where}.inputs: {list(functor.inputs)} must be exactly {list(needed)} (the inputs "
               f"of the features of {source}, in this order)")
        raise MvaConfigError(msg)


def run_training(
    run: RunPlan, client: Client, metadata: Mapping[str, Any], out: Path, *, console: Console | None = None,
    run_metrics: Any = None,
) -> dict[str, Any]:
    """Build the training set on the cluster, train, plot, save; returns a summary.

    Raises:
        EmptyClassError: a class has no selected events (names the class and its samples).
    """

    console = console or Console(stderr=True)
    mva = run.mva
    if mva is None:
        raise MvaConfigError("mva: no configuration; add 'mva: <name>' (a file in conf/mva/) to the defaults")
    datasets, options = run.datasets, run.storage
    features: tuple[FeatureSpec, ...] = specs_from_config(mva.features)
    labels: dict[str, int] = {}
    contexts: dict[str, ChunkContext] = {}
    for name, ds in datasets.items():
        label = None if ds.is_data else class_of(ds.process, mva.classes.signal, mva.classes.background)
        if label is None:
            continue
        era = run.eras[ds.era]
        norm = normalisation_factor(ds.xsec or 0.0, era.luminosity, metadata[name].sum_genweight)
        labels[name] = label
        contexts[name] = ChunkContext(process=ds.process, era=ds.era, is_data=False, norm=norm,
                                      constants=era.constants)
    _check_classes(mva, labels, datasets)
    chosen = {n: d for n, d in datasets.items() if n in labels}
    items = analysis_items(run.workflow, chosen, metadata, options)
    plan_future = client.scatter(run.analysis, broadcast=True, hash=False)
    parts: dict[Any, dict[str, np.ndarray]] = {}
    t0 = time.time()
    outcome = run_stage(
        client, "mva_training", items, training_chunk_task,
        lambda it: (contexts[it.dataset], plan_future, mva.channel, features,
                    run.corrections_for(it.dataset), options),
        lambda it, part: parts.__setitem__(it, part),
        retries=run.workflow.retries, skip_bad_files=run.workflow.skip_bad_files,
        console=console, run_metrics=run_metrics,
        no_workers_timeout_s=float(run.cluster.no_workers_timeout_s),
    )
    data = assemble(parts, labels, len(features))
    data.origin.update({
        "datasets": {n: {"process": datasets[n].process, "era": datasets[n].era, "class": labels[n],
                         "files": sorted(datasets[n].files)} for n in sorted(labels)},
        "skimmed_input": run.workflow.use_skimmed_input,
        "channel": mva.channel,
        "weights": "genWeight x xsec x lumi / sum genWeight x nominal event corrections",
    })
    data = limit_per_class(data, mva.training.max_events_per_class, mva.training.seed)
    t_data = time.time() - t0
    t1 = time.time()
    result = train(data, features, mva, config_doc=to_plain(mva))
    t_fit = time.time() - t1
    plots = {}
    if mva.plots:
        from intccms.mva.plots import plot_training  # matplotlib: only when plotting

        plots = plot_training(result, data, out / "mva")
    result.model.meta["metrics"].update({"training_set_seconds": t_data, "fit_seconds": t_fit})
    training_data = {"x": data.x, "y": data.y, "weight": data.weight, "train_weight": result.train_weight,
                     "split": result.split, "dataset": data.dataset.astype(str) if data.dataset is not None
                     else np.empty(0, dtype=str), "feature_names": np.asarray([f.name for f in features])}
    result.model.save(mva.output, options, training_data=training_data)
    # Workers of a long-lived cluster may hold an older model loaded from the same folder.
    clear_cache()
    client.run(clear_cache)
    metrics = result.model.meta["metrics"]
    console.print(f"[bold]mva[/bold]: {ModelKind(mva.model.kind).value} trained on {len(data.y)} events "
                  f"(signal {int(data.y.sum())}, background {int((data.y == 0).sum())}); "
                  f"test AUC {metrics['auc_test']:.3f}; model at {mva.output}")
    return {"model": mva.output, "metrics": metrics, "plots": {k: str(v) for k, v in plots.items()},
            "records": outcome.records, "skipped": outcome.skipped, "history": result.history}


def _check_classes(mva: MvaConfig, labels: Mapping[str, int], datasets: Mapping[str, Any]) -> None:
    for label, name in ((1, "signal"), (0, "background")):
        if not any(v == label for v in labels.values()):
            procs = sorted({d.process for d in datasets.values() if not d.is_data})
            msg = (f"mva class '{name}' (mva.classes.{name}: {getattr(mva.classes, name)}) matches no "
                   f"simulated dataset of this run (processes: {procs})")
            raise MvaConfigError(msg)

"""The job: prepare inputs, run metadata -> skim -> analysis on the cluster, write outputs."""

from __future__ import annotations

import logging
import os
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from distributed import Client
from omegaconf import DictConfig, OmegaConf
from rich.console import Console

from intccms.config.compose import to_yaml
from intccms.config.validate import check_processor
from intccms.core.records import ChunkRecord
from intccms.execute.backends import start_cluster
from intccms.execute.preflight import check_grid_credentials, resolved_xrootd_urls
from intccms.execute.prepare import ensure_inputs, fill_generated_files
from intccms.execute.runner import StageOutcome, run_stage
from intccms.execute.stages import (
    analysis_items,
    build_plan,
    corrections_specs,
    era_constants,
    load_manifests,
    run_metadata,
    skim_stage,
)
from intccms.execute.tasks import analysis_task
from intccms.metrics.local_prometheus import local_prometheus
from intccms.metrics.sampler import WorkerSampler, wanted_workers
from intccms.outputs.histograms import AxisSpec, FileGroupedAccumulator, save_pickle, save_root
from intccms.outputs.provenance import config_hash, write_provenance
from intccms.outputs.summary import print_summary, summarise
from intccms.physics.normalisation import normalisation_factor
from intccms.physics.pipeline import ChunkContext
from intccms.plan.datasets import Dataset, resolve_dataset, select_datasets
from intccms.storage import StorageOptions
from intccms.storage.outputs import OutputLocation

log = logging.getLogger(__name__)


@dataclass
class JobResult:
    """What a run produced, for callers and tests."""

    # Local; when ``remote`` (``output_url`` on S3 or XRootD) the staging folder, and it and the
    # paths below were removed when the job ended: the outputs are at ``output_url``.
    output_dir: Path
    output_url: str = ""
    remote: bool = False
    histograms_path: Path | None = None
    root_path: Path | None = None
    plots: list[Path] = field(default_factory=list)
    records: list[ChunkRecord] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)
    statistics: dict[str, Any] | None = None
    mva: dict[str, Any] | None = None
    processor_output: Any = None  # the merged, post-processed output of a processor run
    coffea_path: Path | None = None
    wall_time_s: float = 0.0


def storage_options(cfg: DictConfig) -> StorageOptions:
    """Storage options from the ``storage`` group; credentials stay as env-var references and
    grid credential files (the ``credentials`` group) as paths."""
    from intccms.storage import load_credentials
    from intccms.storage.grid import GridSettings

    return StorageOptions(
        s3_endpoint=cfg.storage.s3_endpoint,
        timeout_s=float(cfg.storage.timeout_s),
        retries=int(cfg.storage.retries),
        credentials=load_credentials(grid=GridSettings.from_config(cfg.get("credentials"))),
        reader_kwargs=cast("dict[str, Any]", OmegaConf.to_container(cfg.storage.reader_kwargs, resolve=True) or {}),
    )


def run_job(cfg: DictConfig, *, console: Console | None = None, client: Client | None = None) -> JobResult:
    """Run the configured workflow end to end.

    Args:
        cfg: the composed configuration (:func:`intccms.config.compose_config`).
        console: where progress and summaries go (stderr by default).
        client: an existing Dask client (tests); otherwise the configured backend is started.
    """
    console = console or Console(stderr=True)
    t0 = time.time()
    # Grid credentials for root:// URLs, before anything touches a store or starts a cluster.
    grid_checked = check_grid_credentials(cfg, console) is not None

    # s3:// and root:// outputs are staged in a private folder, published file by file and the
    # folder removed at the end (a rerun reads the metadata cache back from the store).
    with OutputLocation(str(cfg.output_dir), storage_options(cfg)) as outputs:
        try:
            result = _job(cfg, outputs, console, client, grid_checked=grid_checked)
        except BaseException:
            outputs.publish(best_effort=True)  # what was written (e.g. the metadata cache) is kept
            raise
        outputs.publish()
    result.wall_time_s = time.time() - t0
    return result


def _job(cfg: DictConfig, outputs: OutputLocation, console: Console, client: Client | None, *,
         grid_checked: bool) -> JobResult:
    """Everything the job does between opening its output location and publishing it."""
    out = outputs.local
    run_id = os.environ.get("INTCCMS_RUN_ID") or f"{cfg.name}-{uuid.uuid4().hex[:8]}"
    os.environ["INTCCMS_RUN_ID"] = run_id
    config_yaml = to_yaml(cfg)
    write_provenance(out / "provenance", config_yaml, {"run_id": run_id})
    outputs.publish(out / "provenance")

    fill_generated_files(cfg)
    ensure_inputs(cfg, console=console)
    chosen = select_datasets(cast("dict[str, Any]", OmegaConf.to_container(cfg.datasets, resolve=True)),
                             list(cfg.dataset_selection))
    datasets = {name: resolve_dataset(name, d, outputs.options) for name, d in chosen.items()}  # remote globs
    if not grid_checked:  # listings may name root:// files the configuration alone does not show
        check_grid_credentials(cfg, console, resolved_xrootd_urls(datasets))
    eras = sorted({d.era for d in datasets.values()})
    unknown = [e for e in eras if e not in cfg.eras]
    if unknown:
        msg = f"datasets use eras {unknown} that are not configured under 'eras' (known: {sorted(cfg.eras)})"
        raise ValueError(msg)
    from intccms.plan.datasets import unmatched_eras

    for warning in unmatched_eras(datasets):
        console.print(f"[yellow]warning: {warning}; data/simulation comparisons and fits over "
                      "these eras are biased (choose datasets with dataset_selection)[/yellow]")
    options = storage_options(cfg)
    result = JobResult(output_dir=out, output_url=outputs.url, remote=outputs.remote)
    work: Callable[[Client, WorkerSampler], None]
    if cfg.get("processor") is not None:
        # coffea takes ~2 s to import: only processor runs pay for it.
        from intccms.processor.job import run_processor

        loaded = check_processor(cfg)  # imported, checked and built before any cluster is asked for

        def work(c: Client, sampler: WorkerSampler) -> None:
            run_processor(cfg, c, datasets, loaded, options, out, result, console, sampler)
    else:
        constants = era_constants(cfg, eras)
        specs = corrections_specs(cfg, eras)  # validates every file and key now, at start-up
        plan = build_plan(cfg, specs)
        from intccms.mva.stage import check_mva

        check_mva(cfg, plan, constants, options)  # the mva group and score observables, at start-up
        if cfg.workflow.run_statistics:
            from intccms.stats.stage import check_statistics

            check_statistics(cfg)  # the statistics group; statistics.input.path when it runs alone

        def work(c: Client, sampler: WorkerSampler) -> None:
            _run(cfg, c, datasets, constants, specs, plan, options, out, result, console, config_yaml, sampler)

    if client is None:
        with (start_cluster(cfg.cluster, run_id=run_id) as new_client,
              local_prometheus(cfg.prometheus, new_client, out, run_id=run_id, console=console),
              WorkerSampler(new_client) as sampler):
            work(new_client, sampler)
    else:
        with (local_prometheus(cfg.prometheus, client, out, run_id=run_id, console=console),
              WorkerSampler(client) as sampler):
            work(client, sampler)
    return result


def register_plugins(client: Client, options: StorageOptions, run_id: str, datasets: list[str],
                     cluster_kind: Any = "local", stages: Sequence[str] = ("metadata", "skim", "analysis"),
                     ) -> None:
    """Metrics (series of ``stages`` primed at zero) and storage credentials on every worker."""
    from intccms.metrics.preload import WorkerMetricsPlugin

    client.register_plugin(WorkerMetricsPlugin(run_id, datasets, list(stages)))
    from intccms.storage.plugin import credentials_plugin

    # kubernetes/address workers have their own environment (a mounted Secret): names only.
    plugin = credentials_plugin(options.credentials, cluster_kind)
    if plugin is not None:
        client.register_plugin(plugin)


def _run(
    cfg: DictConfig,
    client: Client,
    datasets: Mapping[str, Dataset],
    constants: Mapping[str, Mapping[str, Any]],
    specs: Mapping[str, Any],
    plan: Any,
    options: StorageOptions,
    out: Path,
    result: JobResult,
    console: Console,
    config_yaml: str,
    sampler: WorkerSampler,
) -> None:
    from intccms.metrics.scheduler import run_metrics_for

    wf = cfg.workflow
    run_id = os.environ["INTCCMS_RUN_ID"]
    register_plugins(client, options, run_id, sorted(datasets), cfg.cluster.kind)
    run_metrics = run_metrics_for(client, run_id, config=str(cfg.name))
    # Workers wanted and present, the report's cores and worker timeline: sampled during the stages.
    sampler.start(run_metrics, wanted_workers(cfg.cluster, len(client.nthreads())))
    if wf.run_statistics and not (wf.run_analysis or wf.save_skimmed_output or wf.run_mva_training):
        result.statistics = _statistics(cfg, client, None, plan, options, out)  # alone, saved histograms
        return
    t_start = time.time()
    metadata, meta_records = run_metadata(cfg, client, datasets, options, out, console=console,
                                          run_metrics=run_metrics)
    result.records.extend(meta_records)
    for meta in metadata.values():
        for f, fm in meta.files.items():
            if fm.error:
                result.skipped[f] = fm.error

    skim_dir = str(cfg.workflow.skim_dir)
    if wf.save_skimmed_output:
        outcome: StageOutcome = skim_stage(cfg, client, datasets, metadata, constants, options, skim_dir, console=console,
                             run_metrics=run_metrics)
        result.records.extend(outcome.records)
        result.skipped.update(outcome.skipped)
        for meta in metadata.values():  # a file the skim skipped is left out of what follows, whole
            for f in outcome.skipped.keys() & meta.files.keys():
                meta.files[f].error = outcome.skipped[f]

    if wf.run_mva_training:
        from intccms.mva.stage import run_training

        result.mva = run_training(cfg, client, datasets, metadata, constants, specs, plan, options, out,
                                  console=console)

    if not wf.run_analysis:
        result.summary = summarise(result.records, datasets, time.time() - t_start, result.skipped, metadata)
        print_summary(result.summary, console=console)
        write_run_report(cfg, result, out, time.time() - t_start, console, sampler)
        if wf.run_statistics:
            result.statistics = _statistics(cfg, client, None, plan, options, out)
        return

    axes = {name: AxisSpec(name, int(o.binning.bins), float(o.binning.start), float(o.binning.stop), str(o.label))
            for name, o in cfg.analysis.observables.items()}
    # Filled with norm = 1 and grouped by source file; σ·L/Σw is applied per dataset at the end,
    # with the Σw of the files kept: a file skipped at any stage is left out whole.
    grouped = FileGroupedAccumulator()
    contexts: dict[str, ChunkContext] = {}
    era_yields: dict[str, dict[str, float]] = {}
    for name, ds in datasets.items():
        era_cfg = cfg.eras[ds.era]
        contexts[name] = ChunkContext(
            process=ds.process, era=ds.era, is_data=ds.is_data, norm=1.0,
            golden_json=str(era_cfg.golden_json) if ds.is_data and era_cfg.golden_json else None,
            constants=constants[ds.era],
        )
    manifests = load_manifests(datasets, skim_dir, options) if wf.use_skimmed_input else {}
    items = analysis_items(cfg, datasets, metadata, skim_dir, options, manifests)
    # skim part URL -> the original file it was cut from (parts are analysed, files are skipped)
    source_of = {str(p["url"]): str(p["source_file"])
                 for manifest in manifests.values() for p in manifest.parts if p.get("source_file")}
    position: dict[Any, int] = {}
    for i, item in enumerate(items):
        grouped.expect(item.dataset, source_of.get(item.file, item.file))
        position[item] = i
    plan_future = client.scatter(plan, broadcast=True, hash=False)

    def on_result(item: Any, chunk: Any) -> None:
        grouped.add(item.dataset, source_of.get(item.file, item.file), chunk.hists, position[item])

    def on_failed(item: Any, record: ChunkRecord) -> None:
        grouped.drop(item.dataset, source_of.get(item.file, item.file))

    outcome = run_stage(
        client, "analysis", items, analysis_task,
        lambda item: (contexts[item.dataset], plan_future, specs.get(datasets[item.dataset].era)
                      if not datasets[item.dataset].is_data else None, options),
        on_result, retries=int(wf.retries), skip_bad_files=bool(wf.skip_bad_files), console=console,
        run_metrics=run_metrics, on_failed=on_failed,
    )
    result.records.extend(outcome.records)
    for f, error in outcome.skipped.items():  # a bad skim part stands for its source file
        result.skipped.setdefault(source_of.get(f, f), error)

    norms: dict[str, float] = {}
    for name, ds in datasets.items():
        kept = sum(fm.sum_genweight for f, fm in metadata[name].files.items()
                   if fm.error is None and f not in result.skipped)
        norms[name] = 1.0 if ds.is_data or name not in grouped.totals else normalisation_factor(
            ds.xsec or 0.0, float(cfg.eras[ds.era].luminosity), kept)
        if name in grouped.totals:
            era_yields.setdefault(ds.process, {}).setdefault(ds.era, 0.0)
            era_yields[ds.process][ds.era] += grouped.nominal_sum(name) * norms[name]
    processes = sorted({ds.process for ds in datasets.values()}, key=lambda p: (p == "data", p))
    acc = grouped.normalised(norms, {n: d.process for n, d in datasets.items()}, plan.variations, axes)
    hists = acc.to_hists(processes)
    hist_meta = {
        "config_hash": config_hash(config_yaml),
        "name": str(cfg.name),
        "eras": sorted({ds.era for ds in datasets.values()}),
        "variations": list(plan.variations),
        "processes": {p: {"is_data": p == "data",
                          "datasets": sorted(n for n, d in datasets.items() if d.process == p)}
                      for p in processes},
        "era_yields": era_yields,
        "luminosity": {e: float(cfg.eras[e].luminosity) for e in sorted({d.era for d in datasets.values()})},
    }
    hist_dir = out / "histograms"
    result.histograms_path = save_pickle(hist_dir / "histograms.pkl", hists, hist_meta)
    result.root_path = save_root(hist_dir / "histograms.root", hists)
    wall = time.time() - t_start
    if wf.run_plots:
        from intccms.outputs.plots import plot_all

        lumi_fb = sum(float(cfg.eras[e].luminosity) for e in hist_meta["eras"]) / 1000.0
        result.plots = plot_all(hists, out / "plots", groups=cast("dict[str, list[str]]", OmegaConf.to_container(cfg.analysis.plot.groups)),
                                signals=list(cfg.analysis.plot.signals), log_y=bool(cfg.analysis.plot.log_y),
                                lumi_fb=lumi_fb)
    result.summary = summarise(result.records, datasets, wall, result.skipped, metadata)
    print_summary(result.summary, console=console)
    write_run_report(cfg, result, out, wall, console, sampler)
    if wf.run_statistics:
        result.statistics = _statistics(cfg, client, {"histograms": hists, "meta": hist_meta}, plan, options, out)


def _statistics(cfg: DictConfig, client: Client, histograms: Mapping[str, Any] | None, plan: Any,
                options: StorageOptions, out: Path) -> dict[str, Any]:
    """The statistics stage on this run's histograms, or (None) on ``statistics.input.path``;
    either way checked against this configuration's binning and variations first."""
    from intccms.stats.stage import run_stage

    return run_stage(cfg, histograms, out / "statistics", variations=plan.variations, options=options,
                     client=client)


def write_run_report(cfg: DictConfig, result: JobResult, out: Path, wall: float, console: Console,
                     sampler: WorkerSampler) -> None:
    """The run report (terminal table, JSON and plots) from the measured chunk records; cores and
    the worker timeline are what the scheduler had during the stages, not what was configured."""
    from intccms.outputs.report import build_report, print_report, write_report

    sampler.stop()
    n_cores = sampler.n_threads or int(cfg.cluster.n_workers) * int(cfg.cluster.threads_per_worker)
    report = build_report(result.records, wall_time_s=wall, n_cores=max(n_cores, 1),
                          workers_timeline=sampler.timeline)
    write_report(report, out / "report", plots=bool(cfg.workflow.run_plots))
    print_report(report, console=console)

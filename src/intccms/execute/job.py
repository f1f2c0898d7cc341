"""The job: prepare inputs, build the run plan, run its stages on the cluster, write outputs."""

from __future__ import annotations

import logging
import os
import time
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from distributed import Client
from omegaconf import DictConfig, OmegaConf
from rich.console import Console

from intccms.config.validate import check_processor
from intccms.core.records import ChunkRecord
from intccms.execute.backends import start_cluster
from intccms.execute.preflight import check_grid_credentials, resolved_xrootd_urls
from intccms.execute.prepare import ensure_inputs
from intccms.execute.results import JobResult, register_plugins, write_run_report
from intccms.execute.stages import run_metadata, skim_stage
from intccms.execute.tasks import analysis_task
from intccms.execute.warmup import CorrectionsWarmup
from intccms.metrics.local_prometheus import local_prometheus
from intccms.metrics.sampler import WorkerSampler, wanted_workers
from intccms.metrics.scheduler import run_metrics_for
from intccms.mva.stage import check_mva, run_training
from intccms.outputs.finalise import finalise_histograms
from intccms.outputs.histograms import FileGroupedAccumulator
from intccms.outputs.provenance import write_provenance
from intccms.outputs.summary import print_summary, summarise
from intccms.physics.pipeline import ChunkContext
from intccms.plan.items import analysis_items, load_manifests
from intccms.plan.metadata import DatasetMetadata
from intccms.plan.run import RunPlan, build_run_plan, storage_options
from intccms.runner.stage import StageOutcome, run_stage
from intccms.storage.outputs import OutputLocation

log = logging.getLogger(__name__)


def new_run_id(name: str) -> str:
    """The run's id: ``INTCCMS_RUN_ID`` when the facility's Job sets it, else a fresh one."""
    return os.environ.get("INTCCMS_RUN_ID") or f"{name}-{uuid.uuid4().hex[:8]}"


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
    options = storage_options(cfg)
    with OutputLocation(str(cfg.output_dir), options) as outputs:
        try:
            ensure_inputs(cfg, console=console)
            plan = build_run_plan(cfg, run_id=new_run_id(str(cfg.name)), output_url=outputs.url, storage=options)
            if not grid_checked:  # listings may name root:// files the configuration alone does not show
                check_grid_credentials(cfg, console, resolved_xrootd_urls(plan.datasets))
            loaded = check_processor(cfg) if plan.processor is not None else None
            result = run_plan(plan, outputs, console=console, client=client, processor=loaded)
        except BaseException:
            outputs.publish(best_effort=True)  # what was written (e.g. the metadata cache) is kept
            raise
        outputs.publish()
    result.wall_time_s = time.time() - t0
    return result


def run_plan(plan: RunPlan, outputs: OutputLocation, *, console: Console, client: Client | None = None,
             processor: Any = None) -> JobResult:
    """Everything the job does between opening its output location and publishing it.

    Args:
        plan: the run plan (:func:`intccms.plan.run.build_run_plan`).
        outputs: where the outputs are written (staged locally for s3:// and root://).
        console: progress and summaries.
        client: an existing Dask client; otherwise ``plan.cluster`` is started.
        processor: the loaded processor of a processor run (:func:`check_processor`).
    """
    out = outputs.local
    write_provenance(out / "provenance", plan.config_yaml, {"run_id": plan.run_id}, plan=plan.summary())
    outputs.publish(out / "provenance")
    for warning in plan.warnings:
        console.print(f"[yellow]warning: {warning}; data/simulation comparisons and fits over "
                      "these eras are biased (choose datasets with dataset_selection)[/yellow]")
    result = JobResult(output_dir=out, output_url=outputs.url, remote=outputs.remote, run_id=plan.run_id)
    work: Callable[[Client, WorkerSampler], None]
    if processor is not None:
        # coffea takes ~2 s to import: only processor runs pay for it.
        from intccms.execute.processor_run import run_processor

        def work(c: Client, sampler: WorkerSampler) -> None:
            run_processor(plan, c, processor, out, result, console, sampler)
    else:
        check_mva(plan)  # the mva group and score observables, at start-up
        if plan.workflow.run_statistics:
            from intccms.stats.stage import check_statistics  # pyhf: only runs that fit pay for it

            check_statistics(plan)  # statistics.input.path when it runs alone, the fitted channels

        def work(c: Client, sampler: WorkerSampler) -> None:
            _run(plan, c, out, result, console, sampler)

    cluster = OmegaConf.structured(plan.cluster)
    if client is None:
        with (start_cluster(cluster, run_id=plan.run_id) as new_client,
              local_prometheus(OmegaConf.structured(plan.prometheus), new_client, out, run_id=plan.run_id,
                               console=console),
              WorkerSampler(new_client) as sampler):
            work(new_client, sampler)
    else:
        with (local_prometheus(OmegaConf.structured(plan.prometheus), client, out, run_id=plan.run_id,
                               console=console),
              WorkerSampler(client) as sampler):
            work(client, sampler)
    return result


def _run(plan: RunPlan, client: Client, out: Path, result: JobResult, console: Console,
         sampler: WorkerSampler) -> None:
    """Metadata, skim, training, analysis, outputs and statistics, as the workflow asks."""
    wf = plan.workflow
    register_plugins(client, plan.storage, plan.run_id, sorted(plan.datasets), plan.cluster.kind)
    if plan.corrections() and (wf.run_analysis or wf.run_mva_training):
        client.register_plugin(CorrectionsWarmup(list(plan.corrections().values())))
    run_metrics = run_metrics_for(client, plan.run_id, config=plan.name)
    # Workers wanted and present, the report's cores and worker timeline: sampled during the stages.
    sampler.start(run_metrics, wanted_workers(OmegaConf.structured(plan.cluster), len(client.nthreads())))
    if wf.run_statistics and not (wf.run_analysis or wf.save_skimmed_output or wf.run_mva_training):
        result.statistics = _statistics(plan, client, None, out)  # alone, on saved histograms
        return
    t_start = time.time()
    metadata, meta_records = run_metadata(plan, client, out, console=console, run_metrics=run_metrics)
    result.records.extend(meta_records)
    for meta in metadata.values():
        for f, fm in meta.files.items():
            if fm.error:
                result.skipped[f] = fm.error

    if wf.save_skimmed_output:
        outcome: StageOutcome = skim_stage(plan, client, metadata, console=console, run_metrics=run_metrics)
        result.records.extend(outcome.records)
        result.skipped.update(outcome.skipped)
        for meta in metadata.values():  # a file the skim skipped is left out of what follows, whole
            for f in outcome.skipped.keys() & meta.files.keys():
                meta.files[f].error = outcome.skipped[f]

    if wf.run_mva_training:
        result.mva = run_training(plan, client, metadata, out, console=console)

    if not wf.run_analysis:
        result.summary = summarise(result.records, plan.datasets, time.time() - t_start, result.skipped, metadata)
        print_summary(result.summary, console=console)
        write_run_report(plan, result, out, time.time() - t_start, console, sampler)
        if wf.run_statistics:
            result.statistics = _statistics(plan, client, None, out)
        return

    grouped = _analysis_stage(plan, client, metadata, result, console, run_metrics)
    final = finalise_histograms(plan, grouped, metadata, result.skipped, out)
    result.histograms_path, result.root_path, result.plots = final.pickle_path, final.root_path, final.plots
    wall = time.time() - t_start
    result.summary = summarise(result.records, plan.datasets, wall, result.skipped, metadata)
    print_summary(result.summary, console=console)
    write_run_report(plan, result, out, wall, console, sampler)
    if wf.run_statistics:
        result.statistics = _statistics(plan, client, {"histograms": final.hists, "meta": final.meta}, out)


def _analysis_stage(plan: RunPlan, client: Client, metadata: Mapping[str, DatasetMetadata], result: JobResult,
                    console: Console, run_metrics: Any) -> FileGroupedAccumulator:
    """Fill every chunk's histograms; they arrive grouped by source file (with ``norm = 1``):
    a file skipped at any stage is left out whole when they are normalised."""
    assert plan.analysis is not None
    wf, datasets = plan.workflow, plan.datasets
    grouped = FileGroupedAccumulator()
    contexts: dict[str, ChunkContext] = {}
    for name, ds in datasets.items():
        era = plan.eras[ds.era]
        contexts[name] = ChunkContext(
            process=ds.process, era=ds.era, is_data=ds.is_data, norm=1.0,
            golden_json=era.golden_json if ds.is_data else None, constants=era.constants,
        )
    manifests = load_manifests(datasets, wf.skim_dir, plan.storage) if wf.use_skimmed_input else {}
    items = analysis_items(wf, datasets, metadata, plan.storage, manifests)
    # skim part URL -> the original file it was cut from (parts are analysed, files are skipped)
    source_of = {str(p["url"]): str(p["source_file"])
                 for manifest in manifests.values() for p in manifest.parts if p.get("source_file")}
    position: dict[Any, int] = {}
    for i, item in enumerate(items):
        grouped.expect(item.dataset, source_of.get(item.file, item.file))
        position[item] = i
    plan_future = client.scatter(plan.analysis, broadcast=True, hash=False)

    def on_result(item: Any, chunk: Any) -> None:
        grouped.add(item.dataset, source_of.get(item.file, item.file), chunk.hists, position[item])

    def on_failed(item: Any, record: ChunkRecord) -> None:
        grouped.drop(item.dataset, source_of.get(item.file, item.file))

    outcome = run_stage(
        client, "analysis", items, analysis_task,
        lambda item: (contexts[item.dataset], plan_future, plan.corrections_for(item.dataset), plan.storage),
        on_result, retries=int(wf.retries), skip_bad_files=bool(wf.skip_bad_files), console=console,
        run_metrics=run_metrics, on_failed=on_failed,
        no_workers_timeout_s=float(plan.cluster.no_workers_timeout_s),
    )
    result.records.extend(outcome.records)
    for f, error in outcome.skipped.items():  # a bad skim part stands for its source file
        result.skipped.setdefault(source_of.get(f, f), error)
    return grouped


def _statistics(plan: RunPlan, client: Client, histograms: Mapping[str, Any] | None, out: Path) -> dict[str, Any]:
    """The statistics stage on this run's histograms, or (None) on ``statistics.input.path``;
    either way checked against this plan's binning and variations first."""
    from intccms.stats.stage import run_stage as run_statistics_stage  # pyhf: only runs that fit

    return run_statistics_stage(plan, histograms, out / "statistics", client=client)

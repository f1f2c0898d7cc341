"""A processor run inside the job: metadata, chunks, merge, ``postprocess()``, outputs, report.

The planning is the analysis's own (metadata stage with its cache and bad-file handling, then
:func:`~intccms.plan.items.analysis_items`), so the chunks, the skipped files and the run
report mean the same in both workflows.
"""

from __future__ import annotations

import time
from pathlib import Path

from distributed import Client
from omegaconf import OmegaConf
from rich.console import Console

from intccms.config.processor_loader import LoadedProcessor
from intccms.execute.results import JobResult, register_plugins, write_run_report
from intccms.execute.stages import run_metadata
from intccms.metrics.sampler import WorkerSampler, wanted_workers
from intccms.metrics.scheduler import run_metrics_for
from intccms.outputs.summary import print_summary, summarise
from intccms.plan.items import analysis_items
from intccms.plan.run import RunPlan
from intccms.processor.job import OUTPUT_FOLDER, dataset_metadata, postprocess
from intccms.processor.outputs import save_coffea, save_root
from intccms.processor.stage import run_processor_stage
from intccms.processor.task import STAGE, ProcessorError, ProcessorSpec


def run_processor(plan: RunPlan, client: Client, loaded: LoadedProcessor, out: Path, result: JobResult,
                  console: Console, sampler: WorkerSampler) -> None:
    """Run the planned processor over the datasets and write its outputs into ``result``."""
    assert plan.processor is not None
    wf, datasets, options = plan.workflow, plan.datasets, plan.storage
    register_plugins(client, options, plan.run_id, sorted(datasets), plan.cluster.kind,
                     stages=("metadata", STAGE))
    run_metrics = run_metrics_for(client, plan.run_id, config=plan.name)
    sampler.start(run_metrics, wanted_workers(OmegaConf.structured(plan.cluster), len(client.nthreads())))
    t_start = time.time()
    metadata, meta_records = run_metadata(plan, client, out, console=console, run_metrics=run_metrics)
    result.records.extend(meta_records)
    result.skipped.update({f: fm.error for meta in metadata.values() for f, fm in meta.files.items() if fm.error})
    items = analysis_items(wf, datasets, metadata, options)
    spec = ProcessorSpec.create(loaded.instance, loaded.schema, loaded.class_path,
                                plan.processor.treename, loaded.sources)
    outcome = run_processor_stage(client, items, spec, dataset_metadata(plan), options,
                                  retries=int(wf.retries), skip_bad_files=bool(wf.skip_bad_files),
                                  console=console, run_metrics=run_metrics,
                                  no_workers_timeout_s=float(plan.cluster.no_workers_timeout_s))
    result.records.extend(outcome.records)
    result.skipped.update(outcome.skipped)
    if outcome.output is None:
        msg = (f"the processor produced no output: none of the {len(items)} chunks of "
               f"{len(datasets)} dataset(s) was kept ({len(result.skipped)} file(s) skipped)")
        raise ProcessorError(msg)
    output = postprocess(loaded, outcome.output)
    folder = out / OUTPUT_FOLDER
    result.processor_output = output
    result.coffea_path = save_coffea(folder / "output.coffea", output)
    result.root_path, _ = save_root(folder / "histograms.root", output)
    wall = time.time() - t_start
    result.summary = summarise(result.records, datasets, wall, result.skipped, metadata)
    print_summary(result.summary, console=console)
    write_run_report(plan, result, out, wall, console, sampler)

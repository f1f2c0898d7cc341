"""A processor run inside the job: metadata, chunks, merge, ``postprocess()``, outputs, report.

The planning is the analysis's own (metadata stage with its cache and bad-file handling, then
:func:`~intccms.execute.stages.analysis_items`), so the chunks, the skipped files and the run
report mean the same in both workflows.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from distributed import Client
from omegaconf import DictConfig
from rich.console import Console

from intccms.execute.job import JobResult, register_plugins, write_run_report
from intccms.execute.stages import analysis_items, run_metadata
from intccms.metrics.sampler import WorkerSampler, wanted_workers
from intccms.metrics.scheduler import run_metrics_for
from intccms.outputs.summary import print_summary, summarise
from intccms.plan.datasets import Dataset
from intccms.processor.loader import LoadedProcessor
from intccms.processor.outputs import save_coffea, save_root
from intccms.processor.stage import run_processor_stage
from intccms.processor.task import STAGE, ProcessorError, ProcessorSpec
from intccms.storage import StorageOptions

OUTPUT_FOLDER = "processor"


def dataset_metadata(cfg: DictConfig, datasets: Mapping[str, Dataset]) -> dict[str, dict[str, Any]]:
    """What each dataset adds to ``events.metadata`` (as a coffea fileset's ``metadata`` would)."""
    return {name: {"era": ds.era, "process": ds.process, "xsec": ds.xsec, "is_data": ds.is_data,
                   "luminosity": float(cfg.eras[ds.era].luminosity)}
            for name, ds in datasets.items()}


def postprocess(loaded: LoadedProcessor, output: Any) -> Any:
    """``postprocess()`` on the driver as coffea's Runner calls it: a None return keeps the output."""
    try:
        replaced = loaded.instance.postprocess(output)
    except Exception as err:
        msg = f"{loaded.class_path}.postprocess() raised {type(err).__name__}: {err}"
        raise ProcessorError(msg) from err
    return output if replaced is None else replaced


def run_processor(cfg: DictConfig, client: Client, datasets: Mapping[str, Dataset], loaded: LoadedProcessor,
                  options: StorageOptions, out: Path, result: JobResult, console: Console,
                  sampler: WorkerSampler) -> None:
    """Run the configured processor over the datasets and write its outputs into ``result``."""
    wf = cfg.workflow
    run_id = os.environ["INTCCMS_RUN_ID"]
    register_plugins(client, options, run_id, sorted(datasets), cfg.cluster.kind, stages=("metadata", STAGE))
    run_metrics = run_metrics_for(client, run_id, config=str(cfg.name))
    sampler.start(run_metrics, wanted_workers(cfg.cluster, len(client.nthreads())))
    t_start = time.time()
    metadata, meta_records = run_metadata(cfg, client, datasets, options, out, console=console,
                                          run_metrics=run_metrics)
    result.records.extend(meta_records)
    result.skipped.update({f: fm.error for meta in metadata.values() for f, fm in meta.files.items() if fm.error})
    items = analysis_items(cfg, datasets, metadata, str(wf.skim_dir), options)
    spec = ProcessorSpec.create(loaded.instance, loaded.schema, loaded.class_path,
                                str(cfg.processor.treename), loaded.sources)
    outcome = run_processor_stage(client, items, spec, dataset_metadata(cfg, datasets), options,
                                  retries=int(wf.retries), skip_bad_files=bool(wf.skip_bad_files),
                                  console=console, run_metrics=run_metrics)
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
    write_run_report(cfg, result, out, wall, console, sampler)


__all__ = ["OUTPUT_FOLDER", "dataset_metadata", "postprocess", "run_processor"]

"""What every workflow of the job shares: its result, the worker plugins it registers and the
run report it writes (the analysis in :mod:`.job`, coffea processors in :mod:`.processor_run`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from distributed import Client
from rich.console import Console

from intccms.core.records import ChunkRecord
from intccms.metrics.preload import WorkerMetricsPlugin
from intccms.metrics.sampler import WorkerSampler
from intccms.outputs.report import build_report, print_report, write_report
from intccms.plan.run import RunPlan
from intccms.storage import StorageOptions
from intccms.storage.plugin import credentials_plugin


@dataclass
class JobResult:
    """What a run produced, for callers and tests."""

    # Local; when ``remote`` (``output_url`` on S3 or XRootD) the staging folder, and it and the
    # paths below were removed when the job ended: the outputs are at ``output_url``.
    output_dir: Path
    output_url: str = ""
    remote: bool = False
    run_id: str = ""
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


def register_plugins(client: Client, options: StorageOptions, run_id: str, datasets: list[str],
                     cluster_kind: Any = "local", stages: Sequence[str] = ("metadata", "skim", "analysis"),
                     ) -> None:
    """Metrics (series of ``stages`` primed at zero) and storage credentials on every worker."""
    client.register_plugin(WorkerMetricsPlugin(run_id, datasets, list(stages)))
    # kubernetes/address workers have their own environment (a mounted Secret): names only.
    plugin = credentials_plugin(options.credentials, cluster_kind)
    if plugin is not None:
        client.register_plugin(plugin)


def write_run_report(plan: RunPlan, result: JobResult, out: Path, wall: float, console: Console,
                     sampler: WorkerSampler) -> None:
    """The run report (terminal table, JSON and plots) from the measured chunk records; cores and
    the worker timeline are what the scheduler had during the stages, not what was configured."""
    sampler.stop()
    n_cores = sampler.n_threads or plan.cluster.n_workers * plan.cluster.threads_per_worker
    report = build_report(result.records, wall_time_s=wall, n_cores=max(n_cores, 1),
                          workers_timeline=sampler.timeline)
    write_report(report, out / "report", plots=plan.workflow.run_plots)
    print_report(report, console=console)

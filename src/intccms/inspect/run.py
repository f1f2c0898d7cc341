"""The inspection: resolve and sample files, trace the analysis reads, scan on the cluster, report.

Steps: (1) the job's datasets, selection and demo-input generation; (2) N files per dataset
(:mod:`.sample`); (3) sizes from Rucio where configured (:mod:`.rucio`); (4) which branches the
skim, analysis and (when on) training stages read, from a real run on one chunk (:mod:`.reads`); (5) one scan task
per file on the job's Dask cluster (:mod:`.scan`), folded into per-dataset totals as results
arrive (:mod:`.summary`); (6) tables, JSON, CSV and plots (:mod:`.outputs`, :mod:`.plots`).
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from distributed import as_completed
from omegaconf import DictConfig, OmegaConf
from rich.console import Console
from rich.markup import escape

from intccms.config.inspect import Executor, InspectConfig
from intccms.config.schema import WorkflowConfig
from intccms.core.errors import ConfigError
from intccms.execute.backends import start_cluster
from intccms.execute.preflight import check_grid_credentials, resolved_xrootd_urls
from intccms.execute.prepare import ensure_inputs
from intccms.inspect.outputs import BranchRowWriter, print_summary, write_outputs
from intccms.inspect.reads import ReadsTrace, input_stages, trace_reads, training_datasets
from intccms.inspect.rucio import (
    RucioUnavailable,
    choose_login,
    dataset_files,
    make_client,
    sizes_for_listing,
)
from intccms.inspect.sample import choose_files
from intccms.inspect.scan import FileReport, scan_file
from intccms.inspect.summary import (
    BranchTotals,
    DatasetAccumulator,
    DatasetSummary,
    GroupSummary,
    group_summary,
)
from intccms.inspect.timing import rate_functions
from intccms.plan.datasets import Dataset
from intccms.plan.run import build_run_plan, resolve_datasets, storage_options
from intccms.runner.stage import stage_progress
from intccms.storage import CredentialsPlugin, StorageOptions
from intccms.storage.grid import GridSettings


@dataclass
class InspectResult:
    """Everything an inspection found; :mod:`.outputs` turns it into tables and files."""

    config: InspectConfig
    files: list[FileReport] = field(default_factory=list)
    datasets: dict[str, DatasetSummary] = field(default_factory=dict)
    branches: dict[str, dict[str, BranchTotals]] = field(default_factory=dict)
    eras: dict[str, GroupSummary] = field(default_factory=dict)
    total: GroupSummary | None = None
    trace: ReadsTrace = field(default_factory=ReadsTrace)
    notes: list[str] = field(default_factory=list)
    outputs: list[Path] = field(default_factory=list)
    wall_time_s: float = 0.0

    @property
    def bad_files(self) -> list[FileReport]:
        """Files that could not be read, with their errors."""
        return [f for f in self.files if not f.ok]

    def bytes_by(self, key: str = "name") -> dict[str, list[int]]:
        """Compressed and uncompressed bytes over all datasets, per branch ``name`` or ``group``."""
        totals: dict[str, list[int]] = {}
        for branches in self.branches.values():
            for b in branches.values():
                t = totals.setdefault(getattr(b, key), [0, 0])
                t[0] += b.compressed
                t[1] += b.uncompressed
        return totals

    def branches_read(self) -> set[str]:
        """Branches the traced analysis stages read."""
        return {b for tr in self.trace.traces.values() for st in tr.values() for b in st.branches}


def _rucio_sizes(cfg: DictConfig, icfg: InspectConfig, datasets: Mapping[str, Dataset], notes: list[str],
                 console: Console) -> dict[str, dict[str, int]]:
    if not icfg.rucio.enabled:
        return {}

    try:
        # The credentials the job checks at start-up, so inspect and the job present the same.
        login = choose_login(icfg.rucio, GridSettings.from_config(cfg.get("credentials")))
        client = make_client(icfg.rucio, login)
    except RucioUnavailable as err:
        notes.append(f"file sizes from storage: {err}")
        console.print(f"[yellow]rucio:[/yellow] {escape(str(err))}")
        return {}
    console.print(f"rucio: logged in with {escape(login.describe())}")
    out: dict[str, dict[str, int]] = {}
    for name, ds in datasets.items():
        if not ds.das_name:
            notes.append(f"{name}: no das_name, so no Rucio sizes; sizes from storage")
            continue
        try:
            out[name] = sizes_for_listing(ds.files, dataset_files(client, icfg.rucio.scope, ds.das_name))
        except RucioUnavailable as err:
            notes.append(f"{name}: {err}; sizes from storage")
    return out


def _register_credentials(client: Any, options: StorageOptions) -> None:
    """Workers get the storage credentials as the job's do (never inside the task graph)."""
    creds = options.credentials
    if creds is not None and creds.environ():
        client.register_plugin(CredentialsPlugin(creds))


@contextmanager
def _client(cfg: DictConfig, options: StorageOptions, given: Any) -> Iterator[Any]:
    if given is not None:
        _register_credentials(given, options)
        yield given
        return
    run_id = os.environ.get("INTCCMS_RUN_ID") or f"{cfg.name}-inspect-{uuid.uuid4().hex[:8]}"
    with start_cluster(cfg.cluster, run_id=run_id) as client:
        _register_credentials(client, options)
        yield client


def _run_report(cfg: DictConfig, icfg: InspectConfig, notes: list[str]) -> str | None:
    """The configured run report, else the job's own saved one when it exists."""
    if icfg.reads.report:
        return icfg.reads.report
    own = Path(str(cfg.output_dir)) / "report" / "report.json"
    if own.is_file():
        notes.append(f"read times also at the rates of the saved run report {own}")
        return str(own)
    return None


def _scan_all(cfg: DictConfig, icfg: InspectConfig, jobs: list[tuple[Dataset, str]], kwargs_for: Callable[[Dataset], dict[str, Any]],
              options: StorageOptions, on_report: Callable[[FileReport], None], console: Console, client: Any) -> None:
    """Scan every file (serially or on the cluster), handing reports over as they finish."""
    with stage_progress("inspect", console, "files", "{task.fields[bad]} bad") as progress:
        bar = progress.add_task("inspect", total=len(jobs), bad=0)
        bad = 0

        def done(report: FileReport) -> None:
            nonlocal bad
            bad += int(not report.ok)
            on_report(report)
            progress.update(bar, advance=1, bad=bad)

        if icfg.executor == Executor.serial:
            for ds, url in jobs:
                done(scan_file(url, ds.name, ds.era, options, **kwargs_for(ds)))
            return

        with _client(cfg, options, client) as dask:
            futures = {dask.submit(scan_file, url, ds.name, ds.era, options, pure=False, **kwargs_for(ds)): (ds, url)
                       for ds, url in jobs}
            try:
                for fut in as_completed(list(futures)):
                    try:
                        report = fut.result()
                    except Exception as err:  # noqa: BLE001 - a lost worker fails one file, not the inspection
                        ds, url = futures[fut]
                        report = FileReport(url=url, dataset=ds.name, era=ds.era,
                                            error=f"scan task failed: {type(err).__name__}: {err}"[:2000])
                    done(report)
                    fut.release()
            finally:
                for fut in futures:
                    fut.cancel()


def run_inspect(cfg: DictConfig, icfg: InspectConfig, *, console: Console | None = None,
                client: Any = None) -> InspectResult:
    """Inspect the selected datasets' inputs and write the outputs.

    Args:
        cfg: the composed job configuration (datasets, storage, cluster, analysis, workflow).
        icfg: its typed ``inspect`` section (:func:`intccms.config.inspect.inspect_config`).
        console: where tables and progress go (stderr by default).
        client: an existing Dask client; otherwise the configured cluster is started.

    Returns:
        The result; bad files are in it with their errors, never raised.
    """
    console = console or Console(stderr=True)
    t0 = time.time()
    result = InspectResult(config=icfg)
    rates = rate_functions(icfg.reads.bandwidth_gbps, _run_report(cfg, icfg, result.notes))
    grid_checked = check_grid_credentials(cfg, console) is not None  # as the job does
    options = storage_options(cfg)
    ensure_inputs(cfg, console=console)
    run_id = os.environ.get("INTCCMS_RUN_ID") or f"{cfg.name}-inspect-{uuid.uuid4().hex[:8]}"
    plan, plan_error = None, ""
    try:
        plan = build_run_plan(cfg, run_id=run_id, storage=options)
    except (ConfigError, ValueError, OSError, KeyError) as err:
        # Files can be inspected without the analysis: only the traced reads need its plan.
        plan_error = f"{type(err).__name__}: {err}"
    datasets = dict(plan.datasets) if plan is not None else resolve_datasets(cfg, options)
    if not grid_checked:
        check_grid_credentials(cfg, console, resolved_xrootd_urls(datasets))
    chosen = {name: choose_files(ds.files, icfg.sample.files_per_dataset, icfg.sample.seed)
              for name, ds in datasets.items()}
    rucio = _rucio_sizes(cfg, icfg, datasets, result.notes, console)
    wf = cast(WorkflowConfig, OmegaConf.to_object(cfg.workflow))
    if plan is None:
        result.trace = ReadsTrace(input_stages=input_stages(wf),
                                  notes=[f"analysis reads not traced: cannot set up the stages: {plan_error}"])
    elif icfg.reads.enabled:
        with console.status("tracing the reading stages on one chunk"):
            result.trace = trace_reads(plan, chosen, entries=icfg.reads.entries, tree=icfg.tree)
    else:
        result.trace = ReadsTrace(input_stages=input_stages(wf), notes=["inspect.reads.enabled=false"],
                                  training_datasets=training_datasets(plan))
    result.notes.extend(result.trace.notes)

    def kwargs_for(ds: Dataset) -> dict[str, Any]:
        return {"tree": icfg.tree, "reads": result.trace.branches_for(ds), "chunksize": int(wf.chunksize),
                "max_chunks": wf.max_chunks_per_file}

    accs = {name: DatasetAccumulator(name, ds.era, ds.is_data, len(ds.files)) for name, ds in datasets.items()}
    for name, sizes in rucio.items():
        accs[name].listing_sizes = sizes
    out_dir = Path(icfg.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with BranchRowWriter(out_dir / "branches.csv") as rows:
        def on_report(report: FileReport) -> None:
            listed = rucio.get(report.dataset, {}).get(report.url)
            if listed is not None and report.ok:
                if listed == report.size:
                    report.size_source = "rucio"
                else:
                    result.notes.append(f"{report.url}: Rucio records {listed} bytes, storage holds {report.size}")
            rows.write(report)
            accs[report.dataset].add(report)
            result.files.append(report)

        jobs = [(datasets[name], url) for name, urls in chosen.items() for url in urls]
        _scan_all(cfg, icfg, jobs, kwargs_for, options, on_report, console, client)
    result.files.sort(key=lambda f: (f.dataset, f.url))
    stages = result.trace.input_stages
    result.datasets = {name: acc.summary(stages, rates) for name, acc in accs.items()}
    result.branches = {name: acc.branches for name, acc in accs.items()}
    for era in sorted({d.era for d in result.datasets.values()}):
        result.eras[era] = group_summary(era, [d for d in result.datasets.values() if d.era == era], rates,
                                         [f for f in result.files if f.era == era])
    result.total = group_summary("total", list(result.datasets.values()), rates, result.files)
    result.wall_time_s = time.time() - t0
    result.outputs = [out_dir / "branches.csv", *write_outputs(result, out_dir)]
    if icfg.plots:
        from intccms.inspect.plots import plot_all  # matplotlib: only when plotting

        result.outputs.extend(plot_all(result, out_dir / "plots"))
    print_summary(result, console=console)
    return result

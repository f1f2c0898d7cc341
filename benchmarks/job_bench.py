"""Run the project's own job (``intccms.execute.job.run_job``) on hard benchmark inputs.

Shared by the benchmarks that time a whole job rather than one analysis call: the reference
analysis (demo configuration, every variation, real correction files where available) on one
simulated 2017 dataset whose files are the hard input (``hard_input.py``), on a fresh
``LocalCluster`` per run, so that every worker process starts cold as on a facility.

The analysis stage is timed from its chunk records: from the first chunk's start to the last
chunk's end, which holds the workers' set-up, the scheduler's gaps between chunks and the
transfer of results, but not the metadata stage before it or the outputs written after it.
The worker processes' CPU time over the whole job is measured too: on a machine that other work
shares, wall time counts the waits for a core and CPU time does not, so the two together tell
a slow analysis from a busy machine.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import bench_variations
import hard_input
from distributed import Client, LocalCluster
from rich.console import Console

from intccms.config import compose_config
from intccms.core.records import ChunkRecord
from intccms.execute.job import run_job
from intccms.outputs.report import build_report
from intccms.physics.corrections import file_memo

DATASET = "TTToSemiLeptonic_2017"
"""A simulated 2017 dataset of the demo configuration, its files replaced by the hard input."""
ERA = "2017"
SEED = 2017


def use_shared_data() -> Path | None:
    """Point ``INTCCMS_SHARED_DATA`` at the reference data beside the project when it is unset.

    That folder is ``paths.shared_data``'s own default (``../shared/data``); set here so that
    the real UL correction files are found from any working folder.
    """
    if "INTCCMS_SHARED_DATA" not in os.environ:
        beside = Path(__file__).resolve().parents[2] / "shared" / "data"
        if beside.is_dir():
            os.environ["INTCCMS_SHARED_DATA"] = str(beside)
    value = os.environ.get("INTCCMS_SHARED_DATA")
    return Path(value) if value else None


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    """Options every job benchmark shares (inputs, corrections, where inputs are kept)."""
    parser.add_argument("--jsonpog", default=None,
                        help="jsonpog-integration root with the real UL files, or 'generated' "
                             "(default: $INTCCMS_JSONPOG, $INTCCMS_SHARED_DATA/jsonpog-integration with "
                             "INTCCMS_SHARED_DATA defaulting to ../shared/data beside the project, generated)")
    parser.add_argument("--workdir", default=str(Path(tempfile.gettempdir()) / "intccms-bench"),
                        help="where inputs are written and reused (names hold their version and "
                             "thresholds, so a stale file is never reused)")
    parser.add_argument("--cold-cache", action="store_true",
                        help="workers derive every correction table themselves (no per-user correction cache)")


@contextlib.contextmanager
def correction_cache(inputs: Inputs, cold: bool, chunksize: int) -> Iterator[str]:
    """The workers' correction cache for the measured jobs: a fresh one, filled by a short job
    first, as every job after the first on a machine finds it; or none (``cold``). Yields a
    line saying which."""
    with tempfile.TemporaryDirectory(prefix="correction-cache-", dir=inputs.work) as folder:
        before = os.environ.get(file_memo.CACHE_ENV)
        os.environ[file_memo.CACHE_ENV] = "off" if cold else folder  # the clusters' workers inherit it
        try:
            if cold:
                yield "correction cache: off (every worker derives its tables)"
            else:
                with output_folder(inputs.work, "fill-cache") as out:
                    run_analysis_job("fill the correction cache", inputs, [inputs.one_file(20_000)],
                                     workers=1, chunksize=chunksize, out=out)
                yield "correction cache: filled by a first, short job (as for every job after the first one)"
        finally:
            if before is None:
                os.environ.pop(file_memo.CACHE_ENV, None)
            else:
                os.environ[file_memo.CACHE_ENV] = before


@dataclass(frozen=True)
class Inputs:
    """The correction files and the analysis thresholds the hard input follows."""

    jsonpog: Path
    corrections: str
    thresholds: hard_input.Thresholds
    work: Path

    @classmethod
    def prepare(cls, args: argparse.Namespace) -> Inputs:
        use_shared_data()
        work = Path(args.workdir)
        jsonpog, corrections = bench_variations.correction_files(args.jsonpog, work)
        setup = bench_variations.Setup(jsonpog)
        return cls(jsonpog, corrections, setup.thresholds(ERA), work)

    def one_file(self, events: int) -> Path:
        return hard_input.ensure_hard_input(self.work / "bench", events, SEED, ERA, self.thresholds)

    def split(self, events: int, n_files: int) -> list[Path]:
        return hard_input.ensure_hard_split(self.work / "bench", events, SEED, ERA, self.thresholds, n_files)


@dataclass(frozen=True)
class JobRun:
    """One job's analysis stage, timed from its records, and the job's run report numbers."""

    label: str
    workers: int
    chunks: int
    events: int
    stage_wall_s: float
    job_wall_s: float
    chunk_time_s: float
    worker_cpu_s: float
    driver_cpu_s: float  # this process: the job's driver and the cluster's scheduler
    first_chunk_extra_s: dict[str, float]
    records: tuple[ChunkRecord, ...]

    @property
    def events_per_s(self) -> float:
        return self.events / self.stage_wall_s

    @property
    def events_per_s_per_core(self) -> float:
        return self.events_per_s / self.workers

    @property
    def events_per_cpu_s(self) -> float:
        """Events per second of the workers' CPU time (the whole job: metadata stage included)."""
        return self.events / self.worker_cpu_s

    @property
    def cpu_share(self) -> float:
        """The workers' CPU time over the stage's wall time x workers: below 1, they waited
        (for a core, for the scheduler, for data) or were idle."""
        return self.worker_cpu_s / (self.stage_wall_s * self.workers)


def run_analysis_job(label: str, inputs: Inputs, files: Sequence[Path], *, workers: int, chunksize: int,
                     out: Path, extra: Sequence[str] = ()) -> JobRun:
    """The job on ``files`` with ``workers`` single-threaded worker processes started for it."""
    listed = ",".join(str(f) for f in files)
    cfg = compose_config("demo", [
        f"paths.jsonpog={inputs.jsonpog}", "paths.generate_corrections=false", f"output_dir={out}",
        f"dataset_selection=[{DATASET}]", f"datasets.{DATASET}.files=[{listed}]", f"datasets.{DATASET}.generate=null",
        "workflow.run_statistics=false", "workflow.run_plots=false", f"workflow.chunksize={chunksize}",
        f"cluster.n_workers={workers}", "cluster.threads_per_worker=1", *extra,
    ])
    console = Console(file=io.StringIO(), width=200)  # progress bars and tables: not this table
    with (LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                       dashboard_address=None) as cluster,
          Client(cluster) as client):
        client.wait_for_workers(workers)
        cpu_before = client.run(time.process_time)
        t0, driver0 = time.perf_counter(), time.process_time()
        result = run_job(cfg, client=client, console=console)
        job_wall, driver_cpu = time.perf_counter() - t0, time.process_time() - driver0
        cpu_after = client.run(time.process_time)
    worker_cpu = sum(cpu_after[w] - cpu_before[w] for w in cpu_after)
    records = tuple(r for r in result.records if r.stage == "analysis")
    failed = [r for r in records if r.failed]
    if failed:
        msg = f"{label}: {len(failed)} chunk(s) failed, e.g. {failed[0].error}"
        raise RuntimeError(msg)
    start, stop = min(r.t_start for r in records), max(r.t_end for r in records)
    report = build_report(records, wall_time_s=stop - start, n_cores=workers)
    extra_s = {w: stages.get("analysis", float("nan")) for w, stages in report.first_chunk_extra_s.items()}
    return JobRun(label, workers, len(records), report.events_read, stop - start, job_wall,
                  report.chunk_time_s, worker_cpu, driver_cpu, extra_s, records)


def print_runs(runs: Sequence[JobRun]) -> None:
    """One line per run: chunks, events, the stage's wall time, events/s (per core) and the
    first chunk's extra time per worker (from the run report)."""
    print(f"{'run':<34}{'workers':>8}{'chunks':>7}{'events':>10}{'stage [s]':>10}{'job [s]':>9}"
          f"{'events/s':>10}{'ev/s/core':>10}{'cpu [s]':>9}{'ev/cpu-s':>10}{'cpu share':>10}{'driver':>8}"
          "  first chunk's extra [s] per worker")
    for r in runs:
        extra = ", ".join(f"{v:.2f}" for v in r.first_chunk_extra_s.values()) or "n/a"
        print(f"{r.label:<34}{r.workers:>8}{r.chunks:>7}{r.events:>10,}{r.stage_wall_s:>10.2f}{r.job_wall_s:>9.2f}"
              f"{r.events_per_s:>10,.0f}{r.events_per_s_per_core:>10,.0f}{r.worker_cpu_s:>9.2f}"
              f"{r.events_per_cpu_s:>10,.0f}{r.cpu_share:>10.2f}{r.driver_cpu_s:>8.2f}  {extra}")
    print("  (cpu: the worker processes' CPU time over the whole job; cpu share: that over the stage's "
          "wall time x workers, below 1 where workers waited for a core, the scheduler or data; driver: "
          "this process's CPU time over the job, the driver's and the scheduler's, on the same cores)")


@contextlib.contextmanager
def output_folder(work: Path, name: str) -> Iterator[Path]:
    """A fresh output folder for one job under ``work`` (so no metadata cache is reused)."""
    work.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f"{name}-", dir=work) as folder:
        yield Path(folder)

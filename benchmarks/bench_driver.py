"""The job's driver at facility scale: planning the full UL listing, then accumulating 70,000 results.

Runs, in this process:
  (p) planning: the run2 datasets (every UL listing under ``$INTCCMS_SHARED_DATA/datasets``,
      ~13,600 files) resolved, their metadata taken from a complete metadata cache (written
      first, outside the timing: entries per file drawn from a spread like UL NanoAOD's), the
      work items made and declared to the accumulator, as ``intccms.execute.job`` does them:
      ``build_run_plan``, ``run_metadata`` (a full cache asks no worker), ``analysis_items``,
      ``FileGroupedAccumulator.expect``. Prints the time (target <= 30 s).
  (a) accumulation: the first ``--results`` of those work items (70,000) come back as chunk
      results of the real size, paced at ``--rate`` results per second (500): each one
      unpickled from the bytes a worker sends (a ``ChunkResult`` from a real analysis run of
      one chunk of the hard input, every variation of the three eras, every channel and
      observable of the reference analysis), counted on a progress bar as the runner does, and
      added to the accumulator with its plan position (``add``); one chunk in
      ``--fail-every`` fails and its file is dropped (``drop``). Results arrive in plan order
      shuffled within a window of ``--in-flight`` chunks (the chunks a facility's worker
      threads run at once), so files complete out of order. At the end, ``normalised``.
      Prints the driver's CPU time per result (target <= 1 ms; Dask's own messaging is not
      included), the process's resident memory at 10 %, 50 % and 100 % of the results, the
      most files held apart at once, and the size of the per-dataset totals, so it shows
      whether memory is bounded by the files in flight or grows with the results.

Usage: python benchmarks/bench_driver.py [--results 70000] [--rate 500] [--in-flight 400]
       [--fail-every 2000] [--jsonpog PATH|generated] [--workdir DIR] [--plan-only]
"""

from __future__ import annotations

import argparse
import io
import os
import pickle
import random
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, cast

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_variations
import hard_input
import job_bench
from rich.console import Console

from intccms.config import compose_config
from intccms.execute.prepare import ensure_inputs
from intccms.execute.stages import run_metadata
from intccms.outputs.histograms import AxisSpec, FileGroupedAccumulator
from intccms.physics.pipeline import ChunkResult
from intccms.plan.datasets import Dataset
from intccms.plan.items import analysis_items
from intccms.plan.metadata import DatasetMetadata, FileMetadata, save_cache
from intccms.plan.run import build_run_plan
from intccms.plan.workitems import WorkItem
from intccms.runner.stage import stage_progress
from intccms.storage import open_source

PAGE = os.sysconf("SC_PAGE_SIZE")


def _rss_mb() -> float:
    """Resident memory right now (not the peak: the peak includes the set-up before the loop)."""
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * PAGE / 2**20


def shared_data() -> Path:
    root = job_bench.use_shared_data()
    if root is None or not (root / "datasets").is_dir():
        msg = f"no UL listings under {root}/datasets (set INTCCMS_SHARED_DATA to the reference data folder)"
        raise SystemExit(msg)
    return root


def _entries(rng: np.random.Generator, n: int) -> list[int]:
    """Events per file: log-normal around 400,000 (UL NanoAOD files hold ~50,000 to ~2,000,000)."""
    return [int(v) for v in np.clip(rng.lognormal(np.log(400_000), 0.6, n), 20_000, 3_000_000)]


def write_cache(out: Path, datasets: dict[str, Dataset]) -> None:
    """A complete metadata cache for every file (as a previous run would have left it)."""
    rng = np.random.default_rng(13)
    cache = {}
    for name, ds in datasets.items():
        files = {f: FileMetadata(file=f, num_entries=n, sum_genweight=0.0 if ds.is_data else float(n),
                                 sum_source="data" if ds.is_data else "Runs")
                 for f, n in zip(ds.files, _entries(rng, len(ds.files)), strict=True)}
        cache[name] = DatasetMetadata(name, ds.era, ds.is_data, ds.xsec, files)
    save_cache(out / "metadata.json", cache)


def plan(out: Path, shared: Path) -> tuple[list[WorkItem], FileGroupedAccumulator, dict[str, float]]:
    """Part (p): datasets, metadata from the cache, work items, declared to the accumulator."""
    times: dict[str, float] = {}
    t0 = time.perf_counter()
    cfg = compose_config("run2_skim", [f"paths.shared_data={shared}", f"output_dir={out}",
                                       # every era's correction files (generated: the shared tree
                                       # holds only some eras), read and checked by the plan
                                       f"paths.jsonpog={out / 'jsonpog'}", "paths.generate_corrections=true",
                                       "workflow.chunksize=100000", "workflow.save_skimmed_output=false",
                                       "workflow.run_analysis=true"])
    times["configuration composed"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    ensure_inputs(cfg, console=Console(file=io.StringIO()))  # the correction files, outside the timing
    t0 = time.perf_counter()
    run = build_run_plan(cfg, run_id="bench-driver")
    datasets = run.datasets
    times["run plan (listings read, corrections checked)"] = time.perf_counter() - t0
    write_cache(out, datasets)
    t0 = time.perf_counter()
    metadata, _ = run_metadata(run, cast("Any", None), out, console=Console(file=io.StringIO()))
    times["metadata from the cache"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    items = analysis_items(run.workflow, datasets, metadata, run.storage)
    times["work items"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    grouped = FileGroupedAccumulator()
    for item in items:
        grouped.expect(item.dataset, item.file)
    times["declared to the accumulator"] = time.perf_counter() - t0
    print(f"(p) planning {len(datasets)} datasets, {sum(len(d.files) for d in datasets.values()):,} files "
          f"-> {len(items):,} work items (chunks of {cfg.workflow.chunksize:,} events)")
    for label, seconds in times.items():
        print(f"    {label:<40}{seconds:>8.2f} s")
    planning = sum(v for k, v in times.items() if k != "configuration composed")
    print(f"    {'planning (without composing)':<40}{planning:>8.2f} s   (target <= 30 s)")
    return items, grouped, times


def real_result(args: argparse.Namespace) -> tuple[ChunkResult, Any]:
    """One chunk of the hard input analysed with every variation: the real result structure."""
    work = Path(args.workdir)
    jsonpog, corrections = bench_variations.correction_files(args.jsonpog, work)
    setup = bench_variations.Setup(jsonpog)
    path = hard_input.ensure_hard_input(work / "bench", 20_000, 2017, "2017", setup.thresholds("2017"))
    analysis = setup.analysis("2017", ["*"])
    with open_source(str(path)) as src:
        result = analysis.run(src.read(analysis.branches(), 0, 20_000))
    print(f"chunk result: {len(result.hists)} (channel, observable) arrays of shapes "
          f"{sorted({v.shape for v in result.hists.values()})}, "
          f"{sum(v.nbytes for v in result.hists.values()) / 2**20:.2f} MiB; corrections: {corrections}")
    return result, analysis.plan


def arrival_order(n: int, window: int, seed: int = 5) -> list[int]:
    """Plan positions ``0..n-1`` in the order they complete: each chunk finishes at its plan
    position plus a random delay of up to ``window`` chunks."""
    rng = random.Random(seed)
    return sorted(range(n), key=lambda i: i + rng.uniform(0, window))


def accumulate(items: Sequence[WorkItem], grouped: FileGroupedAccumulator, payloads: Sequence[bytes],
               args: argparse.Namespace) -> tuple[float, dict[str, float], int]:
    """Part (a): the results paced at ``args.rate``; returns CPU seconds, RSS samples, most files held."""
    order = arrival_order(len(items), args.in_flight)
    marks = {int(len(order) * f) - 1: f"{f:.0%}" for f in (0.1, 0.5, 1.0)}
    rss: dict[str, float] = {"before": _rss_mb()}
    held = 0
    progress = stage_progress("analysis", Console(file=io.StringIO()))  # the job's own bar
    events = 0
    with progress:
        bar = progress.add_task("analysis", total=len(order), events=0)
        start_wall, start_cpu = time.perf_counter(), time.process_time()
        for n, position in enumerate(order):
            due = start_wall + n / args.rate
            wait = due - time.perf_counter()
            if wait > 0:
                time.sleep(wait)
            item = items[position]
            if args.fail_every and position % args.fail_every == args.fail_every - 1:
                grouped.drop(item.dataset, item.file)
            else:
                result = pickle.loads(payloads[position % len(payloads)])
                grouped.add(item.dataset, item.file, result[0].hists, position)
            events += item.entries
            progress.update(bar, advance=1, events=events)
            held = max(held, grouped.in_progress)
            if n in marks:
                rss[marks[n]] = _rss_mb()
        cpu = time.process_time() - start_cpu
    return cpu, rss, held


def payloads_of(result: ChunkResult, distinct: int) -> Iterator[bytes]:
    """``distinct`` different results of the real size, pickled as a worker returns them."""
    rng = np.random.default_rng(3)
    for _ in range(distinct):
        hists = {k: v * rng.uniform(0.5, 1.5) for k, v in result.hists.items()}
        yield pickle.dumps((ChunkResult(result.process, hists, result.cutflow, result.events_selected), None),
                           protocol=5)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--results", type=int, default=70_000)
    parser.add_argument("--rate", type=float, default=500.0, help="results per second")
    parser.add_argument("--in-flight", type=int, default=400, help="chunks running at once (completion window)")
    parser.add_argument("--fail-every", type=int, default=2000, help="one chunk in this many fails (0: none)")
    parser.add_argument("--plan-only", action="store_true", help="part (p) only")
    job_bench.add_common_arguments(parser)
    args = parser.parse_args(argv)

    shared = shared_data()
    with tempfile.TemporaryDirectory(prefix="bench-driver-") as folder:
        items, grouped, _ = plan(Path(folder), shared)
    if args.plan_only:
        return 0
    result, analysis_plan = real_result(args)
    payloads = list(payloads_of(result, 8))
    items = items[: args.results]
    grouped = FileGroupedAccumulator()  # the first ``--results`` chunks (a file cut there has fewer)
    for item in items:
        grouped.expect(item.dataset, item.file)
    print(f"(a) {len(items):,} results of {len(payloads[0]) / 2**20:.2f} MiB pickled, at {args.rate:.0f}/s, "
          f"completing within a window of {args.in_flight} chunks, 1 in {args.fail_every} failing")
    cpu, rss, held = accumulate(items, grouped, payloads, args)
    datasets = sorted({i.dataset for i in items})
    c0 = time.process_time()
    axes = {name: AxisSpec(name, o.bins, o.start, o.stop) for name, o in analysis_plan.observables.items()}
    acc = grouped.normalised(dict.fromkeys(datasets, 1.0), {d: d for d in datasets}, analysis_plan.variations, axes)
    normalised_cpu = time.process_time() - c0
    totals_mb = sum(v.nbytes for h in grouped.totals.values() for v in h.values()) / 2**20
    print(f"    driver CPU per result: {cpu / len(items) * 1e3:.3f} ms   (target <= 1 ms)")
    print(f"    normalised(): {normalised_cpu:.2f} s CPU for {len(acc.contents)} (channel, observable) sums")
    print("    resident memory [MiB]: " + ", ".join(f"{k} {v:,.0f}" for k, v in rss.items()))
    print(f"    most files held apart at once: {held} (each up to one file's sum, {len(payloads[0]) / 2**20:.2f} MiB); "
          f"per-dataset totals: {len(grouped.totals)} datasets, {totals_mb:,.0f} MiB (bounded by the datasets)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Cost of systematic variations, measured against plain uproot on the same file, one core.

Runs, in this process and per input file:
  (r) plain uproot reading the branches the analysis reads (the reference rate);
  (a) the analysis with nominal corrections only;
  (b) the analysis with the full Run-2 set of variations (138 names over three eras).
Prints events/s for each and the ratios (a)/(r) (target >= 0.8) and (b)/(r) (target >= 0.5) of
the rates and time(b)/time(a) (target <= 2), the process's peak RSS after each case's first run
(cases run in order in one process, so each value includes the earlier ones) and the peak
allocation of one chunk per case, which is the number that shows whether memory grows with the
variations. The cases run in interleaved rounds (``--repeat``, default 2), each case's best
time kept, so that a machine whose speed drifts moves the three alike.

Inputs (``--input``):
  hard       (default) as hard as real skims (benchmarks/hard_input.py, 2017 by default):
             every event passes the skim, ~40 % reach the jet-dependent cuts, objects near
             every threshold, LZMA 9, baskets of 10,000 events;
  generated  the project's generated semileptonic tt (2018, LZMA 9), the easier input this
             benchmark used first;
  both       the two, one after the other, each with its table.
For each input the shares of events passing the skim, the cuts without jets ("candidates":
the events that reach the jet-dependent cuts), the baseline and each channel are measured by
the analysis's own cutflow in run (a), not taken from the input's writer.

Tiers (``--tier``): ``compiled`` (default) loads the compiled kernels first, as a worker does once
it has analysed ``workflow.compiled_kernels_after`` events (the steady state of a long job);
``numpy`` measures a worker before that (every short job's).

Correction files: ``--jsonpog PATH`` (a jsonpog-integration root with the real UL files), else
``$INTCCMS_JSONPOG``, else ``$INTCCMS_SHARED_DATA/jsonpog-integration`` if it exists, else
generated files (``--jsonpog generated`` forces them).

With ``--with-mva``, also (c): (b) with the classifier score as a second observable (the demo_mva
network, trained first as in bench_mva.py), and the extra cost (c)/(b) - 1 (target < 30 %).
With ``--profile``, a cProfile of one chunk with all variations per input (top 25 by cumulative
and by own time).

Usage: python benchmarks/bench_variations.py [--input hard|generated|both] [--events 200000]
       [--chunksize 100000] [--jsonpog PATH|generated] [--era 2017] [--with-mva] [--profile] [--tier compiled|numpy]
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import resource
import sys
import tempfile
import time
import tracemalloc
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import uproot
from omegaconf import OmegaConf

sys.path.insert(0, str(Path(__file__).resolve().parent))

import hard_input

from intccms import datagen
from intccms.config import compose_config
from intccms.physics import compiled
from intccms.physics.pipeline import ChunkAnalysis, ChunkContext
from intccms.plan.analysis import build_plan, corrections_specs, era_constants
from intccms.plan.workitems import WorkItem, chunk_file
from intccms.storage import open_source

ERAS = ["2016preVFP", "2017", "2018"]
GENERATED_ERA = "2018"
INPUTS = ("hard", "generated")
TIERS = ("compiled", "numpy")


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _best_of(fn: Callable[[], Any], repeat: int) -> tuple[float, float]:
    """Best wall time and best CPU time of ``repeat`` runs (CPU time is steadier on a busy machine)."""
    wall = cpu = float("inf")
    for _ in range(repeat):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        wall = min(wall, time.perf_counter() - t0)
        cpu = min(cpu, time.process_time() - c0)
    return wall, cpu


def best_cpu_time(fn: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    """Best CPU time of ``repeat`` runs and the last run's result (to check the values too)."""
    best, out = float("inf"), None
    for _ in range(repeat):
        c0 = time.process_time()
        out = fn()
        best = min(best, time.process_time() - c0)
    return best, out


def _chunk_peak_mb(ana: ChunkAnalysis, path: Path, branches: list[str], item: WorkItem) -> float:
    """Peak memory allocated while one chunk is analysed (the columns read are not counted)."""
    with open_source(str(path)) as src:
        columns = src.read(branches, item.entry_start, item.entry_stop)
    tracemalloc.start()
    start = tracemalloc.get_traced_memory()[0]
    ana.run(columns)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return (peak - start) / 1e6


def correction_files(arg: str | None, work: Path) -> tuple[Path, str]:
    """The jsonpog-integration root to use and a phrase saying where it comes from.

    Real UL files are never assumed at a fixed place: the option, then the environment
    variables the project's configuration reads (``conf/paths``); without them, generated
    files, so the benchmark runs anywhere.
    """
    if arg != "generated":
        shared = os.environ.get("INTCCMS_SHARED_DATA")
        candidates = [(arg, "--jsonpog"), (os.environ.get("INTCCMS_JSONPOG"), "INTCCMS_JSONPOG"),
                      (shared and str(Path(shared) / "jsonpog-integration"), "INTCCMS_SHARED_DATA")]
        for value, origin in candidates:
            if not value:
                continue
            root = Path(value)
            if (root / "POG").is_dir():
                return root, f"real files from {origin}: {root}"
            if origin != "INTCCMS_SHARED_DATA":
                msg = f"{origin}={root} has no POG/ folder (a jsonpog-integration root is expected)"
                raise SystemExit(msg)
    root = work / "jsonpog-integration"
    datagen.write_correction_files(root, ERAS)
    return root, f"generated files: {root}"


@dataclass(frozen=True)
class BenchInput:
    """One input file of the benchmark and the era whose analysis reads it."""

    name: str
    era: str
    path: Path
    description: str
    written_s: float


class Setup:
    """The analysis configuration on one set of correction files, per era and variation set."""

    def __init__(self, jsonpog: Path, tier: str = "compiled") -> None:
        self.jsonpog = jsonpog
        self.tier = tier
        if tier == "compiled":  # as a worker past workflow.compiled_kernels_after
            compiled.load()
        self.cfg = self._config([])
        self.specs = corrections_specs(self.cfg, ERAS)
        self.constants = era_constants(self.cfg, ERAS)

    def _config(self, variations: list[str]) -> Any:
        var_list = "[" + ",".join(variations) + "]"
        return compose_config("demo", [f"paths.jsonpog={self.jsonpog}", "paths.generate_corrections=false",
                                       f"workflow.variations={var_list}",
                                       f"workflow.compiled_kernels_after={0 if self.tier == 'compiled' else 'null'}"])

    def analysis(self, era: str, variations: list[str]) -> ChunkAnalysis:
        plan = build_plan(self._config(variations), self.specs)
        ctx = ChunkContext(process="bench", era=era, is_data=False, norm=1.0, constants=self.constants[era])
        return ChunkAnalysis(plan, ctx, self.specs[era].build())

    def thresholds(self, era: str) -> hard_input.Thresholds:
        analysis = OmegaConf.to_container(self.cfg.analysis, resolve=True)
        return hard_input.Thresholds.from_analysis(analysis, self.constants[era])  # type: ignore[arg-type]


def prepare_input(name: str, args: argparse.Namespace, work: Path, setup: Setup) -> BenchInput:
    """Write (or reuse from ``work``) the input file of case ``name``."""
    t0 = time.perf_counter()
    if name == "hard":
        path = hard_input.ensure_hard_input(work / "bench", args.events, args.seed, args.era, setup.thresholds(args.era))
        return BenchInput(name, args.era, path, f"hard input ({args.era}, benchmarks/hard_input.py)",
                          time.perf_counter() - t0)
    path = work / "bench" / f"{args.kind}_{args.events}.root"
    datagen.ensure_generated(path, args.kind, GENERATED_ERA, args.events, 12345, compression="lzma")
    return BenchInput(name, GENERATED_ERA, path, f"generated {args.kind} ({GENERATED_ERA}, intccms.datagen)",
                      time.perf_counter() - t0)


@dataclass
class CaseResult:
    """Timings, memory and the measured cutflow of one input."""

    bench: BenchInput
    events: int
    branches: int
    baskets: int
    n_var: int
    rows: list[tuple[str, float, float, float]]
    chunk_peaks: dict[str, float]
    cutflow: dict[str, float]
    summary: hard_input.InputSummary
    jet_pt: float


def measure(bench: BenchInput, setup: Setup, args: argparse.Namespace) -> tuple[CaseResult, ChunkAnalysis, list[WorkItem]]:
    """Cases (r), (a), (b) on one input, in that order, in this process."""
    nominal = setup.analysis(bench.era, [])
    full = setup.analysis(bench.era, ["*"])
    branches = full.branches()
    path = bench.path
    with open_source(str(path)) as src:
        n = src.num_entries
    items = chunk_file("bench", str(path), 0, n, args.chunksize)
    cutflows: list[dict[str, float]] = []

    def plain_uproot() -> None:
        with uproot.open(str(path)) as f:
            tree = f["Events"]
            for item in items:
                tree.arrays(branches, entry_start=item.entry_start, entry_stop=item.entry_stop, how=dict)

    def run(ana: ChunkAnalysis) -> None:
        total: Counter[str] = Counter()
        with open_source(str(path)) as src:
            for item in items:
                total.update(ana.run(src.read(branches, item.entry_start, item.entry_stop)).cutflow)
        cutflows.append(dict(total))

    # Interleaved rounds (r, a, b, r, a, b...), the best of each case: a machine whose speed
    # drifts over a minute moves the three alike instead of the last case alone.
    cases: list[Callable[[], Any]] = [plain_uproot, lambda: run(nominal), lambda: run(full)]
    best = [(float("inf"), float("inf"))] * len(cases)
    rss = [0.0] * len(cases)
    for round_ in range(args.repeat):
        for k, case in enumerate(cases):
            wall, cpu = _best_of(case, 1)
            best[k] = (min(best[k][0], wall), min(best[k][1], cpu))
            if round_ == 0:
                rss[k] = _peak_rss_mb()
    (t_ref, c_ref), (t_nom, c_nom), (t_full, c_full) = best
    rss_ref, rss_nom, rss_full = rss
    cutflow = cutflows[0]  # the nominal run's
    n_var = len(full.plan.variations) - 1
    rows = [("(r) plain uproot, same branches", t_ref, c_ref, rss_ref),
            ("(a) analysis, nominal only", t_nom, c_nom, rss_nom),
            (f"(b) analysis, {n_var} variations", t_full, c_full, rss_full)]
    peaks = {label: _chunk_peak_mb(ana, path, branches, items[0]) for label, ana in (("(a)", nominal), ("(b)", full))}
    jet_pt = setup.thresholds(bench.era).jet_pt
    summary = hard_input.describe(path, jet_pt)
    result = CaseResult(bench, n, len(branches), summary.baskets, n_var, rows, peaks, cutflow, summary, jet_pt)
    return result, full, items


def print_case(res: CaseResult, corrections: str) -> None:
    """The table of one input: what it holds, then the timings and ratios."""
    b = res.bench
    print(f"\n=== input: {b.description}")
    print(f"file: {b.path} ({res.events:,} events, LZMA, baskets per branch: {res.baskets}, "
          f"{res.branches} branches read; written or found in {b.written_s:.0f} s)")
    print(f"corrections: {corrections}")
    read = res.cutflow.get("read", 0.0) or 1.0
    shares = ", ".join(f"{k} {v / read:.1%}" for k, v in res.cutflow.items() if k != "read")
    print(f"events passing, share of those read (the analysis's cutflow, nominal): {shares}")
    print("  (candidates: events passing every cut that does not use jets, i.e. reaching the jet-dependent cuts)")
    for line in res.summary.lines(res.jet_pt):
        print(f"  {line}")
    print(f"{'case':<34}{'wall [s]':>10}{'cpu [s]':>10}{'events/s':>14}{'RSS so far [MB]':>16}")
    for label, wall, cpu, rss in res.rows:
        print(f"{label:<34}{wall:>10.2f}{cpu:>10.2f}{res.events / wall:>14,.0f}{rss:>16.0f}")
    for label, peak in res.chunk_peaks.items():
        print(f"peak allocation while analysing one chunk {label}: {peak:.0f} MB")
    (_, t_ref, c_ref, _), (_, t_nom, c_nom, _), (_, t_full, c_full, _) = res.rows
    print(f"ratio rate (a)/(r): wall {t_ref / t_nom:.3f}  cpu {c_ref / c_nom:.3f}   (target >= 0.8)")
    print(f"ratio rate (b)/(r): wall {t_ref / t_full:.3f}  cpu {c_ref / c_full:.3f}   (target >= 0.5)")
    print(f"ratio time (b)/(a): wall {t_full / t_nom:.3f}  cpu {c_full / c_nom:.3f}   (target <= 2)")


def print_summary(results: list[CaseResult]) -> None:
    """Both inputs side by side (CPU-time ratios, steadier than wall time on a shared machine)."""
    print("\n=== summary (CPU time)")
    print(f"{'input':<12}{'candidates':>12}{'(r) ev/s':>12}{'(a) ev/s':>12}{'(b) ev/s':>12}"
          f"{'(a)/(r)':>9}{'(b)/(r)':>9}{'(b)/(a)':>9}")
    for res in results:
        (_, _, c_ref, _), (_, _, c_nom, _), (_, _, c_full, _) = res.rows
        cand = res.cutflow.get("candidates", 0.0) / (res.cutflow.get("read", 0.0) or 1.0)
        print(f"{res.bench.name:<12}{cand:>12.1%}{res.events / c_ref:>12,.0f}{res.events / c_nom:>12,.0f}"
              f"{res.events / c_full:>12,.0f}{c_ref / c_nom:>9.3f}{c_ref / c_full:>9.3f}{c_full / c_nom:>9.3f}")


def profile_chunk(ana: ChunkAnalysis, path: Path, item: WorkItem, top: int = 25) -> None:
    """cProfile of one chunk with all variations (read outside the profile): where the time goes.

    Timed in process CPU time, so that other work on a shared machine does not inflate it.
    """
    with open_source(str(path)) as src:
        columns = src.read(ana.branches(), item.entry_start, item.entry_stop)
    ana.run(columns)  # warm caches, as a worker's later chunks are
    prof = cProfile.Profile(time.process_time)
    prof.enable()
    ana.run(columns)
    prof.disable()
    for order in ("cumulative", "tottime"):
        out = io.StringIO()
        pstats.Stats(prof, stream=out).sort_stats(order).print_stats(top)
        print(f"\n--- profile of one chunk ({item.entry_stop - item.entry_start:,} events, CPU time), by {order}")
        print(out.getvalue().split("\n", 3)[-1].rstrip())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--input", choices=(*INPUTS, "both"), default="hard",
                        help="hard (as hard as real skims), generated (the project's tt), or both")
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--chunksize", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--era", choices=hard_input.ERAS, default="2017", help="era of the hard input")
    parser.add_argument("--seed", type=int, default=2017, help="seed of the hard input")
    parser.add_argument("--kind", default="ttbar_semilep", help="process of the generated input")
    parser.add_argument("--jsonpog", default=None,
                        help="jsonpog-integration root with the real UL files, or 'generated' "
                             "(default: $INTCCMS_JSONPOG, $INTCCMS_SHARED_DATA/jsonpog-integration, generated)")
    parser.add_argument("--workdir", default=None, help="where inputs are written and reused (default: a new temporary folder)")
    parser.add_argument("--with-mva", action="store_true", help="add case (c): the classifier score too")
    parser.add_argument("--train-events", type=int, default=10_000, help="with --with-mva: events per class sample")
    parser.add_argument("--profile", action="store_true", help="cProfile one chunk with all variations per input")
    parser.add_argument("--tier", choices=TIERS, default="compiled",
                        help="compiled: the kernels loaded, as a worker past workflow.compiled_kernels_after "
                             "(the steady state of a long job); numpy: as a worker before it")
    args = parser.parse_args(argv)

    work = Path(args.workdir or tempfile.mkdtemp(prefix="intccms-bench-"))
    jsonpog, corrections = correction_files(args.jsonpog, work)
    setup = Setup(jsonpog, args.tier)
    print(f"tier: {args.tier}")
    names = list(INPUTS) if args.input == "both" else [args.input]
    results = []
    trained = None
    for name in names:
        bench = prepare_input(name, args, work, setup)
        res, full, items = measure(bench, setup, args)
        results.append(res)
        print_case(res, corrections)
        if args.with_mva:
            trained = _mva_case(args, work, jsonpog, bench, res, trained)
        if args.profile:
            profile_chunk(full, bench.path, items[0])
    if len(results) > 1:
        print_summary(results)
    return 0


def _mva_case(args: argparse.Namespace, work: Path, jsonpog: Path, bench: BenchInput, res: CaseResult,
              trained: dict[str, Any] | None) -> dict[str, Any]:
    """(c): case (b) plus the classifier score, measured by bench_mva.py's own code (trained once)."""
    import bench_mva

    if trained is None:
        trained = bench_mva.train_models(work, jsonpog, args.train_events)
        bench_mva.print_training(trained, args.train_events)
    scored = bench_mva.analysis(work, jsonpog, with_score=True, era=bench.era)
    bench_mva.timed_runs(scored, bench.path, args.chunksize, 1)  # load the model once, as a worker does
    t_mva, c_mva, rss_mva = bench_mva.timed_runs(scored, bench.path, args.chunksize, args.repeat)
    _, t_full, c_full, _ = res.rows[2]
    print(f"{'(c) (b) + classifier score':<34}{t_mva:>10.2f}{c_mva:>10.2f}{res.events / t_mva:>14,.0f}{rss_mva:>16.0f}")
    print(f"extra cost of the score (c)/(b) - 1: wall {t_mva / t_full - 1:+.1%}  cpu {c_mva / c_full - 1:+.1%}"
          "   (target < +30%)")
    return trained


if __name__ == "__main__":
    sys.exit(main())

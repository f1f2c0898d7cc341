"""Cost of systematic variations, measured against plain uproot on the same file, one core.

Runs, in this process and on the same generated LZMA NanoAOD file:
  (r) plain uproot reading the branches the analysis reads (the reference rate);
  (a) the analysis with nominal corrections only;
  (b) the analysis with the full Run-2 set of variations (138 names over three eras).
Prints events/s for each and the ratios (b)/(r) (target >= 0.5) and time(b)/time(a)
(target <= 2), the process's peak RSS after each case (cases run in order in one process, so
each value includes the earlier ones) and the peak allocation of one chunk per case, which is
the number that shows whether memory grows with the variations.
With ``--with-mva``, also (c): (b) with the classifier score as a second observable (the demo_mva
network, trained first as in bench_mva.py), and the extra cost (c)/(b) - 1 (target < 30 %).

Usage: python benchmarks/bench_variations.py [--events 200000] [--chunksize 100000] [--with-mva]
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import uproot

from intccms import datagen
from intccms.config import compose_config
from intccms.execute.stages import build_plan, corrections_specs, era_constants
from intccms.physics.pipeline import ChunkAnalysis, ChunkContext
from intccms.plan.workitems import chunk_file
from intccms.storage import open_source


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _best_of(fn, repeat: int) -> tuple[float, float]:
    """Best wall time and best CPU time of ``repeat`` runs (CPU time is steadier on a busy machine)."""
    wall = cpu = float("inf")
    for _ in range(repeat):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        wall = min(wall, time.perf_counter() - t0)
        cpu = min(cpu, time.process_time() - c0)
    return wall, cpu


def _chunk_peak_mb(ana: ChunkAnalysis, path: Path, branches: list[str], item) -> float:
    """Peak memory allocated while one chunk is analysed (the columns read are not counted)."""
    with open_source(str(path)) as src:
        columns = src.read(branches, item.entry_start, item.entry_stop)
    tracemalloc.start()
    start = tracemalloc.get_traced_memory()[0]
    ana.run(columns)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return (peak - start) / 1e6


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--chunksize", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--kind", default="ttbar_semilep")
    parser.add_argument("--workdir", default=None)
    parser.add_argument("--with-mva", action="store_true", help="add case (c): the classifier score too")
    parser.add_argument("--train-events", type=int, default=10_000, help="with --with-mva: events per class sample")
    args = parser.parse_args(argv)

    work = Path(args.workdir or tempfile.mkdtemp(prefix="intccms-bench-"))
    era = "2018"
    path = work / "bench" / f"{args.kind}_{args.events}.root"
    datagen.ensure_generated(path, args.kind, era, args.events, 12345, compression="lzma")
    jsonpog = work / "jsonpog-integration"
    datagen.write_correction_files(jsonpog, ["2016preVFP", "2017", "2018"])

    def analysis(variations: list[str]) -> ChunkAnalysis:
        var_list = "[" + ",".join(variations) + "]"
        cfg = compose_config("demo", [f"paths.jsonpog={jsonpog}", "paths.generate_corrections=false",
                                      f"workflow.variations={var_list}"])
        eras = ["2016preVFP", "2017", "2018"]
        specs = corrections_specs(cfg, eras)
        plan = build_plan(cfg, specs)
        ctx = ChunkContext(process="bench", era=era, is_data=False, norm=1.0,
                           constants=era_constants(cfg, [era])[era])
        return ChunkAnalysis(plan, ctx, specs[era].build())

    nominal = analysis([])
    full = analysis(["*"])
    branches = full.branches()
    with open_source(str(path)) as src:
        n = src.num_entries
    items = chunk_file("bench", str(path), 0, n, args.chunksize)

    def plain_uproot() -> None:
        with uproot.open(str(path)) as f:
            tree = f["Events"]
            for item in items:
                tree.arrays(branches, entry_start=item.entry_start, entry_stop=item.entry_stop, how=dict)

    def run(ana: ChunkAnalysis) -> None:
        with open_source(str(path)) as src:
            for item in items:
                ana.run(src.read(branches, item.entry_start, item.entry_stop))

    (t_ref, c_ref) = _best_of(plain_uproot, args.repeat)
    rss_ref = _peak_rss_mb()
    (t_nom, c_nom) = _best_of(lambda: run(nominal), args.repeat)
    rss_nom = _peak_rss_mb()
    (t_full, c_full) = _best_of(lambda: run(full), args.repeat)
    rss_full = _peak_rss_mb()

    n_var = len(full.plan.variations) - 1
    print(f"file: {path} ({n:,} events, LZMA, {len(branches)} branches read), one core")
    print(f"{'case':<34}{'wall [s]':>10}{'cpu [s]':>10}{'events/s':>14}{'RSS so far [MB]':>16}")
    rows = [("(r) plain uproot, same branches", t_ref, c_ref, rss_ref),
            ("(a) analysis, nominal only", t_nom, c_nom, rss_nom),
            (f"(b) analysis, {n_var} variations", t_full, c_full, rss_full)]
    for label, wall, cpu, rss in rows:
        print(f"{label:<34}{wall:>10.2f}{cpu:>10.2f}{n / wall:>14,.0f}{rss:>16.0f}")
    for label, ana in (("(a)", nominal), ("(b)", full)):
        print(f"peak allocation while analysing one chunk {label}: {_chunk_peak_mb(ana, path, branches, items[0]):.0f} MB")
    print(f"ratio rate (b)/(r): wall {t_ref / t_full:.3f}  cpu {c_ref / c_full:.3f}   (target >= 0.5)")
    print(f"ratio time (b)/(a): wall {t_full / t_nom:.3f}  cpu {c_full / c_nom:.3f}   (target <= 2)")
    if args.with_mva:
        _mva_case(args, work, jsonpog, path, n, t_full, c_full)
    return 0


def _mva_case(args: argparse.Namespace, work: Path, jsonpog: Path, path: Path, n: int, t_full: float,
              c_full: float) -> None:
    """(c): case (b) plus the classifier score, measured by bench_mva.py's own code."""
    import bench_mva

    trained = bench_mva.train_models(work, jsonpog, args.train_events)
    scored = bench_mva.analysis(work, jsonpog, with_score=True)
    bench_mva.timed_runs(scored, path, args.chunksize, 1)  # load the model once, as a worker does
    t_mva, c_mva, rss_mva = bench_mva.timed_runs(scored, path, args.chunksize, args.repeat)
    bench_mva.print_training(trained, args.train_events)
    print(f"{'(c) (b) + classifier score':<34}{t_mva:>10.2f}{c_mva:>10.2f}{n / t_mva:>14,.0f}{rss_mva:>16.0f}")
    print(f"extra cost of the score (c)/(b) - 1: wall {t_mva / t_full - 1:+.1%}  cpu {c_mva / c_full - 1:+.1%}"
          "   (target < +30%)")


if __name__ == "__main__":
    sys.exit(main())

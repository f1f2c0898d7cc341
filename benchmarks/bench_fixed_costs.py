"""Fixed costs are paid once per worker process, not per file or chunk: a job on one worker.

Runs, in this process and each on a fresh one-worker cluster (one thread):
  (1) the job on one file of 400,000 events (the hard input, ``hard_input.py``);
  (8) the job on the same 400,000 events as eight files of 50,000.
With the default chunk size (100,000) that is 4 chunks against 8: anything paid per file or per
chunk (opening a file, building corrections or tables, compiling) costs (8) more, and what is
paid once per worker costs both the same. Prints, per job, the analysis stage's events/s per
core (timed from its chunk records: first start to last end) and each worker's first chunk's
extra time from the run report, then the ratio of the rates (8)/(1) (target >= 0.9), and the
same ratio of events per second of the worker's CPU time, which other work on the machine does
not move.

Usage: python benchmarks/bench_fixed_costs.py [--events 400000] [--files 8] [--chunksize 100000]
       [--jsonpog PATH|generated] [--workdir DIR] [--repeat 1] [--cold-cache]

Both jobs find the per-user correction cache filled (a short job fills a fresh one first), as
every job after the first on a machine does; ``--cold-cache`` runs them without one.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import job_bench


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=400_000)
    parser.add_argument("--files", type=int, default=8)
    parser.add_argument("--chunksize", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=1, help="run both jobs this many times, alternating")
    job_bench.add_common_arguments(parser)
    args = parser.parse_args(argv)

    inputs = job_bench.Inputs.prepare(args)
    t0 = time.perf_counter()
    one = inputs.one_file(args.events)
    split = inputs.split(args.events, args.files)
    print(f"inputs: {args.events:,} events as 1 file and as {args.files} files (hard input, LZMA 9; "
          f"written or found in {time.perf_counter() - t0:.0f} s) under {one.parent}")
    print(f"corrections: {inputs.corrections}")
    runs = []
    with job_bench.correction_cache(inputs, args.cold_cache, args.chunksize) as cache_state:
        print(cache_state)
        for _ in range(args.repeat):
            for label, files in ((f"(1) one file of {args.events:,}", [one]),
                                 (f"({args.files}) {args.files} files of {args.events // args.files:,}", split)):
                with job_bench.output_folder(inputs.work, "fixed-costs") as out:
                    runs.append(job_bench.run_analysis_job(label, inputs, files, workers=1,
                                                           chunksize=args.chunksize, out=out))
    job_bench.print_runs(runs)
    best_one = max(r.events_per_s_per_core for r in runs[0::2])
    best_split = max(r.events_per_s_per_core for r in runs[1::2])
    print(f"ratio of events/s per core ({args.files})/(1): {best_split / best_one:.3f}   (target >= 0.9)")
    cpu_one = max(r.events_per_cpu_s for r in runs[0::2])
    cpu_split = max(r.events_per_cpu_s for r in runs[1::2])
    print(f"ratio of events per worker CPU second ({args.files})/(1): {cpu_split / cpu_one:.3f}   "
          "(the same comparison without the waits for a core on a shared machine)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

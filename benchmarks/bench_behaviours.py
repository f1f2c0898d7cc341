"""Cost of coffea's behaviours for a configured function, against the plain records, one core.

Runs, in this process, on the same chunk of the hard input (benchmarks/hard_input.py, read once):
  (a) the reference analysis: ``mtt`` on plain records (intccms.physics.observables.mtt);
  (b) the same with ``mtt`` written with coffea's four-vectors (intccms.physics.vectors.mtt,
      ``behaviour: vector``);
  (c) the same with ``behaviour: candidate`` (Muon_charge read in every case, so that the
      columns are the same).
each with nominal corrections only and with every variation (mtt is recomputed in every JES
fill). Prints the analysis time of the chunk and the ratios (b)/(a), (c)/(a); the other
functors keep their plain records, so the difference is the behaviours' cost alone. The
histograms of (b) and (c) are checked equal to those of (a) (1e-12 relative).

Usage: python benchmarks/bench_behaviours.py [--events 400000] [--chunksize 100000] [--repeat 3]
       [--jsonpog PATH|generated] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import hard_input
from bench_variations import Setup, _best_of, correction_files

from intccms.physics.pipeline import ChunkAnalysis
from intccms.storage import open_source

ERA = "2017"
CASES = {"(a) plain records": None, "(b) behaviour: vector": "vector", "(c) behaviour: candidate": "candidate"}


class BehaviourSetup(Setup):
    """The demo analysis with ``mtt`` as a plain or a four-vector function."""

    def __init__(self, jsonpog: Path, kind: str | None) -> None:
        self.kind = kind
        super().__init__(jsonpog)

    def _config(self, variations: list[str]) -> Any:  # noqa: ANN401
        cfg = super()._config(variations)
        cfg.analysis.collections.Muon.append("charge")
        if self.kind is not None:
            cfg.analysis.observables.mtt.function = "intccms.physics.vectors.mtt"
            cfg.analysis.observables.mtt.behaviour = self.kind
        return cfg


def _same_histograms(got: dict[Any, np.ndarray], want: dict[Any, np.ndarray]) -> bool:
    return got.keys() == want.keys() and all(np.allclose(got[k], want[k], rtol=1e-12, atol=0) for k in want)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=400_000, help="events of the hard input file")
    parser.add_argument("--chunksize", type=int, default=100_000, help="events of the chunk analysed")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--seed", type=int, default=2017)
    parser.add_argument("--jsonpog", default=None, help="as in bench_variations.py")
    parser.add_argument("--workdir", default=str(Path(tempfile.gettempdir()) / "intccms-bench"),
                        help="where the hard input is written once and reused")
    args = parser.parse_args(argv)

    work = Path(args.workdir)
    jsonpog, corrections = correction_files(args.jsonpog, work)
    setups = {label: BehaviourSetup(jsonpog, kind) for label, kind in CASES.items()}
    plain = next(iter(setups.values()))
    path = hard_input.ensure_hard_input(work / "bench", args.events, args.seed, ERA, plain.thresholds(ERA))
    analyses = {(label, var): s.analysis(ERA, [] if var == "nominal" else ["*"])
                for label, s in setups.items() for var in ("nominal", "all variations")}
    branches = sorted(set().union(*(a.branches() for a in analyses.values())))
    with open_source(str(path)) as src:
        stop = min(args.chunksize, src.num_entries)
        columns = src.read(branches, 0, stop)
    print(f"input: {path} (chunk of {stop:,} events, {ERA}); corrections: {corrections}")

    for var in ("nominal", "all variations"):
        n_var = len(analyses[(next(iter(CASES)), var)].plan.variations) - 1
        print(f"\n=== {var} ({n_var} variations)")
        print(f"{'case':<28}{'wall [s]':>10}{'cpu [s]':>10}{'events/s':>14}{'cpu ratio':>11}{'same hists':>12}")
        reference: tuple[float, dict[Any, np.ndarray]] | None = None
        for label in CASES:
            ana: ChunkAnalysis = analyses[(label, var)]
            hists = ana.run(columns).hists  # warm-up (coffea's import, caches), as a worker's first chunk
            wall, cpu = _best_of(lambda ana=ana: ana.run(columns), args.repeat)
            if reference is None:
                reference = (cpu, hists)
            ratio, same = cpu / reference[0], _same_histograms(hists, reference[1])
            print(f"{label:<28}{wall:>10.3f}{cpu:>10.3f}{stop / wall:>14,.0f}{ratio:>11.3f}{'yes' if same else 'NO':>12}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

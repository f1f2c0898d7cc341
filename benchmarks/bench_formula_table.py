"""JEC levels: correctionlib against the formula tables, same jets, one core.

Evaluates every JEC level the reference analysis applies in an era (as its corrections set-up
resolves them) on the jets of one 100,000-event chunk of the hard benchmark input (about
220,000 jets in the candidate events; here drawn with the same eta and pt shapes, rho and area
over their usual ranges), once through correctionlib (``FlatEvaluator``) and once through
``formula_table`` where a level has the plain-arithmetic form, checks that the values are
identical, and prints the times and their ratio per level (the table is kept only while it is at
least 2x faster) and its one-off set-up cost per worker process. Levels of another form (the
2018 ``L2Relative`` uses ``log10`` and ``exp``) are listed as left to correctionlib.

Correction files: ``--jsonpog PATH`` or ``INTCCMS_JSONPOG`` (a jsonpog-integration root with the
real UL files), else generated ones.

Usage: python benchmarks/bench_formula_table.py [--jets 220000] [--era 2017] [--repeat 5]
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_variations as bv
from bench_jes_sources import correction_root, parse_args
from bench_jes_sources import jets as source_jets

from intccms.config import compose_config
from intccms.physics.corrections.formula_table import compile_formula_table
from intccms.physics.corrections.inputs import FlatEvaluator
from intccms.physics.corrections.jec import JetEnergyCorrection
from intccms.plan.analysis import corrections_specs


def levels(root: str, era: str) -> list[FlatEvaluator]:
    """The JEC levels the demo configuration evaluates in ``era`` (a level that is exactly 1 is
    not among them), as the job's own corrections set-up resolves them."""
    cfg = compose_config("demo", [f"paths.jsonpog={root}", "paths.generate_corrections=false"])
    (jec,) = [o for o in corrections_specs(cfg, [era])[era].build().objects if isinstance(o, JetEnergyCorrection)]
    return list(jec._levels)


def jets(n: int) -> dict[str, np.ndarray]:
    """The JES benchmark's jets (the hard input's eta and pt shapes), with area and rho."""
    rng = np.random.default_rng(12)
    return {**source_jets(n), "JetA": rng.uniform(0.35, 0.6, n), "Rho": rng.uniform(2.0, 45.0, n)}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(__doc__, 5, argv)
    root = correction_root(args.jsonpog, args.era)
    fields = jets(args.jets)
    print(f"{args.jets:,} jets, era {args.era}, one core (CPU time, best of {args.repeat})")
    status = 0
    for level in levels(root, args.era):
        level(fields, None)  # correctionlib's own set-up out of the timing
        t0 = time.process_time()
        table = compile_formula_table(level.path, level.key)
        setup = time.process_time() - t0
        if table is None:
            print(f"  {level.key}: another form, left to correctionlib")
            continue
        inputs = {spec.name: level.converted(spec.name, fields[spec.name]) for spec in level.specs}

        def exact(picked: np.ndarray, level: FlatEvaluator = level) -> np.ndarray:
            return level({k: v.take(picked) for k, v in fields.items()}, None)

        t_lib, want = bv.best_cpu_time(lambda level=level: level(fields, None), args.repeat)
        t_tab, got = bv.best_cpu_time(lambda table=table, inputs=inputs, exact=exact: table.evaluate(inputs, exact),
                                      args.repeat)
        same = got.tobytes() == want.tobytes()
        status |= 0 if same and t_lib >= 2 * t_tab else 1
        print(f"  {level.key}: correctionlib {1e3 * t_lib:.1f} ms, table {1e3 * t_tab:.1f} ms, "
              f"speed-up {t_lib / t_tab:.1f}x (kept only while >= 2x); values identical: {same}; "
              f"set-up once per worker process {1e3 * setup:.0f} ms")
    return status


if __name__ == "__main__":
    sys.exit(main())

"""JES uncertainty sources: correctionlib against the shared bin lookup, same jets, one core.

Evaluates every JES source the reference analysis varies (the 27 of conf/corrections, with the
era's decorrelated names) on the jets of one 100,000-event chunk of the hard benchmark input
(about 220,000 jets in the candidate events; here drawn with the same eta and pt shapes), once
through correctionlib (``FlatEvaluator``) and once through ``jes_table`` (one bin lookup for all
sources; in both tiers, numpy and the compiled kernel of ``intccms.physics.compiled``), checks
that the values are identical bit for bit, and prints the times and their ratios (the
hand-written lookup is kept only while it is at least 2x faster) and its one-off set-up cost per
worker process.

Correction files: ``--jsonpog PATH`` or ``INTCCMS_JSONPOG`` (a jsonpog-integration root with the
real UL files), else generated ones.

Usage: python benchmarks/bench_jes_sources.py [--jets 220000] [--era 2017] [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_variations as bv

from intccms import datagen
from intccms.config import compose_config
from intccms.physics import compiled
from intccms.physics.corrections.inputs import FlatEvaluator, InputSpec
from intccms.physics.corrections.jec import JetEnergyCorrection
from intccms.physics.corrections.jes_table import compile_sources
from intccms.plan.analysis import corrections_specs


def source_keys(root: str, era: str) -> list[str]:
    """The correctionlib keys of the JES sources the demo configuration varies in ``era``, as
    the job's own corrections set-up resolves them."""
    cfg = compose_config("demo", [f"paths.jsonpog={root}", "paths.generate_corrections=false"])
    (jec,) = [o for o in corrections_specs(cfg, [era])[era].build().objects if isinstance(o, JetEnergyCorrection)]
    return [s.key for s in jec.sources]


def jets(n: int) -> dict[str, np.ndarray]:
    """Jets with the hard input's shapes: |eta| up to 4.7 (most central), pt falling from 15 GeV."""
    rng = np.random.default_rng(11)
    eta = np.clip(rng.normal(0.0, 1.6, n), -4.7, 4.7).astype(np.float32).astype(np.float64)
    pt = (15.0 + rng.exponential(45.0, n)).astype(np.float32).astype(np.float64)
    return {"JetEta": eta, "JetPt": pt}


def parse_args(doc: str | None, repeat: int, argv: list[str] | None) -> argparse.Namespace:
    """The options of the jet-correction benchmarks: jets, era, repeats and correction files."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jets", type=int, default=220_000)
    parser.add_argument("--era", default="2017")
    parser.add_argument("--repeat", type=int, default=repeat)
    parser.add_argument("--jsonpog", default=os.environ.get("INTCCMS_JSONPOG"))
    return parser.parse_args(argv)


def correction_root(jsonpog: str | None, era: str) -> str:
    """``--jsonpog`` (a jsonpog-integration root), else generated files for ``era``."""
    if jsonpog:
        return jsonpog
    root = tempfile.mkdtemp(prefix="intccms-bench-jec-")
    datagen.write_correction_files(root, [era])
    return root


def main(argv: list[str] | None = None) -> int:
    args = parse_args(__doc__, 3, argv)
    root = correction_root(args.jsonpog, args.era)
    path = str(next(Path(root).glob(f"POG/JME/{args.era}_UL/jet_jerc.json.gz")))
    keys = source_keys(root, args.era)
    fields = jets(args.jets)
    exact = {k: FlatEvaluator(path, k, [InputSpec(name="JetEta"), InputSpec(name="JetPt")], era=args.era)
             for k in keys}
    for ev in exact.values():
        ev(fields, None)  # correctionlib's own set-up out of the timing

    t0 = time.process_time()
    table = compile_sources(path, keys)
    setup = time.process_time() - t0
    if table is None:
        print(f"{path}: these sources do not have the shared-lookup form; correctionlib is used")
        return 1

    def with_correctionlib() -> list[np.ndarray]:
        return [exact[k](fields, None) for k in keys]

    def with_lookup() -> list[np.ndarray]:
        lookup = table.lookup(fields)
        assert lookup is not None
        return [lookup.source(k, exact[k])(fields, None) for k in keys]

    def with_numpy_lookup() -> list[np.ndarray]:
        with compiled.numpy_tier():
            return with_lookup()

    def best(fn: Any) -> tuple[float, list[np.ndarray]]:
        return bv.best_cpu_time(fn, args.repeat)

    compiled.load()
    t_lib, want = best(with_correctionlib)
    t_tab, got = best(with_numpy_lookup)
    t_cmp, fast = best(with_lookup)
    same = all(a.tobytes() == b.tobytes() for g in (got, fast) for a, b in zip(want, g, strict=True))
    values = len(keys) * args.jets
    print(f"file: {path}; {len(keys)} sources, {args.jets:,} jets, one core (CPU time, best of {args.repeat})")
    print(f"  correctionlib, one call per source   {t_lib:8.3f} s  ({1e9 * t_lib / values:.0f} ns/value)")
    print(f"  shared bin lookup, numpy             {t_tab:8.3f} s  ({1e9 * t_tab / values:.0f} ns/value)")
    print(f"  shared bin lookup, compiled          {t_cmp:8.3f} s  ({1e9 * t_cmp / values:.0f} ns/value)")
    print(f"  speed-up over correctionlib: numpy {t_lib / t_tab:.1f}x, compiled {t_lib / t_cmp:.1f}x "
          f"(kept only while >= 2x); compiled over numpy {t_tab / t_cmp:.1f}x; values identical: {same}")
    print(f"  set-up once per worker process: {setup:.3f} s")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())

"""b-tag shape weights of the JES fills: correctionlib against the two-stage table, one core.

Analyses one 100,000-event chunk of the hard benchmark input (benchmarks/hard_input.py) with
every variation, records each b-tag shape evaluation the chunk makes (the nominal fill's and
the 54 JES fills', on the jets each selects), then evaluates the same calls once through
correctionlib (``FlatEvaluator``) and once through ``staged_table`` (the chunk's fixed part
prepared once, included in its time), checks that the values are identical bit for bit, and
prints both times and their ratio (the hand-written table is kept only while it is at least 2x
faster) and its one-off set-up cost per worker process.

Correction files: ``--jsonpog PATH`` or ``INTCCMS_JSONPOG`` (a jsonpog-integration root with the
real UL files); the hard input is written to (or reused from) ``--workdir``.

Usage: python benchmarks/bench_btag_stages.py --jsonpog PATH [--workdir DIR] [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_variations as bv
import hard_input

from intccms.physics.corrections import staged_table
from intccms.physics.corrections.weights import WeightCorrection
from intccms.storage import open_source


def record_calls(ana: Any, columns: Any) -> list[tuple[Any, Any, dict[str, np.ndarray], str]]:
    """The staged evaluations one chunk makes: (objects, positions, fields, selector)."""
    calls: list[tuple[Any, Any, dict[str, np.ndarray], str]] = []
    original = WeightCorrection._staged_values

    def spy(self: WeightCorrection, taken: Any, positions: Any, fields: Any, selector: str) -> Any:
        calls.append((taken, positions, dict(fields), selector))
        return original(self, taken, positions, fields, selector)

    WeightCorrection._staged_values = spy  # type: ignore[method-assign]
    try:
        ana.run(columns)
    finally:
        WeightCorrection._staged_values = original  # type: ignore[method-assign]
    return calls


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jsonpog", default=os.environ.get("INTCCMS_JSONPOG"))
    parser.add_argument("--workdir", default="/tmp/speedbench")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    if not args.jsonpog:
        parser.error("--jsonpog (or INTCCMS_JSONPOG) is needed: the real b-tag file")

    setup = bv.Setup(Path(args.jsonpog))
    ana = setup.analysis("2017", ["*"])
    (btag,) = [w for w in ana.corrections.weights if w._staged is not None]  # type: ignore[union-attr]
    path = hard_input.ensure_hard_input(Path(args.workdir) / "bench", 200_000, 2017, "2017", setup.thresholds("2017"))
    with open_source(str(path)) as src:
        columns = src.read(ana.branches(), 0, 100_000)
    calls = record_calls(ana, columns)
    staged_table._cells.cache_clear()
    staged_table._layout.cache_clear()
    t1 = time.process_time()
    for _, _, _, selector in calls:
        btag._staged.cells(selector)  # type: ignore[union-attr]
    set_up = time.process_time() - t1
    jets = sum(len(next(iter(f.values()))) for _, _, f, _ in calls)

    def with_correctionlib() -> list[np.ndarray]:
        return [btag.evaluator(fields, sel) for _, _, fields, sel in calls]

    def with_stages() -> list[np.ndarray]:
        btag._prepared = None  # the chunk's preparation counted in (and its first call by correctionlib)
        out = []
        for taken, pos, fields, sel in calls:
            values = btag._staged_values(taken, pos, fields, sel)
            out.append(btag.evaluator(fields, sel) if values is None else values)
        return out

    def best(fn: Any) -> tuple[float, list[np.ndarray]]:
        return bv.best_cpu_time(fn, args.repeat)

    t_lib, want = best(with_correctionlib)
    t_stg, got = best(with_stages)
    same = len(want) == len(got) and all(a.tobytes() == b.tobytes() for a, b in zip(want, got, strict=True))
    print(f"file: {btag.evaluator.path} ({btag.evaluator.key}); one chunk of {path.name}: {len(calls)} "
          f"evaluations, {jets:,} jets; one core (CPU time, best of {args.repeat})")
    print(f"  correctionlib                    {t_lib:8.3f} s  ({1e9 * t_lib / jets:.0f} ns/jet)")
    print(f"  two-stage table (with prepare)   {t_stg:8.3f} s  ({1e9 * t_stg / jets:.0f} ns/jet)")
    print(f"  speed-up {t_lib / t_stg:.1f}x (kept only while >= 2x); values identical: {same}")
    print(f"  set-up once per worker process (tables of the {len({c[3] for c in calls})} selectors): {set_up:.3f} s")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())

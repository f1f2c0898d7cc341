"""b-tag shape weights of the JES fills: correctionlib against the two-stage table, one core.

Analyses one 100,000-event chunk of the hard benchmark input (benchmarks/hard_input.py) with
every variation, records each b-tag shape evaluation the chunk makes (the nominal fill's and
the 54 JES fills', on the jets each selects), then evaluates the same calls once through
correctionlib (``FlatEvaluator``) and once through ``staged_table`` (the chunk's fixed part
prepared once, included in its time), checks that the values are identical bit for bit, and
prints the times (the table in both tiers: numpy, and the compiled kernel of
``intccms.physics.compiled``) and their ratios (the hand-written table is kept only while it is at least 2x
faster) and its one-off set-up cost per worker process.

Correction files: ``--jsonpog PATH`` or ``INTCCMS_JSONPOG`` (a jsonpog-integration root with the
real UL files); the hard input is written to (or reused from) ``--workdir``.

Usage: python benchmarks/bench_btag_stages.py --jsonpog PATH [--workdir DIR] [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_variations as bv
import hard_input

from intccms.physics import compiled
from intccms.physics.corrections import staged_table
from intccms.physics.corrections.weights import WeightCorrection
from intccms.storage import open_source


@dataclass
class Call:
    """One staged evaluation of a chunk: a selector's (``source`` None) or a source's merged with
    the nominal for the other flavours."""

    taken: Any
    positions: Any
    fields: dict[str, np.ndarray]
    selector: str
    eager: bool
    objects: Any = None
    source: Any = None
    direction: str = ""

    def jets(self) -> int:
        return len(next(iter(self.fields.values())))


def record_calls(ana: Any, columns: Any) -> list[Call]:
    """The staged evaluations one chunk makes, through either entry point."""
    calls: list[Call] = []
    staged, merged = WeightCorrection._staged_values, WeightCorrection._merged_values

    def spy_staged(self: WeightCorrection, taken: Any, positions: Any, fields: Any, selector: str, eager: bool) -> Any:
        calls.append(Call(taken, positions, dict(fields), selector, eager))
        return staged(self, taken, positions, fields, selector, eager)

    def spy_merged(self: WeightCorrection, taken: Any, fields: Any, objects: Any, src: Any, direction: str,
                   eager: bool) -> Any:
        calls.append(Call(taken, None, dict(fields), getattr(src, direction), eager, objects, src, direction))
        return merged(self, taken, fields, objects, src, direction, eager)

    WeightCorrection._staged_values = spy_staged  # type: ignore[method-assign]
    WeightCorrection._merged_values = spy_merged  # type: ignore[method-assign]
    try:
        ana.run(columns)
    finally:
        WeightCorrection._staged_values = staged  # type: ignore[method-assign]
        WeightCorrection._merged_values = merged  # type: ignore[method-assign]
    return calls


def by_correctionlib(btag: WeightCorrection, call: Call) -> np.ndarray:
    """What correctionlib gives for the call: each jet with its own selector."""
    if call.source is None:
        return btag.evaluator(call.fields, call.selector)
    member = np.isin(call.objects[btag.flavour_field], call.source.flavours)
    out = np.empty(call.jets())
    for selector, where in ((call.selector, member), (btag.nominal_selector, ~member)):
        if where.any():
            out[where] = btag.evaluator({k: v[where] for k, v in call.fields.items()}, selector)
    return out


def by_stages(btag: WeightCorrection, call: Call) -> np.ndarray:
    if call.source is None:
        values = btag._staged_values(call.taken, call.positions, call.fields, call.selector, call.eager)
    else:
        values = btag._merged_values(call.taken, call.fields, call.objects, call.source, call.direction, call.eager)
    return by_correctionlib(btag, call) if values is None else values


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jsonpog", default=os.environ.get("INTCCMS_JSONPOG"))
    parser.add_argument("--workdir", default=None,
                        help="where the input is written and reused (default: a new private temporary folder)")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    if not args.jsonpog:
        parser.error("--jsonpog (or INTCCMS_JSONPOG) is needed: the real b-tag file")

    setup = bv.Setup(Path(args.jsonpog))
    ana = setup.analysis("2017", ["*"])
    (btag,) = [w for w in ana.corrections.weights if w._staged is not None]  # type: ignore[union-attr]
    work = Path(args.workdir or tempfile.mkdtemp(prefix="intccms-bench-"))
    path = hard_input.ensure_hard_input(work / "bench", 200_000, 2017, "2017", setup.thresholds("2017"))
    with open_source(str(path)) as src:
        columns = src.read(ana.branches(), 0, 100_000)
    calls = record_calls(ana, columns)
    staged_table._cells.cache_clear()
    staged_table._layout.cache_clear()
    staged_table._merged.cache_clear()
    t1 = time.process_time()
    for call in calls:
        if call.source is None:
            btag._staged.cells(call.selector)  # type: ignore[union-attr]
        else:
            btag._staged.merged(call.selector, btag.nominal_selector, btag._flavour_input,  # type: ignore[union-attr,arg-type]
                                call.source.flavours)  # type: ignore[union-attr]
    set_up = time.process_time() - t1
    jets = sum(call.jets() for call in calls)

    def with_correctionlib() -> list[np.ndarray]:
        return [by_correctionlib(btag, call) for call in calls]

    def with_stages() -> list[np.ndarray]:
        btag._prepared = None  # the chunk's preparation counted in (and its first call by correctionlib)
        return [by_stages(btag, call) for call in calls]

    def with_numpy_stages() -> list[np.ndarray]:
        with compiled.numpy_tier():
            return with_stages()

    def best(fn: Any) -> tuple[float, list[np.ndarray]]:
        return bv.best_cpu_time(fn, args.repeat)

    t_lib, want = best(with_correctionlib)
    t_stg, got = best(with_numpy_stages)
    t_cmp, fast = best(with_stages)
    same = all(len(want) == len(g) and all(a.tobytes() == b.tobytes() for a, b in zip(want, g, strict=True))
               for g in (got, fast))
    print(f"file: {btag.evaluator.path} ({btag.evaluator.key}); one chunk of {path.name}: {len(calls)} "
          f"evaluations, {jets:,} jets; one core (CPU time, best of {args.repeat})")
    print(f"  correctionlib                              {t_lib:8.3f} s  ({1e9 * t_lib / jets:.0f} ns/jet)")
    print(f"  two-stage table (with prepare), numpy      {t_stg:8.3f} s  ({1e9 * t_stg / jets:.0f} ns/jet)")
    print(f"  two-stage table (with prepare), compiled   {t_cmp:8.3f} s  ({1e9 * t_cmp / jets:.0f} ns/jet)")
    print(f"  speed-up over correctionlib: numpy {t_lib / t_stg:.1f}x, compiled {t_lib / t_cmp:.1f}x "
          f"(kept only while >= 2x); compiled over numpy {t_stg / t_cmp:.1f}x; values identical: {same}")
    print(f"  set-up once per worker process (tables of the {len({c.selector for c in calls})} selectors): {set_up:.3f} s")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())

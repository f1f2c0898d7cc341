"""The compiled tier's kernels against the numpy code they stand in for, on a real chunk, one core.

Analyses one 100,000-event chunk of the hard benchmark input (benchmarks/hard_input.py) with
every variation and the compiled tier loaded, records every call of each kernel's caller
(``select_objects`` with the nominal order's hint, ``StagedCorrection.evaluate``, a JES source's
formula, the ``mtt`` observable, the b-tag table's preparation of a chunk's jets), then replays the same calls once in the numpy tier and once compiled, checks that the
results are identical bit for bit and prints both times and their ratio (a kernel is kept only
while it is at least 2x faster than the numpy code it replaces), then the cost of loading the
kernels in a fresh process (importing numba and the kernels from numba's cache) and the whole
chunk in both tiers.

Correction files: ``--jsonpog PATH`` or ``INTCCMS_JSONPOG`` (a jsonpog-integration root with the
real UL files; the b-tag table's two-stage form needs them); the hard input is written to (or
reused from) ``--workdir``.

Usage: python benchmarks/bench_kernels.py --jsonpog PATH [--workdir DIR] [--repeat 5]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_variations as bv
import hard_input

from intccms.physics import compiled, functors, jagged, observables
from intccms.physics.corrections import jes_table, staged_table
from intccms.physics.corrections.staged_table import StagedCorrection
from intccms.storage import open_source

LOAD = ("import time; t = time.process_time(); from intccms.physics import compiled; "
        "assert compiled.load() is not None; print(time.process_time() - t)")


def _record(ana: Any, columns: Any) -> dict[str, list[Callable[[], Any]]]:
    """Each kernel's calls of one chunk, as replays of their callers."""
    calls: dict[str, list[Callable[[], Any]]] = {"select_in_order": [], "staged_cubic": [], "jes_formula": [],
                                                 "mtt": [], "split_bins": []}
    split = staged_table._Walker._split

    def spy_split(self: Any, objs: Any, step: Any) -> Any:
        calls["split_bins"].append(lambda: split(self, objs, step))
        return split(self, objs, step)

    select, evaluate = jagged.select_objects, StagedCorrection.evaluate
    source = jes_table.JesLookup.source
    mtt = observables.mtt

    def spy_mtt(*args: Any) -> Any:
        calls["mtt"].append(lambda: mtt(*args))
        return mtt(*args)

    def spy_select(objects: Any, keep: Any, sort_by: Any = None) -> Any:
        if sort_by is not None and objects.order is not None and objects.order[0] == sort_by:
            calls["select_in_order"].append(lambda: select(objects, keep, sort_by))
        return select(objects, keep, sort_by)

    def spy_evaluate(cells: Any, prepared: Any, rows: Any, late: Any) -> Any:
        calls["staged_cubic"].append(lambda: evaluate(cells, prepared, rows, late))
        return evaluate(cells, prepared, rows, late)

    def spy_source(self: Any, key: str, exact: Any) -> Any:
        index = self.table.keys.index(key)
        if not self.table.constant[index]:  # the formula alone: the jets at an edge get 0, not correctionlib
            edges = np.zeros(len(self.near))
            calls["jes_formula"].append(lambda: source(self, key, lambda *_: edges)({}, None))
        return source(self, key, exact)

    jagged.select_objects = spy_select  # type: ignore[assignment]
    StagedCorrection.evaluate = staticmethod(spy_evaluate)  # type: ignore[method-assign]
    jes_table.JesLookup.source = spy_source  # type: ignore[method-assign]
    select_jets_module = sys.modules["intccms.physics.objects"]
    select_jets_module.select_objects = spy_select  # type: ignore[attr-defined]
    observables.mtt = spy_mtt  # type: ignore[assignment]
    staged_table._Walker._split = spy_split  # type: ignore[method-assign]
    functors.import_function.cache_clear()  # the configured path resolves to the spy
    try:
        ana.run(columns)
    finally:
        observables.mtt = mtt  # type: ignore[assignment]
        staged_table._Walker._split = split  # type: ignore[method-assign]
        functors.import_function.cache_clear()
        jagged.select_objects = select
        select_jets_module.select_objects = select  # type: ignore[attr-defined]
        StagedCorrection.evaluate = staticmethod(evaluate)  # type: ignore[method-assign]
        jes_table.JesLookup.source = source  # type: ignore[method-assign]
    return calls


def _digest(result: Any) -> bytes:
    if isinstance(result, (tuple, list)):
        return b"|".join(_digest(r) for r in result)
    view = jagged.flat_view(result)
    if view is not None:
        return view.offsets.tobytes() + b"".join(np.asarray(view.fields[k]).tobytes() for k in sorted(view.fields))
    return np.asarray(result).tobytes()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jsonpog", default=os.environ.get("INTCCMS_JSONPOG"))
    parser.add_argument("--workdir", default=None,
                        help="where the input is written and reused (default: a new private temporary folder)")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)
    if not args.jsonpog:
        parser.error("--jsonpog (or INTCCMS_JSONPOG) is needed: the real UL files")

    setup = bv.Setup(Path(args.jsonpog), "compiled")
    ana = setup.analysis("2017", ["*"])
    work = Path(args.workdir or tempfile.mkdtemp(prefix="intccms-bench-"))
    path = hard_input.ensure_hard_input(work / "bench", 200_000, 2017, "2017", setup.thresholds("2017"))
    with open_source(str(path)) as src:
        columns = src.read(ana.branches(), 0, 100_000)
    calls = _record(ana, columns)

    def numpy_tier(fn: Callable[[], Any]) -> Callable[[], Any]:
        def run() -> Any:
            with compiled.numpy_tier():
                return fn()
        return run

    print(f"one chunk of {path.name} (100,000 events, 138 variations), one core, CPU time, best of {args.repeat}")
    print(f"{'kernel':<18}{'calls':>7}{'numpy [ms]':>12}{'compiled [ms]':>15}{'ratio':>8}  identical")
    ok = True
    for name, replays in calls.items():
        t_np, want = bv.best_cpu_time(numpy_tier(lambda r=replays: [f() for f in r]), args.repeat)
        t_cmp, got = bv.best_cpu_time(lambda r=replays: [f() for f in r], args.repeat)
        same = all(_digest(a) == _digest(b) for a, b in zip(want, got, strict=True))
        ok &= same
        print(f"{name:<18}{len(replays):>7}{1e3 * t_np:>12.1f}{1e3 * t_cmp:>15.1f}{t_np / t_cmp:>8.1f}  {same}")
    load = [float(subprocess.run([sys.executable, "-c", LOAD], check=True, capture_output=True, text=True).stdout)
            for _ in range(3)]
    print(f"loading the kernels in a fresh process (numba's cache filled): {min(load):.2f} s of CPU")
    t_np, _ = bv.best_cpu_time(numpy_tier(lambda: ana.run(columns)), args.repeat)
    t_cmp, _ = bv.best_cpu_time(lambda: ana.run(columns), args.repeat)
    print(f"the whole chunk: numpy {t_np:.3f} s, compiled {t_cmp:.3f} s ({1 - t_cmp / t_np:.0%} less); "
          f"loading repays itself after {min(load) / (t_np - t_cmp) * 1e5:,.0f} events")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

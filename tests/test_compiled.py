"""The compiled tier (``intccms.physics.compiled``): the same numbers as numpy, and loaded only
when a process has analysed the configured number of events."""

from __future__ import annotations

import logging
import os
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from intccms.config import ConfigError, compose_config
from intccms.physics import compiled
from intccms.physics.corrections.staged_table import Cells, Layout, Prepared, StagedCorrection
from intccms.plan.analysis import build_plan

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

SHARED = Path(os.environ.get("INTCCMS_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
JSONPOG = SHARED / "jsonpog-integration"


def _table(rng: np.random.Generator, cell_type: type[np.integer], objects: int) -> tuple[Cells, Prepared]:
    """A random table of the staged form: 6 late edges (12 guards, 13 positions among them), 40
    leaves, each object's leaf under every position (0: correctionlib's), a reference position
    per object."""
    edges = np.sort(rng.uniform(20.0, 300.0, 6))
    window = 1e-9 * (1.0 + np.abs(edges))
    guards = np.sort(np.concatenate([edges - window, edges + window]))
    layout = Layout(node=None, inputs=(), late="pt", variable="discriminant", leaves=40, guards=guards,
                    lower=np.concatenate([[-np.inf], edges]), below=np.concatenate([[-np.inf], guards]),
                    above=np.concatenate([guards, [np.inf]]))
    params = tuple(rng.normal(0.0, 2.0, 40) for _ in range(5))
    cells = Cells(layout, params[4], params)  # type: ignore[arg-type]
    positions = len(guards) + 1
    table = rng.integers(1, 41, (positions, objects)).astype(cell_type)
    table[1::2] = 0  # next to an edge
    table[:, rng.random(objects) < 0.05] = 0  # a flavour the tree does not list
    reference = rng.uniform(10.0, 320.0, objects)
    prepared = Prepared(table.ravel(), objects, rng.uniform(-0.1, 1.2, objects),
                        np.searchsorted(guards, reference).astype(np.int8))
    return cells, prepared


@pytest.mark.parametrize("cell_type", [np.uint8, np.uint16, np.int64])
def test_staged_kernel_gives_the_numpy_tiers_bits(fresh_tier: None, cell_type: type[np.integer]) -> None:
    """Values moved across edges, exactly on and one step beside guards, NaN and infinities,
    unprepared leaves: the kernel's values and correctionlib mask equal numpy's bit for bit."""
    rng = np.random.default_rng(7)
    objects = 20_000
    cells, prepared = _table(rng, cell_type, objects)
    rows = np.sort(rng.choice(objects, 15_000, replace=False)).astype(np.int64)
    late = rng.uniform(10.0, 320.0, len(rows))
    guards = cells.layout.guards
    late[:600] = rng.choice(np.concatenate([guards, np.nextafter(guards, np.inf), np.nextafter(guards, -np.inf)]), 600)
    late[600:620] = np.nan
    late[620:630], late[630:640] = np.inf, -np.inf
    with compiled.numpy_tier():
        want, want_exact = StagedCorrection.evaluate(cells, prepared, rows, late)
    assert compiled.load() is not None
    got, got_exact = StagedCorrection.evaluate(cells, prepared, rows, late)
    assert got_exact.tolist() == want_exact.tolist()
    assert got.tobytes() == want.tobytes()
    assert 0 < want_exact.mean() < 0.5  # both kinds of row are covered


def test_kernel_is_left_out_for_other_types(fresh_tier: None, kernel_calls: Counter[str]) -> None:
    rng = np.random.default_rng(3)
    cells, prepared = _table(rng, np.uint8, 100)
    late = rng.uniform(10.0, 320.0, 10)
    want = StagedCorrection.evaluate(cells, prepared, np.arange(10, dtype=np.int64), late)
    assert kernel_calls["staged_cubic"] == 1
    got = StagedCorrection.evaluate(cells, prepared, np.arange(10, dtype=np.int32), late)  # numpy path
    assert kernel_calls["staged_cubic"] == 1
    assert got[0].tobytes() == want[0].tobytes()


def test_kernels_load_once_the_process_has_analysed_enough_events(fresh_tier: None) -> None:
    compiled.before_chunk(None)
    compiled.after_chunk(10**9)
    compiled.before_chunk(None)  # never
    assert compiled.kernels() is None
    compiled.before_chunk(2 * 10**9)
    assert compiled.kernels() is None
    compiled.after_chunk(10**9)
    compiled.before_chunk(2 * 10**9)
    assert compiled.kernels() is not None
    with compiled.numpy_tier():
        assert compiled.kernels() is None
    assert compiled.kernels() is not None


def test_without_numba_the_numpy_tier_stays(fresh_tier: None, monkeypatch: pytest.MonkeyPatch,
                                            caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setitem(sys.modules, "intccms.physics.kernels", None)  # the import fails
    with caplog.at_level(logging.WARNING, logger=compiled.__name__):
        assert compiled.load() is None
        assert compiled.load() is None
    assert compiled.kernels() is None
    assert len([r for r in caplog.records if "compiled kernels unavailable" in r.getMessage()]) == 1


def test_the_workflow_option_reaches_the_plan() -> None:
    assert build_plan(compose_config("demo"), {}).compiled_kernels_after == 2_000_000
    assert build_plan(compose_config("demo", ["workflow.compiled_kernels_after=0"]), {}).compiled_kernels_after == 0
    assert build_plan(compose_config("demo", ["workflow.compiled_kernels_after=null"]), {}).compiled_kernels_after is None
    with pytest.raises(ConfigError, match=r"workflow\.compiled_kernels_after"):
        compose_config("demo", ["workflow.compiled_kernels_after=-1"])


@pytest.mark.realdata
@pytest.mark.skipif(not (JSONPOG / "POG").is_dir(), reason=f"real correction files absent under {JSONPOG}")
def test_a_chunk_with_every_variation_fills_the_same_histograms_in_both_tiers(
        fresh_tier: None, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    """The hard benchmark input (every event skimmed, jets at every threshold) with the real UL
    files: every bin of every variation is the same, and the kernel did the b-tag lookups."""
    import bench_variations
    import hard_input

    from intccms.storage import open_source

    setup = bench_variations.Setup(JSONPOG, "numpy")
    analysis = setup.analysis("2017", ["*"])
    path = hard_input.write_hard_input(tmp_path / "hard.root", 20_000, 5, setup.thresholds("2017"))
    with open_source(str(path)) as source:
        columns = source.read(analysis.branches(), 0, 20_000)
    numpy_result = analysis.run(columns)
    assert compiled.kernels() is None  # the plan says never
    calls = request.getfixturevalue("kernel_calls")
    compiled_result = analysis.run(columns)
    assert calls["staged_cubic"] > 50  # the nominal fill's and every JES fill's b-tag weights
    assert calls["jes_formula"] == 27  # every JES source once, for its up and down fills
    assert calls["select_in_order"] == 55  # the jets of the nominal and every JES fill (hinted)
    assert calls["mtt"] == 55  # the observable of every fill
    assert compiled_result.cutflow == numpy_result.cutflow
    assert sorted(compiled_result.hists) == sorted(numpy_result.hists)
    for key, hist in numpy_result.hists.items():
        assert compiled_result.hists[key].tobytes() == hist.tobytes(), key


@pytest.mark.parametrize("flow", ["clamp", None])
@pytest.mark.parametrize("objs_type", [np.int32, np.int64])
def test_split_kernel_groups_as_numpy(fresh_tier: None, kernel_calls: Counter[str], flow: str | None,
                                      objs_type: type[np.integer]) -> None:
    """Values on, one step beside and within the window of every edge, beyond the edges, NaN and
    infinities: the same objects in the same bins, in the same order (none next to an edge)."""
    from intccms.physics.corrections.staged_table import EDGE_WINDOW, _Walker

    rng = np.random.default_rng(4)
    edges = (0.0, 0.8, 1.6, 2.5)
    values = rng.uniform(-1.0, 3.5, 30_000)
    on = np.array(edges)
    values[:300] = rng.choice(np.concatenate([on, np.nextafter(on, 9.0), np.nextafter(on, -9.0),
                                              on * (1 + 0.5 * EDGE_WINDOW) + 0.5 * EDGE_WINDOW]), 300)
    values[300:310], values[310:320], values[320:330] = np.nan, np.inf, -np.inf
    objs = np.sort(rng.choice(len(values), 20_000, replace=False)).astype(objs_type)
    walker = _Walker(None, {"abseta": values}, None, {})  # type: ignore[arg-type]
    step = ("abseta", edges, flow)
    got = walker._split(objs, step)
    assert kernel_calls["split_bins"] == 1
    with compiled.numpy_tier(), np.errstate(invalid="ignore"):  # inf - inf: numpy's NaN fails the window test
        want = walker._split(objs, step)
    assert [g.tolist() for g in got] == [w.tolist() for w in want]
    assert all(g.dtype == objs.dtype for g in got)
    assert 0 < sum(len(w) for w in want) < len(objs)

"""Corrections are built on a worker as it joins, in the background, and once."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from fixtures.corrections import demo_spec

from intccms import datagen
from intccms.execute.warmup import CorrectionsWarmup
from intccms.physics.corrections import file_memo, staged_table
from intccms.physics.corrections.spec import _build_corrections

SHARED = Path(os.environ.get("INTCCMS_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
REAL_JSONPOG = Path(os.environ.get("INTCCMS_JSONPOG", SHARED / "jsonpog-integration"))


def test_setup_returns_at_once_and_the_build_is_kept_for_the_chunks(tmp_path: Path) -> None:
    datagen.write_correction_files(str(tmp_path), ["2017"])
    spec = demo_spec(tmp_path)
    _build_corrections.cache_clear()
    plugin = CorrectionsWarmup([spec])
    start = time.perf_counter()
    plugin.setup()
    returned = time.perf_counter() - start
    assert plugin.thread is not None
    plugin.thread.join(timeout=120)
    assert not plugin.thread.is_alive()
    built = _build_corrections.cache_info()
    assert built.currsize == 1 and built.misses == 1
    assert returned < 0.5 * (time.perf_counter() - start)  # the build ran after setup returned
    corrections = spec.build()  # the first chunk: a cache hit, the same object
    assert corrections is _build_corrections(spec)
    assert _build_corrections.cache_info().misses == 1
    assert corrections.objects and all(obj._table_built for obj in corrections.objects)
    assert all(obj._table is not None for obj in corrections.objects)  # the generated JES file has the form


def test_warm_up_reads_back_every_selectors_btag_leaves_a_chunk_would_ask_for(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With the real UL b-tag shape (two-stage form): every selector a fill asks for, the nominal,
    its sources and the JES-linked ones, is read back during the warm-up, none at a chunk."""
    if not (REAL_JSONPOG / "POG" / "BTV" / "2017_UL" / "btagging.json.gz").is_file():
        pytest.skip(f"real UL correction files not found under {REAL_JSONPOG} (set INTCCMS_SHARED_DATA)")
    monkeypatch.setenv("INTCCMS_CACHE_DIR", str(tmp_path / "empty-cache"))
    file_memo.forget()
    spec = demo_spec(REAL_JSONPOG)
    _build_corrections.cache_clear()
    corrections = spec.build()
    assert staged_table._cells.cache_info().currsize == 0  # a driver's build reads none back
    staged = [wc for wc in corrections.weights if wc._staged is not None]
    assert staged, "the real b-tag shape should be evaluated in two stages"
    spec.warm()
    selectors = {(wc.name, sel) for wc in staged for sel in wc.selectors()}
    assert len(selectors) > 50  # nominal, the b-tag sources and one up/down pair per linked JES source
    assert staged_table._cells.cache_info().currsize == len(selectors)
    misses = staged_table._cells.cache_info().misses
    for wc in staged:
        for selector in wc.selectors():
            assert wc._staged is not None and wc._staged.cells(selector) is not None, selector
    assert staged_table._cells.cache_info().misses == misses


def test_a_broken_spec_does_not_break_the_worker(tmp_path: Path) -> None:
    spec = demo_spec(tmp_path / "nothing-here")
    plugin = CorrectionsWarmup([spec])
    plugin.setup()
    assert plugin.thread is not None
    plugin.thread.join(timeout=60)
    assert not plugin.thread.is_alive()  # the error is left for the chunk to report

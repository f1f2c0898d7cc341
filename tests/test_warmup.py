"""Corrections are built on a worker as it joins, in the background, and once."""

from __future__ import annotations

import time
from pathlib import Path

from omegaconf import OmegaConf

from intccms import datagen
from intccms.config import compose_config
from intccms.execute.warmup import CorrectionsWarmup
from intccms.physics.corrections.spec import CorrectionsSpec, _build_corrections


def _spec(jsonpog: Path) -> CorrectionsSpec:
    cfg = compose_config("demo", [f"paths.jsonpog={jsonpog}"], validate=False)
    definitions = OmegaConf.to_container(cfg.corrections.definitions, resolve=True)
    return CorrectionsSpec.create("2017", OmegaConf.to_container(cfg.eras["2017"], resolve=True), definitions,
                                  list(cfg.corrections.by_era["2017"]), str(jsonpog))


def test_setup_returns_at_once_and_the_build_is_kept_for_the_chunks(tmp_path: Path) -> None:
    datagen.write_correction_files(str(tmp_path), ["2017"])
    spec = _spec(tmp_path)
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


def test_a_broken_spec_does_not_break_the_worker(tmp_path: Path) -> None:
    spec = _spec(tmp_path / "nothing-here")
    plugin = CorrectionsWarmup([spec])
    plugin.setup()
    assert plugin.thread is not None
    plugin.thread.join(timeout=60)
    assert not plugin.thread.is_alive()  # the error is left for the chunk to report

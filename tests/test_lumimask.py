"""The golden-JSON lumi mask: certified (run, lumi) ranges, checked against coffea's LumiMask."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from intccms.datagen import write_golden_json
from intccms.physics.lumimask import GoldenJson

SHARED = Path(os.environ.get("INTCCMS_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
REAL = sorted((SHARED / "lumi").glob("Cert_*.txt")) if (SHARED / "lumi").is_dir() else []


def _probe(doc: dict[str, list[list[int]]], n: int = 200_000) -> tuple[np.ndarray, np.ndarray]:
    """Runs of the file and their neighbours, lumis around and inside every range's edges."""
    rng = np.random.default_rng(7)
    runs = np.array(sorted(int(r) for r in doc), dtype=np.int64)
    run = rng.choice(np.concatenate([runs, runs + 1, runs - 1]), n)
    edges = np.array([e for blocks in doc.values() for a, b in blocks for e in (a - 1, a, b, b + 1)])
    lumi = np.where(rng.random(n) < 0.5, rng.choice(edges, n), rng.integers(1, 3000, n))
    return run.astype(np.uint32), np.maximum(lumi, 0).astype(np.uint32)


def _check_against_coffea(path: Path) -> None:
    from coffea.lumi_tools import LumiMask

    doc = json.loads(path.read_text())
    run, lumi = _probe(doc)
    ours = GoldenJson(str(path))(run, lumi)
    np.testing.assert_array_equal(ours, np.asarray(LumiMask(str(path))(run, lumi), dtype=bool))
    assert 0 < ours.mean() < 1


@pytest.mark.realdata
@pytest.mark.skipif(not REAL, reason=f"golden JSONs under {SHARED}/lumi absent")
@pytest.mark.parametrize("path", REAL, ids=lambda p: p.name.split("_")[3] if len(p.name.split("_")) > 3 else p.name)
def test_real_golden_json_certifies_what_coffea_certifies(path: Path) -> None:
    _check_against_coffea(path)


def test_generated_golden_json_certifies_what_coffea_certifies(tmp_path: Path) -> None:
    path = tmp_path / "2018.json"
    write_golden_json(str(path), "2018")
    _check_against_coffea(path)


def test_ranges_edges_overlaps_and_bad_files(tmp_path: Path) -> None:
    path = tmp_path / "golden.json"
    path.write_text(json.dumps({"2": [[10, 20], [15, 30]], "1": [[5, 5]], "3": []}))
    mask = GoldenJson(str(path))
    run = np.array([1, 1, 1, 2, 2, 2, 2, 2, 3, 0, 4], dtype=np.uint32)
    lumi = np.array([4, 5, 6, 9, 10, 25, 30, 31, 1, 5, 1], dtype=np.uint32)
    assert mask(run, lumi).tolist() == [False, True, False, False, True, True, True, False, False, False, False]
    with pytest.raises(FileNotFoundError, match="golden_json"):
        GoldenJson(str(tmp_path / "absent.json"))
    path.write_text("{not json")
    with pytest.raises(ValueError, match=r"golden\.json is not valid JSON"):
        GoldenJson(str(path))
    path.write_text(json.dumps({"1": [[5]]}))
    with pytest.raises(ValueError, match=r"expected \{run: \[\[first, last\]"):
        GoldenJson(str(path))

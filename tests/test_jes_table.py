"""The shared-lookup JES sources give correctionlib's numbers bit for bit, or step aside."""

from __future__ import annotations

import copy
import gzip
import json
import os
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from intccms import datagen
from intccms.physics.corrections.inputs import FlatEvaluator, InputSpec
from intccms.physics.corrections.jes_table import compile_sources
from intccms.physics.corrections.loading import _load_json

SHARED = Path(os.environ.get("INTCCMS_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
JSONPOG = Path(os.environ.get("INTCCMS_JSONPOG", SHARED / "jsonpog-integration"))
LEVELS = ("L1FastJet", "L2Relative", "L3Absolute", "L2L3Residual")


def _source_keys(path: str) -> list[str]:
    """Every AK4 JES uncertainty source of the file's JEC campaign (the levels left out)."""
    names = [c["name"] for c in _load_json(path)["corrections"]]
    campaign = next(n for n in names if n.endswith("_MC_L2Relative_AK4PFchs")).removesuffix("L2Relative_AK4PFchs")
    return [n for n in names if n.startswith(campaign) and n.endswith("_AK4PFchs")
            and n.removeprefix(campaign).removesuffix("_AK4PFchs") not in LEVELS]


def _hard_inputs(eta_edges: np.ndarray, pt_edges: np.ndarray) -> dict[str, np.ndarray]:
    """Jets everywhere, and exactly on, one step beside and beyond every edge."""
    rng = np.random.default_rng(7)
    n = 50_000
    on = np.concatenate([eta_edges, np.nextafter(eta_edges, 9.0), np.nextafter(eta_edges, -9.0)])
    eta = np.concatenate([rng.uniform(-6.0, 6.0, n), on])
    pt_on = np.concatenate([pt_edges, np.nextafter(pt_edges, 1e9), np.nextafter(pt_edges, 0.0)])
    pt = np.concatenate([rng.exponential(80.0, n) + 1.0, rng.choice(pt_on, len(on))])
    pt[:300] = rng.choice(pt_on, 300)
    pt[300:400], pt[400:500] = 2e4, 0.5  # beyond the table on both sides
    return {"JetEta": eta.astype(np.float32).astype(np.float64), "JetPt": pt}


def _assert_identical(path: str, keys: list[str], tier: Counter[str] | None = None) -> None:
    table = compile_sources(path, keys)
    assert table is not None, f"{path}: the sources should have the shared-lookup form"
    fields = _hard_inputs(table.eta_edges, table.pt_edges)
    lookup = table.lookup(fields)
    assert lookup is not None
    # jets on an edge, and those clipped onto the outer edges (beyond the eta range), go to correctionlib
    assert 0 < len(lookup.near) < len(fields["JetEta"]) // 5
    for key in keys:
        exact = FlatEvaluator(path, key, [InputSpec(name="JetEta"), InputSpec(name="JetPt")], era="x")
        want = exact(fields, None)
        got = lookup.source(key, exact)(fields, None)
        assert got.tobytes() == want.tobytes(), key
    if tier is not None:  # the compiled tier evaluated every source with a formula of finite parameters
        assert tier["jes_formula"] == sum(not c and np.isfinite(table.params[i]).all()
                                          for i, c in enumerate(table.constant))


def test_generated_sources_are_identical_to_correctionlib(tmp_path: Path, tier: Counter[str] | None) -> None:
    datagen.write_correction_files(str(tmp_path), ["2017"])
    path = str(next(tmp_path.glob("POG/JME/*/jet_jerc.json.gz")))
    keys = _source_keys(path)
    assert len(keys) >= 20
    _assert_identical(path, keys, tier)


@pytest.mark.realdata
@pytest.mark.skipif(not (JSONPOG / "POG").is_dir(), reason=f"real correction files absent under {JSONPOG}")
@pytest.mark.parametrize("era", ["2016preVFP", "2017", "2018"])
def test_real_ul_sources_are_identical_to_correctionlib(era: str, tier: Counter[str] | None) -> None:
    """Every source of the real file, parameters as correctionlib parses them (its JSON reader
    differs from Python's in the last bit for some of them)."""
    path = str(JSONPOG / "POG" / "JME" / f"{era}_UL" / "jet_jerc.json.gz")
    keys = _source_keys(path)
    assert len(keys) > 60
    _assert_identical(path, keys, tier)


def test_other_forms_and_non_finite_inputs_are_left_to_correctionlib(tmp_path: Path) -> None:
    datagen.write_correction_files(str(tmp_path), ["2017"])
    path = next(tmp_path.glob("POG/JME/*/jet_jerc.json.gz"))
    keys = _source_keys(str(path))
    data = json.loads(gzip.decompress(path.read_bytes()))
    changed = copy.deepcopy(data)
    for corr in changed["corrections"]:
        if corr["name"] == keys[1]:  # one source with its own pt edges
            for row in corr["data"]["content"]:
                row["edges"] = [*row["edges"][:-1], row["edges"][-1] + 1.0]
    other = tmp_path / "other.json"
    other.write_text(json.dumps(changed))
    assert compile_sources(str(other), keys) is None
    assert compile_sources(str(other), keys[:1]) is not None
    assert compile_sources(str(path), ["Summer19UL17_V5_MC_L2Relative_AK4PFchs"]) is None  # a level
    table = compile_sources(str(path), keys)
    assert table is not None
    assert table.lookup({"JetEta": np.array([0.1, np.nan]), "JetPt": np.array([50.0, 60.0])}) is None

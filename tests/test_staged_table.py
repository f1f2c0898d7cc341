"""The two-stage b-tag shape table gives correctionlib's numbers bit for bit, or steps aside."""

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
from intccms.physics.corrections.staged_table import StagedCorrection

SHARED = Path(os.environ.get("INTCCMS_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
JSONPOG = Path(os.environ.get("INTCCMS_JSONPOG", SHARED / "jsonpog-integration"))
KEY = "deepJet_shape"
SPECS = [InputSpec(name="systematic", systematic=True), InputSpec(name="flavor", field="hadronFlavour"),
         InputSpec(name="abseta", field="eta", absolute=True), InputSpec(name="pt", field="pt"),
         InputSpec(name="discriminant", field="btagDeepFlavB")]
# Selector -> the flavours it holds (as the configured sources restrict them).
SELECTORS = {"central": (0, 4, 5), "up_jesAbsoluteStat": (0, 5), "down_jesFlavorQCD": (0, 5), "up_hf": (0, 5),
             "down_lfstats2": (0, 5), "up_cferr1": (4,)}
PT_EDGES = np.array([20.0, 30.0, 40.0, 50.0, 60.0, 70.0, 100.0, 140.0, 10000.0])
DISC_EDGES = np.array([-15.0, 0.0, 0.01, 0.03, 0.0570669201322617, 0.0667986896727422, 0.1032474567634959,
                       0.2096261323382277, 0.4569482713153387, 0.9708480773432508, 1.1])
ETA_EDGES = np.array([0.0, 0.8, 1.6, 2.5])


def _on(edges: np.ndarray) -> np.ndarray:
    return np.concatenate([edges, np.nextafter(edges, np.inf), np.nextafter(edges, -np.inf)])


def _jets(n: int = 40_000) -> dict[str, np.ndarray]:
    """Jets of every flavour everywhere in the table, on and one step beside every edge, and beyond."""
    rng = np.random.default_rng(5)
    flavour = rng.choice(np.array([0, 4, 5], dtype=np.int32), n)
    eta = rng.uniform(-3.0, 3.0, n)
    pt = rng.exponential(60.0, n) + 15.0
    disc = rng.uniform(-0.1, 1.2, n)
    disc[:200] = -1.0  # the NanoAOD default
    eta[200:600] = rng.choice(_on(ETA_EDGES), 400)
    pt[600:1600] = rng.choice(_on(PT_EDGES), 1000)
    disc[1600:2600] = rng.choice(_on(DISC_EDGES), 1000)
    pt[2600:2700], pt[2700:2800] = 2e4, 5.0
    return {"hadronFlavour": flavour, "eta": eta.astype(np.float32).astype(np.float64), "pt": pt,
            "btagDeepFlavB": disc.astype(np.float32).astype(np.float64)}


def _staged_values(path: str, jets: dict[str, np.ndarray], selector: str, rows: np.ndarray,
                   ) -> tuple[np.ndarray, np.ndarray]:
    """The table's values of ``rows``, the jets it leaves to correctionlib filled by it, and the
    mask of those."""
    ev = FlatEvaluator(path, KEY, SPECS, era="x")
    staged = StagedCorrection(path, KEY, "pt")
    cells = staged.cells(selector)
    assert cells is not None, f"{path} {selector}: the table should have the two-stage form"
    fixed = {"flavor": ev.converted("flavor", jets["hadronFlavour"]),
             "abseta": ev.converted("abseta", np.abs(jets["eta"])),
             "discriminant": ev.converted("discriminant", jets["btagDeepFlavB"])}
    prepared = staged.prepare(cells.layout, fixed, ev.converted("pt", jets["pt"][::-1].copy()), {})
    out, exact = StagedCorrection.evaluate(cells, prepared, rows, ev.converted("pt", jets["pt"][rows]))
    fields = {"flavor": jets["hadronFlavour"][rows], "abseta": np.abs(jets["eta"][rows]),
              "pt": jets["pt"][rows], "discriminant": jets["btagDeepFlavB"][rows]}
    if exact.any():
        out[exact] = ev({k: v[exact] for k, v in fields.items()}, selector)
    want = ev(fields, selector)
    return out, want


def _assert_identical(path: str) -> None:
    jets = _jets()
    rows = np.random.default_rng(3).permutation(len(jets["pt"]))[:30_000]
    for selector, flavours in SELECTORS.items():
        held = np.isin(jets["hadronFlavour"], flavours)
        for subset in (np.flatnonzero(held), rows[held[rows]]):
            got, want = _staged_values(path, jets, selector, subset)
            assert got.tobytes() == want.tobytes(), f"{path} {selector}"


@pytest.mark.realdata
@pytest.mark.skipif(not (JSONPOG / "POG").is_dir(), reason=f"real correction files absent under {JSONPOG}")
@pytest.mark.parametrize("era", ["2016preVFP", "2017", "2018"])
def test_real_ul_btag_shape_is_identical_to_correctionlib(era: str, tier: Counter[str] | None) -> None:
    """Every flavour, on and beside every edge, beyond the table; parameters as correctionlib
    parses them; in both tiers."""
    _assert_identical(str(JSONPOG / "POG" / "BTV" / f"{era}_UL" / "btagging.json.gz"))
    assert tier is None or (tier["staged_cubic"] == 2 * len(SELECTORS) and tier["split_bins"] > 0)


def test_generated_btag_shape_is_identical_to_correctionlib(tmp_path: Path) -> None:
    datagen.write_correction_files(str(tmp_path), ["2017"])
    path = next(tmp_path.glob("POG/BTV/*/btagging.json.gz"), None)
    if path is None or StagedCorrection(str(path), KEY, "pt").cells("central") is None:
        pytest.skip("the generated b-tag file has no two-stage form")
    _assert_identical(str(path))


def test_unknown_flavours_and_nan_go_to_correctionlib(tmp_path: Path) -> None:
    path = _real_or_generated(tmp_path)
    staged = StagedCorrection(path, KEY, "pt")
    cells = staged.cells("central")
    assert cells is not None
    fixed = {"flavor": np.array([0, 3, 5, 5], dtype=np.int64), "abseta": np.array([0.5, 0.5, np.nan, 0.5]),
             "discriminant": np.array([0.5, 0.5, 0.5, 0.5])}
    prepared = staged.prepare(cells.layout, fixed, np.array([45.0, 45.0, 45.0, 45.0]), {})
    _, exact = StagedCorrection.evaluate(cells, prepared, np.arange(4), np.array([45.0, 45.0, 45.0, np.nan]))
    assert exact.tolist() == [False, True, True, True]


def test_other_forms_are_left_to_correctionlib(tmp_path: Path) -> None:
    path = Path(_real_or_generated(tmp_path))
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt") as handle:
        data = json.load(handle)
    changed = copy.deepcopy(data)
    for corr in changed["corrections"]:
        if corr["name"] == KEY:
            for formula in corr.get("generic_formulas") or []:
                formula["expression"] = formula["expression"] + "+0"
    other = tmp_path / "other.json"
    other.write_text(json.dumps(changed))
    assert StagedCorrection(str(other), KEY, "pt").cells("central") is None
    assert StagedCorrection(str(path), KEY, "discriminant").cells("central") is None  # the cubic's variable


def _real_or_generated(tmp_path: Path) -> str:
    real = JSONPOG / "POG" / "BTV" / "2017_UL" / "btagging.json.gz"
    if real.is_file():
        return str(real)
    datagen.write_correction_files(str(tmp_path), ["2017"])
    return str(next(tmp_path.glob("POG/BTV/*/btagging.json.gz")))


@pytest.mark.realdata
@pytest.mark.skipif(not (JSONPOG / "POG").is_dir(), reason=f"real correction files absent under {JSONPOG}")
@pytest.mark.parametrize("era", ["2016preVFP", "2017", "2018"])
def test_merged_cells_give_each_flavour_its_selectors_numbers(era: str, tier: Counter[str] | None) -> None:
    """A source for some flavours and the nominal for the others in one pass: each jet gets the
    value correctionlib gives for its own selector, and a JES-linked source shares the nominal's
    layout (so a chunk prepares its jets once for both)."""
    path = str(JSONPOG / "POG" / "BTV" / f"{era}_UL" / "btagging.json.gz")
    jets = _jets()
    ev = FlatEvaluator(path, KEY, SPECS, era="x")
    staged = StagedCorrection(path, KEY, "pt")
    nominal = staged.cells("central")
    assert nominal is not None
    fixed = {"flavor": ev.converted("flavor", jets["hadronFlavour"]),
             "abseta": ev.converted("abseta", np.abs(jets["eta"])),
             "discriminant": ev.converted("discriminant", jets["btagDeepFlavB"])}
    fields = {"flavor": jets["hadronFlavour"], "abseta": np.abs(jets["eta"]), "pt": jets["pt"],
              "discriminant": jets["btagDeepFlavB"]}
    rows = np.arange(len(jets["pt"]))
    for selector, flavours in {k: v for k, v in SELECTORS.items() if k != "central"}.items():
        merged = staged.merged(selector, "central", "flavor", flavours)
        assert merged is not None, selector
        if "jes" in selector:
            assert merged.layout is nominal.layout
        prepared = staged.prepare(merged.layout, fixed, ev.converted("pt", jets["pt"]), {})
        out, exact = StagedCorrection.evaluate(merged, prepared, rows, ev.converted("pt", jets["pt"]))
        member = np.isin(jets["hadronFlavour"], flavours)
        want = np.empty(len(rows))
        want[member] = ev({k: v[member] for k, v in fields.items()}, selector)
        want[~member] = ev({k: v[~member] for k, v in fields.items()}, "central")
        assert exact.mean() < 0.2
        assert out[~exact].tobytes() == want[~exact].tobytes(), f"{era} {selector}"
    assert tier is None or tier["staged_cubic"] == len(SELECTORS) - 1


def test_merged_cells_need_the_category_at_the_root(tmp_path: Path) -> None:
    path = _real_or_generated(tmp_path)
    staged = StagedCorrection(path, KEY, "pt")
    if staged.cells("central") is None:
        pytest.skip("the generated b-tag file has no two-stage form")
    assert staged.merged("up_jesAbsoluteStat", "central", "abseta", (0, 5)) is None
    assert staged.merged("up_cferr1", "central", "flavor", (5,)) is None  # no b subtree under up_cferr1

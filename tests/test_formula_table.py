"""JEC levels through formula tables give correctionlib's numbers bit for bit, or step aside."""

from __future__ import annotations

import json
import os
from pathlib import Path

import awkward as ak
import numpy as np
import pytest

from intccms.physics.corrections import jec as jec_module
from intccms.physics.corrections.formula_table import compile_formula_table
from intccms.physics.corrections.inputs import FlatEvaluator, InputSpec
from intccms.physics.corrections.loading import correction_json

SHARED = Path(os.environ.get("INTCCMS_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
JSONPOG = Path(os.environ.get("INTCCMS_JSONPOG", SHARED / "jsonpog-integration"))
needs_files = pytest.mark.skipif(not (JSONPOG / "POG").is_dir(), reason=f"real correction files absent under {JSONPOG}")
JME = {"2016preVFP": "2016preVFP_UL", "2017": "2017_UL", "2018": "2018_UL"}


def _edges(node: dict, name: str, out: set[float]) -> None:
    if isinstance(node, dict) and node.get("nodetype") == "binning":
        if node["input"] == name:
            out.update(float(e) for e in node["edges"])
        for child in node["content"]:
            _edges(child, name, out)


def _jets(path: str, key: str, n: int = 60_000) -> dict[str, np.ndarray]:
    """Jets everywhere in the table, on and one step beside every edge of every row, beyond
    the edges, and with non-finite inputs."""
    rng = np.random.default_rng(9)
    fields = {"JetEta": rng.uniform(-5.4, 5.4, n), "JetPt": np.exp(rng.uniform(np.log(1.0), np.log(8000.0), n)),
              "JetA": rng.uniform(0.2, 0.8, n), "Rho": rng.uniform(0.0, 70.0, n)}
    corr = correction_json(path, key)
    assert corr is not None
    start = 0
    for name in ("JetEta", "JetPt"):
        edges: set[float] = set()
        _edges(corr["data"], name, edges)
        values = np.asarray(sorted(edges))
        near = np.concatenate([values, np.nextafter(values, np.inf), np.nextafter(values, -np.inf),
                               values * (1 + 5e-10), values * (1 - 5e-10)])
        fields[name][start:start + len(near)] = near
        start += len(near)
    fields["JetPt"][start:start + 3] = [np.nan, np.inf, 0.0]
    fields["JetEta"][start + 3:start + 5] = [np.nan, -np.inf]
    fields["Rho"][start + 5] = np.nan
    return fields


def _assert_identical(path: str, key: str) -> None:
    table = compile_formula_table(path, key)
    assert table is not None, f"{key} should have the formula-table form"
    ev = FlatEvaluator(path, key, [InputSpec(name=i) for i in table.inputs], era="x")
    fields = _jets(path, key)
    inputs = {name: ev.converted(name, fields[name]) for name in table.inputs}
    got = table.evaluate(inputs, lambda picked: ev({k: v.take(picked) for k, v in fields.items()}, None))
    want = ev(fields, None)
    assert got.tobytes() == want.tobytes(), key


@needs_files
@pytest.mark.realdata
@pytest.mark.parametrize(("era", "key"), [
    ("2017", "Summer19UL17_V5_MC_L1FastJet_AK4PFchs"),
    ("2017", "Summer19UL17_V5_MC_L2Relative_AK4PFchs"),
    ("2017", "Summer19UL17_RunB_V5_DATA_L2Relative_AK4PFchs"),
    ("2016preVFP", "Summer19UL16APV_V7_MC_L1FastJet_AK4PFchs"),
])
def test_real_ul_levels_are_identical_to_correctionlib(era: str, key: str) -> None:
    _assert_identical(str(JSONPOG / "POG" / "JME" / JME[era] / "jet_jerc.json.gz"), key)


@needs_files
@pytest.mark.realdata
def test_levels_with_other_functions_stay_with_correctionlib() -> None:
    path = str(JSONPOG / "POG" / "JME" / "2018_UL" / "jet_jerc.json.gz")
    assert compile_formula_table(path, "Summer19UL18_V5_MC_L2Relative_AK4PFchs") is None  # log10, exp
    assert compile_formula_table(path, "Summer19UL18_V5_MC_L1FastJet_AK4PFchs") is None  # log


@needs_files
@pytest.mark.realdata
def test_corrected_jets_are_the_same_with_and_without_tables(monkeypatch: pytest.MonkeyPatch) -> None:
    path = str(JSONPOG / "POG" / "JME" / "2017_UL" / "jet_jerc.json.gz")
    levels = ["Summer19UL17_V5_MC_L1FastJet_AK4PFchs", "Summer19UL17_V5_MC_L2Relative_AK4PFchs"]
    jec = jec_module.JetEnergyCorrection(
        name="jec", collection="Jet", path=path, levels=levels, era="2017", sources=[],
        level_inputs={"JetA": "area", "JetEta": "eta", "JetPt": "@pt", "Rho": "fixedGridRhoFastjetAll"})
    fields = _jets(path, levels[1], 20_000)
    counts = np.full(4_000, 5)
    jets = ak.unflatten(ak.zip({"pt": fields["JetPt"], "eta": fields["JetEta"], "area": fields["JetA"],
                                "mass": fields["JetPt"] * 0.1, "rawFactor": np.full(20_000, 0.1)}), counts)
    events = {"Jet": jets, "fixedGridRhoFastjetAll": np.linspace(0.0, 60.0, 4_000)}
    with_tables = jec.apply(events).pt
    monkeypatch.setattr(jec_module, "compile_formula_table", lambda path, key: None)
    assert with_tables.tobytes() == jec.apply(events).pt.tobytes()


def _write(tmp_path: Path, formulas: list[dict], name: str) -> str:
    pt_edges = [0.0, 10.0, 30.000000000000004, 6500.0]
    rows = [{"nodetype": "binning", "input": "JetPt", "edges": pt_edges, "content": formulas[k:k + 3], "flow": "clamp"}
            for k in (0, 3)]
    corr = {"name": "level", "version": 1, "inputs": [{"name": "JetEta", "type": "real"}, {"name": "JetPt", "type": "real"}],
            "output": {"name": "factor", "type": "real"},
            "data": {"nodetype": "binning", "input": "JetEta", "edges": [-5.0, 0.1 + 0.2, 5.0], "content": rows,
                     "flow": "clamp"}}
    path = tmp_path / f"{name}.json"  # files are cached by path: one per case
    path.write_text(json.dumps({"schema_version": 2, "corrections": [corr]}))
    return str(path)


def _formula(expression: str, k: int) -> dict:
    return {"nodetype": "formula", "expression": expression, "parser": "TFormula", "variables": ["JetPt"],
            "parameters": [0.1 * k + 0.7, 1.0 / 3.0 + k, 2.0 ** 0.5 * (k + 1), 12.345678901234567 * (k + 1)]}


def test_a_generated_arithmetic_level_is_identical_and_other_forms_step_aside(tmp_path: Path) -> None:
    expression = "max(0.0001,[0]+(max(min(x,[3]),[2])-[1])*([1]/[2]-(max(min(x,[3]),[2])*-[0])))"
    path = _write(tmp_path, [_formula(expression, k) for k in range(6)], "arithmetic")
    _assert_identical(path, "level")
    for n, other in enumerate(("[0]*log(x)+[1]", "[0]*pow(x,2)", "[0]^x", "x>[0]")):
        path = _write(tmp_path, [_formula(other, k) for k in range(6)], f"other{n}")
        assert compile_formula_table(path, "level") is None, other
    mixed = [_formula(expression, k) for k in range(5)] + [_formula("[0]+x", 5)]
    assert compile_formula_table(_write(tmp_path, mixed, "mixed"), "level") is None

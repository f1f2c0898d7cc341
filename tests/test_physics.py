"""Objects, cuts, observables, normalisation and histogram filling on hand-made events."""

from __future__ import annotations

import awkward as ak
import numpy as np
import pytest
import vector

from intccms.physics import cuts, objects, observables
from intccms.physics.functors import Functor
from intccms.physics.normalisation import normalisation_factor
from intccms.physics.pipeline import FILL_BLOCK, Observable, WeightColumns, _bin_index, _fill


def _muons() -> ak.Array:
    return ak.Array([
        [{"pt": 60.0, "eta": 0.5, "phi": 0.1, "mass": 0.105, "tightId": True, "miniIsoId": 2},
         {"pt": 70.0, "eta": 2.5, "phi": 0.1, "mass": 0.105, "tightId": True, "miniIsoId": 4}],
        [{"pt": 54.9, "eta": 0.1, "phi": 0.2, "mass": 0.105, "tightId": True, "miniIsoId": 4}],
        [{"pt": 100.0, "eta": -1.0, "phi": 0.3, "mass": 0.105, "tightId": False, "miniIsoId": 4},
         {"pt": 90.0, "eta": -1.0, "phi": 0.3, "mass": 0.105, "tightId": True, "miniIsoId": 1}],
    ])


def test_muon_selection_applies_every_cut() -> None:
    sel = objects.select_muons(_muons())
    assert ak.to_list(ak.num(sel)) == [1, 0, 0]
    assert ak.to_list(sel.pt[0]) == [60.0]


def test_jet_selection_resorts_by_corrected_pt() -> None:
    jets = ak.Array([[
        {"pt": 40.0, "eta": 0.0, "jetId": 6}, {"pt": 80.0, "eta": 1.0, "jetId": 6},
        {"pt": 29.0, "eta": 0.0, "jetId": 6}, {"pt": 90.0, "eta": 2.6, "jetId": 6},
        {"pt": 95.0, "eta": 0.0, "jetId": 2},
    ]])
    sel = objects.select_jets(jets)
    assert ak.to_list(sel.pt[0]) == [80.0, 40.0]


def test_fatjet_selection() -> None:
    fj = ak.Array([[{"pt": 510.0, "particleNet_TvsQCD": 0.6}, {"pt": 600.0, "particleNet_TvsQCD": 0.4}]])
    assert ak.to_list(objects.select_fatjets(fj).pt[0]) == [510.0]


def test_trigger_and_met_uses_any_listed_path() -> None:
    hlt = ak.Array([{"Mu50": False, "TkMu50": True}, {"Mu50": False, "TkMu50": False},
                    {"Mu50": True, "TkMu50": False}])
    met = ak.Array([{"pt": 60.0}, {"pt": 60.0}, {"pt": 40.0}])
    assert cuts.trigger_and_met(hlt, met, ["Mu50", "TkMu50"]).tolist() == [True, False, False]
    assert cuts.trigger_and_met(hlt, met, ["Mu50"]).tolist() == [False, False, False]
    with pytest.raises(KeyError, match="HLT_IsoMu27"):
        cuts.trigger_and_met(hlt, met, ["IsoMu27"])


def test_btag_and_lepton_met_cuts() -> None:
    jets = ak.Array([[{"btagDeepFlavB": 0.1}, {"btagDeepFlavB": 0.5}], [{"btagDeepFlavB": 0.2}], []])
    assert cuts.n_btagged_at_least(jets, 0.3).tolist() == [True, False, False]
    mu = ak.Array([[{"pt": 100.0}], [{"pt": 60.0}], []])
    met = ak.Array([{"pt": 60.0}, {"pt": 60.0}, {"pt": 500.0}])
    assert cuts.lepton_met_sum_above(mu, met, minimum=150.0).tolist() == [True, False, False]


def test_mtt_matches_an_independent_four_vector_sum() -> None:
    rng = np.random.default_rng(3)
    n = 50

    def coll(pt_scale: float, mass: float) -> ak.Array:
        return ak.unflatten(ak.zip({
            "pt": rng.uniform(30, pt_scale, n), "eta": rng.uniform(-2, 2, n),
            "phi": rng.uniform(-np.pi, np.pi, n), "mass": np.full(n, mass),
        }), np.ones(n, dtype=int))

    mu, fj, jet = coll(200, 0.105), coll(900, 170.0), coll(300, 10.0)
    met = ak.zip({"pt": rng.uniform(50, 300, n), "phi": rng.uniform(-np.pi, np.pi, n)})
    ours = observables.mtt(mu, fj, jet, met)

    def vec(c: ak.Array) -> vector.MomentumNumpy4D:
        f = ak.firsts(c)
        return vector.array({"pt": ak.to_numpy(f.pt), "eta": ak.to_numpy(f.eta),
                             "phi": ak.to_numpy(f.phi), "mass": ak.to_numpy(f.mass)})

    nu = vector.array({"pt": ak.to_numpy(met.pt), "eta": np.zeros(n), "phi": ak.to_numpy(met.phi),
                       "mass": np.zeros(n)})
    expected = (vec(mu) + vec(fj) + vec(jet) + nu).mass
    np.testing.assert_allclose(ours, expected, rtol=1e-9)


def test_normalisation_uses_sum_of_weights_not_event_count() -> None:
    # 1000 events with weights +2 and -1 (sum 700): sign-only weights would normalise to 1000.
    assert normalisation_factor(364.31, 41480.0, 700.0) == pytest.approx(364.31 * 41480.0 / 700.0)
    with pytest.raises(ValueError, match="positive"):
        normalisation_factor(1.0, 1.0, 0.0)


def test_bin_index_with_flow_and_nan() -> None:
    obs = Observable(Functor("x.y"), bins=20, start=200.0, stop=3000.0)
    idx = _bin_index(np.array([100.0, 200.0, 339.9, 340.0, 2999.9, 3000.0, 5000.0, np.nan]), obs)
    assert idx.tolist() == [0, 1, 1, 2, 20, 21, 21, -1]


def test_fill_many_weight_columns_in_one_call() -> None:
    out = np.zeros((3, 4, 2))
    idx = np.array([1, 1, 2, -1])
    base = np.array([1.0, 1.0, 2.0, 1.0, 9.0])  # event 4 is not in the channel
    weights = WeightColumns(base, [np.array([1.0, 3.0, 2.5, 7.0, 1.0]), np.array([2.0, 4.0, 3.0, 8.0, 1.0])],
                            np.array([0, 2]))
    _fill(out, idx, np.array([0, 1, 2, 3]), weights)
    assert out[0, :, 0].tolist() == [0, 4, 5, 0]
    assert out[2, :, 0].tolist() == [0, 6, 6, 0]
    assert out[2, :, 1].tolist() == [0, 4 + 16, 36, 0]
    assert out[1].sum() == 0


def test_fill_in_blocks_equals_one_matrix_fill() -> None:
    """More weight columns than one block: every row gets exactly its own column."""
    rng = np.random.default_rng(2)
    n, ncols = 500, 3 * FILL_BLOCK + 5
    idx = rng.integers(-1, 12, n)
    factors = [rng.uniform(0.5, 1.5, n) for _ in range(ncols)]
    base = rng.normal(1.0, 0.3, n)
    rows = rng.permutation(ncols + 4)[:ncols]
    out = np.zeros((ncols + 4, 12, 2))
    _fill(out, idx, np.arange(n), WeightColumns(base, factors, rows))
    for k, row in enumerate(rows):
        w = factors[k] * base
        ok = idx >= 0
        expected = np.bincount(idx[ok], weights=w[ok], minlength=12)
        np.testing.assert_allclose(out[row, :, 0], expected, rtol=1e-12)
    untouched = np.setdiff1d(np.arange(ncols + 4), rows)
    assert not out[untouched].any()


def test_collection_fields_from_era_constants() -> None:
    from intccms.physics.events import branch_names, resolve_fields

    colls = {"HLT": ("@triggers",), "Muon": ("pt", "eta")}
    r16 = resolve_fields(colls, {"triggers": ["Mu50", "TkMu50"]})
    r17 = resolve_fields(colls, {"triggers": ["Mu50"]})
    assert r16["HLT"] == ("Mu50", "TkMu50") and r17["HLT"] == ("Mu50",)
    assert branch_names(r17, ()) == ["HLT_Mu50", "Muon_eta", "Muon_pt"]
    assert resolve_fields({"X": ("@era", "a", "a")}, {"era": "2018"})["X"] == ("2018", "a")
    with pytest.raises(KeyError, match="@trigers"):
        resolve_fields({"HLT": ("@trigers",)}, {"triggers": ["Mu50"]})



def test_simulation_only_patterns_are_globs() -> None:
    from intccms.physics.events import branch_names

    names = branch_names({"GenPart": ("pt",), "Jet": ("pt", "hadronFlavour")}, ("genWeight", "run", "LHEWeight_originalXWGTUP"),
                         exclude=("GenPart_*", "Jet_hadronFlavour", "genWeight", "LHE*"))
    assert names == ["Jet_pt", "run"]


def test_skim_of_data_drops_every_simulation_only_branch(tmp_path) -> None:
    """Data skims must not carry simulation-only branches (names and globs of analysis.mc_only)."""
    import pyarrow.parquet as pq

    from intccms import datagen
    from intccms.config import compose_config
    from intccms.execute.tasks import skim_task
    from intccms.plan.workitems import WorkItem

    src = tmp_path / "mc.root"
    datagen.ensure_generated(src, "ttbar_semilep", "2018", 400, 7, compression="zstd")
    cfg = compose_config("demo", [])
    a = cfg.analysis
    skim = Functor.from_config(dict(a.skim))
    collections = {k: tuple(v) for k, v in a.collections.items()}
    consts = {"triggers": ["Mu50"], "era": "2018", "year": "2018"}
    item = WorkItem("d", str(src), 0, 0, 0, 400)
    for drop, name in ((frozenset(a.mc_only), "data.parquet"), (frozenset(), "mc.parquet")):
        _, record = skim_task(item, str(tmp_path / name), "parquet", tuple(a.skim_keep), drop, skim,
                              collections, consts, None, {})
        assert not record.failed, record.error
    data_cols = set(pq.read_schema(tmp_path / "data.parquet").names)
    mc_cols = set(pq.read_schema(tmp_path / "mc.parquet").names)
    assert {"genWeight", "Pileup_nTrueInt", "Jet_hadronFlavour"} <= mc_cols
    assert not data_cols & {"genWeight", "Pileup_nTrueInt", "Jet_hadronFlavour"}
    assert {"Jet_pt", "Muon_pt", "HLT_Mu50", "PuppiMET_pt"} <= data_cols

"""The trained classifier: training on generated data, determinism, storage round trip, refusal of
mismatching models, behaviour in JES and weight-only fills, Dask workers, and the demo_mva job."""

from __future__ import annotations

import dataclasses
import gzip
import json
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
from fixtures.demo import SMALL_2017, small_overrides
from fixtures.mva import (
    RECORDS,
    context,
    credential_variables,
    prepare,
    score_file,
    selected_events,
    training_set,
)
from omegaconf import OmegaConf

from intccms.config import compose_config
from intccms.config.mva import ModelKind, to_plain
from intccms.mva import (
    EmptyClassError,
    FeatureError,
    FeatureSpec,
    ModelMismatchError,
    MvaConfigError,
    TrainingSet,
    feature_matrix,
    load_model,
    load_mva_config,
    train,
)
from intccms.mva.features import specs_from_config
from intccms.mva.observable import score
from intccms.mva.stage import check_mva, run_training
from intccms.mva.train import weighted_auc
from intccms.physics.pipeline import ChunkAnalysis
from intccms.plan.analysis import build_plan
from intccms.plan.run import build_run_plan
from intccms.storage import open_source

pytest.importorskip("sklearn")

DATASETS = SMALL_2017[:3]  # Z' signal, semileptonic tt, W+jets (HT 600-800), era 2017
SIGNAL, TTBAR = DATASETS[0], DATASETS[1]


def _run_plan(cfg):
    return build_run_plan(cfg, run_id="test")


def _compose(data: Path, out: Path, *extra: str):
    return compose_config("demo_mva", small_overrides(data, out, DATASETS, "mva.training.epochs=25", *extra))


@pytest.fixture(scope="module")
def setup(demo_data: Path, tmp_path_factory: pytest.TempPathFactory):
    cfg = _compose(demo_data, tmp_path_factory.mktemp("mva"))
    prepared = prepare(cfg)
    return cfg, prepared, training_set(cfg, prepared, cfg.mva)


def _mva(cfg, kind: str = "mlp", **training):
    mva = load_mva_config(cfg.mva)
    model = dataclasses.replace(mva.model, kind=ModelKind(kind))
    if kind == "bdt":
        training.setdefault("learning_rate", 0.1)
    return dataclasses.replace(mva, model=model, training=dataclasses.replace(mva.training, **training))


def _features(mva) -> tuple[FeatureSpec, ...]:
    return specs_from_config(mva.features)


@pytest.fixture(scope="module")
def mlp(setup, tmp_path_factory):
    """A network trained on the generated events and saved to a local folder."""
    cfg, _, data = setup
    mva = _mva(cfg)
    result = train(data, _features(mva), mva, config_doc=to_plain(mva))
    url = str(tmp_path_factory.mktemp("model") / "mlp")
    result.model.save(url, training_data={"x": data.x, "y": data.y})
    return result, url


@pytest.mark.parametrize("kind", ["mlp", "bdt"])
def test_training_separates_signal_from_ttbar_on_held_out_events(setup, kind) -> None:
    cfg, _, data = setup
    mva = _mva(cfg, kind)
    result = train(data, _features(mva), mva)
    held_out = (result.split == 2) & np.isin(data.dataset, [SIGNAL, TTBAR])
    assert np.count_nonzero(held_out & (data.y == 1)) > 100 and np.count_nonzero(held_out & (data.y == 0)) > 100
    auc = weighted_auc(data.y[held_out], result.scores[held_out], result.train_weight[held_out])
    assert auc > 0.8, f"{kind}: test AUC signal vs tt {auc:.3f}"
    assert result.model.meta["metrics"]["auc_test"] > 0.8
    assert len(result.history["train_loss"]) == len(result.history["validation_loss"]) >= 2
    assert result.history["train_loss"][-1] < result.history["train_loss"][0]


@pytest.mark.parametrize("kind", ["mlp", "bdt"])
def test_same_seed_and_data_give_the_same_scores(setup, kind) -> None:
    cfg, _, data = setup
    mva = _mva(cfg, kind, epochs=8)
    a = train(data, _features(mva), mva).scores
    b = train(data, _features(mva), mva).scores
    assert np.array_equal(a, b)
    if kind == "mlp":  # the seed matters (initial weights and batch order)
        other = _mva(cfg, kind, epochs=8, seed=7)
        assert not np.array_equal(a, train(data, _features(other), other).scores)


def test_save_load_round_trip_gives_identical_scores(setup, mlp) -> None:
    cfg, _, data = setup
    result, url = mlp
    loaded = load_model(url, expected_features=_features(load_mva_config(cfg.mva)))
    assert np.array_equal(loaded.predict(data.x), result.model.predict(data.x))
    assert np.array_equal(loaded.predict(data.x), result.scores)
    meta = json.loads((Path(url) / "model.json").read_text())
    assert [f["name"] for f in meta["features"]] == list(cfg.mva.features)
    assert meta["inputs"] == ["muons", "fatjets", "jets", "PuppiMET"]
    assert meta["class_labels"] == ["background", "signal"]
    import sklearn

    assert meta["versions"]["scikit-learn"] == sklearn.__version__
    assert meta["training"]["model"]["kind"] == "mlp" and meta["training"]["training"]["seed"] == 12345
    assert meta["scaling"]["kind"] == "standard" and len(meta["scaling"]["offset"]) == len(cfg.mva.features)
    assert set(meta["data"]["events_per_dataset"]) == set(DATASETS)
    with np.load(Path(url) / "training_data.npz") as stored:
        assert np.array_equal(stored["x"], data.x)


def test_model_trained_on_other_features_is_refused(setup, tmp_path) -> None:
    cfg, _, data = setup
    full = _mva(cfg, epochs=3)
    fewer = dataclasses.replace(full, features={k: v for k, v in full.features.items() if k != "max_btag"})
    url = str(tmp_path / "fewer")
    train(TrainingSet(data.x[:, :-1], data.y, data.weight), _features(fewer), fewer).model.save(url)
    with pytest.raises(ModelMismatchError, match=r"trained on other features.*max_btag"):
        load_model(url, expected_features=_features(full))
    with pytest.raises(ModelMismatchError, match="expects"):
        score(model=url, features=list(full.features))
    # at start-up: a score observable pointing at that model, with the configuration's features
    cfg2 = _compose(Path(cfg.paths.generated_data), tmp_path / "out", "workflow.run_mva_training=false",
                    f"analysis.observables.mva_score.params.model={url}")
    with pytest.raises(MvaConfigError, match=r"analysis\.observables\.mva_score\.params\.features"):
        check_mva(_run_plan(cfg2))


def test_model_of_another_library_version_is_refused(mlp, tmp_path) -> None:
    url = tmp_path / "copy"
    shutil.copytree(mlp[1], url)
    meta = json.loads((url / "model.json").read_text())
    meta["versions"]["scikit-learn"] = "0.0.1"
    (url / "model.json").write_text(json.dumps(meta))
    with pytest.raises(ModelMismatchError, match=r"scikit-learn 0\.0\.1.*install scikit-learn==0\.0\.1"):
        load_model(str(url))
    with pytest.raises(FileNotFoundError, match=r"no trained model.*run_mva_training"):
        load_model(str(tmp_path / "nothing"))


def test_bad_input_is_named(setup) -> None:
    cfg, _, data = setup
    spec = FeatureSpec("n_electrons", "intccms.mva.features.count", ("Electron",))
    with pytest.raises(FeatureError, match=r"mva feature 'n_electrons'.*\['Electron'\]"):
        feature_matrix([spec], {"jets": None}, 3)
    node = dict(cfg.mva)
    with pytest.raises(MvaConfigError, match=r"mva\.training\.epoks.*did you mean 'epochs'"):
        load_mva_config({**node, "training": {"epoks": 3}})
    with pytest.raises(MvaConfigError, match=r"mva\.model\.layers: mixed activations \['relu', 'tanh'\]"):
        load_mva_config({**node, "model": {"layers": [{"size": 8, "activation": "relu"},
                                                       {"size": 8, "activation": "tanh"}]}})
    with pytest.raises(MvaConfigError, match=r"mva\.features\.bad\.inputs: \['Electron'\]"):
        bad = _compose(Path(cfg.paths.generated_data), Path(cfg.output_dir),
                       "+mva.features.bad={function: intccms.mva.features.count, inputs: [Electron]}")
        check_mva(_run_plan(bad))
    mva = _mva(cfg, epochs=2)
    only_bkg = TrainingSet(data.x[data.y == 0], data.y[data.y == 0], data.weight[data.y == 0])
    with pytest.raises(EmptyClassError, match=r"mva class 'signal' \(mva\.classes\.signal: \['ZPrime\*'\]\) has 0"):
        train(only_bkg, _features(mva), mva)


def _zero_central_jes(src: Path, dst: Path, source: str) -> None:
    """Copy the correction tree with one JES source set to 0 for |eta| < 1.3."""
    shutil.copytree(src, dst)
    path = next((dst / "POG" / "JME").glob("2017_UL/jet_jerc.json.gz"))
    doc = json.loads(gzip.decompress(path.read_bytes()))
    corr = next(c for c in doc["corrections"] if c["name"].endswith(f"_{source}_AK4PFchs"))
    edges = corr["data"]["edges"]
    for i, row in enumerate(corr["data"]["content"]):
        if edges[i] >= -1.3 and edges[i + 1] <= 1.3:
            row["content"] = [0.0] * len(row["content"])
    path.write_bytes(gzip.compress(json.dumps(doc).encode()))


def _recording_analysis(cfg, mlp_url: str, jsonpog: Path, variations: str):
    recorded = _compose(
        Path(cfg.paths.generated_data), Path(cfg.output_dir), f"paths.jsonpog={jsonpog}",
        "paths.generate_corrections=false", f"workflow.variations=[{variations}]",
        "analysis.event_columns=[run,luminosityBlock,event,genWeight,fixedGridRhoFastjetAll]",
        "analysis.observables.mva_score.function=fixtures.mva.recording_score",
        "analysis.observables.mva_score.inputs=[muons,fatjets,jets,PuppiMET,event]",
        f"analysis.observables.mva_score.params.model={mlp_url}")
    prepared = prepare(recorded)
    ds = prepared["datasets"][TTBAR]
    analysis = ChunkAnalysis(prepared["plan"], context(recorded, ds, prepared["constants"]),
                             prepared["specs"]["2017"].build())
    with open_source(ds.files[0]) as src:
        columns = src.read(analysis.branches(), 0, src.num_entries)
    RECORDS.clear()
    result = analysis.run(columns)
    return analysis.plan, result


def test_jes_fill_changes_the_score_exactly_where_selected_jets_change(setup, mlp, tmp_path) -> None:
    cfg, _, _ = setup
    jsonpog = tmp_path / "jsonpog"
    _zero_central_jes(Path(cfg.paths.jsonpog), jsonpog, "FlavorQCD")
    plan, _ = _recording_analysis(cfg, mlp[1], jsonpog, "jesFlavorQCD_up")
    assert plan.variations == ("nominal", "jesFlavorQCD_up")
    assert len(RECORDS) == 2  # the nominal fill and the JES fill
    (ev0, jets0, s0), (ev1, jets1, s1) = RECORDS
    common, i0, i1 = np.intersect1d(ev0, ev1, assume_unique=True, return_indices=True)
    assert len(common) > 100
    import awkward as ak

    same_count = ak.to_numpy(ak.num(jets0[i0])) == ak.to_numpy(ak.num(jets1[i1]))
    same_pt = np.array([same_count[k] and bool(np.array_equal(ak.to_numpy(jets0[i0][k]), ak.to_numpy(jets1[i1][k])))
                        for k in range(len(common))])
    score_changed = s0[i0] != s1[i1]
    assert 0 < np.count_nonzero(~same_pt) < len(common)  # both kinds of events occur
    assert np.array_equal(score_changed, ~same_pt)


def test_weight_only_variation_reuses_every_nominal_score(setup, mlp) -> None:
    cfg, _, _ = setup
    plan, result = _recording_analysis(cfg, mlp[1], Path(cfg.paths.jsonpog), "pileup*,muon_id*")
    assert len(plan.variations) == 5
    assert len(RECORDS) == 1  # one fill: the weight variations are extra weight columns
    h = result.hists[("CMS_WORKSHOP", "mva_score")]
    nominal = h[0, :, 0]
    for i, name in enumerate(plan.variations[1:], start=1):
        assert np.array_equal(h[i, :, 0] != 0, nominal != 0), name
        assert not np.allclose(h[i, :, 0], nominal), name


def test_scores_on_dask_workers_equal_scores_here(setup, mlp, dask_client) -> None:
    cfg, prepared, _ = setup
    ds = prepared["datasets"][TTBAR]
    ctx = context(cfg, ds, prepared["constants"])
    args = (prepared["plan"], ctx, prepared["specs"]["2017"], "CMS_WORKSHOP", ds.files[0], mlp[1],
            ["muons", "fatjets", "jets", "PuppiMET"])
    here = score_file(*args)
    worker = sorted(dask_client.scheduler_info()["workers"])[0]
    before = dask_client.run(_loads, workers=[worker])[worker]
    remote = [dask_client.submit(score_file, *args, pure=False, workers=[worker]).result() for _ in range(2)]
    assert len(here) > 100
    assert np.array_equal(remote[0], here) and np.array_equal(remote[1], here)
    assert dask_client.run(_loads, workers=[worker])[worker] - before <= 1  # loaded once per worker


def _loads() -> int:
    from intccms.mva.observable import loads

    return loads()


@pytest.mark.e2e
def test_demo_mva_trains_then_histograms_the_score(dask_client, demo_data, tmp_path) -> None:
    from intccms.execute.job import run_job

    cfg = _compose(demo_data, tmp_path, "workflow.variations=[jesFlavorQCD*,pileup*]", "workflow.run_plots=false",
                   "mva.training.epochs=15")
    res = run_job(cfg, client=dask_client)
    assert res.mva is not None and res.mva["metrics"]["auc_test"] > 0.8
    model_dir = tmp_path / "mva" / "model"
    assert {p.name for p in model_dir.iterdir()} >= {"model.json", "estimator.pkl", "training_data.npz"}
    for name in ("loss", "roc", "scores", "importance"):
        assert (tmp_path / "mva" / f"{name}.png").stat().st_size > 5_000
    with open(res.histograms_path, "rb") as handle:
        hists = pickle.load(handle)["histograms"]["CMS_WORKSHOP"]
    h_score, h_mtt = hists["mva_score"], hists["mtt"]
    assert list(h_score.axes["variation"]) == ["nominal", "jesFlavorQCD_up", "jesFlavorQCD_down",
                                               "pileup_2017_up", "pileup_2017_down"]
    # the same events fill both observables, in every variation
    np.testing.assert_allclose(h_score.view(flow=True).value.sum(axis=-1), h_mtt.view(flow=True).value.sum(axis=-1),
                               rtol=1e-9, atol=1e-12)
    tt = h_score[{"process": "TTToSemiLeptonic"}]
    assert not np.allclose(tt[{"variation": "jesFlavorQCD_up"}].values(), tt[{"variation": "nominal"}].values())
    centres = h_score.axes[-1].centers

    def mean(process: str) -> float:
        v = h_score[{"process": process, "variation": "nominal"}].values()
        return float((v * centres).sum() / v.sum())

    assert mean("ZPrimeToTT_M2000_W200") > mean("TTToSemiLeptonic") + 0.3


@pytest.mark.s3
def test_model_reaches_scoring_through_s3(setup, mlp, s3_server, monkeypatch) -> None:
    """The model folder on S3 (as on the Kubernetes backend): saved there, scored from there."""
    import fsspec

    from intccms.mva.observable import get_model
    from intccms.storage import Credentials, Secret, StorageOptions

    cfg, prepared, _ = setup
    creds = Credentials(Secret("INTCCMS_S3_ACCESS_KEY_ID", s3_server.key),
                        Secret("INTCCMS_S3_SECRET_ACCESS_KEY", s3_server.secret), s3_server.endpoint)
    options = StorageOptions(timeout_s=10.0, retries=1, credentials=creds)
    fsspec.filesystem("s3", **options.fsspec_kwargs("s3")).mkdir("mva-models")
    url = "s3://mva-models/zprime/model"
    load_model(mlp[1]).save(url, options)
    # a worker knows only the variables the credentials plugin (or a Secret) sets
    monkeypatch.setenv("INTCCMS_S3_ACCESS_KEY_ID", s3_server.key)
    monkeypatch.setenv("INTCCMS_S3_SECRET_ACCESS_KEY", s3_server.secret)
    ds = prepared["datasets"][TTBAR]
    ns = selected_events(prepared["plan"], context(cfg, ds, prepared["constants"]),
                         prepared["specs"]["2017"].build(), "CMS_WORKSHOP", ds.files[0])
    inputs = [ns[k] for k in ("muons", "fatjets", "jets", "PuppiMET")]
    storage = {"s3_endpoint": s3_server.endpoint, "timeout_s": 10.0}
    from_s3 = score(*inputs, model=url, features=list(cfg.mva.features), storage=storage)
    assert np.array_equal(from_s3, score(*inputs, model=mlp[1]))
    assert get_model(url, storage) is get_model(url, storage)  # loaded once


def test_feature_functions_match_awkward_on_any_layout() -> None:
    import awkward as ak

    from intccms.mva import features as F

    jets = ak.zip({"pt": ak.Array([[50.0, 40.0, 31.0], [], [80.0]]),
                   "phi": ak.Array([[0.1, 2.0, -1.0], [], [3.0]]),
                   "btag": ak.Array([[0.1, 0.9, 0.3], [], [0.05]])})
    met = ak.zip({"pt": ak.Array([60.0, 70.0, 80.0]), "phi": ak.Array([-3.0, 0.0, 0.2])})
    for arr in (jets, jets[[0, 1, 2]], jets[jets.pt > 0]):  # packed, indexed and masked layouts
        np.testing.assert_array_equal(F.leading(arr, "pt"), [50.0, 0.0, 80.0])
        np.testing.assert_array_equal(F.leading(arr, "pt", index=1, default=-1.0), [40.0, -1.0, -1.0])
        np.testing.assert_array_equal(F.count(arr), [3, 0, 1])
        np.testing.assert_allclose(F.scalar_sum(arr), [121.0, 0.0, 80.0])
        np.testing.assert_array_equal(F.maximum(arr, "btag", default=-1.0), [0.9, -1.0, 0.05])
    dphi = F.delta_phi(jets, met)
    np.testing.assert_allclose(dphi, [3.1, 0.0, 2.8])
    assert np.all((dphi >= 0) & (dphi <= np.pi))


@pytest.mark.parametrize("kind", ["mlp", "bdt"])
def test_an_event_scores_the_same_in_any_batch(setup, kind) -> None:
    """The property the JES fills rely on: a score does not depend on the other events."""
    cfg, _, data = setup
    mva = _mva(cfg, kind, epochs=3)
    model = train(data, _features(mva), mva).model
    full = model.predict(data.x)
    rng = np.random.default_rng(3)
    for n in (1, 2, 3, 7, 255, 257, 1001, len(data.y) - 1):
        idx = np.sort(rng.choice(len(data.y), n, replace=False))
        assert np.array_equal(model.predict(data.x[idx]), full[idx]), n
    if kind == "mlp":  # the blocked forward pass is the estimator's own function
        np.testing.assert_allclose(full, model.estimator.predict_proba(model.scaler.transform(data.x))[:, 1],
                                   rtol=0, atol=1e-12)


def test_negative_weights_and_class_balance(setup) -> None:
    from intccms.mva.train import training_weights

    cfg, _, _ = setup
    y = np.array([1, 1, 0, 0, 0, 0])
    w = np.array([2.0, -1.0, 10.0, 10.0, -10.0, 20.0])
    absw = training_weights(y, w, _mva(cfg, negative_weights="abs"))
    assert np.all(absw > 0)
    np.testing.assert_allclose([absw[y == 1].sum(), absw[y == 0].sum()], [3.0, 3.0])  # half the events each
    np.testing.assert_allclose(absw[:2] / absw[1], [2.0, 1.0])  # |w| keeps the relative weights
    dropped = training_weights(y, w, _mva(cfg, negative_weights="drop"))
    assert dropped[1] == 0 and dropped[4] == 0 and np.all(dropped[[0, 2, 3, 5]] > 0)
    np.testing.assert_allclose([dropped[y == 1].sum(), dropped[y == 0].sum()], [3.0, 3.0])


def test_score_observable_without_a_model_fails_at_start_up(setup, tmp_path) -> None:
    cfg, _, _ = setup
    cfg2 = _compose(Path(cfg.paths.generated_data), tmp_path, "workflow.run_mva_training=false")
    with pytest.raises(MvaConfigError, match=r"analysis\.observables\.mva_score\.params\.model: no trained model"):
        check_mva(_run_plan(cfg2))
    cfg3 = _compose(Path(cfg.paths.generated_data), tmp_path, "analysis.observables.mva_score.inputs=[jets,muons]")
    with pytest.raises(MvaConfigError, match=r"mva_score\.inputs: \['jets', 'muons'\] must be exactly"):
        check_mva(_run_plan(cfg3))


def _inputs(cfg, prepared) -> list:
    """The score observable's inputs for the selected tt events of one file."""
    ds = prepared["datasets"][TTBAR]
    ns = selected_events(prepared["plan"], context(cfg, ds, prepared["constants"]),
                         prepared["specs"]["2017"].build(), "CMS_WORKSHOP", ds.files[0])
    return [ns[k] for k in ("muons", "fatjets", "jets", "PuppiMET")]


def test_model_with_a_feature_defined_differently_is_refused(setup, mlp, tmp_path) -> None:
    """Same feature names, but jet1_pt is the leading jet's eta: refused at start-up and at run time."""
    cfg, prepared, data = setup
    mva = _mva(cfg, epochs=3)
    changed = dict(mva.features)
    changed["jet1_pt"] = dataclasses.replace(changed["jet1_pt"], params={"field_name": "eta"})
    other = dataclasses.replace(mva, features=changed)
    url = str(tmp_path / "eta")
    train(data, _features(other), other).model.save(url)
    detail = r"'jet1_pt' \(params: model \{'field_name': 'eta'\}, configuration \{'field_name': 'pt'\}\)"
    with pytest.raises(ModelMismatchError, match=rf"model {url} was trained on other features.*{detail}"):
        load_model(url, expected_features=_features(mva))
    # start-up, whether or not this job trains (the model is not the one it writes)
    for training in ("false", "true"):
        bad = _compose(Path(cfg.paths.generated_data), tmp_path / "out", f"workflow.run_mva_training={training}",
                       f"analysis.observables.mva_score.params.model={url}")
        with pytest.raises(MvaConfigError, match=rf"mva_score\.params\.model: .*{detail}.*compared with mva\.features"):
            check_mva(_run_plan(bad))
    # run time: the observable carries the full definitions (features: ${mva.features})
    definitions = OmegaConf.to_container(cfg.mva.features, resolve=True)
    inputs = _inputs(cfg, prepared)
    with pytest.raises(ModelMismatchError, match=detail):
        score(*inputs, model=url, features=definitions)
    right = score(*inputs, model=mlp[1], features=definitions)  # the matching model is accepted
    assert len(right) > 100 and np.array_equal(right, score(*inputs, model=mlp[1]))
    # the same definitions at start-up, through the configuration (a job that trains mva.output)
    ok = _compose(Path(cfg.paths.generated_data), tmp_path / "out2",
                  "analysis.observables.mva_score.params.features=${mva.features}")
    plan = build_plan(ok, prepared["specs"])
    assert plan.observables["mva_score"].functor.params["features"] == definitions
    check_mva(_run_plan(ok))
    drifted = ok.copy()
    definitions["ht"]["params"] = {"field_name": "eta"}
    params = OmegaConf.to_container(drifted.analysis.observables.mva_score.params)
    OmegaConf.update(drifted, "analysis.observables.mva_score.params", {**params, "features": definitions},
                     merge=False)
    with pytest.raises(MvaConfigError, match=r"mva_score\.params\.features: the definitions differ from mva\.features"):
        check_mva(_run_plan(drifted))


def test_class_without_usable_weight_is_refused(setup) -> None:
    cfg, _, data = setup
    negative = np.where(data.y == 1, -np.abs(data.weight), data.weight)  # a signal of only negative weights
    assert np.count_nonzero(data.y == 1) > 100
    drop = _mva(cfg, epochs=2, negative_weights="drop")
    with pytest.raises(EmptyClassError, match=r"mva class 'signal' \(mva\.classes\.signal: \['ZPrime\*'\]\) has "
                       r"\d+ selected events in channel CMS_WORKSHOP but no usable weight .*negative_weights: drop"):
        train(TrainingSet(data.x, data.y, negative), _features(drop), drop)
    zero_bkg = np.where(data.y == 0, 0.0, data.weight)
    with pytest.raises(EmptyClassError, match=r"mva class 'background' .* no usable weight"):
        train(TrainingSet(data.x, data.y, zero_bkg), _features(drop), drop)
    # with abs the same signal events train with |w|, balanced against the background
    keep = _mva(cfg, epochs=2, negative_weights="abs")
    result = train(TrainingSet(data.x, data.y, negative), _features(keep), keep)
    np.testing.assert_allclose(result.train_weight[data.y == 1].sum(), result.train_weight[data.y == 0].sum())


@pytest.mark.parametrize("cls", ["signal", "background"])
def test_class_matching_no_dataset_is_named(setup, tmp_path, cls) -> None:
    from types import SimpleNamespace

    cfg, prepared, _ = setup
    odd = _compose(Path(cfg.paths.generated_data), tmp_path, f"mva.classes.{cls}=[NoSuchProcess*]")
    metadata = {name: SimpleNamespace(sum_genweight=1.0) for name in prepared["datasets"]}
    with pytest.raises(MvaConfigError, match=rf"mva class '{cls}' \(mva\.classes\.{cls}: \['NoSuchProcess\*'\]\) "
                       r"matches no simulated dataset of this run \(processes: \[.*'TTToSemiLeptonic'"):
        # fails before the cluster is used
        run_training(_run_plan(odd), None, metadata, tmp_path)


@pytest.mark.xrootd
def test_model_round_trip_through_xrootd(setup, mlp, xrootd_server) -> None:
    from intccms.storage import StorageOptions

    cfg, prepared, data = setup
    result, local = mlp
    url = xrootd_server.url("models", "zprime")
    options = StorageOptions(timeout_s=10.0, retries=1)
    load_model(local).save(url, options, training_data={"x": data.x, "y": data.y})
    on_server = xrootd_server.export / "models" / "zprime"
    assert {p.name for p in on_server.iterdir()} >= {"model.json", "estimator.pkl", "training_data.npz"}
    loaded = load_model(url, options, expected_features=_features(load_mva_config(cfg.mva)))
    assert np.array_equal(loaded.predict(data.x), result.scores)
    inputs = _inputs(cfg, prepared)
    from_root = score(*inputs, model=url, features=list(cfg.mva.features), storage={"timeout_s": 10.0})
    assert len(from_root) > 100 and np.array_equal(from_root, score(*inputs, model=local))


@pytest.mark.s3
def test_model_on_s3_is_read_on_a_dask_worker(setup, mlp, s3_server, monkeypatch) -> None:
    """As on the Kubernetes backend: the worker reads the model from S3 with the credentials the
    job's CredentialsPlugin gives it, and scores exactly as the test process does."""
    import fsspec
    from distributed import Client, LocalCluster

    from intccms.storage import Credentials, CredentialsPlugin, Secret, StorageOptions
    from intccms.storage.credentials import CREDENTIAL_VARS

    cfg, prepared, _ = setup
    for var in CREDENTIAL_VARS:  # the worker processes inherit nothing from this process
        monkeypatch.delenv(var, raising=False)
    creds = Credentials(Secret("INTCCMS_S3_ACCESS_KEY_ID", s3_server.key),
                        Secret("INTCCMS_S3_SECRET_ACCESS_KEY", s3_server.secret), s3_server.endpoint)
    options = StorageOptions(timeout_s=10.0, retries=1, credentials=creds)
    fsspec.filesystem("s3", **options.fsspec_kwargs("s3")).mkdir("mva-workers")
    url = "s3://mva-workers/zprime/model"
    load_model(mlp[1]).save(url, options)
    ds = prepared["datasets"][TTBAR]
    args = (prepared["plan"], context(cfg, ds, prepared["constants"]), prepared["specs"]["2017"], "CMS_WORKSHOP",
            ds.files[0])
    inputs = ["muons", "fatjets", "jets", "PuppiMET"]
    here = score_file(*args, mlp[1], inputs)
    with (LocalCluster(n_workers=1, threads_per_worker=1, processes=True, host="127.0.0.1",
                       dashboard_address="127.0.0.1:0") as cluster, Client(cluster) as client):
        assert list(client.run(credential_variables).values()) == [[]]
        client.register_plugin(CredentialsPlugin(creds))  # what execute/job.py registers
        assert list(client.run(credential_variables).values()) == [sorted(creds.environ())]
        # no storage options: endpoint and keys come from the worker's environment only
        remote = client.submit(score_file, *args, url, inputs, pure=False).result()
    assert len(here) > 100
    assert np.array_equal(remote, here)


@pytest.mark.e2e
def test_training_from_skims_uses_the_same_events(setup, dask_client, demo_data, tmp_path) -> None:
    """Skim, then train from the skims: the training set is the one built from NanoAOD."""
    from intccms.execute.job import run_job

    _, _, data = setup
    cfg = _compose(demo_data, tmp_path, "workflow.save_skimmed_output=true", "workflow.use_skimmed_input=true",
                   "workflow.run_analysis=false", "workflow.run_plots=false", "mva.training.epochs=2",
                   "mva.plots=false")
    res = run_job(cfg, client=dask_client)
    skim_dir = str(cfg.workflow.skim_dir)
    read = {r.file for r in res.mva["records"] if r.stage == "mva_training"}
    assert read and all(f.startswith(skim_dir) and f.endswith(".parquet") for f in read), sorted(read)[:3]
    model_dir = Path(res.mva["model"])
    meta = json.loads((model_dir / "model.json").read_text())
    assert meta["data"]["skimmed_input"] is True
    with np.load(model_dir / "training_data.npz") as stored:
        assert np.array_equal(stored["x"], data.x)
        np.testing.assert_allclose(stored["weight"], data.weight, rtol=1e-12, atol=0)
        assert np.array_equal(stored["y"], data.y)

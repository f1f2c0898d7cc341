"""Configured functions that ask for coffea's behaviours get four-vectors; the others do not.

Observables written with coffea's candidates (``intccms.physics.vectors``) give the numbers of the
plain ones to 1e-12 relative, in the nominal fill and in every JES fill of a generated chunk;
a functor whose inputs lack the fields coffea's records need is a configuration error naming
its key.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import awkward as ak
import numpy as np
import pytest

from intccms import datagen
from intccms.config import compose_config
from intccms.core.errors import ConfigError
from intccms.physics.behaviours import BehaviourError, resolve_behaviour
from intccms.physics.functors import Functor
from intccms.physics.pipeline import ChunkAnalysis, ChunkContext
from intccms.plan.analysis import build_plan, corrections_specs, era_constants
from intccms.storage import open_source

ERA = "2018"
MUON_FIELDS = "[pt,eta,phi,mass,tightId,miniIsoId,charge]"
# The channel fills the plain mtt and its four-vector versions, with one bin per ~1 MeV, so that
# equal histograms mean equal numbers event by event.
OBSERVABLES = {
    "mtt_vector": ("intccms.physics.vectors.mtt", "vector", "[muons,fatjets,jets,PuppiMET]"),
    "mtt_candidate": ("intccms.physics.vectors.mtt", "candidate", "[muons,fatjets,jets,PuppiMET]"),
    "mtt_nanoevents": ("intccms.physics.vectors.mtt", "nanoevents", "[muons,fatjets,jets,PuppiMET]"),
    "dr_vector": ("intccms.physics.vectors.min_delta_r", "vector", "[muons,jets]"),
}


def _overrides(jsonpog: Path) -> list[str]:
    over = [f"paths.jsonpog={jsonpog}", "paths.generate_corrections=false",
            f"analysis.collections.Muon={MUON_FIELDS}"]
    for name, (function, kind, inputs) in OBSERVABLES.items():
        key = f"+analysis.observables.{name}"
        over += [f"{key}.function={function}", f"{key}.behaviour={kind}", f"{key}.inputs={inputs}",
                 f"{key}.binning.bins=5000", f"{key}.binning.start=0", f"{key}.binning.stop=5000"]
    over.append(f"analysis.channels.CMS_WORKSHOP.observables=[mtt,{','.join(OBSERVABLES)}]")
    return over


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    work = tmp_path_factory.mktemp("behaviours")
    jsonpog = datagen.write_correction_files(work / "jsonpog-integration", [ERA])
    made = datagen.ensure_generated(work / "zprime.root", "zprime", ERA, 3000, 4321,
                                    params={"mass": 2000, "width": 200})
    cfg = compose_config("demo", _overrides(jsonpog), validate=False)
    specs = corrections_specs(cfg, [ERA])
    yield {"cfg": cfg, "specs": specs, "path": made.path, "jsonpog": jsonpog}


def _analysis(setup: dict[str, Any]) -> ChunkAnalysis:
    plan = build_plan(setup["cfg"], setup["specs"])
    consts = era_constants(setup["cfg"], [ERA])[ERA]
    ctx = ChunkContext(process="zprime", era=ERA, is_data=False, constants=consts)
    return ChunkAnalysis(plan, ctx, setup["specs"][ERA].build())


def test_behaviour_observables_equal_the_plain_ones_in_every_fill(setup: dict[str, Any]) -> None:
    ana = _analysis(setup)
    assert ana.plan.observables["mtt"].functor.behaviour is None
    with open_source(str(setup["path"])) as src:
        columns = src.read(ana.branches(), 0, src.num_entries)
    plain_mtt = ana.plan.observables["mtt"].functor
    values: dict[str, list[np.ndarray]] = {name: [] for name in ("mtt", *OBSERVABLES)}

    # Record every observable's values in every fill through a wrapper around its functor.
    def spy(name: str, functor: Functor) -> Functor:
        class Spy(Functor):
            def __call__(self, namespace: Any) -> Any:
                out = np.asarray(functor(namespace), dtype=np.float64)
                values[name].append(out)
                return out
        return Spy(functor.function, functor.inputs, functor.params, functor.behaviour)

    for name, obs in ana.plan.observables.items():
        if name in values:
            object.__setattr__(obs, "functor", spy(name, obs.functor))
    result = ana.run(columns)
    fills = len(values["mtt"])
    assert fills > 40, "the JES fills are missing: the comparison would cover the nominal fill only"
    assert result.events_selected > 100
    for name in ("mtt_vector", "mtt_candidate", "mtt_nanoevents"):
        assert len(values[name]) == fills
        for got, want in zip(values[name], values["mtt"], strict=True):
            np.testing.assert_allclose(got, want, rtol=1e-12, atol=0, err_msg=name)
    assert plain_mtt.behaviour is None


def test_delta_r_with_behaviours_equals_a_plain_computation(setup: dict[str, Any]) -> None:
    ana = _analysis(setup)
    plan = ana.plan
    with open_source(str(setup["path"])) as src:
        columns = src.read(ana.branches(), 0, src.num_entries)
    from intccms.physics.events import build_events

    ns: dict[str, Any] = build_events(columns, ana.collections, plan.event_columns)
    for name, functor in plan.objects.items():
        ns[name] = functor(ns)
    has_muon = np.asarray(ak.num(ns["muons"], axis=1) > 0)
    sub = {k: v[has_muon] for k, v in ns.items()}
    got = plan.observables["dr_vector"].functor(sub)
    # In double precision, as the plain functions compute.
    mu = ak.values_astype(sub["muons"][:, 0], np.float64)
    jets = ak.values_astype(sub["jets"][["eta", "phi"]], np.float64)
    dphi = (jets.phi - mu.phi + np.pi) % (2 * np.pi) - np.pi
    dr = np.sqrt((jets.eta - mu.eta) ** 2 + dphi**2)
    want = np.asarray(ak.fill_none(ak.min(dr, axis=1), np.inf))
    assert np.count_nonzero(np.isfinite(want)) > 100
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=0)


def test_behaviours_without_coffeas_names_are_config_errors_naming_the_key(setup: dict[str, Any]) -> None:
    from intccms.config.validate import validate_config

    jsonpog = setup["jsonpog"]
    base = _overrides(jsonpog)
    # The reference Muon collection reads no charge: coffea's candidates need one.
    no_charge = [*[o for o in base if not o.startswith("analysis.collections.Muon")]]
    with pytest.raises(ConfigError, match=r"analysis\.observables\.mtt_candidate\.behaviour: input 'muons' "
                                          r"\(built from Muon\) lacks \['charge'\].*analysis\.collections\.Muon"):
        validate_config(compose_config("demo", no_charge, validate=False))
    # HLT has no four-vector fields.
    hlt = [*base, "analysis.observables.mtt.behaviour=vector", "analysis.observables.mtt.inputs=[muons,HLT]"]
    with pytest.raises(ConfigError, match=r"analysis\.observables\.mtt\.behaviour: input 'HLT' has neither "
                                          r"pt, eta, phi, mass nor pt, phi"):
        validate_config(compose_config("demo", hlt, validate=False))
    unknown = [*base, "analysis.baseline.one_muon.behaviour=lorentz"]
    with pytest.raises(ConfigError, match=r"analysis\.baseline\.one_muon\.behaviour: 'lorentz' is not one of"):
        validate_config(compose_config("demo", unknown, validate=False))


def test_resolution_follows_objects_to_their_collection_and_fills_jet_charge() -> None:
    collections = {"Muon": ["pt", "eta", "phi", "mass", "charge"], "Jet": ["pt", "eta", "phi", "mass"],
                   "PuppiMET": ["pt", "phi"]}
    objects = {"muons": ["Muon"], "jets": ["Jet"], "clean_jets": ["jets", "muons"]}
    spec = resolve_behaviour("nanoevents", ["muons", "clean_jets", "PuppiMET", "@wp", "genWeight"],
                             collections, objects)
    assert [(s.name, s.record, s.zero_fields) for s in spec.inputs] == [
        ("muons", "Muon", ()), ("clean_jets", "Jet", ("charge",)), ("PuppiMET", "MissingET", ())]
    candidate = resolve_behaviour("candidate", ["jets", "PuppiMET"], collections, objects)
    assert [s.record for s in candidate.inputs] == ["PtEtaPhiMCandidate", "PolarTwoVector"]
    with pytest.raises(BehaviourError, match="not built from a collection"):
        resolve_behaviour("vector", ["orphan"], collections, {"orphan": ["@wp"]})
    # On a worker, an object whose fields differ from its collection's is named with its function.
    jets = ak.Array([[{"pt": 40.0, "eta": 0.1, "phi": 0.2}]])
    with pytest.raises(BehaviourError, match=r"function f: input 'jets' has no field\(s\) \['mass'\]"):
        candidate.attach([jets, ak.Array([{"pt": 1.0, "phi": 0.0}])], "f")

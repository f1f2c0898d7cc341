"""The flat-array fast paths give exactly what awkward's generic operations give."""

from __future__ import annotations

from collections import Counter

import awkward as ak
import numpy as np
import pytest

from intccms.physics import compiled, cuts, objects, observables
from intccms.physics.jagged import (
    FlatCollection,
    TakenFields,
    _descending_in_groups,
    as_flat,
    field_function,
    flat_view,
    from_flat,
    leading_fields,
    of_same_arrays,
    select_objects,
    take_events,
)


def _jets(seed: int = 3, n_events: int = 400) -> ak.Array:
    rng = np.random.default_rng(seed)
    counts = rng.integers(0, 7, n_events)
    counts[-3:] = 0  # empty events at the end are the edge case of per-event reductions
    n = int(counts.sum())
    offsets = np.concatenate([[0], np.cumsum(counts)])
    fields = {
        "pt": rng.exponential(40.0, n) + 10.0,
        "eta": rng.uniform(-3.0, 3.0, n),
        "phi": rng.uniform(-np.pi, np.pi, n),
        "mass": rng.uniform(0.0, 20.0, n),
        "jetId": rng.choice(np.array([0, 2, 6], dtype=np.int32), n),
        "btagDeepFlavB": rng.uniform(0.0, 1.0, n),
    }
    return from_flat(offsets, fields)


def _generic(array: ak.Array) -> ak.Array:
    """The same content in a layout the fast paths do not take (an indexed list)."""
    generic = array[ak.argsort(ak.local_index(array), axis=1)]
    assert flat_view(generic) is None
    return generic


def _same(a: ak.Array, b: ak.Array) -> None:
    assert ak.to_list(a) == ak.to_list(b)


def test_fast_and_generic_layouts_select_the_same_sorted_jets() -> None:
    jets = _jets()
    # Shuffle pT within events so that sorting really has work to do.
    flat = flat_view(jets)
    assert flat is not None
    shifted = dict(flat.fields)
    shifted["pt"] = flat.fields["pt"] * np.random.default_rng(9).uniform(0.7, 1.3, len(flat.fields["pt"]))
    varied = from_flat(flat.offsets, shifted)
    fast = objects.select_jets(varied)
    slow = objects.select_jets(_generic(varied))
    _same(fast, slow)
    pts = ak.to_list(fast.pt)
    assert all(p == sorted(p, reverse=True) for p in pts)
    assert any(len(p) for p in pts)


def test_cuts_and_counts_agree_with_awkward() -> None:
    jets = objects.select_jets(_jets())
    generic = _generic(jets)
    for n in (0, 1, 2, 3):
        np.testing.assert_array_equal(cuts.count_at_least(jets, n=n), cuts.count_at_least(generic, n=n))
        np.testing.assert_array_equal(cuts.count_equal(jets, n=n), cuts.count_equal(generic, n=n))
    for wp in (0.3, 0.7):
        fast = cuts.n_btagged_at_least(jets, wp, n=1)
        np.testing.assert_array_equal(fast, cuts.n_btagged_at_least(generic, wp, n=1))
        expected = [sum(b > wp for b in ev) >= 1 for ev in ak.to_list(jets.btagDeepFlavB)]
        np.testing.assert_array_equal(fast, expected)


def test_take_events_keeps_the_right_events() -> None:
    jets = _jets()
    mask = np.random.default_rng(5).uniform(size=len(jets)) < 0.4
    _same(take_events(jets, mask), jets[mask])
    met = ak.zip({"pt": np.arange(len(jets), dtype=float), "phi": np.zeros(len(jets))})
    _same(take_events(met, mask), met[mask])
    column = ak.Array(np.arange(len(jets)))
    _same(take_events(column, mask), column[mask])
    # A filtered list (starts/stops) is still read through the fast path after slicing.
    _same(take_events(take_events(jets, mask), mask[mask]), jets[mask])
    for every in (np.zeros(len(jets), dtype=bool), np.ones(len(jets), dtype=bool)):
        _same(take_events(jets, every), jets[every])


def test_leading_fields_and_mtt_match_the_generic_path() -> None:
    jets = objects.select_jets(_jets())
    has = np.asarray(ak.num(jets) > 0)
    jets = take_events(jets, has)
    lead = leading_fields(jets, ("pt", "eta"), "jet")
    np.testing.assert_array_equal(lead["pt"], ak.to_numpy(ak.firsts(jets.pt)))
    met = ak.zip({"pt": np.full(len(jets), 80.0), "phi": np.linspace(-3, 3, len(jets))})
    fast = observables.mtt(jets, jets, jets, met)
    slow = observables.mtt(_generic(jets), _generic(jets), _generic(jets), met)
    np.testing.assert_allclose(fast, slow, rtol=0, atol=0)


def test_mtt_of_a_fills_events_is_the_same_in_both_tiers(tier: Counter[str] | None) -> None:
    """As a fill computes it: one muon and one fat jet per candidate event, the selected jets and
    MET, all taken for the fill's events; the parts from the candidates are computed once."""
    rng = np.random.default_rng(8)
    jets = objects.select_jets(_jets(seed=6, n_events=3000))
    n = len(jets)

    def one_each(mass: float) -> ak.Array:
        return from_flat(np.arange(n + 1), {"pt": rng.exponential(100.0, n) + 50.0, "eta": rng.uniform(-2.4, 2.4, n),
                                            "phi": rng.uniform(-np.pi, np.pi, n), "mass": np.full(n, mass)})

    muons, fatjets = one_each(0.105), one_each(172.5)
    met = ak.zip({"pt": rng.exponential(80.0, n), "phi": rng.uniform(-np.pi, np.pi, n)})
    mask = (np.asarray(ak.num(jets)) > 0) & (rng.uniform(size=n) < 0.7)

    def fill() -> np.ndarray:
        return observables.mtt(*(take_events(v, mask) for v in (muons, fatjets, jets, met)))

    got = fill()
    with compiled.numpy_tier():
        want = fill()
    generic = observables.mtt(*(v[mask] for v in (muons, fatjets, _generic(jets), met)))
    assert got.tobytes() == want.tobytes()
    np.testing.assert_array_equal(got, generic)
    assert tier is None or tier["mtt"] == 1


def test_leading_of_an_empty_event_is_an_error_naming_the_object() -> None:
    jets = _jets()
    with pytest.raises(ValueError, match="leading jet"):
        leading_fields(jets, ("pt",), "jet")


def test_select_objects_with_nothing_kept(tier: Counter[str] | None) -> None:
    flat = flat_view(_jets())
    assert flat is not None
    nothing = np.zeros(len(flat.fields["pt"]), dtype=bool)
    for collection in (flat, flat.with_fields({}, ("pt", flat.descending("pt")))):
        out = select_objects(collection, nothing, sort_by="pt")
        assert len(out) == len(flat)
        assert ak.sum(ak.num(out)) == 0
    assert tier is None or tier["select_in_order"] == 1


def test_as_flat_of_a_generic_layout_flattens_the_named_fields() -> None:
    jets = _jets()
    generic = _generic(jets)
    flat = as_flat(generic, ["pt", "jetId", "notAField"])
    view = flat_view(jets)
    assert view is not None
    np.testing.assert_array_equal(flat.offsets, view.offsets)
    np.testing.assert_array_equal(flat.fields["pt"], view.fields["pt"])
    np.testing.assert_array_equal(flat.fields["jetId"], view.fields["jetId"])
    assert set(flat.fields) == {"pt", "jetId"}
    assert as_flat(jets, ["pt"]) is view  # packed layouts are viewed, not copied


def test_a_likely_order_gives_the_same_selection_as_sorting(tier: Counter[str] | None) -> None:
    """With the nominal order as a hint, a varied pT (reordered, tied and NaN within some events;
    float64 and float32; fields read through a parent's rows) selects exactly the objects, in
    exactly the order, that sorting without the hint gives, in both tiers."""
    flat = flat_view(_jets(seed=4, n_events=2000))
    assert flat is not None
    rng = np.random.default_rng(2)
    nominal = flat.with_fields({})
    hint = ("pt", nominal.descending("pt"))
    n = len(flat.fields["pt"])
    pt = flat.fields["pt"] * rng.uniform(0.9, 1.1, n)  # reorders some neighbours
    starts = flat.offsets[:-1][flat.counts >= 2]
    pt[starts[:40] + 1] = pt[starts[:40]]  # ties: the earlier object comes first
    keep = rng.uniform(size=n) < 0.8
    # Only ties out of order: the nominal pT with an object raised to the one the nominal order
    # lists just before it, at a later position (ties go by position: it now comes first).
    ties = flat.fields["pt"].copy()
    first, second = hint[1][:-1], hint[1][1:]
    pairs = np.flatnonzero((first > second) & (nominal.event_index()[1:] == nominal.event_index()[:-1]))[:30]
    ties[second[pairs]] = ties[first[pairs]]
    parent_rows = rng.permutation(n)  # objects whose fields are a parent's, read through rows
    cases = 0
    for varied in (pt, pt.astype(np.float32), np.where(np.arange(n) == int(starts[50]), np.nan, pt), ties):
        fields = {**flat.fields, "pt": varied}
        parent = {k: np.empty_like(v) for k, v in fields.items()}
        for k, v in fields.items():
            parent[k][parent_rows] = v
        for through_rows in (False, True):
            # A new TakenFields per call: one that has taken pT already is read without its rows.
            plain = select_objects(FlatCollection(flat.offsets, TakenFields(parent, parent_rows) if through_rows
                                                  else fields), keep, sort_by="pt")
            hinted = select_objects(FlatCollection(flat.offsets, TakenFields(parent, parent_rows) if through_rows
                                                   else fields, None, hint), keep, sort_by="pt")
            plain_view, hinted_view = flat_view(plain), flat_view(hinted)
            assert plain_view is not None and hinted_view is not None
            np.testing.assert_array_equal(hinted_view.offsets, plain_view.offsets)
            np.testing.assert_array_equal(hinted_view.index, plain_view.index)
            for name in flat.fields:
                np.testing.assert_array_equal(hinted_view.fields[name], plain_view.fields[name])  # NaN == NaN
            cases += 1
    assert tier is None or tier["select_in_order"] == cases


def test_taken_fields_are_taken_when_read() -> None:
    jets = objects.select_jets(_jets())
    mask = np.random.default_rng(6).uniform(size=len(jets)) < 0.5
    taken = take_events(jets, mask)
    view = flat_view(taken)
    assert view is not None and isinstance(view.fields, TakenFields)
    generic = _generic(jets)[mask]
    np.testing.assert_array_equal(view.fields["eta"], ak.to_numpy(ak.flatten(generic.eta)))
    _same(taken, generic)  # the indexed layout is an ordinary awkward array
    again = take_events(taken, mask[mask] & (np.arange(int(mask.sum())) % 3 > 0))  # rows composed twice
    _same(again, generic[np.arange(len(generic)) % 3 > 0])


def test_a_function_of_a_parents_field_is_computed_once_and_never_for_another_array() -> None:
    calls: list[int] = []

    def cos(values: np.ndarray) -> np.ndarray:
        calls.append(len(values))
        return np.cos(values)

    phi = np.linspace(-3.0, 3.0, 1000, dtype=np.float32)
    rows = np.array([5, 999, 0, 5])
    for picked in (rows, rows[::-1]):
        got = field_function(cos, TakenFields({"phi": phi}, picked), "phi")
        assert got.tobytes() == np.cos(phi.astype(np.float64)[picked]).tobytes()
    assert calls == [1000]
    for _ in range(20):  # new arrays, ids possibly reused: never another array's values
        other = np.linspace(0.0, 1.0, 1000)
        np.testing.assert_array_equal(field_function(cos, TakenFields({"phi": other}, rows), "phi"), np.cos(other[rows]))
        del other
    assert field_function(cos, {"phi": phi[rows]}, "phi").tobytes() == np.cos(phi[rows].astype(np.float64)).tobytes()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sorting_within_events_equals_lexsort_with_ties_nan_and_long_events(dtype: type) -> None:
    """The padded-row sort gives lexsort's permutation: ties and signed zeros in their order,
    NaN last, infinities at their ends, events longer than a row width through lexsort."""
    rng = np.random.default_rng(11)
    counts = np.concatenate([rng.integers(1, 13, 3000), [70, 1, 200]])
    event = np.repeat(np.arange(len(counts)) * 3, counts)  # gaps between event numbers, as in a subset
    key = np.round(rng.exponential(40.0, len(event)), 0).astype(dtype)  # many ties
    special = rng.choice(len(key), 400, replace=False)
    key[special[:100]] = np.nan
    key[special[100:200]] = np.inf
    key[special[200:300]] = -0.0
    key[special[300:]] = 0.0
    expected = np.lexsort((-key, event))
    np.testing.assert_array_equal(_descending_in_groups(event, key), expected)
    short = event < 3 * 3000
    np.testing.assert_array_equal(_descending_in_groups(event[short], key[short]),
                                  np.lexsort((-key[short], event[short])))
    assert len(_descending_in_groups(event[:0], key[:0])) == 0


def test_of_same_arrays_computes_again_for_other_arrays_even_at_a_reused_address() -> None:
    calls: list[int] = []

    def quality(jet_id: np.ndarray, eta: np.ndarray) -> np.ndarray:
        calls.append(1)
        return (jet_id >= 4) & (np.abs(eta) < 2.5)

    jet_id, eta = np.array([6, 2, 6]), np.array([0.1, 0.2, 3.0])
    first = of_same_arrays("q", (jet_id, eta), quality)
    assert of_same_arrays("q", (jet_id, eta), quality) is first and len(calls) == 1
    np.testing.assert_array_equal(first, [True, False, False])
    other = eta.copy()
    other[0] = 2.6
    np.testing.assert_array_equal(of_same_arrays("q", (jet_id, other), quality), [False, False, False])
    assert len(calls) == 2
    for _ in range(20):  # freed arrays: a new one at the same address is not mistaken for them
        jet_id, eta = np.array([6, 6, 6]), np.array([0.1, 0.2, 0.3])
        np.testing.assert_array_equal(of_same_arrays("q", (jet_id, eta), quality), [True, True, True])

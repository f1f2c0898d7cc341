"""Object collections as one flat numpy array per field: the fast path of every fill.

A JES fill re-selects jets, recounts them, finds the leading one and reduces scale factors over
them, 54 times per chunk. Through awkward's generic machinery each of these steps costs
milliseconds of dispatch and broadcasting; on flat arrays with offsets they are single numpy
calls. :func:`flat_view` exposes that representation for the layouts the pipeline builds (a
packed list of records of plain numbers) and returns ``None`` for anything else, so every
function keeps an awkward fallback and accepts any array a configured functor may pass.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import awkward as ak
import numpy as np

from intccms.physics import compiled


class TakenFields(Mapping[str, np.ndarray]):
    """The fields of objects picked by position from a parent's fields, each taken when first read.

    A JES fill selects, sorts and sub-selects the jets several times but reads few of their
    fields (pt for the cuts, four for the leading jet, four for the b-tag weight of the selected
    events): the picks compose into one index, and a field costs one gather when it is read.
    """

    def __init__(self, source: Mapping[str, np.ndarray], rows: np.ndarray,
                 record: ak.contents.RecordArray | None = None) -> None:
        self.source = source
        self.rows = rows
        self._taken: dict[str, np.ndarray] = {}
        # The awkward record of the source, built once for every pick of the same parent.
        self.record = record

    def __getitem__(self, name: str) -> np.ndarray:
        values = self._taken.get(name)
        if values is None:
            values = self.source[name].take(self.rows)
            self._taken[name] = values
        return values

    def __contains__(self, name: object) -> bool:
        return name in self.source

    def __iter__(self) -> Iterator[str]:
        return iter(self.source)

    def __len__(self) -> int:
        return len(self.source)

    def at(self, name: str, positions: np.ndarray) -> np.ndarray:
        """``self[name][positions]`` without taking the whole field."""
        values = self._taken.get(name)
        if values is not None:
            return values.take(positions)
        return self.source[name].take(self.rows.take(positions))

    def take(self, positions: np.ndarray) -> TakenFields:
        return TakenFields(self.source, self.rows.take(positions), self.record)


def take_fields(fields: Mapping[str, np.ndarray], positions: np.ndarray) -> TakenFields:
    """The objects at ``positions``, their fields taken only when read."""
    if isinstance(fields, TakenFields):
        return fields.take(positions)
    return TakenFields(fields, positions)


def field_at(fields: Mapping[str, np.ndarray], name: str, positions: np.ndarray) -> np.ndarray:
    """``fields[name][positions]``, without taking the whole of a field not yet read."""
    if isinstance(fields, TakenFields):
        return fields.at(name, positions)
    return fields[name][positions]


@dataclass(frozen=True)
class FlatCollection:
    """A jagged collection of records: ``offsets`` (events + 1) and one flat array per field."""

    offsets: np.ndarray
    fields: Mapping[str, np.ndarray]
    index: np.ndarray | None = field(default=None, compare=False, repr=False)
    # A likely order: (field, permutation listing each event's objects by that field, descending),
    # e.g. the nominal order of JES-varied jets. Selections check it and sort only what differs.
    order: tuple[str, np.ndarray] | None = field(default=None, compare=False, repr=False)
    _counts: np.ndarray | None = field(default=None, compare=False, repr=False)
    _one_each: bool | None = field(default=None, compare=False, repr=False)

    @property
    def counts(self) -> np.ndarray:
        """Objects per event (computed once: every cut and take of a fill reads them)."""
        counts = self._counts
        if counts is None:
            counts = np.diff(self.offsets)
            object.__setattr__(self, "_counts", counts)
        return counts

    def one_each(self) -> bool:
        """Whether every event has exactly one object (muons after a one-muon cut); computed once."""
        known = self._one_each
        if known is None:
            known = len(self) == int(self.offsets[-1] - self.offsets[0]) and bool(np.all(self.counts == 1))
            object.__setattr__(self, "_one_each", known)
        return known

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def event_index(self) -> np.ndarray:
        """Event number of every object (computed once; collections sharing offsets share it)."""
        index = self.index
        if index is None:
            index = np.repeat(np.arange(len(self), dtype=np.int64), self.counts)
            object.__setattr__(self, "index", index)
        return index

    def with_fields(self, fields: Mapping[str, np.ndarray],
                    order: tuple[str, np.ndarray] | None = None) -> FlatCollection:
        """The same objects with some fields replaced (a JES-varied copy), and a likely order."""
        return FlatCollection(self.offsets, {**self.fields, **fields}, self.event_index(), order, self.counts)

    def descending(self, name: str) -> np.ndarray:
        """The permutation listing each event's objects by ``name``, descending (ties in order)."""
        count = int(self.offsets[-1])
        return _sorted_within_events(np.arange(count), self.event_index(), self.fields[name])

    def to_array(self) -> ak.Array:
        return from_flat(self.offsets, self.fields, self.index, self.order)


def from_flat(
    offsets: np.ndarray, fields: Mapping[str, np.ndarray], index: np.ndarray | None = None,
    order: tuple[str, np.ndarray] | None = None,
) -> ak.Array:
    """Build a ``var * {fields}`` array without copying the field arrays (taken fields become an
    indexed view of their source, so that nothing is taken until read; :func:`flat_view` finds
    their flat form through the array's memo, not by walking that layout)."""
    length = int(offsets[-1])
    content: ak.contents.Content
    if isinstance(fields, TakenFields):
        if fields.record is None:
            source = fields.source
            arrays = [ak.contents.NumpyArray(np.asarray(values)) for values in source.values()]
            sizes = {len(values) for values in source.values()}
            fields.record = ak.contents.RecordArray(arrays, list(source), length=sizes.pop() if sizes else 0)
        rows = ak.index.Index64(np.asarray(fields.rows, dtype=np.int64))
        content = ak.contents.IndexedArray(rows, fields.record)
    else:
        arrays = [ak.contents.NumpyArray(np.asarray(values)) for values in fields.values()]
        content = ak.contents.RecordArray(arrays, list(fields), length=length)
    layout = ak.contents.ListOffsetArray(ak.index.Index64(np.asarray(offsets, dtype=np.int64)), content)
    array = ak.Array(layout)
    # Remember the flat form so that the next step does not have to walk the layout again.
    kept = fields if isinstance(fields, TakenFields) else dict(fields)
    array._intccms_flat = (array.layout, FlatCollection(np.asarray(offsets, dtype=np.int64), kept, index, order))
    return array


def _numpy_fields(record: Any, start: int, stop: int) -> dict[str, np.ndarray] | None:
    if not isinstance(record, ak.contents.RecordArray) or record.is_tuple:
        return None
    fields: dict[str, np.ndarray] = {}
    for name in record.fields:
        content = record.content(name)
        if not isinstance(content, ak.contents.NumpyArray) or content.data.ndim != 1:
            return None
        fields[name] = np.asarray(content.data)[start:stop]
    return fields


def flat_view(objects: Any) -> FlatCollection | None:
    """The flat representation of a list-of-records array, or ``None`` for other layouts."""
    if not isinstance(objects, ak.Array):
        return None
    layout = objects.layout
    known = getattr(objects, "_intccms_flat", None)
    if known is not None and known[0] is layout:  # not replaced by an in-place assignment since
        return known[1]
    if isinstance(layout, ak.contents.ListArray):
        starts = np.asarray(layout.starts.data)
        stops = np.asarray(layout.stops.data)
        if len(starts) and not np.array_equal(starts[1:], stops[:-1]):
            return None
        first = int(starts[0]) if len(starts) else 0
        offsets = np.concatenate([[first], stops]).astype(np.int64)
    elif isinstance(layout, ak.contents.ListOffsetArray):
        offsets = np.asarray(layout.offsets.data, dtype=np.int64)
    else:
        return None
    start, stop = int(offsets[0]), int(offsets[-1])
    fields = _numpy_fields(layout.content, start, stop)
    if fields is None:
        return None
    return FlatCollection(offsets - start if start else offsets, fields)


def as_flat(objects: Any, names: Iterable[str]) -> FlatCollection:
    """The flat form of a list-of-records array: a view of every field where the layout allows
    one, otherwise the named fields flattened (the fields absent from the records are left out)."""
    view = flat_view(objects)
    if view is not None:
        return view
    counts = np.asarray(ak.to_numpy(ak.num(objects, axis=1)), dtype=np.int64)
    offsets = np.zeros(len(counts) + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    flat = ak.flatten(objects, axis=1)
    present = set(ak.fields(flat))
    return FlatCollection(offsets, {n: np.asarray(ak.to_numpy(flat[n])) for n in names if n in present})


def select_objects(objects: FlatCollection, keep: np.ndarray, sort_by: str | None = None) -> ak.Array:
    """Objects where ``keep`` (one flag per object) holds, optionally sorted by a field, descending
    (ties in their order in ``objects``)."""
    hinted = sort_by is not None and objects.order is not None and objects.order[0] == sort_by
    if hinted and (fast := _select_compiled(objects, keep)) is not None:
        return fast
    if hinted:
        assert objects.order is not None and sort_by is not None
        hint = objects.order[1]
        kept = keep.take(hint)
        index = np.compress(kept, hint)  # a boolean index is 3-4x slower than compress
        # The hint permutes objects within their events: the event numbers stay in place.
        event = np.compress(kept, objects.event_index())
        key = field_at(objects.fields, sort_by, index)
        if np.isnan(key).any():  # NaN has no place in a descending order: sorted as without hint
            index = np.sort(index)
            event = objects.event_index().take(index)
            hinted = False
    else:
        index = np.flatnonzero(keep)
        event = objects.event_index()[index]
    counts = np.bincount(event, minlength=len(objects))
    offsets = np.zeros(len(objects) + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    if hinted and len(event) > 1:
        index = _resorted_within_events(index, event, key)
    elif sort_by is not None and len(event) > 1:
        index = _sorted_within_events(index, event, objects.fields[sort_by][index])
    # Sorting moves objects only within their events: ``event`` stays each position's event
    # number, which every later cut and take of these objects reads.
    return from_flat(offsets, take_fields(objects.fields, index), event)


def _select_compiled(objects: FlatCollection, keep: np.ndarray) -> ak.Array | None:
    """The hinted selection, sorted, through the compiled kernel where this process has it and
    the arrays have its types (``None`` otherwise, and where a key is NaN: numpy decides those)."""
    kernels = compiled.kernels()
    if kernels is None or objects.order is None:
        return None
    name, hint = objects.order
    fields = objects.fields
    parent = fields if isinstance(fields, TakenFields) and name not in fields._taken else None
    source = parent.source[name] if parent is not None else fields[name]
    rows = parent.rows if parent is not None else _NO_ROWS
    event_of = objects.event_index()
    if not (keep.dtype == np.bool_ and keep.shape == (len(hint),) and hint.dtype == np.int64 and rows.dtype == np.int64
            and event_of.dtype == np.int64 and source.dtype in (np.float64, np.float32) and source.ndim == 1):
        return None
    index, event, offsets, nan = kernels.select_in_order(hint, keep, event_of, source, rows, parent is not None,
                                                         len(objects))
    return None if nan else from_flat(offsets, take_fields(fields, index), event)


_NO_ROWS = np.zeros(0, dtype=np.int64)


def _sorted_within_events(index: np.ndarray, event: np.ndarray, key: np.ndarray) -> np.ndarray:
    """Reorder ``index`` so that ``key`` descends within every event.

    A JES shift rarely changes the order, so only the events found out of order are sorted.
    """
    unordered = (event[1:] == event[:-1]) & (key[1:] > key[:-1])
    if not np.any(unordered):
        return index
    bad = np.zeros(int(event[-1]) + 1, dtype=bool)
    bad[event[1:][unordered]] = True
    where = np.flatnonzero(bad[event])
    order = _descending_in_groups(event.take(where), key.take(where))
    index = index.copy()
    index[where] = index[where[order]]
    return index


_PADDED_WIDTH = 64  # longest group sorted as a padded row; longer ones go to lexsort


def _descending_in_groups(group: np.ndarray, key: np.ndarray) -> np.ndarray:
    """``np.lexsort((-key, group))`` for a non-decreasing ``group``: each group's positions by
    ``key`` descending, ties and NaN (last) in their order.

    Each group becomes one row of a NaN-padded table sorted along its rows (a stable sort, the
    padding after every real value, NaN included): about four times faster than ``lexsort`` on
    the jets of a chunk, whose events hold a few each.
    """
    if len(group) == 0:
        return np.zeros(0, dtype=np.intp)
    starts = np.flatnonzero(np.concatenate([[True], group[1:] != group[:-1]]))
    counts = np.diff(np.append(starts, len(group)))
    width = int(counts.max())
    if width > _PADDED_WIDTH:
        return np.lexsort((-key, group))
    row = np.repeat(np.arange(len(starts)), counts)
    column = np.arange(len(group)) - starts.take(row)
    padded = np.full((len(starts), width), np.nan)
    padded[row, column] = -np.asarray(key, dtype=np.float64)
    order = np.argsort(padded, axis=1, kind="stable")
    order += starts[:, None]
    return order[np.arange(width) < counts[:, None]]


def _resorted_within_events(index: np.ndarray, event: np.ndarray, key: np.ndarray) -> np.ndarray:
    """Reorder ``index`` (grouped by event, in a likely order) so that ``key`` descends within
    every event, ties by object position: the order :func:`_sorted_within_events` gives.

    Only the events whose order differs are sorted; a JES shift rarely changes the order.
    """
    wrong = key[1:] > key[:-1]
    ties = key[1:] == key[:-1]
    if ties.any():  # equal keys (rare in pT) are in order when their positions are
        ties &= index[1:] < index[:-1]
        wrong |= ties
    wrong &= event[1:] == event[:-1]
    if not np.any(wrong):
        return index
    bad = np.zeros(int(event[-1]) + 1, dtype=bool)
    bad[event[1:][wrong]] = True
    where = np.flatnonzero(bad[event])
    order = np.lexsort((index[where], -key[where], event[where]))
    index = index.copy()
    index[where] = index[where[order]]
    return index


def take_events(value: Any, mask: np.ndarray) -> Any:
    """``value[mask]`` for one event member, on flat arrays where the layout allows.

    An awkward result remembers ``value`` and ``mask``, so that :func:`per_event` can compute a
    function of it once on ``value`` and pick the events (a JES fill takes the same muons from
    the same candidates again).
    """
    out = _take_events(value, mask)
    if isinstance(out, ak.Array) and isinstance(value, ak.Array):
        out._intccms_taken = (out.layout, value, mask)
    return out


def per_event(func: Callable[[Any], np.ndarray], value: Any) -> np.ndarray:
    """``func(value)`` for a function giving one value per event of ``value`` (events along
    the last axis of its result), always as a new array.

    When ``value`` was taken from a parent (:func:`take_events`), ``func`` runs on the parent
    once, the result is kept with the parent and the events are picked from it: the part of an
    observable that reads only members no object variation changes is computed once per chunk,
    not once per fill. The functions are element-wise over events, so the picked values are the
    values ``func(value)`` gives. Where ``func`` fails on the parent (it may need what only the
    channel's events have), it runs on ``value``.
    """
    known = of_parent(func, value)
    if known is None:
        return np.asarray(func(value))
    result, mask = known
    return result.take(np.flatnonzero(mask), axis=-1)


def of_parent(func: Callable[[Any], np.ndarray], value: Any) -> tuple[np.ndarray, np.ndarray] | None:
    """``func`` of the parent ``value`` was taken from (computed once per parent) and the mask
    that took it, or ``None`` where ``value`` was not taken or ``func`` fails on the parent:
    :func:`per_event` without the final pick, for a caller that picks the events itself."""
    link = getattr(value, "_intccms_taken", None)
    if link is None or link[0] is not value.layout:
        return None
    _, parent, mask = link
    memo: dict[Callable[[Any], np.ndarray], np.ndarray | None] | None = getattr(parent, "_intccms_per_event", None)
    if memo is None:
        memo = {}
        parent._intccms_per_event = memo
    if func not in memo:
        try:
            memo[func] = np.asarray(func(parent))
        except ValueError:
            memo[func] = None
    result = memo[func]
    return None if result is None else (result, mask)


def _take_events(value: Any, mask: np.ndarray) -> Any:
    flat = flat_view(value)
    if flat is not None:
        if flat.one_each():  # the objects are the events
            per_object = np.flatnonzero(mask)
            return from_flat(np.arange(len(per_object) + 1, dtype=np.int64), take_fields(flat.fields, per_object))
        per_object = np.flatnonzero(mask.take(flat.event_index()))  # a third of np.repeat's time
        counts = np.compress(mask, flat.counts)
        offsets = np.zeros(len(counts) + 1, dtype=np.int64)
        np.cumsum(counts, out=offsets[1:])
        return from_flat(offsets, take_fields(flat.fields, per_object))
    record = _flat_record(value)
    if record is not None:  # one record per event (PuppiMET): picked by index, fields taken when read
        layout, _, rows = record
        picked = np.flatnonzero(mask) if rows is None else np.compress(mask, rows)
        return ak.Array(ak.contents.IndexedArray(ak.index.Index64(picked), layout))
    if isinstance(value, ak.Array) and isinstance(value.layout, ak.contents.NumpyArray):
        return ak.Array(ak.contents.NumpyArray(np.asarray(value.layout.data)[mask]))
    return value[mask]


def counts_of(objects: Any) -> np.ndarray:
    """Number of objects per event."""
    flat = flat_view(objects)
    if flat is not None:
        return flat.counts
    return np.asarray(ak.to_numpy(ak.num(objects, axis=1)))


def count_true(objects: FlatCollection, flags: np.ndarray) -> np.ndarray:
    """Per-event number of objects whose flag is set."""
    return np.bincount(np.compress(flags, objects.event_index()), minlength=len(objects))


def leading_fields(objects: Any, names: tuple[str, ...], what: str) -> dict[str, np.ndarray]:
    """Fields of the first object of every event; every event must have one.

    Raises:
        ValueError: an event has no object (the observable is used outside its selection).
    """
    first = leading_objects(objects, what)
    if first is not None:
        return {name: np.asarray(first[name], dtype=np.float64) for name in names}
    lead = ak.firsts(objects, axis=1)
    if ak.any(ak.is_none(lead)):
        msg = f"observable needs a leading {what} in every event of the channel"
        raise ValueError(msg)
    return {name: np.asarray(ak.to_numpy(lead[name]), dtype=np.float64) for name in names}


def _flat_record(value: Any) -> tuple[ak.contents.RecordArray, dict[str, np.ndarray], np.ndarray | None] | None:
    """A one-per-event record of plain numbers, its fields, and the rows picked from it
    (``None``: all), or ``None`` for other layouts."""
    if not isinstance(value, ak.Array):
        return None
    layout, rows = value.layout, None
    if isinstance(layout, ak.contents.IndexedArray):
        layout, rows = layout.content, np.asarray(layout.index.data, dtype=np.int64)
    if not isinstance(layout, ak.contents.RecordArray):
        return None
    fields = _numpy_fields(layout, 0, layout.length)
    return None if fields is None else (layout, fields, rows)


_ARRAY_MEMO: dict[tuple[Any, tuple[int, ...]], tuple[tuple[weakref.ref[np.ndarray], ...], np.ndarray]] = {}
_ARRAY_MEMO_SIZE = 16


def of_same_arrays(key: Any, arrays: tuple[np.ndarray, ...], compute: Callable[..., np.ndarray]) -> np.ndarray:
    """``compute(*arrays)``, computed again only when other arrays come (by identity): a JES
    fill's jets share every field but the varied ones with the chunk's, so what depends on
    those alone (a jet's ID and |eta| cuts, the functions of :func:`field_function`) is
    computed once per chunk. Do not modify the result.
    """
    ids = tuple(id(a) for a in arrays)
    known = _ARRAY_MEMO.get((key, ids))
    if known is None or any(ref() is not a for ref, a in zip(known[0], arrays, strict=True)):
        while len(_ARRAY_MEMO) >= _ARRAY_MEMO_SIZE:
            _ARRAY_MEMO.pop(next(iter(_ARRAY_MEMO)))
        known = (tuple(weakref.ref(a) for a in arrays), compute(*arrays))
        _ARRAY_MEMO[(key, ids)] = known
    return known[1]


def field_function(func: Callable[[np.ndarray], np.ndarray], fields: Mapping[str, np.ndarray], name: str) -> np.ndarray:
    """``func`` (element-wise) of one field as float64, for the objects of ``fields``.

    For objects picked from a parent (:class:`TakenFields`), ``func`` runs once on the parent's
    field and the objects' values are gathered: a JES fill's leading jet has the angles of a jet
    of the same chunk, whose ``cos(phi)`` is computed once per chunk, not once per fill. numpy's
    element-wise functions give each element the same value in an array of any length.
    """
    if not isinstance(fields, TakenFields):
        return func(np.asarray(fields[name], dtype=np.float64))
    return of_source(func, fields, name).take(fields.rows)


def of_source(func: Callable[[np.ndarray], np.ndarray], fields: TakenFields, name: str) -> np.ndarray:
    """``func`` of the whole field of the parent ``fields`` were taken from, as float64, once
    per parent array (what :func:`field_function` picks from). Do not modify the result."""
    return of_same_arrays(func, (fields.source[name],), lambda source: func(np.asarray(source, dtype=np.float64)))


def leading_objects(objects: Any, what: str) -> Mapping[str, np.ndarray] | None:
    """The fields of the first object of every event of a flat collection (``None`` for other
    layouts), taken when read.

    Raises:
        ValueError: an event has no object (the observable is used outside its selection).
    """
    flat = flat_view(objects)
    if flat is None:
        return None
    if np.any(flat.counts == 0):
        msg = f"observable needs a leading {what} in every event of the channel"
        raise ValueError(msg)
    return take_fields(flat.fields, flat.offsets[:-1])  # the positions composed once for all fields


def record_fields(record: Any, names: tuple[str, ...]) -> dict[str, np.ndarray]:
    """Fields of a one-per-event record (``PuppiMET``) as float64 numpy arrays."""
    flat = _flat_record(record)
    if flat is not None:
        _, fields, rows = flat
        if all(n in fields for n in names):
            if rows is None:
                return {n: np.asarray(fields[n], dtype=np.float64) for n in names}
            return {n: np.asarray(fields[n].take(rows), dtype=np.float64) for n in names}
    return {n: np.asarray(ak.to_numpy(record[n]), dtype=np.float64) for n in names}


def object_field(objects: Any, name: str) -> np.ndarray:
    """One field of every object, flattened over events."""
    flat = flat_view(objects)
    if flat is not None:
        return flat.fields[name]
    return np.asarray(ak.to_numpy(ak.flatten(objects[name], axis=1)))

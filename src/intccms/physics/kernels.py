"""Compiled loops for the hottest per-fill steps (numba), imported only by :mod:`compiled`.

Importing this module compiles the kernels for their listed signatures, or loads them from
numba's cache (``__pycache__`` beside this file, or ``$NUMBA_CACHE_DIR``). Each kernel does the
same IEEE operations in the same order as the numpy code it stands in for, so the two give the
same numbers bit for bit (no fast-math: nothing is reassociated or fused).
"""

from __future__ import annotations

import numba
import numpy as np

_CELL_TYPES = ("uint8", "uint16", "int64")
"""The per-object cell types of :class:`~intccms.physics.corrections.staged_table.Prepared`."""

_STAGED_SIGNATURES = [
    f"Tuple((float64[::1], boolean[::1]))(int8[:], float64[:], float64[:], float64[:], {cell}[:], int64, "
    "float64[:], float64[:], float64[:], float64[:], float64[:], float64[:], int64[:], float64[:])"
    for cell in _CELL_TYPES
]


@numba.njit(_STAGED_SIGNATURES, cache=True, nogil=True)
def staged_cubic(position: np.ndarray, guards: np.ndarray, below: np.ndarray, above: np.ndarray,
                 cells: np.ndarray, objects: int, x: np.ndarray, p0: np.ndarray, p1: np.ndarray,
                 p2: np.ndarray, p3: np.ndarray, p4: np.ndarray, rows: np.ndarray, late: np.ndarray,
                 ) -> tuple[np.ndarray, np.ndarray]:  # pragma: no cover - compiled; tested through its caller
    """:meth:`StagedCorrection.evaluate` in one pass over the rows: the late input's position
    among the guards (the prepared one where the value stayed between the same two guards,
    else a binary search, ``searchsorted``'s left side; NaN after every guard), the object's
    leaf there (``0``: correctionlib decides, as for NaN) and the cubic in correctionlib's order."""
    n = len(rows)
    out = np.empty(n, np.float64)
    exact = np.zeros(n, np.bool_)
    count = len(guards)
    for i in range(n):
        row = rows[i]
        value = late[i]
        p = int(position[row])
        if not (value > below[p] and value <= above[p]):
            if value != value:
                p = count
            else:
                lo = 0
                hi = count
                while lo < hi:
                    mid = (lo + hi) >> 1
                    if guards[mid] < value:
                        lo = mid + 1
                    else:
                        hi = mid
                p = lo
        leaf = int(cells[p * objects + row]) - 1
        if leaf < 0 or value != value:
            exact[i] = True
            leaf = 0
        t = x[row] + p0[leaf]
        result = p1[leaf] * t
        result = result * t
        result = result * t
        term = p2[leaf] * t
        term = term * t
        result = result + term
        term = p3[leaf] * t
        result = result + term
        out[i] = result + p4[leaf]
    return out, exact


_JES_SIGNATURE = "float64[::1](int64[:], float64[:], float64[:, ::1])"


@numba.njit([_JES_SIGNATURE], cache=True, nogil=True)
def jes_formula(cell: np.ndarray, x: np.ndarray, params: np.ndarray,
                ) -> np.ndarray:  # pragma: no cover - compiled; tested through its caller
    """A JES source's ``[0]*max(min(x,[3]),[2])+[1]`` for every jet in one pass (the numpy tier:
    four gathers and four passes), from its ``params[cell, 4]``. For finite inputs and
    parameters only: ``min``/``max`` here keep a NaN bound out, numpy's would propagate it."""
    n = len(cell)
    out = np.empty(n, np.float64)
    for i in range(n):
        c = cell[i]
        value = x[i]
        upper = params[c, 3]
        value = upper if value > upper else value
        lower = params[c, 2]
        value = lower if value < lower else value
        out[i] = value * params[c, 0] + params[c, 1]
    return out


_SELECT_SIGNATURES = [
    f"Tuple((int64[::1], int64[::1], int64[::1], boolean))"
    f"(int64[:], boolean[:], int64[:], {key}[:], int64[:], boolean, int64)"
    for key in ("float64", "float32")
]


@numba.njit(_SELECT_SIGNATURES, cache=True, nogil=True)
def select_in_order(hint: np.ndarray, keep: np.ndarray, event_of: np.ndarray, key_source: np.ndarray,
                    rows: np.ndarray, compose: bool, events: int,
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, bool]:  # pragma: no cover - compiled
    """The kept objects in the likely order ``hint``, sorted by key (read through ``rows`` with
    ``compose``) descending within each event, ties by position: their positions, event numbers
    and the offsets of their events, and whether a key is NaN (then nothing else is valid: numpy
    decides). Each kept object is inserted into its event's objects so far, which are sorted:
    in the likely order it stays where it is, so an event already in order costs one comparison
    per object (the numpy tier: gathers, compressions, a count, an order check and a lexsort of
    the events out of order)."""
    n = len(hint)
    index = np.empty(n, np.int64)
    event = np.empty(n, np.int64)
    m = 0
    for i in range(n):  # branch-free compaction: every object written, the kept ones advance
        j = hint[i]
        index[m] = j
        event[m] = event_of[i]
        m += int(keep[j])
    key = np.empty(m, key_source.dtype)
    offsets = np.zeros(events + 1, np.int64)
    start = 0
    last_e = -1
    last_k = key_source.dtype.type(0)
    last_j = 0
    for q in range(m):
        j = index[q]
        k = key_source[rows[j]] if compose else key_source[j]
        if k != k:
            return index[:m], event[:m], offsets, True
        e = event[q]
        if e != last_e:
            start = q
            last_e = e
        offsets[e + 1] = q + 1 - start  # the event's count so far
        if q > start and (last_k < k or (last_k == k and last_j > j)):  # out of order: insert
            p = q
            while p > start and (key[p - 1] < k or (key[p - 1] == k and index[p - 1] > j)):
                key[p] = key[p - 1]
                index[p] = index[p - 1]
                p -= 1
            key[p] = k
            index[p] = j
        else:  # in order: the event's last object
            key[q] = k
            last_k = k
            last_j = j
    for e in range(events):
        offsets[e + 1] += offsets[e]
    return index[:m], event[:m], offsets, False


_MTT_SIGNATURE = ("float64[::1](float64[:, :], float64[:, :], float64[:, :], int64[:], int64[:], float64[:], float64[:], "
                  "float64[:], float64[:], float64[:])")


@numba.njit([_MTT_SIGNATURE], cache=True, nogil=True)
def mtt(muon: np.ndarray, fatjet: np.ndarray, met: np.ndarray, picked: np.ndarray, rows: np.ndarray,
        pt: np.ndarray, mass: np.ndarray, cos_phi: np.ndarray, sin_phi: np.ndarray, sinh_eta: np.ndarray,
        ) -> np.ndarray:  # pragma: no cover - compiled; tested through its caller
    """:func:`intccms.physics.observables.mtt` of the ``picked`` events of the parents' four-vectors
    (muon, fat jet: E, px, py, pz; MET: E, px, py) and the leading jets at ``rows`` of their
    collection, in one pass, with numpy's operations in numpy's order (the numpy tier: gathers
    of every part and ~25 passes over the events)."""
    n = len(picked)
    out = np.empty(n, np.float64)
    for c in range(n):
        p = picked[c]
        r = rows[c]
        t0 = muon[0, p] + fatjet[0, p]
        t1 = muon[1, p] + fatjet[1, p]
        t2 = muon[2, p] + fatjet[2, p]
        t3 = muon[3, p] + fatjet[3, p]
        jet_pt = pt[r]
        px = jet_pt * cos_phi[r]
        py = jet_pt * sin_phi[r]
        pz = jet_pt * sinh_eta[r]
        m = mass[r]
        t0 = t0 + np.sqrt(px * px + py * py + pz * pz + m * m)
        t1 = t1 + px
        t2 = t2 + py
        t3 = t3 + pz
        t0 = t0 + met[0, p]
        t1 = t1 + met[1, p]
        t2 = t2 + met[2, p]
        m2 = t0 * t0 - t1 * t1 - t2 * t2 - t3 * t3
        out[c] = np.sqrt(m2 if (m2 >= 0.0 or m2 != m2) else 0.0)  # np.maximum(m2, 0.0)
    return out


_SPLIT_SIGNATURES = [
    f"Tuple(({objs}[::1], int64[::1]))(float64[:], {objs}[:], float64[:], boolean, float64)" for objs in ("int32", "int64")
]


@numba.njit(_SPLIT_SIGNATURES, cache=True, nogil=True)
def split_bins(source: np.ndarray, objs: np.ndarray, edges: np.ndarray, clamp: bool, window: float,
               ) -> tuple[np.ndarray, np.ndarray]:  # pragma: no cover - compiled; tested through its caller
    """The objects ``objs`` grouped by their bin of ``edges`` (``source[obj]``; ``searchsorted``'s
    right side, the outer bins extended with ``clamp``), each group in order, and the groups'
    bounds; objects within ``window`` (relative) of an edge of their bin, beyond the edges
    without ``clamp``, or not finite, in none (the numpy tier's ``_Walker._split``: ~15 passes
    and a sort)."""
    n = len(objs)
    bins = len(edges) - 1
    bin_of = np.empty(n, np.int64)
    bounds = np.zeros(bins + 1, np.int64)
    for i in range(n):
        value = source[objs[i]]
        bin_of[i] = -1
        if not np.isfinite(value):
            continue
        lo = 0
        hi = len(edges)
        while lo < hi:  # searchsorted(edges, value, side="right")
            mid = (lo + hi) >> 1
            if edges[mid] <= value:
                lo = mid + 1
            else:
                hi = mid
        index = lo - 1
        if clamp:
            index = min(max(index, 0), bins - 1)
            lower = edges[index] if index > 0 else -np.inf
            upper = edges[index + 1] if index < bins - 1 else np.inf
        else:
            if index < 0 or index >= bins:
                continue
            lower = edges[index]
            upper = edges[index + 1]
        near = window * (1.0 + abs(value))
        if value - lower > near and upper - value > near:
            bin_of[i] = index
            bounds[index + 1] += 1
    for k in range(bins):
        bounds[k + 1] += bounds[k]
    kept = np.empty(bounds[bins], objs.dtype)
    place = bounds[:bins].copy()
    for i in range(n):
        k = bin_of[i]
        if k >= 0:
            kept[place[k]] = objs[i]
            place[k] += 1
    return kept, bounds

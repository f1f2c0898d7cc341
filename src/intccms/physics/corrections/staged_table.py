"""Binned scale factors in two stages: what a chunk fixes once, the varied input per fill.

The b-tag shape scale factor is a tree: flavour, then bins in |eta|, pT and the discriminant,
each discriminant bin holding a constant or a cubic in the discriminant. A chunk evaluates it on
the selected jets of each of its 54 JES fills, and only the pT changes between fills. Here the
flavour, the |eta| bin and the discriminant bin under every pT bin are found once per chunk for
every jet (:meth:`StagedCorrection.prepare`); a fill finds each jet's pT bin among the few pT
edges (checking first whether the pT stayed in the bin of the fill that prepared the chunk, as
it mostly does under a JES shift), gathers its cell's parameters and evaluates the cubic.

The values are identical bit for bit: every cell's constant and parameters are read back from
correctionlib itself (its JSON parser does not always round a decimal as Python does), the cubic
is evaluated in the order of correctionlib's parse of it, and a jet within :data:`EDGE_WINDOW` of
an edge of its bin, with a non-finite input, or with a category key the tree does not list is
evaluated by correctionlib. Trees of another form use correctionlib.

A hand-written stand-in for correctionlib, kept because ``benchmarks/bench_btag_stages.py``
measures it at more than twice correctionlib's speed on the real UL b-tag file and the JES
fills' workload (see that script).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import correctionlib._core
import numpy as np

from intccms.physics import compiled
from intccms.physics.corrections.file_memo import per_file
from intccms.physics.corrections.loading import correction_json, parse_variants, systematic_slice

EDGE_WINDOW = 1e-9
"""Relative distance to a bin edge within which a value is evaluated by correctionlib."""

CUBIC = "[1]*(x+[0])*(x+[0])*(x+[0])+[2]*(x+[0])*(x+[0])+[3]*(x+[0])+[4]"
"""The formula of the b-tag shape's discriminant bins (TFormula)."""


class _Unsupported(Exception):
    """A node of another form: the correction stays with correctionlib."""


@dataclass(frozen=True, eq=False)  # hashed by identity: a key of per-chunk preparations
class Layout:
    """The tree of one selector without its leaf values; selectors with equal layouts share the
    per-chunk preparation."""

    node: Any  # the JSON tree (of the first selector with this layout)
    inputs: tuple[tuple[str, str], ...]  # (name, type) of the sliced correction
    late: str
    variable: str  # the cubic's variable, a fixed input
    leaves: int
    # Every inner edge of every late binning, each widened into a guard interval of twice
    # EDGE_WINDOW around it, as one sorted list: a value's position ``g`` in it is odd next to an
    # edge (correctionlib decides) and else ``2 * u`` for the ``u``-th bin between edges, which
    # each object's prepared cells map to its own leaf.
    guards: np.ndarray
    lower: np.ndarray  # [-inf, *edges]: the lower edge of each bin between union edges
    below: np.ndarray  # [-inf, *guards]: the guard below each position
    above: np.ndarray  # [*guards, inf]: the guard at or above each position


@dataclass(frozen=True)
class Cells:
    """One selector's leaves in the layout's order: ``params[j]`` of every leaf (a constant in
    ``params[4]``, the others zero: the cubic then gives the constant exactly)."""

    layout: Layout
    constant: np.ndarray
    params: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]


@dataclass(frozen=True)
class Prepared:
    """Per object of a chunk: its leaf number plus one at each position among the layout's
    guards (``cells[position * objects + object]``; ``0``: correctionlib; one byte per cell
    for trees of fewer than 255 leaves, two below 65535) and the cubic's variable."""

    cells: np.ndarray
    objects: int
    x: np.ndarray
    # Each object's position among the guards for a reference value of the late input (that of
    # the fill that prepared it): a fill's value usually stays between the same two guards.
    position: np.ndarray


class StagedCorrection:
    """A correction with a root string category (the systematic), evaluated in two stages."""

    def __init__(self, path: str, key: str, late: str) -> None:
        self.path = path
        self.key = key
        self.late = late

    def cells(self, selector: str) -> Cells | None:
        """The leaves of ``selector``, or ``None`` when its tree has another form."""
        return _cells(self.path, self.key, self.late, selector)

    def merged(self, selector: str, others: str, category: str, keys: tuple[int, ...]) -> Cells | None:
        """The leaves of ``selector`` under the ``keys`` of input ``category`` and those of
        ``others`` elsewhere (a b-tag source for some flavours, the nominal for the rest): one
        pass over all objects instead of one per group. ``None`` unless both selectors share a
        layout in which every leaf lies under one key of ``category``."""
        return _merged(self.path, self.key, self.late, selector, others, category, keys)

    def prepare(self, layout: Layout, fixed: Mapping[str, np.ndarray], reference: np.ndarray,
                memo: dict[Any, list[np.ndarray]] | None = None) -> Prepared:
        """The fixed part of every object (``fixed``: each input but the late one, as
        correctionlib would receive it). ``memo`` keeps the objects reaching each node, by the
        decisions on the way there, for the other layouts of the same objects (and the
        discriminant bins under every late bin are found once)."""
        n = len(next(iter(fixed.values())))
        # One row per position among the guards: even rows the bins between late edges, odd
        # rows (next to an edge) left at 0.
        cells = np.zeros((2 * len(layout.lower) - 1, n), dtype=np.uint8 if layout.leaves < 255 else np.uint16 if layout.leaves < 65535 else np.int64)
        walker = _Walker(layout, fixed, cells[::2], {} if memo is None else memo)
        walker.walk(layout.node, np.arange(n, dtype=np.int32 if n < 2**31 else np.int64), None, ())
        position = np.searchsorted(layout.guards, reference).astype(np.int8)
        return Prepared(cells.ravel(), n, np.asarray(fixed[layout.variable], dtype=np.float64), position)

    @staticmethod
    def evaluate(cells: Cells, prepared: Prepared, rows: np.ndarray, late: np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray]:
        """Values of the objects ``rows`` (indices into the prepared ones) with late input
        ``late``, and the mask of those correctionlib must evaluate. In one compiled pass where
        this process has loaded the kernels (:mod:`intccms.physics.compiled`), else in numpy."""
        layout = cells.layout
        kernels = compiled.kernels()
        if kernels is not None and _fits_kernel(cells, prepared, rows, late):
            values: tuple[np.ndarray, np.ndarray] = kernels.staged_cubic(
                prepared.position, layout.guards, layout.below, layout.above, prepared.cells, prepared.objects,
                prepared.x, *cells.params, rows, late)
            return values
        index = prepared.position.take(rows).astype(np.intp)
        # Between the same two guards as the reference value: the same position (searchsorted's,
        # ``guards[p - 1] < value <= guards[p]``); the others (and NaN) are searched.
        same = late > layout.below.take(index)
        same &= late <= layout.above.take(index)
        if not same.all():
            moved = np.flatnonzero(~same)
            index[moved] = np.searchsorted(layout.guards, late.take(moved))
        index *= prepared.objects
        index += rows
        leaf = prepared.cells.take(index).astype(np.intp)  # once, not in each gather below
        leaf -= 1
        exact = leaf < 0
        if np.isnan(late).any():
            exact |= np.isnan(late)
        if exact.any():
            leaf[exact] = 0
        # correctionlib's order: ((([1]*t)*t)*t + ([2]*t)*t) + [3]*t) + [4], t = x + [0].
        p0, p1, p2, p3, p4 = cells.params
        t = prepared.x.take(rows)
        t += p0.take(leaf)
        out = p1.take(leaf)
        out *= t
        out *= t
        out *= t
        term = p2.take(leaf)
        term *= t
        term *= t
        out += term
        np.multiply(p3.take(leaf), t, out=term)
        out += term
        out += p4.take(leaf)
        return out, exact


def _fits_kernel(cells: Cells, prepared: Prepared, rows: np.ndarray, late: np.ndarray) -> bool:
    """Whether the arrays have the types the compiled kernel was built for."""
    floats = (cells.layout.guards, cells.layout.below, cells.layout.above, prepared.x, *cells.params, late)
    return (prepared.position.dtype == np.int8 and rows.dtype == np.int64 and rows.ndim == 1
            and prepared.cells.dtype in (np.uint8, np.uint16, np.int64)
            and all(a.dtype == np.float64 and a.ndim == 1 for a in floats))


class _Walker:
    """Fills the per-object cells, one tree node at a time over the objects reaching it."""

    def __init__(self, layout: Layout, fixed: Mapping[str, np.ndarray], cells: np.ndarray,
                 memo: dict[Any, list[np.ndarray]]) -> None:
        self.layout = layout
        self.fixed = fixed
        self.cells = cells
        self.memo = memo
        self.leaf = 0

    def walk(self, node: Any, objs: np.ndarray, columns: np.ndarray | None, path: tuple[Any, ...]) -> None:
        if not isinstance(node, dict) or node.get("nodetype") == "formularef":
            for column in range(len(self.cells)) if columns is None else columns:
                self.cells[column, objs] = self.leaf + 1
            self.leaf += 1
            return
        name = node["input"]
        content = node["content"]
        if name == self.layout.late:
            # The bins between the layout's late edges that fall in each of this node's bins.
            inner = np.asarray([_edge(e) for e in node["edges"][1:-1]])
            own = np.count_nonzero(self.layout.lower[:, None] >= inner[None, :], axis=1)
            for k, child in enumerate(content):
                self.walk(child, objs, np.flatnonzero(own == k), path)
            return
        if node["nodetype"] == "category":
            # One entry per key, so that trees listing other keys share the objects of this one.
            for item in content:
                here = (*path, (name, int(item["key"])))
                picked = self.memo.get(here)
                if picked is None:
                    picked = [objs[self.fixed[name].take(objs) == int(item["key"])]]
                    self.memo[here] = picked
                self.walk(item["value"], picked[0], columns, here)
            return
        step = (name, tuple(_edge(e) for e in node["edges"]), node.get("flow"))
        children = content
        here = (*path, step)
        groups = self.memo.get(here)
        if groups is None:
            groups = self._split(objs, step)
            self.memo[here] = groups
        for k, (child, group) in enumerate(zip(children, groups, strict=True)):
            self.walk(child, group, columns, (*here, k))

    def _split(self, objs: np.ndarray, step: tuple[Any, ...]) -> list[np.ndarray]:
        """The objects going to each bin of a fixed binning (those next to an edge to none); in
        one compiled pass where the process has the kernels."""
        source = self.fixed[step[0]]
        kernels = compiled.kernels()
        if (kernels is not None and source.dtype == np.float64 and source.ndim == 1
                and objs.dtype in (np.int32, np.int64)):
            kept, bounds = kernels.split_bins(source, objs, np.asarray(step[1], dtype=np.float64), step[2] == "clamp",
                                              EDGE_WINDOW)
            return [kept[bounds[k]:bounds[k + 1]] for k in range(len(bounds) - 1)]
        values = source.take(objs)
        edges = np.asarray(step[1])
        bins = len(edges) - 1
        index = np.searchsorted(edges, values, side="right") - 1
        if step[2] == "clamp":
            inside = np.ones(len(objs), dtype=bool)
            index = np.clip(index, 0, bins - 1)
            # Clamped: only the inner edges decide a bin.
            lower = np.where(index > 0, edges.take(index), -np.inf)
            upper = np.where(index < bins - 1, edges.take(index + 1), np.inf)
        else:
            inside = (index >= 0) & (index < bins)
            index = np.clip(index, 0, bins - 1)
            lower, upper = edges.take(index), edges.take(index + 1)
        window = EDGE_WINDOW * (1.0 + np.abs(values))
        ok = inside & np.isfinite(values) & (values - lower > window) & (upper - values > window)
        kept, index = objs[ok], index[ok].astype(np.int16)
        order = np.argsort(index, kind="stable")  # a radix sort of small integers
        bounds = np.searchsorted(index[order], np.arange(bins + 1))
        kept = kept[order]
        return [kept[bounds[k]:bounds[k + 1]] for k in range(bins)]


def _edge(value: Any) -> float:
    if isinstance(value, str):
        return math.inf if value.lstrip("+") == "inf" else -math.inf
    return float(value)


def _shape(node: Any, inputs: Mapping[str, str], formulas: list[Any], late: str,
           found: dict[str, Any]) -> Any:
    """The layout signature of a tree (leaves blanked); checks every node is of the known form."""
    if isinstance(node, (int, float)) and not isinstance(node, bool):
        return None
    if not isinstance(node, dict):
        raise _Unsupported
    kind = node.get("nodetype")
    if kind == "formularef":
        formula = formulas[int(node["index"])]
        variables = formula.get("variables") or []
        if (formula.get("expression") != CUBIC or formula.get("parser") != "TFormula" or len(variables) != 1
                or variables[0] == late or inputs.get(variables[0]) != "real"
                or len(node.get("parameters") or []) != 5):
            raise _Unsupported
        if found.setdefault("variable", variables[0]) != variables[0]:
            raise _Unsupported
        return None
    name = str(node.get("input"))
    if kind == "category" and inputs.get(name) == "int" and name != late:
        keys = [item["key"] for item in node.get("content", [])]
        if node.get("default") is not None or not all(isinstance(k, int) and not isinstance(k, bool) for k in keys):
            raise _Unsupported
        return ["c", name, keys, [_shape(i["value"], inputs, formulas, late, found) for i in node["content"]]]
    if kind == "binning" and inputs.get(name) == "real":
        edges = node.get("edges")
        content = node.get("content", [])
        flow = node.get("flow")
        if (not isinstance(edges, list) or len(edges) != len(content) + 1 or flow not in ("clamp", "error")
                or (name == late and flow != "clamp")):
            raise _Unsupported
        return ["b", name, edges, flow, [_shape(c, inputs, formulas, late, found) for c in content]]
    raise _Unsupported


def _late_sets(node: Any, late: str, out: list[list[float]]) -> None:
    if not isinstance(node, dict) or node.get("nodetype") == "formularef":
        return
    if node.get("input") == late:
        out.append([_edge(e) for e in node["edges"][1:-1]])
    children = [i["value"] for i in node["content"]] if node["nodetype"] == "category" else node["content"]
    for child in children:
        _late_sets(child, late, out)


def _points(node: Any, names: list[str], point: list[float], out: list[list[float]]) -> None:
    """An input point inside every leaf's cell, in the walker's leaf order."""
    if not isinstance(node, dict) or node.get("nodetype") == "formularef":
        out.append(list(point))
        return
    slot = names.index(node["input"])
    if node["nodetype"] == "category":
        for item in node["content"]:
            point[slot] = float(item["key"])
            _points(item["value"], names, point, out)
        return
    edges = [_edge(e) for e in node["edges"]]
    for child, low, high in zip(node["content"], edges, edges[1:], strict=False):
        point[slot] = 0.5 * (low + high)
        _points(child, names, point, out)


@lru_cache(maxsize=64)
def _layout(signature: str, late: str) -> Layout | None:
    """One layout per distinct signature (the node of the first selector that has it)."""
    node, inputs, variable = json.loads(signature)
    sets: list[list[float]] = []
    _late_sets(node, late, sets)
    if not sets or variable is None:
        return None
    points: list[list[float]] = []
    _points(node, [n for n, _ in inputs], [0.0] * len(inputs), points)
    union = np.unique(np.concatenate([np.asarray(s, dtype=np.float64) for s in sets]))
    half = 2 * EDGE_WINDOW * (1.0 + np.abs(union))
    guards = np.stack([union - half, union + half], axis=1).ravel()
    if np.any(np.diff(guards) <= 0) or len(guards) > 100:  # positions are stored as int8
        return None
    return Layout(node, tuple((n, t) for n, t in inputs), late, variable, len(points),
                  guards, np.concatenate([[-np.inf], union]), np.concatenate([[-np.inf], guards]),
                  np.concatenate([guards, [np.inf]]))


@per_file
def _cells(path: str, key: str, late: str, selector: str) -> Cells | None:
    corr = correction_json(path, key)
    sliced = systematic_slice(path, key, selector)
    root = corr.get("data") if corr else None
    if corr is None or sliced is None or not isinstance(root, dict):
        return None
    node = next((i["value"] for i in root.get("content", []) if i.get("key") == selector), root.get("default"))
    inputs = [(str(i["name"]), str(i["type"])) for i in corr["inputs"] if i.get("name") != sliced[0]]
    found: dict[str, Any] = {}
    try:
        _shape(node, dict(inputs), corr.get("generic_formulas") or [], late, found)
    except (_Unsupported, KeyError, TypeError, ValueError, IndexError):
        return None
    if late not in dict(inputs):
        return None
    layout = _layout(json.dumps([_blank(node), inputs, found.get("variable")]), late)
    if layout is None:
        return None
    try:
        return _read_back(corr, sliced[1], node, layout)
    except (KeyError, TypeError, ValueError, IndexError, RuntimeError):
        return None


@per_file
def _merged(path: str, key: str, late: str, selector: str, others: str, category: str,
            keys: tuple[int, ...]) -> Cells | None:
    """A tree whose root is a category on ``category``: the subtrees of ``selector`` under
    ``keys`` and those of ``others`` under the other keys, each leaf with the values read back
    for its own selector."""
    chosen, rest = _cells(path, key, late, selector), _cells(path, key, late, others)
    if chosen is None or rest is None:
        return None
    if chosen.layout.variable != rest.layout.variable or chosen.layout.inputs != rest.layout.inputs:
        return None
    trees = [chosen.layout.node, rest.layout.node]
    if any(t.get("nodetype") != "category" or t.get("input") != category for t in trees):
        return None
    # Each key's subtree and its first leaf, per selector.
    spans: list[dict[int, tuple[Any, int, int]]] = []
    for tree in trees:
        spans.append({})
        first = 0
        for item in tree["content"]:
            count = [0]
            _leaf_kinds(item["value"], np.zeros(chosen.layout.leaves + rest.layout.leaves, dtype=bool), count)
            spans[-1][int(item["key"])] = (item, first, first + count[0])
            first += count[0]
    if not set(keys) <= set(spans[0]):
        return None
    pieces = [(chosen, spans[0][k]) if k in keys else (rest, spans[1][k]) for k in spans[1]]
    # Layout nodes are checked trees with their leaves blanked: the merged tree is one too.
    node = {**trees[1], "content": [item for _, (item, _, _) in pieces]}
    layout = _layout(json.dumps([node, list(chosen.layout.inputs), chosen.layout.variable]), late)
    if layout is None:
        return None
    constant = np.concatenate([cells.constant[lo:hi] for cells, (_, lo, hi) in pieces])
    params = [np.concatenate([cells.params[j][lo:hi] for cells, (_, lo, hi) in pieces]) for j in range(5)]
    if len(constant) != layout.leaves:
        return None
    return Cells(layout, constant, (params[0], params[1], params[2], params[3], params[4]))


def _blank(node: Any) -> Any:
    """The tree with its leaves replaced by ``0`` (the layout's own node keeps the structure)."""
    if not isinstance(node, dict) or node.get("nodetype") == "formularef":
        return 0
    if node["nodetype"] == "category":
        return {**node, "content": [{**i, "value": _blank(i["value"])} for i in node["content"]]}
    return {**node, "content": [_blank(c) for c in node["content"]]}


def _read_back(corr: Mapping[str, Any], correction: correctionlib._core.Correction, node: Any,
               layout: Layout) -> Cells | None:
    """Every leaf's constant or parameters as correctionlib holds them: evaluated at a point of
    its cell, and with the formula replaced by ``[j]``; checked by evaluating the cubic there."""
    names = [n for n, _ in layout.inputs]
    points: list[list[float]] = []
    _points(node, names, [0.0] * len(names), points)
    grid = np.asarray(points, dtype=np.float64).T
    args = [grid[i].astype(np.int64) if t == "int" else grid[i] for i, (_, t) in enumerate(layout.inputs)]
    value = np.asarray(correction.evalv(*args), dtype=np.float64)
    constant = np.zeros(layout.leaves, dtype=bool)
    _leaf_kinds(node, constant, [0])
    params = np.zeros((layout.leaves, 5))
    params[:, 4] = value
    sliced_corr = {**corr, "inputs": [i for i in corr["inputs"] if i["name"] in names], "data": node}
    if not constant.all():
        probes = [{"name": f"{corr['name']}[{j}]",
                   "generic_formulas": [{**f, "expression": f"[{j}]"} for f in corr["generic_formulas"]]}
                  for j in range(5)]
        for j, probe in enumerate(parse_variants(sliced_corr, probes)):
            params[~constant, j] = np.asarray(probe.evalv(*args))[~constant]
    # A constant c comes out of the cubic with zero parameters as (±0) + c, which is c for every
    # c but -0.0; the check below compares bits, so such a table is refused.
    t = grid[names.index(layout.variable)] + params[:, 0]
    cubic = params[:, 1] * t * t * t + params[:, 2] * t * t + params[:, 3] * t + params[:, 4]
    if cubic.tobytes() != value.tobytes():
        return None
    columns = np.ascontiguousarray(params.T)
    return Cells(layout, constant, (columns[0], columns[1], columns[2], columns[3], columns[4]))


def _leaf_kinds(node: Any, constant: np.ndarray, counter: list[int]) -> None:
    if not isinstance(node, dict) or node.get("nodetype") == "formularef":
        constant[counter[0]] = not isinstance(node, dict)
        counter[0] += 1
        return
    children = [i["value"] for i in node["content"]] if node["nodetype"] == "category" else node["content"]
    for child in children:
        _leaf_kinds(child, constant, counter)

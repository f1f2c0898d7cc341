"""Binned corrections whose formulas are plain arithmetic, evaluated as gathers and numpy operations.

A JEC level such as the 2017 UL ``L2Relative`` (and the 2016/2017 ``L1FastJet``) is a binning in
``JetEta``, optionally a binning in ``JetPt`` under each bin, and in every cell the same TFormula
built only from ``+ - * /``, ``max``, ``min`` and numbers, with its own parameters. correctionlib
walks that tree and interprets the formula for every jet (about 300 ns per jet); here the cell of
every jet is found with two searches, its parameters are gathered, and the formula runs as one
numpy operation per node of its syntax tree, in the same order. IEEE arithmetic is exactly
rounded, so the values are identical bit for bit: the parameters are read back from correctionlib
(its JSON parser does not always round a decimal as Python does), the table is checked against
correctionlib at points of every cell when it is built, and jets within a hair of a bin edge,
beyond a row's edges or with a non-finite input are left to correctionlib. Formulas with other
functions (``log``, ``exp``, ``pow``: numpy's and the C library's differ in the last bit) keep
correctionlib.

A hand-written stand-in for correctionlib, kept because ``benchmarks/bench_formula_table.py``
measures it at more than twice correctionlib's speed on the real UL levels.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import correctionlib._core
import numpy as np

from intccms.physics.corrections.loading import correction_json, parse_correction, parsed_correction

EDGE_WINDOW = 1e-9
"""Relative distance to a bin edge within which a value is evaluated by correctionlib."""

VARIABLES = ("x", "y", "z", "t")
"""TFormula's names of a formula's variables, in the order of its ``variables`` list."""

Values = np.ndarray | float
Program = Callable[[Mapping[str, np.ndarray], Callable[[int], np.ndarray]], Values]


class _Unsupported(Exception):
    """A correction of another form: it stays with correctionlib."""


@dataclass(frozen=True)
class FormulaTable:
    """One correction's cells and formula: ``params[j, cell]`` for the parameters it uses."""

    inputs: tuple[str, ...]  # the correction's inputs, in order
    outer: str
    outer_edges: np.ndarray
    outer_lookup: _Lookup
    inner: str | None
    inner_edges: np.ndarray  # [edge, row]: each row's edges, padded with +inf
    inner_flat: np.ndarray  # inner_edges row after row
    row_bins: np.ndarray  # bins of each row
    stride: int  # cells per row
    variables: tuple[str, ...]  # input of x, y, z, t
    program: Program
    params: np.ndarray  # [parameter, cell]

    def evaluate(self, fields: Mapping[str, np.ndarray], exact: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
        """The correction of every object (``fields``: inputs as correctionlib receives them,
        clipped into the correction's range); ``exact(positions)`` gives correctionlib's values
        of the objects it must evaluate."""
        outer = np.asarray(fields[self.outer], dtype=np.float64)
        n = len(outer)
        row = self.outer_lookup.bins(outer)
        doubtful = _doubtful(outer, self.outer_edges.take(row), self.outer_edges.take(row + 1))
        cell = row
        if self.inner is not None:
            # A row has a few edges: count those at or below the value, one edge at a time.
            inner = np.asarray(fields[self.inner], dtype=np.float64)
            flat, width = self.inner_flat, self.inner_edges.shape[0]
            base = row * width
            column = np.zeros(n, dtype=np.int64)
            step = 1 << (width - 1).bit_length()
            while step := step >> 1:  # a binary search in every row at once (rows padded with +inf)
                ahead = np.minimum(column + step, width - 1)
                column += step * (inner >= flat.take(base + ahead))
            outside = (column >= self.row_bins.take(row)) | ~(inner >= flat.take(base))
            column[outside] = 0
            at = base + column
            doubtful |= outside | _doubtful(inner, flat.take(at), flat.take(at + 1))
            cell = row * self.stride + column
        for name in self.variables:
            if name not in (self.outer, self.inner):
                doubtful |= ~np.isfinite(np.asarray(fields[name], dtype=np.float64))
        picked = np.flatnonzero(doubtful)
        if len(picked):
            cell[picked] = 0
        gathered: dict[int, np.ndarray] = {}

        def param(j: int) -> np.ndarray:
            values = gathered.get(j)
            if values is None:
                values = gathered[j] = self.params[j].take(cell)
            return values

        env = {v: np.asarray(fields[name], dtype=np.float64) for v, name in zip(VARIABLES, self.variables, strict=False)}
        out = np.array(np.broadcast_to(self.program(env, param), (n,)), dtype=np.float64)
        if len(picked):
            out[picked] = exact(picked)
        return out


def _doubtful(values: np.ndarray, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """Values correctionlib must place: within :data:`EDGE_WINDOW` of their bin's edges (its
    parse of an edge may differ in the last bit), outside them, or not finite."""
    window = np.abs(values)
    window += 1.0
    window *= EDGE_WINDOW
    inside: np.ndarray = (values - low > window) & (high - values > window)
    return ~inside


@dataclass(frozen=True)
class _Lookup:
    """The bin of a value among irregular edges by a uniform grid finer than the narrowest bin:
    each grid cell holds at most one edge, so its bin is the cell's or the next."""

    edges: np.ndarray
    start: float
    scale: float
    cells: np.ndarray  # bin of each grid cell's lower end

    @classmethod
    def of(cls, edges: np.ndarray) -> _Lookup:
        width = float(np.min(np.diff(edges)))
        if not np.all(np.isfinite(edges)) or width <= 0 or (edges[-1] - edges[0]) / width > 1e5:
            raise _Unsupported
        count = int(np.ceil(4.0 * (edges[-1] - edges[0]) / width)) + 1
        scale = count / float(edges[-1] - edges[0])
        lower = edges[0] + np.arange(count + 1) / scale
        cells = np.clip(np.searchsorted(edges, lower, side="right") - 1, 0, len(edges) - 2)
        return cls(edges, float(edges[0]), scale, cells)

    def bins(self, values: np.ndarray) -> np.ndarray:
        """The bin of every value, clamped into the edges (a value outside them or next to an
        edge is correctionlib's; see :func:`_doubtful`)."""
        grid = values - self.start
        grid *= self.scale
        np.nan_to_num(grid, copy=False, nan=0.0)  # a NaN's bin is arbitrary: it is correctionlib's
        np.clip(grid, 0, len(self.cells) - 1, out=grid)
        index = self.cells.take(grid.astype(np.int64))
        last = len(self.edges) - 2
        index += (values >= self.edges.take(np.minimum(index + 1, last + 1))) & (index < last)
        index -= (values < self.edges.take(index)) & (index > 0)
        return index


@lru_cache(maxsize=64)
def compile_formula_table(path: str, key: str) -> FormulaTable | None:
    """The table of correction ``key`` in ``path`` (checked, as by ``loading.get_correction``),
    or ``None`` when it has another form or does not give correctionlib's values at every cell."""
    corr = correction_json(path, key)
    if corr is None:
        return None
    try:
        table = _compile(corr)
    except (_Unsupported, KeyError, TypeError, ValueError, IndexError, SyntaxError, RuntimeError):
        return None
    return table if table is not None and _agrees(parsed_correction(path, key), table) else None


def _compile(corr: Mapping[str, Any]) -> FormulaTable | None:
    inputs = [i["name"] for i in corr["inputs"]]
    if any(i.get("type") != "real" for i in corr["inputs"]):
        raise _Unsupported
    outer, outer_edges, rows = _binning(corr["data"])
    inner: str | None = None
    leaves: list[list[Any]] = []
    inner_rows: list[list[float]] = []
    for child in rows:
        if isinstance(child, dict) and child.get("nodetype") == "binning":
            name, edges, content = _binning(child)
            if inner not in (None, name) or name == outer:
                raise _Unsupported
            inner = name
            inner_rows.append(edges)
            leaves.append(content)
        else:
            inner_rows.append([])
            leaves.append([child])
    if inner is not None and any(not r for r in inner_rows):
        raise _Unsupported
    formulas = [leaf for row in leaves for leaf in row]
    first = formulas[0]
    expression, variables = first.get("expression"), tuple(first.get("variables") or ())
    if not all(isinstance(f, dict) and f.get("nodetype") == "formula" and f.get("parser") == "TFormula"
               and f.get("expression") == expression and tuple(f.get("variables") or ()) == variables
               for f in formulas):
        raise _Unsupported
    if not isinstance(expression, str) or not variables or len(variables) > len(VARIABLES):
        raise _Unsupported
    if any(v not in inputs for v in variables):
        raise _Unsupported
    program, used = _program(expression)
    stride = max(len(row) for row in leaves)
    # Parameters by cell (``row * stride + column``; a short row's spare cells stay zero).
    values = np.zeros((max(used, default=-1) + 1, len(leaves) * stride))
    for k, row in enumerate(leaves):
        for c, formula in enumerate(row):
            given = formula.get("parameters") or []
            for j in used:
                values[j, k * stride + c] = float(given[j])
    params = _read_back(corr, values)
    outer_array = np.asarray(outer_edges, dtype=np.float64)
    width = max((len(r) for r in inner_rows), default=0)
    inner_edges = np.full((max(width, 2), len(inner_rows)), np.inf)
    for k, r in enumerate(inner_rows):
        inner_edges[:len(r), k] = r
    return FormulaTable(tuple(inputs), outer, outer_array, _Lookup.of(outer_array), inner, inner_edges,
                        np.ascontiguousarray(inner_edges.T).ravel(), np.asarray([max(len(r) - 1, 0) for r in inner_rows], dtype=np.int64), stride,
                        variables, program, params)


def _binning(node: Any) -> tuple[str, list[float], list[Any]]:
    if not isinstance(node, dict) or node.get("nodetype") != "binning":
        raise _Unsupported
    edges, content = node["edges"], node["content"]
    if (not all(isinstance(e, (int, float)) and not isinstance(e, bool) for e in edges)
            or len(edges) != len(content) + 1):
        raise _Unsupported
    return str(node["input"]), [float(e) for e in edges], list(content)


def _program(expression: str) -> tuple[Program, list[int]]:
    """The formula as numpy operations, one per distinct node of its syntax tree in TFormula's
    order of evaluation (a repeated subexpression, such as the clamped ``x`` of an
    ``L2Relative``, is computed once: the same operations on the same values), and the
    parameters it reads."""
    text = re.sub(r"\[(\d+)\]", r"_p(\1)", expression)
    tree = ast.parse(text, mode="eval")
    used: set[int] = set()
    slots: dict[str, int] = {}
    steps: list[Callable[[list[Values], Mapping[str, np.ndarray], Callable[[int], np.ndarray]], Values]] = []

    def emit(node: ast.AST) -> int:
        known = slots.get(ast.dump(node))
        if known is not None:
            return known
        steps.append(_step(node, emit, used))
        slots[ast.dump(node)] = len(steps) - 1
        return len(steps) - 1

    root = emit(tree.body)

    def run(env: Mapping[str, np.ndarray], param: Callable[[int], np.ndarray]) -> Values:
        values: list[Values] = []
        for step in steps:
            values.append(step(values, env, param))
        return values[root]

    return run, sorted(used)


def _step(node: ast.AST, emit: Callable[[ast.AST], int], used: set[int]
          ) -> Callable[[list[Values], Mapping[str, np.ndarray], Callable[[int], np.ndarray]], Values]:
    """One node as an operation on the values of the nodes before it."""
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) and not isinstance(node.value, bool):
        constant = float(node.value)
        return lambda v, env, p: constant
    if isinstance(node, ast.Name) and node.id in VARIABLES:
        name = node.id
        return lambda v, env, p: env[name]
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        operand = emit(node.operand)
        return lambda v, env, p: np.negative(v[operand])
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        op, left, right = _BINARY[type(node.op)], emit(node.left), emit(node.right)
        return lambda v, env, p: op(v[left], v[right])
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and not node.keywords:
        name, args = node.func.id, node.args
        if name == "_p" and len(args) == 1 and isinstance(args[0], ast.Constant) and isinstance(args[0].value, int):
            index = args[0].value
            used.add(index)
            return lambda v, env, p: p(index)
        if name in ("max", "min") and len(args) == 2:
            op, first, second = (np.maximum if name == "max" else np.minimum), emit(args[0]), emit(args[1])
            return lambda v, env, p: op(v[first], v[second])
        if name == "pow" and len(args) == 2 and isinstance(args[1], ast.Constant) and args[1].value == 0:
            return lambda v, env, p: 1.0  # pow(v, 0) is exactly 1 for every v
    raise _Unsupported


_BINARY: dict[type, Callable[[Any, Any], Any]] = {
    ast.Add: np.add, ast.Sub: np.subtract, ast.Mult: np.multiply, ast.Div: np.true_divide}


def _read_back(corr: Mapping[str, Any], values: np.ndarray) -> np.ndarray:
    """The parameters as correctionlib holds them: each read as a constant of one probe
    correction (a flat binning over their positions), whose text goes through the same
    ``json.dumps`` as the correction's own, so its numbers are parsed as the formula's are."""
    flat = values.ravel()
    probe = {"name": f"{corr['name']}[parameters]", "version": 1,
             "inputs": [{"name": "position", "type": "real"}], "output": {"name": "value", "type": "real"},
             "data": {"nodetype": "binning", "input": "position", "edges": [float(i) for i in range(len(flat) + 1)],
                      "content": flat.tolist(), "flow": "error"}}
    read = parse_correction(probe).evalv(np.arange(len(flat)) + 0.5)
    return np.asarray(read, dtype=np.float64).reshape(values.shape)


def _agrees(whole: correctionlib._core.Correction, table: FormulaTable) -> bool:
    """Whether the table gives correctionlib's values bit for bit at points spread through
    every cell (the other inputs over a typical range)."""
    rng = np.random.default_rng(20170)
    per_cell = 6
    edges = table.outer_edges
    if table.inner is None:
        row = np.repeat(np.arange(len(edges) - 1), per_cell)
        sample = {table.outer: rng.uniform(edges.take(row), edges.take(row + 1))}
    else:
        row = np.repeat(np.repeat(np.arange(len(edges) - 1), table.row_bins), per_cell)
        column = np.repeat(np.concatenate([np.arange(b) for b in table.row_bins]), per_cell)
        low, high = table.inner_edges[column, row], table.inner_edges[column + 1, row]
        sample = {table.outer: rng.uniform(edges.take(row), edges.take(row + 1)), table.inner: rng.uniform(low, high)}
    n = len(row)
    for name in table.inputs:
        sample.setdefault(name, rng.uniform(0.3, 60.0, n))
    args = [sample[name] for name in table.inputs]
    want = np.asarray(whole.evalv(*args), dtype=np.float64)

    def exact(picked: np.ndarray) -> np.ndarray:
        return np.asarray(whole.evalv(*[a.take(picked) for a in args]), dtype=np.float64)

    got = table.evaluate(sample, exact)
    return got.tobytes() == want.tobytes()

"""JES uncertainty sources evaluated through one shared bin lookup.

The CMS JES uncertainty of every source is a correction with the same tree: a binning in
``JetEta``, then a binning in ``JetPt`` (``flow: clamp``), each bin holding the TFormula
``[0]*max(min(x,[3]),[2])+[1]`` with its own four parameters (UL files) or a constant, and all
sources share both sets of edges. correctionlib walks that tree for every source and every jet; here the
two bin numbers are found once per chunk and each source is a gather of its parameters and the
same three operations in the same order. The values are identical bit for bit: the parameters
are read back from correctionlib itself (its JSON parser does not always round a decimal to the
nearest double, so Python's reading of the file can differ in the last bit), and jets within a
hair of a bin edge, whose bin could depend on that parsing too, are left to correctionlib.

A hand-written stand-in for correctionlib, kept because ``benchmarks/bench_jes_sources.py``
measures it at more than twice correctionlib's speed on the real UL files (see that script). It
is used only when every source has exactly this form and the inputs are finite; otherwise the
sources are evaluated by correctionlib.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeGuard

import numpy as np

from intccms.physics import compiled
from intccms.physics.corrections.file_memo import per_file
from intccms.physics.corrections.loading import (
    correction_json,
    input_ranges,
    parse_correction,
    parse_variants,
)

FORMULA = "[0]*max(min(x,[3]),[2])+[1]"
Evaluate = Callable[[Mapping[str, np.ndarray], "str | None"], np.ndarray]


@dataclass(frozen=True)
class JesSourceTable:
    """Parameters of every source on the shared (eta, pt) grid: ``params[source, bin, 4]``."""

    eta_input: str
    pt_input: str
    eta_edges: np.ndarray
    pt_edges: np.ndarray
    eta_range: tuple[float, float] | None  # the clip correctionlib's callers apply (FlatEvaluator)
    params: np.ndarray
    keys: tuple[str, ...]
    constant: tuple[bool, ...]  # per source: a constant per bin (``params[..., 1]``), no formula
    columns: np.ndarray  # ``params`` as ``[source, parameter, bin]``: each parameter's bins contiguous

    def lookup(self, fields: Mapping[str, np.ndarray]) -> JesLookup | None:
        """The bin of every jet, or ``None`` when an input is not finite (correctionlib then)."""
        raw_eta = np.asarray(fields[self.eta_input], dtype=np.float64)
        pt = np.asarray(fields[self.pt_input], dtype=np.float64)
        if not (np.isfinite(raw_eta).all() and np.isfinite(pt).all()):
            return None
        eta = raw_eta
        if self.eta_range is not None:
            low, high = self.eta_range
            eta = np.clip(eta, low, np.nextafter(high, -np.inf) if np.isfinite(high) else high)
        ieta, near_eta = _bins(self.eta_edges, eta)
        ipt, near_pt = _bins(self.pt_edges, pt)
        near = np.flatnonzero(near_eta | near_pt)
        cell = ieta * (len(self.pt_edges) - 1) + ipt
        edge_fields = {self.eta_input: raw_eta[near], self.pt_input: pt[near]}
        return JesLookup(self, cell, pt, near, edge_fields)


EDGE_WINDOW = 1e-9
"""Relative distance to a bin edge within which a jet is evaluated by correctionlib."""


def _bins(edges: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Bin of every value (the outer bins extended, as ``flow: clamp``) and whether it lies
    within :data:`EDGE_WINDOW` of an edge of that bin."""
    index = np.clip(np.searchsorted(edges, values, side="right") - 1, 0, len(edges) - 2)
    window = EDGE_WINDOW * (1.0 + np.abs(values))
    near = (np.abs(values - edges[index]) <= window) | (np.abs(edges[index + 1] - values) <= window)
    return index, near


@dataclass(frozen=True)
class JesLookup:
    """The bins of one chunk's jets, shared by every source."""

    table: JesSourceTable
    cell: np.ndarray
    x: np.ndarray
    near: np.ndarray  # jets next to a bin edge: evaluated by correctionlib
    edge_fields: Mapping[str, np.ndarray]

    def source(self, key: str, exact: Evaluate) -> Evaluate:
        """An evaluator of one source with the signature of :class:`FlatEvaluator`; ``exact``
        (correctionlib) evaluates the jets next to a bin edge."""
        index = self.table.keys.index(key)

        def evaluate(_fields: Mapping[str, np.ndarray], _selector: str | None) -> np.ndarray:
            p = self.table.columns[index]  # one contiguous gather per parameter
            kernels = compiled.kernels()
            if self.table.constant[index]:
                out = p[1].take(self.cell)
            elif (kernels is not None and self.cell.dtype == np.int64 and self.x.dtype == np.float64
                  and np.isfinite(self.table.params[index]).all()):  # x is finite (lookup)
                out = kernels.jes_formula(self.cell, self.x, self.table.params[index])
            else:  # p0 * max(min(x, p3), p2) + p1, in correctionlib's order
                out = np.minimum(self.x, p[3].take(self.cell))
                np.maximum(out, p[2].take(self.cell), out=out)
                out *= p[0].take(self.cell)
                out += p[1].take(self.cell)
            if len(self.near):
                out[self.near] = exact(self.edge_fields, None)
            return out

        return evaluate


def compile_sources(path: str, keys: Sequence[str]) -> JesSourceTable | None:
    """The table of ``keys`` in ``path``, or ``None`` when any source has another form (kept
    per file: see :mod:`file_memo`)."""
    return _compiled_sources(path, tuple(keys))


@per_file
def _compiled_sources(path: str, keys: tuple[str, ...]) -> JesSourceTable | None:
    if not keys:
        return None
    found = [correction_json(path, key) for key in keys]
    corrs = [c for c in found if c is not None]
    if len(corrs) != len(keys) or len(corrs[0].get("inputs", [])) != 2:
        return None
    eta_input, pt_input = (i.get("name") for i in corrs[0]["inputs"])
    kinds: list[bool] = []
    edges: tuple[list[Any], list[Any]] | None = None
    for corr in corrs:
        parsed = _parse(corr, eta_input, pt_input)
        if parsed is None or (edges is not None and parsed[0] != edges):
            return None
        edges, constant = parsed
        kinds.append(constant)
    assert edges is not None
    ranges = input_ranges(path, keys[0])
    if any(input_ranges(path, k) != ranges for k in keys[1:]) or pt_input in ranges:
        return None
    eta_edges = np.asarray(edges[0], dtype=np.float64)
    pt_edges = np.asarray(edges[1], dtype=np.float64)
    params = np.stack([_parameters_as_evaluated(corr, eta_edges, pt_edges, c)
                       for corr, c in zip(corrs, kinds, strict=True)])
    return JesSourceTable(eta_input, pt_input, eta_edges, pt_edges, ranges.get(eta_input),
                          params, tuple(keys), tuple(kinds), np.ascontiguousarray(params.transpose(0, 2, 1)))


def _parameters_as_evaluated(corr: Mapping[str, Any], eta_edges: np.ndarray, pt_edges: np.ndarray,
                             constant: bool) -> np.ndarray:
    """``params[cell, 4]`` as correctionlib holds them: the correction is loaded with its formula
    replaced by ``[j]`` (a constant: as it is) and evaluated at every cell's centre (the file text
    goes through ``loading.parse_variants``, the text ``parse_correction`` gives each probe)."""
    n_pt = len(pt_edges) - 1
    eta = np.repeat((eta_edges[:-1] + eta_edges[1:]) / 2, n_pt)
    pt = np.tile((pt_edges[:-1] + pt_edges[1:]) / 2, len(eta_edges) - 1)
    out = np.full((len(eta), 4), np.nan)
    if constant:
        out[:, 1] = parse_correction(dict(corr)).evalv(eta, pt)
        return out
    probes = [{"name": f"{corr['name']}[{j}]",
               "generic_formulas": [{**f, "expression": f"[{j}]"} for f in corr["generic_formulas"]]}
              for j in range(4)]
    for j, probe in enumerate(parse_variants(dict(corr), probes)):
        out[:, j] = probe.evalv(eta, pt)
    return out


def _parse(corr: Mapping[str, Any], eta_input: str, pt_input: str
           ) -> tuple[tuple[list[Any], list[Any]], bool] | None:
    """The edges of one source of the expected form, and whether its bins hold constants."""
    if [i.get("name") for i in corr.get("inputs", [])] != [eta_input, pt_input]:
        return None
    if any(i.get("type") != "real" for i in corr["inputs"]):
        return None
    formulas = corr.get("generic_formulas") or []
    if not all(f.get("expression") == FORMULA and f.get("parser") == "TFormula"
               and f.get("variables") == [pt_input] for f in formulas):
        return None
    root: Mapping[str, Any] = corr.get("data") or {}
    eta_edges: Any = root.get("edges")
    if root.get("nodetype") != "binning" or root.get("input") != eta_input or not _numbers(eta_edges):
        return None
    rows = root.get("content", [])
    if len(rows) != len(eta_edges) - 1:
        return None
    pt_edges: Any = rows[0].get("edges") if rows and isinstance(rows[0], dict) else None
    if not _numbers(pt_edges):
        return None
    cells = []
    for row in rows:
        if not (isinstance(row, dict) and row.get("nodetype") == "binning" and row.get("input") == pt_input
                and row.get("flow") == "clamp" and row.get("edges") == pt_edges
                and len(row.get("content", [])) == len(pt_edges) - 1):
            return None
        cells.extend(row["content"])
    if all(isinstance(c, (int, float)) and not isinstance(c, bool) for c in cells):
        return (eta_edges, pt_edges), True
    if all(isinstance(c, dict) and c.get("nodetype") == "formularef"
           and 0 <= int(c.get("index", -1)) < len(formulas) and len(c.get("parameters") or []) == 4
           for c in cells):
        return (eta_edges, pt_edges), False
    return None


def _numbers(values: Any) -> TypeGuard[list[float]]:
    return (isinstance(values, list) and len(values) >= 2
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values))

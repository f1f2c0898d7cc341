"""Fitted binning: flow bins folded in, optional merge of adjacent bins."""

from __future__ import annotations

import itertools

import numpy as np

from intccms.stats.errors import StatisticsInputError


def merge_matrix(
    edges: np.ndarray, include_flow: bool, rebin_edges: list[float] | None, where: str
) -> tuple[np.ndarray, np.ndarray]:
    """A 0/1 matrix mapping (underflow, bins..., overflow) to the fitted bins.

    Args:
        edges: bin edges of the observable axis.
        include_flow: add the underflow to the first and the overflow to the last bin.
        rebin_edges: new edges, a subset of ``edges`` (None keeps the binning).
        where: histogram name for error messages.

    Returns:
        (matrix of shape (n_fitted, n_bins + 2), fitted edges)
    """
    nb = len(edges) - 1
    new_edges = np.asarray(edges if rebin_edges is None else rebin_edges, dtype=float)
    idx = []
    for e in new_edges:
        hit = np.flatnonzero(np.isclose(edges, e, rtol=0, atol=1e-9 * max(1.0, abs(e))))
        if hit.size == 0:
            msg = (
                f"rebin edge {e} is not a bin edge of {where} (edges {edges.tolist()}); "
                "choose statistics.input.rebin_edges among the existing edges"
            )
            raise StatisticsInputError(msg)
        idx.append(int(hit[0]))
    if len(idx) < 2 or any(b <= a for a, b in itertools.pairwise(idx)):
        msg = f"rebin edges {new_edges.tolist()} for {where} must be increasing, at least two"
        raise StatisticsInputError(msg)
    m = np.zeros((len(idx) - 1, nb + 2))
    for k, (a, b) in enumerate(itertools.pairwise(idx)):
        m[k, 1 + a : 1 + b] = 1.0  # +1: column 0 is the underflow
    if include_flow:
        m[0, : 1 + idx[0]] = 1.0  # underflow and any bins below the first new edge
        m[-1, 1 + idx[-1] :] = 1.0  # bins above the last new edge and the overflow
    return m, new_edges

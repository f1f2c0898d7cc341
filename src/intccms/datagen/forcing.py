"""Generation inside the skim: every event gets at least one muon source, with exact bookkeeping.

The skim needs an isolated muon, which most processes make rarely (a hadronic tt event only
through a semileptonic b or c decay whose muon carries most of the hadron's momentum). Instead
of generating and rejecting, every *muon source* of a process is a **slot** with a discrete
outcome drawn from fixed probabilities, independent of the kinematics:

- :class:`HFSlot`: a quark's hadron flavour (light, c, b) and, for c and b, no semileptonic
  decay, a semileptonic decay whose muon fails mini-isolation < 0.2 (``miniIsoId`` < 2) or one
  whose muon passes it (the *success*);
- :class:`LeptonSlot`: a W decay: hadronic, e, mu, tau -> mu, tau -> e, tau -> hadrons
  (success: mu or tau -> mu);
- :class:`ZllSlot`: a Z -> ll decay, flavour and both tau decays (success: any muon).

A process lists its slots; the region ``R`` = "at least one slot succeeds" has the exact
probability ``1 - prod(1 - s_k)``, which joins the process's ``p_gen``. Events are drawn
directly from the model conditioned on ``R`` (:func:`first_success`: the index of the first
successful slot is drawn from its conditional law, earlier slots are conditioned on failure,
later ones are free), so they are unweighted and distributed exactly as the kept events of
plain generation. Events outside ``R`` have no isolated muon and cannot pass the skim.

The mini-isolation of a muon from a semileptonic decay (momentum fraction ``z ~ Beta(1.3, 5)``,
neutrino fraction ``b (1 - z)`` with ``b ~ Beta(1.3, 5)``, isolation
``(1 - z)(1 - b) u / z`` with ``u ~ U(0.5, 1)``) passes with probability :func:`iso_pass_probability`
(~0.4 %), computed by quadrature; conditional draws use a tabulated ``z`` law and exact
conditional draws of ``u`` and ``b``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache

import numpy as np
from numpy.typing import NDArray
from scipy.special import betainc, betaincinv

__all__ = [
    "FREE", "HFSlot", "LeptonSlot", "Slot", "ZllSlot", "conditional_choice", "first_success",
    "iso_pass_probability", "region_probability", "sample_semileptonic",
]

F = NDArray[np.float64]
Ints = NDArray[np.int64]

ISO_CUT = 0.2  # mini-isolation below which miniIsoId >= 2 (loose)
Z_A, Z_B = 1.3, 5.0  # Beta law of the muon (and neutrino) momentum fractions
SEMI_PROB = {5: 0.20, 4: 0.10}  # semileptonic (to mu) decay probability of b and c hadrons
TAU_TO_MU, TAU_TO_E = 0.174, 0.178
FREE, FAIL, SUCCESS = 0, -1, 1

# lepton modes of a W (0: hadronic) and their codes in TruthBuilder.add_lepton
W_HAD, L_E, L_MU, L_TAU_MU, L_TAU_E, L_TAU_HAD = 0, 1, 2, 3, 4, 5
# semileptonic states of a heavy-flavour hadron
SEMI_NONE, SEMI_FAIL, SEMI_PASS = 0, 1, 2


def _pass_given_zu(z: F, u: F) -> F:
    """P(isolation < ISO_CUT | z, u): the neutrino fraction ``b`` must exceed ``1 - t``."""
    with np.errstate(divide="ignore", invalid="ignore"):
        t = ISO_CUT * z / ((1.0 - z) * u)
    lo = np.clip(1.0 - np.nan_to_num(t, nan=0.0, posinf=2.0), 0.0, 1.0)
    return 1.0 - betainc(Z_A, Z_B, lo)


@cache
def _iso_table() -> tuple[F, F, float]:
    """Cell edges in z, cumulative distribution of z given isolation, and P(isolated)."""
    edges = np.linspace(0.0, 1.0, 8001)
    z = 0.5 * (edges[1:] + edges[:-1])
    x, w = np.polynomial.legendre.leggauss(64)
    u = 0.75 + 0.25 * x  # nodes on [0.5, 1]; weights w/2 average over u
    g = (_pass_given_zu(z[:, None], u[None, :]) * (0.5 * w)[None, :]).sum(axis=1)
    mass = np.diff(betainc(Z_A, Z_B, edges)) * g
    total = float(mass.sum())
    cdf = np.concatenate([[0.0], np.cumsum(mass) / total])
    return edges, cdf, total


def iso_pass_probability() -> float:
    """Probability that a semileptonic-decay muon has mini-isolation below :data:`ISO_CUT`."""
    return _iso_table()[2]


def _isolation(z: F, b: F, u: F) -> tuple[F, F, F]:
    z_nu = b * (1.0 - z)
    activity = (1.0 - z - z_nu) / np.maximum(z, 1e-3)
    return z_nu, activity, activity * u


def sample_semileptonic(rng: np.random.Generator, state: Ints) -> tuple[F, F, F, F]:
    """Momentum fractions and isolation of semileptonic decays in a given state.

    Args:
        rng (numpy.random.Generator): random source.
        state (ndarray): per decay, :data:`SEMI_FAIL` (not isolated) or :data:`SEMI_PASS`.

    Returns:
        tuple: muon fraction ``z``, neutrino fraction, activity ``(1 - z - z_nu) / z`` and the
        mini-isolation (``activity * u``), each of the shape of ``state``.
    """
    n = state.size
    z, b, u = np.empty(n), np.empty(n), np.empty(n)
    fail = np.flatnonzero(state != SEMI_PASS)
    while fail.size:  # exact: rejection of the (rare) isolated ones
        zf, bf, uf = rng.beta(Z_A, Z_B, fail.size), rng.beta(Z_A, Z_B, fail.size), rng.uniform(0.5, 1.0, fail.size)
        ok = _isolation(zf, bf, uf)[2] >= ISO_CUT
        z[fail[ok]], b[fail[ok]], u[fail[ok]] = zf[ok], bf[ok], uf[ok]
        fail = fail[~ok]
    todo = np.flatnonzero(state == SEMI_PASS)
    if todo.size:
        edges, cdf, _ = _iso_table()
        r = rng.random(todo.size)
        cell = np.clip(np.searchsorted(cdf, r, side="right") - 1, 0, len(edges) - 2)
        frac = (r - cdf[cell]) / np.maximum(cdf[cell + 1] - cdf[cell], 1e-300)
        z_t = np.clip(edges[cell] + frac * (edges[cell + 1] - edges[cell]), 1e-6, 1 - 1e-6)
        u_t = np.empty(todo.size)
        rest = np.arange(todo.size)
        top = _pass_given_zu(z_t, np.full(todo.size, 0.5))  # the pass probability falls with u
        while rest.size:
            cand = rng.uniform(0.5, 1.0, rest.size)
            ok = rng.random(rest.size) * top[rest] <= _pass_given_zu(z_t[rest], cand)
            u_t[rest[ok]] = cand[ok]
            rest = rest[~ok]
        t = ISO_CUT * z_t / ((1.0 - z_t) * u_t)
        f0 = betainc(Z_A, Z_B, np.clip(1.0 - t, 0.0, 1.0))
        b_t = betaincinv(Z_A, Z_B, f0 + rng.random(todo.size) * (1.0 - f0))
        z[todo], b[todo], u[todo] = z_t, b_t, u_t
    z_nu, activity, mini = _isolation(z, b, u)
    passing = state == SEMI_PASS
    mini = np.where(passing, np.minimum(mini, 0.999 * ISO_CUT), mini)
    return z, z_nu, activity, mini


@dataclass(frozen=True)
class HFSlot:
    """A quark whose hadron is b with ``p_b``, c with ``p_c``, light otherwise."""

    p_b: float
    p_c: float

    def outcomes(self) -> tuple[F, NDArray[np.bool_]]:
        """Probabilities of (flavour, state) pairs, see :meth:`decode`, and which succeed."""
        iso = iso_pass_probability()
        probs = [1.0 - self.p_b - self.p_c]
        for p, flav in ((self.p_b, 5), (self.p_c, 4)):
            s = SEMI_PROB[flav]
            probs += [p * (1.0 - s), p * s * (1.0 - iso), p * s * iso]
        return np.array(probs), np.array([False, False, False, True, False, False, True])

    @staticmethod
    def decode(outcome: Ints) -> tuple[Ints, Ints]:
        """Hadron flavour and semileptonic state of each outcome index."""
        flav = np.array([0, 5, 5, 5, 4, 4, 4])[outcome]
        state = np.array([SEMI_NONE, SEMI_NONE, SEMI_FAIL, SEMI_PASS, SEMI_NONE, SEMI_FAIL, SEMI_PASS])[outcome]
        return flav, state


@dataclass(frozen=True)
class LeptonSlot:
    """A W boson decaying to leptons with probability ``br_lep`` (e, mu, tau equally)."""

    br_lep: float

    def outcomes(self) -> tuple[F, NDArray[np.bool_]]:
        """Probabilities of the modes W_HAD, L_E, L_MU, L_TAU_MU, L_TAU_E, L_TAU_HAD."""
        third = self.br_lep / 3.0
        probs = np.array([1.0 - self.br_lep, third, third, third * TAU_TO_MU, third * TAU_TO_E,
                          third * (1.0 - TAU_TO_MU - TAU_TO_E)])
        return probs, np.array([False, False, True, True, False, False])

    @staticmethod
    def decode(outcome: Ints) -> Ints:
        """The mode code (:data:`W_HAD`, :data:`L_E`, ...)."""
        return outcome


_TAU_MODES = (L_TAU_MU, L_TAU_E, L_TAU_HAD)


@dataclass(frozen=True)
class ZllSlot:
    """A Z -> ll decay (e, mu, tau equally), both taus decaying independently."""

    def outcomes(self) -> tuple[F, NDArray[np.bool_]]:
        """Probabilities of: ee, mumu, then the 9 pairs of tau decay modes."""
        tau_p = {L_TAU_MU: TAU_TO_MU, L_TAU_E: TAU_TO_E, L_TAU_HAD: 1.0 - TAU_TO_MU - TAU_TO_E}
        probs = [1 / 3, 1 / 3] + [tau_p[a] * tau_p[b] / 3 for a in _TAU_MODES for b in _TAU_MODES]
        success = [False, True] + [L_TAU_MU in (a, b) for a in _TAU_MODES for b in _TAU_MODES]
        return np.array(probs), np.array(success)

    @staticmethod
    def decode(outcome: Ints) -> tuple[Ints, Ints]:
        """Lepton mode of each of the two leptons."""
        first = np.array([L_E, L_MU] + [a for a in _TAU_MODES for _ in _TAU_MODES])
        second = np.array([L_E, L_MU] + [b for _ in _TAU_MODES for b in _TAU_MODES])
        return first[outcome], second[outcome]


Slot = HFSlot | LeptonSlot | ZllSlot


def success_probability(slot: Slot) -> float:
    """Probability that a slot yields an isolated muon."""
    probs, success = slot.outcomes()
    return float(probs[success].sum())


def region_probability(slots: Sequence[Slot]) -> float:
    """Probability that at least one of independent ``slots`` succeeds."""
    return 1.0 - float(np.prod([1.0 - success_probability(s) for s in slots]))


def first_success(rng: np.random.Generator, n: int, slots: Sequence[Slot]) -> Ints:
    """Per event and slot: :data:`FAIL`, :data:`SUCCESS` or :data:`FREE`, given >= 1 success.

    Returns:
        ndarray: ``(n, len(slots))`` status codes for :func:`conditional_choice`.
    """
    s = np.array([success_probability(x) for x in slots])
    none_before = np.concatenate([[1.0], np.cumprod(1.0 - s)[:-1]])
    p_first = none_before * s
    cdf = np.cumsum(p_first)
    cdf /= cdf[-1]
    first = np.minimum(np.searchsorted(cdf, rng.random(n), side="right"), len(slots) - 1)
    k = np.arange(len(slots))[None, :]
    return np.where(k < first[:, None], FAIL, np.where(k == first[:, None], SUCCESS, FREE))


def conditional_choice(rng: np.random.Generator, status: Ints | None, probs: F, success: NDArray[np.bool_],
                       n: int) -> Ints:
    """Draw outcome indices from ``probs``, restricted to failures/successes per ``status``."""
    if status is None:
        status = np.zeros(n, dtype=np.int64)
    table = np.stack([np.where(success, 0.0, probs), probs, np.where(success, probs, 0.0)])
    sums = table.sum(axis=1, keepdims=True)
    cdf = np.cumsum(table / np.where(sums > 0, sums, 1.0), axis=1)
    cdf /= np.where(cdf[:, -1:] > 0, cdf[:, -1:], 1.0)  # exact 1 after the last possible outcome
    rows = cdf[status + 1]
    out = (rng.random(n)[:, None] >= rows).sum(axis=1)
    return np.minimum(out, len(probs) - 1)

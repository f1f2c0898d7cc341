"""Hard-process models: what each ``kind`` produces at generator level.

Every MC kind is a :class:`Process`: a cross-section (pb, the values of ``ANALYSIS.md`` and
the dataset listings), a generator-weight model, the probability ``p_gen`` of its
generator-level phase-space cut, and a function filling a :class:`TruthBuilder`.

Phase-space cuts, chosen so that the rare boosted topologies the analysis selects are
reachable without simulating millions of soft events (their probabilities are analytic, so
the sums of weights still describe the full sample):

- pair production (tt, single top, dibosons) samples the pT of the produced pair from
  ``f(pT) ~ pT (1 + pT^2/a^2)^-n`` truncated at ``pT_min``; ``p_gen = (1 + pT_min^2/a^2)^(1-n)``;
- V+jets and QCD sample the parton HT from a power law inside the sample's HT bin;
- every kind except the dibosons is generated inside the skim's muon requirement: its muon
  sources are the slots of :attr:`Process.slots` and ``p_gen`` includes the exact probability
  that one of them gives an isolated muon (:mod:`intccms.datagen.forcing`); QCD gets its muons
  from semileptonic b and c decays only.

Generator weights: powheg tt (|w| ~ 300/72 with 0.4 % negative weights, like UL samples),
amc@NLO single top s-channel (19 % negative), LO madgraph/pythia samples with constant
positive weights. The signal, Z' -> tt with mass/width from ``params``, is a Breit-Wigner
resonance with both tops decaying inclusively.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from intccms.datagen import fourvec as fv
from intccms.datagen.forcing import W_HAD, HFSlot, LeptonSlot, Slot, ZllSlot, region_probability
from intccms.datagen.truth import (
    B_SLOT,
    G_TOP,
    G_W,
    G_Z,
    ISR_SLOT,
    M_B,
    M_TOP,
    M_W,
    M_Z,
    WQ_SLOT,
    TruthBuilder,
    add_resonance_fat,
    breit_wigner,
    decay_top,
    decay_w,
    fat_may_pass,
    finish_top,
    top_to_bw,
)

__all__ = ["MC_KINDS", "Process", "resolve_process"]

MC_KINDS = ("zprime", "ttbar_semilep", "ttbar_had", "ttbar_dilep", "wjets", "dyjets",
            "single_top", "diboson", "qcd")

BR_W_LEP = 0.3258
F = np.ndarray

LEP = LeptonSlot(1.0)  # a W known to decay leptonically
W_INCL = LeptonSlot(BR_W_LEP)
VQ_SLOT = HFSlot(0.02, 0.06)  # V+jets partons
QCD_SLOT = HFSlot(0.04, 0.08)  # multijet partons
ZLL = ZllSlot()

WJETS_XSEC = {(70, 100): 1271.0, (100, 200): 1253.0, (200, 400): 335.9, (400, 600): 45.21,
              (600, 800): 10.99, (800, 1200): 4.936, (1200, 2500): 1.156, (2500, None): 0.02623}
DYJETS_XSEC = {(70, 100): 140.1, (100, 200): 140.2, (200, 400): 38.399, (400, 600): 5.21278,
               (600, 800): 1.26567, (800, 1200): 0.5684304, (1200, 2500): 0.1331514,
               (2500, None): 0.00297803565}
QCD_XSEC = {(50, 100): 1.859e8, (100, 200): 2.361e7, (200, 300): 1.551e6, (300, 500): 3.243e5,
            (500, 700): 3.034e4, (700, 1000): 6440.0, (1000, 1500): 1118.0,
            (1500, 2000): 108.0, (2000, None): 22.0}
SINGLE_TOP_XSEC = {"s": 3.36432, "t_top": 136.02, "t_antitop": 80.95, "tW_top": 19.46655,
                   "tW_antitop": 19.46655}
DIBOSON_XSEC = {"WW": 118.7, "WZ": 46.74, "ZZ": 16.91}
# Z' -> tt cross-sections (pb) for width/mass = 10 %, the reference sample being M2000_W200
ZPRIME_XSEC_10PCT = {400: 2.448, 500: 2.442, 600: 1.736, 700: 1.159, 800: 0.7745, 1000: 0.3622,
                     1200: 0.1821, 1400: 0.09683, 1600: 0.05402, 1800: 0.03153, 2000: 0.01895,
                     2500: 0.005914, 3000: 0.002112, 3500: 0.0008526, 4000: 0.0003889}


@dataclass(frozen=True)
class Process:
    """One MC sample: generator-level model plus the numbers that normalise it."""

    kind: str
    params: Mapping[str, Any]
    xsec_pb: float | None
    p_gen: float
    weight_scale: float
    negative_fraction: float
    fill: Callable[[TruthBuilder], float | F]
    slots: tuple[Slot, ...] = ()


    def gen_weights(self, rng: np.random.Generator, n: int) -> F:
        """float32 generator weights (sign and magnitude as in the real sample type)."""
        sign = np.where(rng.random(n) < self.negative_fraction, -1.0, 1.0)
        spread = 1.0 + 0.003 * rng.standard_normal(n) if self.negative_fraction > 0 else 1.0
        return (sign * self.weight_scale * spread).astype(np.float32)


def _process(kind: str, params: dict[str, Any], xsec: float | None, p_cut: float, scale: float,
             negative: float, fill: Callable[[TruthBuilder], float | F],
             slots: tuple[Slot, ...] = ()) -> Process:
    """A :class:`Process` whose ``p_gen`` is the phase-space cut's probability ``p_cut`` times
    that of an isolated-muon source among ``slots``."""
    p_gen = p_cut * (region_probability(slots) if slots else 1.0)
    return Process(kind, params, xsec, p_gen, scale, negative, fill, slots)


def _pt_tail(pt_min: float, a: float, n: float) -> float:
    return float((1.0 + (pt_min / a) ** 2) ** (1.0 - n))


def _sample_pt(rng: np.random.Generator, size: int, a: float, n: float, pt_min: float) -> F:
    """Inverse-CDF sample of ``pT (1 + pT^2/a^2)^-n`` above ``pt_min``."""
    u = 1.0 - rng.random(size)
    return a * np.sqrt((_pt_tail(pt_min, a, n) * u) ** (1.0 / (1.0 - n)) - 1.0)


def _sample_power(rng: np.random.Generator, size: int, lo: float, hi: float | None, k: float) -> F:
    """Inverse-CDF sample of ``x^-k`` on ``[lo, hi]`` (``hi=None`` for no upper edge)."""
    u = rng.random(size)
    a = lo ** (1.0 - k)
    b = 0.0 if hi is None else hi ** (1.0 - k)
    return (a - u * (a - b)) ** (1.0 / (1.0 - k))


def _from_pt_y(pt: F, y: F, phi: F, m: F) -> F:
    mt = np.sqrt(pt**2 + m**2)
    return np.stack([pt * np.cos(phi), pt * np.sin(phi), mt * np.sinh(y), mt * np.cosh(y)], axis=-1)


def _pair(tb: TruthBuilder, m1: F, m2: F, a: float, n: float, pt_min: float,
          y_sigma: float = 1.0) -> tuple[F, F, F]:
    rng, size = tb.rng, tb.n
    pt = _sample_pt(rng, size, a, n, pt_min)
    phi = rng.uniform(-np.pi, np.pi, size)
    p1 = _from_pt_y(pt, rng.normal(0, y_sigma, size), phi, m1)
    p2 = _from_pt_y(pt, rng.normal(0, y_sigma, size), phi + np.pi, m2)
    return p1, p2, pt


@dataclass(frozen=True)
class Radiation:
    """Pre-drawn radiation jets: multiplicity, pT and AK8 score quantiles, ``(n, max_jets)``."""

    count: NDArray[np.int64]
    pt: F
    tag_u: F

    def may_pass(self) -> NDArray[np.bool_]:
        """Events where a radiation jet may make the skim's AK8 jet."""
        k = np.arange(self.pt.shape[1])[None, :]
        return np.any((self.count[:, None] > k) & fat_may_pass(self.pt, self.tag_u), axis=1)

    def rows(self, idx: NDArray[np.int64]) -> Radiation:
        """The draws of events ``idx``."""
        return Radiation(self.count[idx], self.pt[idx], self.tag_u[idx])


def draw_isr(rng: np.random.Generator, scale: F, max_jets: int = 4) -> Radiation:
    """Initial/final-state radiation: Poisson multiplicity growing with the hard scale."""
    n = scale.shape[0]
    count = rng.poisson(0.8 + scale / 300.0)
    u = 1.0 - rng.random((n, max_jets))
    pt = np.minimum(20.0 * u**-0.5, np.maximum(scale, 25.0)[:, None])
    return Radiation(count, pt, rng.random((n, max_jets)))


def add_isr(tb: TruthBuilder, scale: F | Radiation, max_jets: int = 4) -> None:
    """Add radiation jets (drawn here from the hard ``scale``, or pre-drawn)."""
    rng, n = tb.rng, tb.n
    isr = scale if isinstance(scale, Radiation) else draw_isr(rng, scale, max_jets)
    for k in range(isr.pt.shape[1]):
        eta = np.clip(rng.normal(0.0, 2.0, n), -4.7, 4.7)
        phi = rng.uniform(-np.pi, np.pi, n)
        tb.add_jet(fv.from_ptetaphim(isr.pt[:, k], eta, phi, np.zeros(n)), ISR_SLOT, isr.count > k,
                   tag_u=isr.tag_u[:, k])


def _top_masses(tb: TruthBuilder) -> F:
    return breit_wigner(tb.rng, M_TOP, G_TOP, tb.n, 150.0, 195.0)


def _fill_ttbar(n_lep: int | None) -> Callable[[TruthBuilder], F]:
    """tt with 0, 1 or 2 leptonic W decays (``None``: inclusive, for the signal)."""

    def fill(tb: TruthBuilder) -> F:
        top, atop, pt = _pair(tb, _top_masses(tb), _top_masses(tb), 190.0, 4.0, 300.0)
        if n_lep != 2:
            _decay_pair(tb, top, atop, n_lep)
            add_isr(tb, pt)
            return pt
        # dileptonic: the AK8 jet can only be a b or radiation; drop events where none may pass
        isr = draw_isr(tb.rng, pt)
        (b1, w1), (b2, w2) = top_to_bw(tb, top), top_to_bw(tb, atop)
        tag_u = tb.rng.random((tb.n, 2))
        may = isr.may_pass() | np.any(fat_may_pass(np.stack([fv.pt(b1), fv.pt(b2)], axis=1), tag_u), axis=1)
        idx = tb.keep(may)
        top, atop, pt, b1, w1, b2, w2, tag_u = (x[idx] for x in (top, atop, pt, b1, w1, b2, w2, tag_u))
        mode1, mode2 = tb.w_modes(LEP), tb.w_modes(LEP)
        ones, valid = np.ones(tb.n, dtype=np.int64), np.ones(tb.n, dtype=bool)
        finish_top(tb, b1, w1, top, ones, mode1, valid, tag_u[:, 0])
        finish_top(tb, b2, w2, atop, -ones, mode2, valid, tag_u[:, 1])
        add_isr(tb, isr.rows(idx))
        return pt

    return fill


def _tt_slots(n_lep: int | None) -> tuple[Slot, ...]:
    """Muon sources of a tt pair (:func:`_decay_pair`) plus four radiation jets."""
    leptons = (W_INCL, W_INCL) if n_lep is None else (LEP,) * n_lep
    return (*leptons, B_SLOT, WQ_SLOT, B_SLOT, WQ_SLOT, *(ISR_SLOT,) * 4)


def _decay_pair(tb: TruthBuilder, top: F, atop: F, n_lep: int | None) -> None:
    rng, n = tb.rng, tb.n
    hadronic = np.full(n, W_HAD)
    if n_lep is None:
        mode1, mode2 = tb.w_modes(W_INCL), tb.w_modes(W_INCL)
    elif n_lep == 1:
        which = rng.random(n) < 0.5
        mode = tb.w_modes(LEP)
        mode1, mode2 = np.where(which, mode, W_HAD), np.where(which, W_HAD, mode)
    elif n_lep == 2:
        mode1, mode2 = tb.w_modes(LEP), tb.w_modes(LEP)
    else:
        mode1, mode2 = hadronic, hadronic
    ones = np.ones(n, dtype=np.int64)
    valid = np.ones(n, dtype=bool)
    decay_top(tb, top, ones, mode1, valid)
    decay_top(tb, atop, -ones, mode2, valid)


def _fill_zprime(mass: float, width: float) -> Callable[[TruthBuilder], F]:
    def fill(tb: TruthBuilder) -> F:
        rng, n = tb.rng, tb.n
        m = breit_wigner(rng, mass, width, 4 * n, 2 * M_TOP + 20.0, mass + 8.0 * width)
        # falling parton luminosity: suppress the high-mass side of the resonance
        keep = rng.random(m.size) < np.minimum(1.0, (mass / m) ** 4)
        m = np.resize(m[keep], n)
        pt = rng.exponential(40.0, n)
        system = _from_pt_y(pt, rng.normal(0.0, 0.7, n), rng.uniform(-np.pi, np.pi, n), m)
        top, atop = fv.two_body_decay(rng, system, _top_masses(tb), _top_masses(tb))
        _decay_pair(tb, top, atop, None)
        add_isr(tb, 0.25 * m)
        return m

    return fill


def _fill_vjets(lo: float, hi: float | None, boson: str) -> Callable[[TruthBuilder], F]:
    """W -> l nu or Z -> ll recoiling against 1-4 partons whose pT sum is the sample's HT."""

    def fill(tb: TruthBuilder) -> F:
        rng, n = tb.rng, tb.n
        ht = _sample_power(rng, n, lo, hi, 4.0)
        nj = rng.choice([1, 2, 3, 4], size=n, p=[0.45, 0.3, 0.15, 0.1])
        frac = rng.dirichlet(np.full(4, 2.0), n) * (np.arange(4)[None, :] < nj[:, None])
        frac /= frac.sum(axis=1, keepdims=True)
        ht, nj, frac, tag_u, isr = _hard_partons_may_pass(tb, ht, nj, frac)
        n = tb.n
        recoil = np.zeros((n, 2))
        for k in range(4):
            pt = frac[:, k] * ht
            phi = rng.uniform(-np.pi, np.pi, n)
            p4 = fv.from_ptetaphim(pt, rng.normal(0.0, 1.4, n), phi, np.zeros(n))
            tb.add_jet(p4, VQ_SLOT, nj > k, tag_u=tag_u[:, k])
            recoil -= np.where((nj > k)[:, None], p4[:, :2], 0.0)
        vpt = np.hypot(recoil[:, 0], recoil[:, 1])
        vphi = np.arctan2(recoil[:, 1], recoil[:, 0])
        if boson == "W":
            m = breit_wigner(rng, M_W, G_W, n, 50.0, 200.0)
            v = _from_pt_y(vpt, rng.normal(0.0, 1.2, n), vphi, m)
            charge = np.where(rng.random(n) < 0.6, 1, -1)
            decay_w(tb, v, charge, tb.w_modes(LEP), np.ones(n, bool))
        else:
            m = breit_wigner(rng, M_Z, G_Z, n, 50.0, 300.0)
            v = _from_pt_y(vpt, rng.normal(0.0, 1.2, n), vphi, m)
            _decay_z(tb, v, "ll")
        add_isr(tb, isr)
        return ht

    return fill


def _hard_partons_may_pass(tb: TruthBuilder, ht: F, nj: NDArray[np.int64], frac: F
                           ) -> tuple[F, NDArray[np.int64], F, F, Radiation]:
    """Keep the events where a parton (pT ``frac * ht``) or a radiation jet (drawn here, up to
    two, scale 0.3 HT) may make the skim's AK8 jet: the only AK8 candidates of V+jets and QCD.

    Returns:
        tuple: ``ht``, ``nj``, ``frac``, the partons' AK8 score quantiles and the radiation,
        for the kept events.
    """
    tag_u = tb.rng.random((tb.n, 4))
    isr = draw_isr(tb.rng, 0.3 * ht, max_jets=2)
    may = isr.may_pass() | np.any(fat_may_pass(frac * ht[:, None], tag_u), axis=1)
    idx = tb.keep(may)
    return ht[idx], nj[idx], frac[idx], tag_u[idx], isr.rows(idx)


def _decay_z(tb: TruthBuilder, z: F, mode: str) -> None:
    """Z -> ll (e, mu, tau), or inclusive: 10.1 % ll, 20 % nu nu, 69.9 % quarks."""
    rng, n = tb.rng, tb.n
    zero = np.zeros(n)
    d1, d2 = fv.two_body_decay(rng, z, zero, zero)
    r = rng.random(n) if mode == "incl" else np.zeros(n)
    ll, nunu = r < 0.101, (r >= 0.101) & (r < 0.301)
    qq = r >= 0.301
    m1, m2 = tb.z_modes()
    ones = np.ones(n, dtype=np.int64)
    tb.add_lepton(d1, np.zeros((n, 4)), m1, -ones, ll)
    tb.add_lepton(d2, np.zeros((n, 4)), m2, ones, ll)
    if mode == "ll":
        return
    tb.add_neutrino(d1 + d2, nunu)
    rq = rng.random(n)
    qflav = np.where(rq < 0.22, 5, np.where(rq < 0.39, 4, 0))
    tb.add_jet(d1, qflav, qq, hard=False)
    tb.add_jet(d2, qflav, qq, hard=False)
    add_resonance_fat(tb, z, [d1, d2], is_top=False, valid=qq)


def _fill_single_top(channel: str) -> Callable[[TruthBuilder], F]:
    def fill(tb: TruthBuilder) -> F:
        rng, n = tb.rng, tb.n
        charge = -1 if channel.endswith("antitop") else 1
        ones = np.ones(n, dtype=np.int64)
        valid = np.ones(n, dtype=bool)
        if channel.startswith("tW"):
            m_w = breit_wigner(rng, M_W, G_W, n, 60.0, 100.0)
            top, other, pt = _pair(tb, _top_masses(tb), m_w, 150.0, 4.0, 250.0)
            decay_w(tb, other, -charge * ones, tb.w_modes(W_INCL), valid)
        elif channel == "s":
            top, other, pt = _pair(tb, _top_masses(tb), np.full(n, M_B), 150.0, 4.0, 250.0)
            tb.add_jet(other, B_SLOT, valid)
        else:
            top, other, pt = _pair(tb, _top_masses(tb), np.zeros(n), 150.0, 4.0, 250.0, 1.6)
            tb.add_jet(other, 0, valid)
            soft_b = fv.from_ptetaphim(rng.exponential(25.0, n) + 5.0, rng.normal(0.0, 2.0, n),
                                       rng.uniform(-np.pi, np.pi, n), np.full(n, M_B))
            tb.add_jet(soft_b, B_SLOT, valid, hard=False)
        decay_top(tb, top, charge * ones, tb.w_modes(W_INCL), valid)
        add_isr(tb, pt)
        return pt

    return fill


def _fill_diboson(channel: str) -> Callable[[TruthBuilder], F]:
    def fill(tb: TruthBuilder) -> F:
        rng, n = tb.rng, tb.n

        def mw() -> F:
            return breit_wigner(rng, M_W, G_W, n, 50.0, 120.0)

        def mz() -> F:
            return breit_wigner(rng, M_Z, G_Z, n, 60.0, 130.0)

        m1, m2 = {"WW": (mw(), mw()), "WZ": (mw(), mz()), "ZZ": (mz(), mz())}[channel]
        b1, b2, pt = _pair(tb, m1, m2, 120.0, 4.0, 200.0)
        ones = np.ones(n, dtype=np.int64)
        valid = np.ones(n, dtype=bool)
        if channel[0] == "W":
            sign = np.where(rng.random(n) < 0.5, 1, -1)
            decay_w(tb, b1, sign * ones, tb.w_modes(W_INCL), valid)
        else:
            _decay_z(tb, b1, "incl")
        if channel[1] == "W":
            sign = np.where(rng.random(n) < 0.5, -1, 1)
            decay_w(tb, b2, sign * ones, tb.w_modes(W_INCL), valid)
        else:
            _decay_z(tb, b2, "incl")
        add_isr(tb, pt)
        return pt

    return fill


def _fill_qcd(lo: float, hi: float | None) -> Callable[[TruthBuilder], F]:
    """Multijet events; the skim's muon comes from a semileptonic b or c decay."""

    def fill(tb: TruthBuilder) -> F:
        rng, n = tb.rng, tb.n
        ht = _sample_power(rng, n, lo, hi, 5.0)
        nj = rng.choice([2, 3, 4], size=n, p=[0.5, 0.3, 0.2])
        frac = rng.dirichlet(np.array([6.0, 5.0, 2.0, 1.5]), n) * (np.arange(4)[None, :] < nj[:, None])
        frac /= frac.sum(axis=1, keepdims=True)
        ht, nj, frac, tag_u, isr = _hard_partons_may_pass(tb, ht, nj, frac)
        n = tb.n
        phi0 = rng.uniform(-np.pi, np.pi, n)
        for k in range(4):
            phi = phi0 + (np.pi + rng.normal(0.0, 0.3, n) if k == 1 else 0.0) if k < 2 else \
                rng.uniform(-np.pi, np.pi, n)
            p4 = fv.from_ptetaphim(frac[:, k] * ht, rng.normal(0.0, 1.5, n), phi, np.zeros(n))
            tb.add_jet(p4, QCD_SLOT, nj > k, tag_u=tag_u[:, k])
        add_isr(tb, isr)
        return ht

    return fill


def _bin(params: Mapping[str, Any], default: tuple[float, float | None]) -> tuple[float, float | None]:
    lo = float(params.get("ht_min", default[0]))
    hi_raw = params.get("ht_max", default[1])
    hi = None if hi_raw in (None, "inf", float("inf")) else float(hi_raw)
    if hi is not None and hi <= lo:
        msg = f"ht_max ({hi}) must be above ht_min ({lo})"
        raise ValueError(msg)
    return lo, hi


def _lookup(table: Mapping[tuple[int, int | None], float], lo: float, hi: float | None) -> float | None:
    return table.get((int(lo), None if hi is None else int(hi)))


def _zprime_xsec(mass: float, width: float) -> float:
    masses = np.array(sorted(ZPRIME_XSEC_10PCT))
    values = np.log([ZPRIME_XSEC_10PCT[m] for m in masses])
    base = float(np.exp(np.interp(mass, masses, values)))
    # broader resonances have smaller peak cross-sections: ~ (0.1 M / width)^0.5 near 10-30 %
    return base * (0.1 * mass / width) ** 0.5 if width > 0 else base


def resolve_process(kind: str, params: Mapping[str, Any] | None = None) -> Process:
    """Build the :class:`Process` of an MC ``kind`` with its ``params`` defaults filled in.

    Args:
        kind (str): one of :data:`MC_KINDS`.
        params (Mapping | None): zprime ``mass``/``width`` (GeV; default 2000/200); wjets,
            dyjets, qcd ``ht_min``/``ht_max``; single_top ``channel`` (s, t_top, t_antitop,
            tW_top, tW_antitop); diboson ``channel`` (WW, WZ, ZZ).

    Returns:
        Process: the sample model.
    """
    p = dict(params or {})
    if kind == "zprime":
        mass, width = float(p.get("mass", 2000.0)), float(p.get("width", 200.0))
        p.update(mass=mass, width=width)
        return _process(kind, p, _zprime_xsec(mass, width), 1.0, 1.0, 0.0, _fill_zprime(mass, width),
                       _tt_slots(None))
    if kind.startswith("ttbar_"):
        table = {"ttbar_semilep": (364.31, 298.0, 1), "ttbar_had": (380.11, 318.0, 0),
                 "ttbar_dilep": (87.33, 72.1, 2)}
        if kind not in table:
            msg = f"unknown tt kind {kind!r}; choose one of {', '.join(table)}"
            raise ValueError(msg)
        xsec, scale, n_lep = table[kind]
        return _process(kind, p, xsec, _pt_tail(300.0, 190.0, 4.0), scale, 0.004, _fill_ttbar(n_lep),
                       _tt_slots(n_lep))
    if kind in ("wjets", "dyjets"):
        lo, hi = _bin(p, (600.0, 800.0))
        p.update(ht_min=lo, ht_max=hi)
        xsec_table = WJETS_XSEC if kind == "wjets" else DYJETS_XSEC
        fill = _fill_vjets(lo, hi, "W" if kind == "wjets" else "Z")
        boson = (LEP, WQ_SLOT) if kind == "wjets" else (ZLL,)
        slots = (*(VQ_SLOT,) * 4, *boson, *(ISR_SLOT,) * 2)
        return _process(kind, p, _lookup(xsec_table, lo, hi), 1.0, 1.0, 0.0, fill, slots)
    if kind == "qcd":
        lo, hi = _bin(p, (1000.0, 1500.0))
        p.update(ht_min=lo, ht_max=hi)
        return _process(kind, p, _lookup(QCD_XSEC, lo, hi), 1.0, 1.0, 0.0, _fill_qcd(lo, hi),
                       (*(QCD_SLOT,) * 4, *(ISR_SLOT,) * 2))
    if kind == "single_top":
        channel = str(p.get("channel", "tW_top"))
        if channel not in SINGLE_TOP_XSEC:
            msg = f"unknown single_top channel {channel!r}; choose one of {', '.join(SINGLE_TOP_XSEC)}"
            raise ValueError(msg)
        p["channel"] = channel
        scale, neg = {"s": (3.7, 0.19), "t_top": (1.0, 0.03), "t_antitop": (1.0, 0.03)}.get(
            channel, (1.0, 0.003))
        first = (W_INCL, WQ_SLOT) if channel.startswith("tW") else (B_SLOT,)
        slots = (*first, W_INCL, B_SLOT, WQ_SLOT, *(ISR_SLOT,) * 4)
        return _process(kind, p, SINGLE_TOP_XSEC[channel], _pt_tail(250.0, 150.0, 4.0), scale, neg,
                       _fill_single_top(channel), slots)
    if kind == "diboson":
        channel = str(p.get("channel", "WW"))
        if channel not in DIBOSON_XSEC:
            msg = f"unknown diboson channel {channel!r}; choose one of {', '.join(DIBOSON_XSEC)}"
            raise ValueError(msg)
        p["channel"] = channel
        return _process(kind, p, DIBOSON_XSEC[channel], _pt_tail(200.0, 120.0, 4.0), 1.0, 0.0,
                       _fill_diboson(channel))
    msg = f"unknown process kind {kind!r}; choose one of {', '.join(MC_KINDS)} or 'data'"
    raise ValueError(msg)

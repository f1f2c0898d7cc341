"""Generator-level event content and the decay chains shared by all processes.

A process fills a :class:`TruthBuilder` column by column (one column = one object slot for
every event of the block, with a validity mask) and the detector model in
:mod:`intccms.datagen.reco` turns the result into NanoAOD collections. Slots are padded
arrays rather than jagged ones so every step stays a plain vectorised numpy operation.

Physics content of the helpers:

- top quarks decay to ``b W`` and W bosons to ``l nu`` or ``q q'`` with Breit-Wigner masses
  and isotropic two-body decays (:func:`decay_top`, :func:`decay_w`);
- tau leptons decay collinearly: 17.4 % to a muon, 17.8 % to an electron (not stored),
  the rest to a light "tau jet";
- b (c) jets carry a semileptonic decay with a muon in 20 % (10 %) of the cases: the muon
  takes a momentum fraction z ~ Beta(1.3, 5) and sits inside the jet (non-isolated unless
  z is large), the neutrino removes a similar fraction from the jet and adds to the MET
  (:mod:`intccms.datagen.forcing`);
- every muon source is drawn through a slot (:class:`~intccms.datagen.forcing.HFSlot`,
  ``LeptonSlot``, ``ZllSlot``); a builder created with a process's ``slots`` generates only
  events where at least one of them gives an isolated muon (see :mod:`.forcing`);
- hadronic resonances become AK8 candidates: fully merged (all daughters within
  Delta R < 0.8 of the parent) tops are tagged as tops, merged W/Z as W-like, everything else
  (and every hard parton above 150 GeV) as QCD-like.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy.special import betainc

from intccms.datagen import fourvec as fv
from intccms.datagen.forcing import (
    ISO_CUT,
    L_MU,
    L_TAU_E,
    L_TAU_HAD,
    L_TAU_MU,
    SEMI_FAIL,
    SEMI_NONE,
    SEMI_PASS,
    SEMI_PROB,
    W_HAD,
    HFSlot,
    LeptonSlot,
    Slot,
    ZllSlot,
    conditional_choice,
    first_success,
    iso_pass_probability,
    sample_semileptonic,
)

__all__ = ["B_SLOT", "FAT_QCD", "FAT_TOP", "FAT_W", "ISR_SLOT", "WQ_SLOT", "Truth", "TruthBuilder",
           "decay_top", "decay_w"]

F = NDArray[np.float64]
B = NDArray[np.bool_]
Ints = NDArray[np.int64]

M_TOP, G_TOP = 172.5, 1.4
M_W, G_W = 80.4, 2.1
M_Z, G_Z = 91.19, 2.5
M_MU = 0.10566
M_B = 4.8

FAT_QCD, FAT_W, FAT_TOP = 0, 1, 2
QCD_TAG = (0.3, 4.5)  # Beta law of ParticleNet TvsQCD for QCD-like AK8 jets
QCD_TAG_U_MIN = float(betainc(*QCD_TAG, 0.2))  # quantile above which TvsQCD > 0.2 (the skim)
# generator-level preselection: below these an AK8 jet / muon cannot pass the skim (400 / 50 GeV
# after resolution)
PRESELECT_FAT_PT = 320.0
PRESELECT_MU_PT = 40.0


def fat_may_pass(pt: F, tag_u: F) -> B:
    """A QCD-like AK8 candidate of generator pT ``pt`` and score quantile ``tag_u`` may pass the skim."""
    return (pt > PRESELECT_FAT_PT) & (tag_u > QCD_TAG_U_MIN)

B_SLOT = HFSlot(1.0, 0.0)  # a b quark (top decays, single-top b)
WQ_SLOT = HFSlot(0.0, 0.5)  # first quark of a hadronic W: charm in W -> cs
ISR_SLOT = HFSlot(0.03, 0.05)  # radiation jets


def breit_wigner(rng: np.random.Generator, m0: float, width: float, n: int, lo: float, hi: float) -> F:
    """Cauchy-distributed masses truncated to ``[lo, hi]`` by inverse-CDF sampling."""
    a = np.arctan((lo - m0) / (width / 2))
    b = np.arctan((hi - m0) / (width / 2))
    return m0 + width / 2 * np.tan(rng.uniform(a, b, n))


@dataclass
class Truth:
    """Padded generator-level objects of one block of events."""

    n: int
    jet_p4: F
    jet_flav: Ints
    jet_valid: B
    jet_pileup: B
    mu_p4: F
    mu_charge: Ints
    mu_valid: B
    mu_prompt: B
    mu_activity: F
    mu_mini: F
    nu_pxpy: F
    fat_p4: F
    fat_code: Ints
    fat_valid: B
    fat_tag_u: F


@dataclass
class TruthBuilder:
    """Collects object slots; :meth:`build` stacks them into a :class:`Truth`."""

    n: int
    rng: np.random.Generator
    slots: tuple[Slot, ...] = ()
    _jets: list[tuple[F, Ints, B, B]] = field(default_factory=list)
    _mus: list[tuple[F, Ints, B, B, F, F]] = field(default_factory=list)
    _fats: list[tuple[F, Ints, B, F]] = field(default_factory=list)
    nu_pxpy: F | None = None
    rows: Ints | None = None
    _status: Ints | None = None
    _cursor: int = 0

    def __post_init__(self) -> None:
        self.nu_pxpy = np.zeros((self.n, 2))
        self.rows = np.arange(self.n)

    def keep(self, mask: B) -> NDArray[np.int64]:
        """Drop the events that cannot pass the skim any more (all later draws skip them).

        Returns:
            ndarray: the kept rows (indices before this call), to subset the caller's arrays.
        """
        idx = np.flatnonzero(mask)
        self.n = idx.size
        self._jets = [(a[idx], b[idx], c[idx], d[idx]) for a, b, c, d in self._jets]
        self._mus = [(a[idx], b[idx], c[idx], d[idx], e[idx], f[idx]) for a, b, c, d, e, f in self._mus]
        self._fats = [(a[idx], b[idx], c[idx], d[idx]) for a, b, c, d in self._fats]
        assert self.nu_pxpy is not None and self.rows is not None
        self.nu_pxpy, self.rows = self.nu_pxpy[idx], self.rows[idx]
        if self._status is not None:
            self._status = self._status[idx]
        return idx

    def preselect(self, fat_pt: float, mu_pt: float) -> NDArray[np.int64]:
        """Events with a muon that may pass the skim (isolated if non-prompt) above ``mu_pt``
        and an AK8 candidate above ``fat_pt`` (tagged if QCD-like), as builder rows."""
        fat = np.zeros(self.n, bool)
        for p4, code, valid, tag_u in self._fats:
            fat |= valid & (fv.pt(p4) > fat_pt) & ((code != FAT_QCD) | (tag_u > QCD_TAG_U_MIN))
        mu = np.zeros(self.n, bool)
        for p4, _, valid, prompt, _, mini in self._mus:
            mu |= valid & (prompt | (mini < ISO_CUT)) & (fv.pt(p4) > mu_pt)
        return np.flatnonzero(fat & mu)

    def choose(self, slot: Slot) -> Ints:
        """Outcome indices of the next muon-source slot (see :mod:`intccms.datagen.forcing`).

        With ``slots`` set, slots that can give an isolated muon must come in the declared
        order; their outcomes are conditioned so that every event has at least one.
        """
        probs, success = slot.outcomes()
        status = None
        if self.slots and probs[success].sum() > 0:
            if self._cursor >= len(self.slots) or self.slots[self._cursor] != slot:
                expected = self.slots[self._cursor] if self._cursor < len(self.slots) else "none"
                msg = f"muon-source slot {self._cursor} is {slot}, the process declared {expected}"
                raise RuntimeError(msg)
            if self._status is None:  # drawn late: events dropped by keep() need none
                self._status = first_success(self.rng, self.n, self.slots)
            status = self._status[:, self._cursor]
            self._cursor += 1
        return conditional_choice(self.rng, status, probs, success, self.n)

    def w_modes(self, slot: LeptonSlot) -> Ints:
        """Decay modes of a W (``W_HAD`` or a lepton mode)."""
        return LeptonSlot.decode(self.choose(slot))

    def z_modes(self) -> tuple[Ints, Ints]:
        """Lepton modes of the two leptons of a Z -> ll decay."""
        return ZllSlot.decode(self.choose(ZllSlot()))

    def add_neutrino(self, p4: F, valid: B) -> None:
        """Invisible momentum, summed into the true MET."""
        assert self.nu_pxpy is not None
        self.nu_pxpy += np.where(valid[:, None], p4[:, :2], 0.0)

    def add_muon(self, p4: F, charge: Ints, valid: B, prompt: bool, activity: F | None = None,
                 mini: F | None = None) -> None:
        """A generator muon; ``activity`` is the hadronic energy around it over its pT and
        ``mini`` its mini-isolation (non-prompt muons; prompt ones get theirs from nearby jets)."""
        act = np.zeros(self.n) if activity is None else activity
        iso = np.zeros(self.n) if mini is None else mini
        self._mus.append((p4, charge.astype(np.int64), valid, np.full(self.n, prompt), act, iso))

    def add_fat(self, p4: F, code: Ints | int, valid: B, tag_u: F | None = None) -> None:
        """An AK8 candidate with its tagging class (see module docstring) and, for QCD-like
        ones, the quantile ``tag_u`` of its ParticleNet score (drawn here unless given)."""
        codes = np.broadcast_to(np.asarray(code, dtype=np.int64), (self.n,)).copy()
        u = self.rng.random(self.n) if tag_u is None else tag_u
        self._fats.append((p4, codes, valid & (fv.pt(p4) > 150.0), u))

    def add_jet(self, p4: F, flav: HFSlot | Ints | int, valid: B, *, hard: bool = True,
                pileup: bool = False, tag_u: F | None = None) -> None:
        """A parton that becomes an AK4 jet; heavy flavour may decay semileptonically.

        Args:
            p4 (ndarray): ``(n, 4)`` parton momentum.
            flav (HFSlot | ndarray | int): the flavour law (a muon-source slot), or fixed
                hadron flavours 0, 4, 5 (heavy ones only when not generating inside the skim).
            valid (ndarray): which events have this parton.
            hard (bool): a hard parton above 150 GeV also seeds a QCD-like AK8 jet.
            pileup (bool): the jet comes from pileup (lower jet-ID quality).
            tag_u (ndarray | None): quantile of the AK8 jet's tagger score (see :meth:`add_fat`).
        """
        rng, n = self.rng, self.n
        if isinstance(flav, HFSlot):
            flavs, state = HFSlot.decode(self.choose(flav))
        else:
            flavs = np.broadcast_to(np.asarray(flav, dtype=np.int64), (n,)).copy()
            if self.slots and np.any(flavs[valid] != 0):
                msg = "heavy-flavour jets need an HFSlot when generating inside the skim"
                raise RuntimeError(msg)
            prob = np.where(flavs == 5, SEMI_PROB[5], np.where(flavs == 4, SEMI_PROB[4], 0.0))
            r = rng.random(n)
            state = np.where(r < prob * iso_pass_probability(), SEMI_PASS,
                             np.where(r < prob, SEMI_FAIL, SEMI_NONE))
        semi = valid & (state != SEMI_NONE)
        z_mu, z_nu, activity, mini = np.zeros(n), np.zeros(n), np.zeros(n), np.zeros(n)
        idx = np.flatnonzero(semi)
        if idx.size:
            z_mu[idx], z_nu[idx], activity[idx], mini[idx] = sample_semileptonic(rng, state[idx])
        mu_p4 = p4 * z_mu[:, None]
        nu_p4 = p4 * z_nu[:, None]
        self.add_neutrino(nu_p4, semi)
        jet_p4 = np.where(semi[:, None], p4 - nu_p4, p4)
        charge = np.where(rng.random(n) < 0.5, -1, 1)
        self.add_muon(_with_mass(mu_p4, M_MU), charge, semi, prompt=False, activity=activity, mini=mini)
        self._jets.append((jet_p4, flavs, valid, np.full(n, pileup)))
        if hard:
            self.add_fat(jet_p4, FAT_QCD, valid, tag_u)

    def add_lepton(self, lep: F, nu: F, mode: Ints, charge: Ints, valid: B) -> None:
        """A W/Z decay lepton (``mode`` L_E, L_MU or a tau decay) and its neutrino (if any)."""
        rng = self.rng
        self.add_neutrino(nu, valid)
        is_mu = valid & (mode == L_MU)
        self.add_muon(_with_mass(lep, M_MU), charge, is_mu, prompt=True)
        tau_mu = valid & (mode == L_TAU_MU)
        tau_had = valid & (mode == L_TAU_HAD)
        tau_el = valid & (mode == L_TAU_E)
        z = np.where(tau_mu, rng.beta(2.0, 2.0, self.n), rng.beta(3.0, 2.0, self.n))
        vis = lep * z[:, None]
        self.add_muon(_with_mass(vis, M_MU), charge, tau_mu, prompt=True)
        # electrons are visible (not stored here); every tau decay loses its neutrinos
        self.add_neutrino(lep - vis, tau_mu | tau_had | tau_el)
        self._jets.append((_with_mass(vis, 1.2), np.zeros(self.n, np.int64), tau_had,
                           np.zeros(self.n, bool)))

    def build(self, rows: NDArray[np.int64] | None = None) -> Truth:
        """Stack the collected slots of ``rows`` (default: all), dropping slots empty in all."""
        if self.slots and self._cursor != len(self.slots):
            msg = f"the process declared {len(self.slots)} muon-source slots but used {self._cursor}"
            raise RuntimeError(msg)
        idx = np.arange(self.n) if rows is None else rows
        n = idx.size
        z4, zi, zb, zf = np.zeros((n, 4)), np.zeros(n, np.int64), np.zeros(n, bool), np.zeros(n)
        jets = _used(self._jets, idx, 2) or [(z4, zi, zb, zb)]
        mus = _used(self._mus, idx, 2) or [(z4, zi, zb, zb, zf, zf)]
        fats = _used(self._fats, idx, 2) or [(z4, zi, zb, zf)]
        assert self.nu_pxpy is not None
        return Truth(
            n=n,
            jet_p4=np.stack([j[0] for j in jets], axis=1),
            jet_flav=np.stack([j[1] for j in jets], axis=1),
            jet_valid=np.stack([j[2] for j in jets], axis=1),
            jet_pileup=np.stack([j[3] for j in jets], axis=1),
            mu_p4=np.stack([m[0] for m in mus], axis=1),
            mu_charge=np.stack([m[1] for m in mus], axis=1),
            mu_valid=np.stack([m[2] for m in mus], axis=1),
            mu_prompt=np.stack([m[3] for m in mus], axis=1),
            mu_activity=np.stack([m[4] for m in mus], axis=1),
            mu_mini=np.stack([m[5] for m in mus], axis=1),
            nu_pxpy=self.nu_pxpy[idx],
            fat_p4=np.stack([f[0] for f in fats], axis=1),
            fat_code=np.stack([f[1] for f in fats], axis=1),
            fat_valid=np.stack([f[2] for f in fats], axis=1),
            fat_tag_u=np.stack([f[3] for f in fats], axis=1),
        )


def _used(entries: list[tuple[Any, ...]], idx: NDArray[np.int64], valid_at: int) -> list[tuple[Any, ...]]:
    """Entries restricted to rows ``idx``, without those whose object is absent in all."""
    out = []
    for entry in entries:
        if entry[valid_at][idx].any():
            out.append(tuple(a[idx] for a in entry))
    return out


def _with_mass(p4: F, m: float) -> F:
    """Same three-momentum, energy recomputed for mass ``m``."""
    e = np.sqrt(np.sum(p4[:, :3] ** 2, axis=1) + m * m)
    return np.concatenate([p4[:, :3], e[:, None]], axis=1)


def decay_w(
    tb: TruthBuilder, w: F, charge: Ints, mode: Ints, valid: B, *, hard_parent: bool = True
) -> None:
    """Decay W bosons by ``mode`` (:meth:`TruthBuilder.w_modes`): leptons, or quarks.

    Hadronic W bosons get one charm quark in half of the decays (W -> cs) and become AK8
    W-like candidates when both quarks fall within Delta R < 0.8 of the W direction.
    """
    rng, n = tb.rng, tb.n
    zero = np.zeros(n)
    d1, d2 = fv.two_body_decay(rng, w, zero, zero)
    leptonic = mode != W_HAD
    tb.add_lepton(d1, d2, mode, charge, valid & leptonic)
    had = valid & ~leptonic
    tb.add_jet(d1, WQ_SLOT, had, hard=False)
    tb.add_jet(d2, 0, had, hard=False)
    if hard_parent:
        add_resonance_fat(tb, w, [d1, d2], is_top=False, valid=had)


def decay_top(tb: TruthBuilder, top: F, charge: Ints, mode: Ints, valid: B) -> None:
    """Decay top quarks ``t -> b W`` with a Breit-Wigner W mass; ``mode`` as in :func:`decay_w`.

    Slots used, in order: the b quark, the W's first quark.
    """
    b, w = top_to_bw(tb, top)
    finish_top(tb, b, w, top, charge, mode, valid)


def top_to_bw(tb: TruthBuilder, top: F) -> tuple[F, F]:
    """First step of :func:`decay_top`: the b quark and the W boson."""
    m_w = breit_wigner(tb.rng, M_W, G_W, tb.n, 60.0, 100.0)
    return fv.two_body_decay(tb.rng, top, np.full(tb.n, M_B), m_w)


def finish_top(tb: TruthBuilder, b: F, w: F, top: F, charge: Ints, mode: Ints, valid: B,
               b_tag_u: F | None = None) -> None:
    """Second step of :func:`decay_top`: the b jet, the W decay and the AK8 candidates."""
    rng, n = tb.rng, tb.n
    leptonic = mode != W_HAD
    tb.add_jet(b, B_SLOT, valid, hard=False)
    tb.add_fat(b, FAT_QCD, valid & leptonic, b_tag_u)  # a hard b from a leptonic top is an AK8 jet too
    zero = np.zeros(n)
    q1, q2 = fv.two_body_decay(rng, w, zero, zero)
    tb.add_lepton(q1, q2, mode, charge, valid & leptonic)
    had = valid & ~leptonic
    tb.add_jet(q1, WQ_SLOT, had, hard=False)
    tb.add_jet(q2, 0, had, hard=False)
    add_resonance_fat(tb, top, [b, q1, q2], is_top=True, valid=had, w=w)


def add_resonance_fat(
    tb: TruthBuilder, parent: F, daughters: list[F], *, is_top: bool, valid: B, w: F | None = None
) -> None:
    """One AK8 candidate per hadronic resonance, tagged by how merged its decay is."""
    _, eta_p, phi_p, _ = fv.to_ptetaphim(parent)
    inside = []
    for d in daughters:
        _, eta_d, phi_d, _ = fv.to_ptetaphim(d)
        inside.append(fv.delta_r(eta_p, phi_p, eta_d, phi_d) < 0.8)
    all_in = np.logical_and.reduce(inside)
    summed = sum(np.where(ins[:, None], d, 0.0) for ins, d in zip(inside, daughters, strict=True))
    hardest = daughters[int(np.argmax([np.mean(fv.pt(d)) for d in daughters]))]
    p4 = np.where(all_in[:, None], parent, np.where(np.any(inside, axis=0)[:, None], summed, hardest))
    if is_top:
        assert w is not None
        w_in = inside[1] & inside[2]
        code = np.where(all_in, FAT_TOP, np.where(w_in, FAT_W, FAT_QCD))
        p4 = np.where((~all_in & w_in)[:, None], w, p4)
    else:
        code = np.where(all_in, FAT_W, FAT_QCD)
    tb.add_fat(p4, code, valid)

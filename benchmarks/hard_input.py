"""A benchmark input as hard as real skims of the reference analysis, written deterministically.

The project's own generator simulates physics processes through a production skim: its events
are easier than real skims (a fifth fail the analysis skim, fewer reach the jet-dependent cuts,
few objects lie near the cuts, baskets of 100,000 events). This module draws NanoAODv9-like
events *independently of that generator*, so that the analysis's cost is measured where real
skims put it:

* every event passes the analysis skim (the era's single-muon trigger fired, PuppiMET above the
  skim threshold);
* muons, AK4 jets and AK8 jets are drawn from smooth physical shapes *plus* a share of every
  object placed uniformly in a band around each cut (pT, |eta|, ID, isolation, b-tag
  discriminant, fat-jet pT and top tag, muon pT + MET), so both sides of every threshold are
  densely populated and JES variations move jets across the jet pT cut;
* the shapes are set so that ~38 % of the events pass the cuts that do not use jets (the
  analysis's "candidates"), i.e. reach the jet-dependent cuts, ~30 % pass the baseline and ~20 %
  the channel, and ~33 % of the stored jets lie below the jet pT cut;
* realistic multiplicities: 2 + negative binomial AK4 jets (mean ~6, tail beyond 12), 1-3
  muons, 1-3 AK8 jets; generator weights with ~15 % negative, integer ``Pileup_nTrueInt``,
  hadron and parton flavours, ``rawFactor`` and ``area`` as in UL NanoAOD;
* NanoAOD types and float precision (:data:`intccms.datagen.reco.MANTISSA_BITS`), LZMA level 9,
  one basket per branch per block of :data:`BLOCK` events (written by
  :func:`intccms.datagen.nanoaod.write_nanoaod`).

The thresholds come from the analysis configuration (:meth:`Thresholds.from_analysis`), so the
bands follow the configured cuts. Fractions of events that pass are not bookkept here: the
benchmark measures them by running the analysis's own cutflow on the file.

Usage: python benchmarks/hard_input.py OUT.root [--events 400000] [--era 2017] [--seed 2017]
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from collections.abc import Iterator, Mapping
from dataclasses import astuple, dataclass
from pathlib import Path
from typing import Any

import awkward as ak
import numpy as np
from numpy.typing import NDArray

from intccms.datagen.nanoaod import read_runs, write_nanoaod
from intccms.datagen.reco import COLLECTION_DTYPES, EVENT_DTYPES, MANTISSA_BITS, reduce_precision

__all__ = ["BLOCK", "HARD_INPUT_VERSION", "Thresholds", "describe", "ensure_hard_input", "ensure_hard_split",
           "write_hard_input"]

F = NDArray[np.float64]
Ints = NDArray[np.int64]

HARD_INPUT_VERSION = 1
"""Bumped whenever the same seed and thresholds give different events (cached files renamed)."""
BLOCK = 10_000
"""Events per ``extend``: one basket per branch per block, the order of UL NanoAOD's baskets."""
ERAS = ("2017", "2018")
"""Eras whose conventions the input follows (single trigger ``HLT_Mu50``, UL MC pileup)."""

# Shares of objects replaced by a uniform draw in a band around a cut (see _near).
BAND_SHARE = 0.10
# NanoAODv9 precision of the branches this input adds to the generator's (precision=10 in the
# fat-jet table).
EXTRA_MANTISSA_BITS = {"FatJet_msoftdrop": 10}
EXTRA_DTYPES: dict[str, dict[str, type[np.generic]]] = {"Jet": {"partonFlavour": np.int32}, "FatJet": {"msoftdrop": np.float32}}
MUON_MASS = 0.10566
LUMI_BLOCK_EVENTS = 500


@dataclass(frozen=True)
class Thresholds:
    """The cuts the input populates on both sides (defaults: the reference analysis, 2017)."""

    muon_pt: float = 55.0
    muon_eta: float = 2.4
    muon_iso_id: int = 2
    jet_pt: float = 30.0
    jet_eta: float = 2.5
    jet_id: int = 4
    fatjet_pt: float = 500.0
    fatjet_tag: float = 0.5
    btag_wp: float = 0.3040
    met: float = 50.0
    lepton_met: float = 150.0
    triggers: tuple[str, ...] = ("Mu50",)

    @classmethod
    def from_analysis(cls, analysis: Mapping[str, Any], constants: Mapping[str, Any]) -> Thresholds:
        """The thresholds of the reference analysis's configuration and one era's constants.

        Args:
            analysis: the ``analysis`` group as plain containers (``objects``, ``skim``, ``channels``).
            constants: the era's constants (``triggers``, ``btag_wp_medium``).
        """
        objects = analysis["objects"]
        mu, jet, fat = (objects[k]["params"] for k in ("muons", "jets", "fatjets"))
        cuts = analysis["channels"]["CMS_WORKSHOP"]["cuts"]
        return cls(
            muon_pt=float(mu["pt_min"]), muon_eta=float(mu["eta_max"]), muon_iso_id=int(mu["min_mini_iso_id"]),
            jet_pt=float(jet["pt_min"]), jet_eta=float(jet["eta_max"]), jet_id=int(jet["min_jet_id"]),
            fatjet_pt=float(fat["pt_min"]), fatjet_tag=float(fat["min_tvsqcd"]),
            btag_wp=float(constants["btag_wp_medium"]),
            met=max(float(analysis["skim"]["params"]["met_min"]), float(cuts["met"]["params"]["minimum"])),
            lepton_met=float(cuts["lepton_met"]["params"]["minimum"]),
            triggers=tuple(str(t) for t in constants["triggers"]),
        )

    def digest(self) -> str:
        """Short hash of the values, part of the cached file's name."""
        return hashlib.sha1(repr(astuple(self)).encode()).hexdigest()[:8]


# ---------------------------------------------------------------------------- draw helpers


def _near(rng: np.random.Generator, values: F, cut: float, half_width: float,
          share: float = BAND_SHARE) -> F:
    """Replace a ``share`` of ``values`` by uniform draws in ``cut +- half_width``.

    Why: a smooth bulk shape alone leaves a threshold in a tail or in a plateau; the band
    guarantees events on both sides of every cut, close enough for corrections and JES shifts
    to move them across.
    """
    band = rng.random(values.shape) < share
    out = values.copy()
    out[band] = rng.uniform(cut - half_width, cut + half_width, int(band.sum()))
    return out


def _near_abs(rng: np.random.Generator, values: F, cut: float, half_width: float,
              share: float = BAND_SHARE) -> F:
    """:func:`_near` for |eta| cuts: the band is placed on both signs."""
    sign = np.where(values < 0, -1.0, 1.0)
    return sign * _near(rng, np.abs(values), cut, half_width, share)


def _logit_normal(rng: np.random.Generator, mu: F | float, sigma: F | float, size: int) -> F:
    """Scores in (0, 1) peaked at both ends with a smooth density in between (tagger-like)."""
    return 1.0 / (1.0 + np.exp(-rng.normal(mu, sigma, size)))


def _pareto(rng: np.random.Generator, start: float, alpha: float, size: int, cap: float) -> F:
    """Falling power-law spectrum from ``start`` (pT-like), capped to stay inside tables."""
    return np.minimum(start * (1.0 + rng.pareto(alpha, size)), cap)


def _bounded(rng: np.random.Generator, sigma: float, limit: float, size: int) -> F:
    """Gaussian eta-like values folded into ``(-limit, limit)``."""
    x = rng.normal(0.0, sigma, size)
    return np.where(np.abs(x) < limit, x, rng.uniform(-limit, limit, size))


def _choice(rng: np.random.Generator, values: list[int], p: list[float] | F, size: int) -> Ints:
    return np.asarray(values, np.int64)[_categorical(rng, np.asarray(p, np.float64), size)]


def _categorical(rng: np.random.Generator, p: F, size: int) -> Ints:
    """Category per entry; ``p`` is one probability row, or one row per entry."""
    cum = np.cumsum(p, axis=-1)
    u = rng.random(size)
    if cum.ndim == 1:
        return np.searchsorted(cum / cum[-1], u, side="right").astype(np.int64)
    return np.sum(u[:, None] * cum[:, -1:] >= cum, axis=1).astype(np.int64)


def _sorted_record(name: str, fields: Mapping[str, NDArray[Any]], counts: Ints) -> ak.Array:
    """A jagged record collection sorted by pT within events, NanoAOD-typed and -rounded."""
    n = len(counts)
    owner = np.repeat(np.arange(n), counts)
    order = np.lexsort((-fields["pt"], owner))
    dtypes = {**COLLECTION_DTYPES[name], **EXTRA_DTYPES.get(name, {})}
    columns = {}
    for key, values in fields.items():
        stored = _stored(f"{name}_{key}", np.asarray(values)[order].astype(dtypes[key]))
        columns[key] = ak.unflatten(stored, counts)
    return ak.zip(columns)


def _stored(branch: str, values: NDArray[Any]) -> NDArray[Any]:
    bits = MANTISSA_BITS.get(branch, EXTRA_MANTISSA_BITS.get(branch))
    return values if bits is None else reduce_precision(values, bits)


# ---------------------------------------------------------------------------- objects


def _muons(rng: np.random.Generator, n: int, th: Thresholds) -> tuple[dict[str, NDArray[Any]], Ints]:
    """The trigger muon (near every muon cut) plus 0-2 softer, mostly non-isolated muons.

    Leading muon: pT ~ 51 GeV x Pareto(1.2) (median ~90 GeV, ~13 % below the cut with the
    band), |eta| Gaussian to 2.5, tight ID 96 %, miniIsoId 0-4 with 9 % below the cut. A second
    muon in ~27 % of events, a third in ~1 %: pT from 5 GeV, 75 % non-isolated, so a few events
    have two selected.
    """
    counts = 1 + (rng.random(n) < 0.25) + (rng.random(n) < 0.05)
    m = int(counts.sum())
    first = np.zeros(m, bool)
    first[np.cumsum(counts) - counts] = True
    k = int((~first).sum())
    pt, eta = np.empty(m), np.empty(m)
    iso, tight = np.empty(m, np.int64), np.empty(m, bool)
    pt[first] = _near(rng, _pareto(rng, 51.0, 1.2, n, 3000.0), th.muon_pt, 5.0)
    eta[first] = _near_abs(rng, _bounded(rng, 1.1, 2.5, n), th.muon_eta, 0.1, 0.05)
    tight[first] = rng.random(n) < 0.96
    iso[first] = _choice(rng, [0, 1, 2, 3, 4], [0.02, 0.07, 0.10, 0.17, 0.64], n)
    pt[~first] = _pareto(rng, 5.0, 1.3, k, 1000.0)
    eta[~first] = rng.uniform(-2.45, 2.45, k)
    tight[~first] = rng.random(k) < 0.7
    iso[~first] = _choice(rng, [0, 1, 2, 3, 4], [0.45, 0.30, 0.10, 0.07, 0.08], k)
    fields = {"pt": pt, "eta": eta, "phi": rng.uniform(-np.pi, np.pi, m), "mass": np.full(m, MUON_MASS),
              "charge": np.where(rng.random(m) < 0.5, -1, 1), "tightId": tight, "miniIsoId": iso}
    return fields, counts


def _jets(rng: np.random.Generator, n: int, th: Thresholds) -> tuple[dict[str, NDArray[Any]], Ints]:
    """AK4 jets (stored pT > 15 GeV as in NanoAOD) around the jet pT, |eta|, ID and b-tag cuts.

    2 + NegBin(r=4, mean 3.8) jets per event. Each jet is "hard" (62 %: pT ~ lognormal, median
    75 GeV; b 33 %, c 10 %) or "soft" (ISR/pileup-like: 15 GeV + exponential(11 GeV); b 4 %,
    c 7 %), plus a band of +-8 GeV around the cut (wide: the cut applies to the re-corrected
    pT). DeepJet scores are logit-normal per hadron flavour with a band of +-0.1 around the
    working point. ``rawFactor`` ~ 0.05 with a spread that grows at low pT and forward, as in
    UL NanoAOD; jet ID 6/2/0 at 90/6/4 %.
    """
    counts = 2 + rng.negative_binomial(4, 4.0 / (4.0 + 3.8), n)
    m = int(counts.sum())
    hard = rng.random(m) < 0.62
    pt = np.where(hard, 15.0 + rng.lognormal(np.log(60.0), 0.75, m), 15.0 + rng.exponential(11.0, m))
    pt = np.clip(_near(rng, pt, th.jet_pt, 8.0, 0.12), 15.01, 3000.0)
    eta = np.where(hard, _bounded(rng, 1.3, 4.7, m), _bounded(rng, 2.3, 4.7, m))
    eta = _near_abs(rng, eta, th.jet_eta, 0.2, 0.06)
    p_flav = np.where(hard[:, None], [0.57, 0.10, 0.33], [0.89, 0.07, 0.04])
    flavour = np.asarray([0, 4, 5], np.int64)[_categorical(rng, p_flav, m)]
    btag = _logit_normal(rng, np.select([flavour == 5, flavour == 4], [1.5, -1.9], -4.6),
                         np.select([flavour == 5, flavour == 4], [2.2, 1.5], 1.6), m)
    btag = np.clip(_near(rng, btag, th.btag_wp, 0.1, 0.06), 0.0, 1.0)
    fwd = np.abs(eta) > 2.5
    raw_factor = np.clip(0.05 + rng.normal(0.0, 0.03 + 1.5 / pt + 0.08 * fwd, m), -0.8, 0.5)
    jet_id = _choice(rng, [6, 2, 0], [0.90, 0.06, 0.04], m)
    mass = pt * rng.lognormal(np.log(0.12), 0.35, m) * np.where(flavour == 5, 1.2, 1.0)
    fields = {"pt": pt, "eta": eta, "phi": rng.uniform(-np.pi, np.pi, m), "mass": mass,
              "rawFactor": raw_factor, "area": np.clip(rng.normal(0.505, 0.03, m), 0.3, 0.8),
              "jetId": jet_id, "hadronFlavour": flavour, "partonFlavour": _parton_flavour(rng, flavour),
              "btagDeepFlavB": btag}
    return fields, counts


def _parton_flavour(rng: np.random.Generator, hadron: Ints) -> Ints:
    """Parton flavour consistent with the hadron flavour (light: gluon, u/d/s or 0)."""
    m = len(hadron)
    sign = np.where(rng.random(m) < 0.5, -1, 1)
    light = _choice(rng, [21, 1, 2, 3, 0], [0.50, 0.15, 0.15, 0.12, 0.08], m)
    light = np.where(light == 21, 21, sign * light)
    return np.select([hadron == 5, hadron == 4], [sign * 5, sign * 4], light)


def _fat_jets(rng: np.random.Generator, n: int, th: Thresholds) -> tuple[dict[str, NDArray[Any]], Ints]:
    """AK8 jets (pT > 170 GeV): a leading, mostly top-like jet near the pT and tag cuts, 0-2 more.

    Leading: pT ~ 465 GeV x Pareto(2.5) (~20 % below the cut with the band), top-like with
    88 %. A second jet in ~45 % of events, a third in ~4 %: pT from 170 GeV x Pareto(2),
    top-like with 30 %, so ~1 % of events have two selected. ParticleNet TvsQCD logit-normal per
    kind plus a band of +-0.1 around the cut; mass ~ N(175, 30) for top-like jets, pT x
    lognormal(0.11) otherwise; soft-drop mass 60-100 % of it for top-like jets, so both edges of
    the usual 105-210 GeV top window are populated.
    """
    counts = 1 + (rng.random(n) < 0.40) + (rng.random(n) < 0.10)
    m = int(counts.sum())
    first = np.zeros(m, bool)
    first[np.cumsum(counts) - counts] = True
    pt = np.where(first, _pareto(rng, 465.0, 2.5, m, 3000.0), _pareto(rng, 170.0, 2.0, m, 3000.0))
    pt = np.where(first, _near(rng, pt, th.fatjet_pt, 40.0), pt)
    top = rng.random(m) < np.where(first, 0.88, 0.30)
    tag = _logit_normal(rng, np.where(top, 2.6, -2.2), np.where(top, 1.8, 1.6), m)
    tag = np.clip(_near(rng, tag, th.fatjet_tag, 0.1, 0.08), 0.0, 1.0)
    mass = np.where(top, np.maximum(rng.normal(175.0, 30.0, m), 20.0), pt * rng.lognormal(np.log(0.11), 0.45, m))
    softdrop = mass * np.where(top, rng.uniform(0.6, 1.0, m), rng.uniform(0.15, 0.9, m))
    fields = {"pt": pt, "eta": _bounded(rng, 1.0, 2.4, m), "phi": rng.uniform(-np.pi, np.pi, m),
              "mass": mass, "msoftdrop": softdrop, "particleNet_TvsQCD": tag}
    return fields, counts


def _event_level(rng: np.random.Generator, n: int, th: Thresholds, lead_mu_pt: F) -> dict[str, NDArray[Any]]:
    """MET above the skim cut (exponential, densest at the cut) near the muon pT + MET cut,
    fired triggers, integer pileup with rho from it, and generator weights (15 % negative).
    """
    met = th.met + np.maximum(rng.exponential(65.0, n), 0.01)
    lepton_band = rng.random(n) < BAND_SHARE
    # put a share of events in a band of the scalar sum, keeping MET above the skim cut
    target = rng.uniform(th.lepton_met - 20.0, th.lepton_met + 20.0, n)
    met = np.where(lepton_band & (target - lead_mu_pt > th.met + 0.01), target - lead_mu_pt, met)
    true_int = np.clip(np.round(rng.gamma(8.0, 32.0 / 8.0, n)), 1.0, 99.0)
    rho = np.maximum(0.5, 1.5 + 0.55 * rng.poisson(true_int) + rng.normal(0.0, 2.0, n))
    weight = 0.5 * np.where(rng.random(n) < 0.2, rng.normal(1.0, 0.05, n), 1.0)
    weight = np.where(rng.random(n) < 0.15, -weight, weight)
    out: dict[str, NDArray[Any]] = {"genWeight": weight.astype(np.float32)}
    out["PuppiMET_pt"] = met.astype(EVENT_DTYPES["PuppiMET_pt"])
    out["PuppiMET_phi"] = _stored("PuppiMET_phi", rng.uniform(-np.pi, np.pi, n).astype(np.float32))
    out["Pileup_nTrueInt"] = true_int.astype(EVENT_DTYPES["Pileup_nTrueInt"])
    out["fixedGridRhoFastjetAll"] = rho.astype(EVENT_DTYPES["fixedGridRhoFastjetAll"])
    for path in th.triggers:
        out[f"HLT_{path}"] = np.ones(n, bool)
    out["HLT_IsoMu24"] = rng.random(n) < 0.85
    return out


def draw_block(seed: int, index: int, n: int, th: Thresholds) -> dict[str, Any]:
    """Columns of one block of ``n`` events, in NanoAOD branch order.

    Each block has its own random stream (``seed``, ``index``), so a file is the same whatever
    order or process its blocks are drawn in.
    """
    rng = np.random.default_rng(np.random.SeedSequence([seed, index]))
    mu, n_mu = _muons(rng, n, th)
    jets, n_jet = _jets(rng, n, th)
    fat, n_fat = _fat_jets(rng, n, th)
    lead_mu_pt = np.maximum.reduceat(mu["pt"], np.cumsum(n_mu) - n_mu)
    event = _event_level(rng, n, th, lead_mu_pt)
    idx = np.arange(index * BLOCK, index * BLOCK + n, dtype=np.uint64) + np.uint64(1)
    cols: dict[str, Any] = {
        "run": np.ones(n, np.uint32),
        "luminosityBlock": (1 + idx // LUMI_BLOCK_EVENTS).astype(np.uint32),
        "event": idx,
        "genWeight": event.pop("genWeight"),
        "Muon": _sorted_record("Muon", mu, n_mu),
        "Jet": _sorted_record("Jet", jets, n_jet),
        "FatJet": _sorted_record("FatJet", fat, n_fat),
    }
    cols.update(event)
    return cols


# ---------------------------------------------------------------------------- files


def write_hard_input(path: str | Path, n_events: int, seed: int, th: Thresholds,
                     block: int = BLOCK, first_block: int = 0) -> Path:
    """Write the file (LZMA 9, one basket per branch per ``block`` events), atomically.

    With ``first_block`` the file starts at that block of the seed's sequence: files written
    with consecutive ranges of blocks hold, together, the same events as one file of them all.
    """
    if n_events < 1:
        msg = f"n_events must be at least 1, got {n_events}"
        raise ValueError(msg)
    if block != BLOCK:
        msg = f"blocks of {BLOCK} events only (event numbers and random streams follow them), got {block}"
        raise ValueError(msg)
    sums = {"sumw": 0.0}

    def blocks() -> Iterator[dict[str, Any]]:
        for index, start in enumerate(range(0, n_events, block), start=first_block):
            cols = draw_block(seed, index, min(block, n_events - start), th)
            sums["sumw"] += float(np.sum(cols["genWeight"], dtype=np.float64))
            yield cols

    def runs() -> dict[str, NDArray[Any]]:
        return {"run": np.array([1], np.uint32), "genEventCount": np.array([n_events], np.int64),
                "genEventSumw": np.array([sums["sumw"]], np.float64)}

    return write_nanoaod(path, blocks(), runs, compression="lzma", compression_level=9)


def ensure_hard_input(folder: str | Path, n_events: int, seed: int, era: str, th: Thresholds) -> Path:
    """The cached file for these arguments in ``folder``, written first if absent or incomplete.

    The name holds the version, era, size, seed and a digest of the thresholds, so a changed
    cut or a new version of the distributions never reuses a stale file.
    """
    if era not in ERAS:
        msg = f"the hard input follows the conventions of eras {ERAS}, not {era!r}"
        raise ValueError(msg)
    path = Path(folder) / f"hard_v{HARD_INPUT_VERSION}_{era}_{n_events}_{seed}_{th.digest()}.root"
    if path.exists():
        try:
            if read_runs(path).n_events == n_events:
                return path
        except OSError:
            pass
    return write_hard_input(path, n_events, seed, th)


def ensure_hard_split(folder: str | Path, n_events: int, seed: int, era: str, th: Thresholds,
                      n_files: int) -> list[Path]:
    """The events of :func:`ensure_hard_input` (same arguments) as ``n_files`` files of equal
    size, cached like it; ``n_events / n_files`` must be a whole number of blocks."""
    if era not in ERAS:
        msg = f"the hard input follows the conventions of eras {ERAS}, not {era!r}"
        raise ValueError(msg)
    per_file, rest = divmod(n_events, n_files)
    if rest or per_file % BLOCK:
        msg = f"{n_events} events do not split into {n_files} files of whole blocks of {BLOCK}"
        raise ValueError(msg)
    paths = []
    for i in range(n_files):
        path = (Path(folder) / f"hard_v{HARD_INPUT_VERSION}_{era}_{n_events}_{seed}_{th.digest()}"
                f"_{i + 1}of{n_files}.root")
        try:
            complete = path.exists() and read_runs(path).n_events == per_file
        except OSError:
            complete = False
        if not complete:
            write_hard_input(path, per_file, seed, th, first_block=i * per_file // BLOCK)
        paths.append(path)
    return paths


@dataclass(frozen=True)
class InputSummary:
    """Facts read back from a file (not from the generator): multiplicities and shares."""

    events: int
    jets_mean: float
    jets_2_to_12: float
    jets_over_12: float
    jets_below_cut: float
    negative_weights: float
    baskets: int

    def lines(self, jet_pt: float) -> list[str]:
        return [(f"AK4 jets per event: mean {self.jets_mean:.1f}, 2-12 in {self.jets_2_to_12:.0%} of events, "
                 f"more in {self.jets_over_12:.1%}; stored jets below {jet_pt:g} GeV: {self.jets_below_cut:.0%}; "
                 f"genWeight < 0: {self.negative_weights:.0%}")]


def describe(path: str | Path, jet_pt: float) -> InputSummary:
    """Jet multiplicity, share of stored jets below ``jet_pt`` and of negative weights, from the file."""
    import uproot

    with uproot.open(path) as f:
        tree = f["Events"]
        arrays = tree.arrays(["nJet", "Jet_pt", "genWeight"], library="np")
        baskets = tree["Jet_pt"].num_baskets
    n_jet = arrays["nJet"].astype(np.int64)
    jet_pt_flat = np.concatenate(arrays["Jet_pt"]) if n_jet.sum() else np.zeros(0)
    return InputSummary(
        events=len(n_jet), jets_mean=float(n_jet.mean()),
        jets_2_to_12=float(np.mean((n_jet >= 2) & (n_jet <= 12))), jets_over_12=float(np.mean(n_jet > 12)),
        jets_below_cut=float(np.mean(jet_pt_flat < jet_pt)), negative_weights=float(np.mean(arrays["genWeight"] < 0)),
        baskets=int(baskets),
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path)
    parser.add_argument("--events", type=int, default=400_000)
    parser.add_argument("--era", choices=ERAS, default="2017")
    parser.add_argument("--seed", type=int, default=2017)
    args = parser.parse_args(argv)
    wp = {"2017": 0.3040, "2018": 0.2783}[args.era]  # deepJet medium, UL (the BTV files' values)
    th = Thresholds(btag_wp=wp)
    write_hard_input(args.out, args.events, args.seed, th)
    for line in describe(args.out, th.jet_pt).lines(th.jet_pt):
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())

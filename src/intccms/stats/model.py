"""From templates to a pyhf workspace specification.

The workspace is built directly rather than through cabinetry's template machinery:
cabinetry builds templates from ntuples or its own histogram folder, while here the
templates are already filled, merged over eras, grouped by glob patterns, and the
luminosity normsys depends on each sample's era composition.

Nuisance-parameter mapping: every ``{name}_up``/``{name}_down`` pair becomes one
parameter ``{name}``, shared by all samples and channels that have it; the era-merged
histograms therefore give one parameter per decorrelated era/year source
(``jesAbsoluteStat_2017``, ``jesAbsoluteStat_2018``) and one per correlated source
(``jesFlavorQCD``).
"""

from __future__ import annotations

import difflib
import fnmatch
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from intccms.config.statistics import ShapeMode, StatisticsConfig
from intccms.stats.binning import merge_matrix
from intccms.stats.errors import StatisticsInputError
from intccms.stats.inputs import NOMINAL, HistogramSet, ObservableHistograms

DATA = "data"
_SUFFIXES = ("_up", "_down")


@dataclass
class ChannelModel:
    """Fitted templates of one channel, kept next to the spec for plots and reports."""

    name: str
    edges: np.ndarray
    observed: np.ndarray | None
    samples: dict[str, np.ndarray]  # nominal yields per fitted bin
    processes: dict[str, list[str]]  # sample -> processes merged into it


@dataclass
class ModelBuild:
    """A workspace specification and everything learnt while building it."""

    spec: dict[str, Any]
    channels: list[ChannelModel]
    signal: str
    systematics: list[str]
    pruned: list[dict[str, Any]] = field(default_factory=list)
    pruned_parameters: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _is_data(proc: str, meta: dict[str, Any]) -> bool:
    info = meta.get("processes", {}).get(proc)
    if isinstance(info, dict) and "is_data" in info:
        return bool(info["is_data"])
    return proc == DATA


def _closest(name: str, options: list[str]) -> str:
    close = difflib.get_close_matches(name, options, n=3, cutoff=0.5)
    return f" Did you mean {close}?" if close else ""


def systematic_names(variations: list[str], where: str) -> list[str]:
    """Systematic names from variation names, checking that up and down come in pairs.

    Raises:
        StatisticsInputError: a variation is not nominal/``_up``/``_down``, or is unpaired.
    """
    ups, downs = set(), set()
    for v in variations:
        if v == NOMINAL:
            continue
        if v.endswith("_up"):
            ups.add(v[:-3])
        elif v.endswith("_down"):
            downs.add(v[:-5])
        else:
            msg = f"variation {v!r} in {where} is neither 'nominal' nor '{{name}}_up/_down'"
            raise StatisticsInputError(msg)
    for name in sorted(ups ^ downs):
        have, miss = ("up", "down") if name in ups else ("down", "up")
        msg = f"variation {name}_{have} in {where} has no {name}_{miss}; fill both directions"
        raise StatisticsInputError(msg)
    return sorted(ups)


def group_processes(
    processes: list[str], cfg: StatisticsConfig, signal: str, where: str
) -> tuple[dict[str, list[str]], list[str]]:
    """Assign MC processes to the signal and the background groups (glob patterns).

    Returns:
        (sample -> processes with the signal first, unassigned processes)
    """
    if signal not in processes:
        msg = f"signal process {signal!r} not in {where}.{_closest(signal, processes)}"
        raise StatisticsInputError(msg)
    groups: dict[str, list[str]] = {signal: [signal]}
    owner: dict[str, str] = {signal: signal}
    for group, patterns in cfg.backgrounds.items():
        members = sorted(
            p for p in processes if any(fnmatch.fnmatchcase(p, pat) for pat in patterns)
        )
        if not members:
            msg = (
                f"background group {group!r} (patterns {list(patterns)}) matches no process "
                f"in {where}; processes: {processes}"
            )
            raise StatisticsInputError(msg)
        for p in members:
            if p in owner:
                msg = f"process {p!r} in {where} matches both {owner[p]!r} and {group!r}"
                raise StatisticsInputError(msg)
            owner[p] = group
        groups[group] = members
    return groups, sorted(p for p in processes if p not in owner)


def select_systematics(names: list[str], cfg: StatisticsConfig, where: str) -> list[str]:
    """Apply include/exclude globs; include entries without wildcard must be present."""
    sc = cfg.systematics
    for pat in sc.include:
        if not any(ch in pat for ch in "*?[") and pat not in names:
            msg = (
                f"systematic {pat!r} required by statistics.systematics.include is not in "
                f"{where}.{_closest(pat, names)}"
            )
            raise StatisticsInputError(msg)

    def keep(n: str) -> bool:
        inc = any(fnmatch.fnmatchcase(n, p) for p in sc.include)
        return inc and not any(fnmatch.fnmatchcase(n, p) for p in sc.exclude)

    return [n for n in names if keep(n)]


def era_fractions(
    procs: list[str], yields: dict[str, float], meta: dict[str, Any], cfg: StatisticsConfig
) -> dict[str, float]:
    """Fraction of a sample's yield from each era.

    Uses ``meta["era_yields"][process][era]`` when present; otherwise the process is
    assumed to follow the luminosity fractions of the eras in ``meta["eras"]`` (or
    ``statistics.input.eras``, or all configured eras). Processes are weighted by their
    yield in the fitted region.
    """
    lumi = cfg.luminosity.eras
    eras = histogram_eras(meta, cfg)
    era_yields = meta.get("era_yields", {}) or {}
    total: dict[str, float] = {}
    for p in procs:
        ey = era_yields.get(p)
        if ey and sum(ey.values()) > 0:
            s = float(sum(ey.values()))
            frac = {str(e): float(y) / s for e, y in ey.items()}
        else:
            known = [e for e in eras if e in lumi]
            s = float(sum(lumi[e] for e in known)) or 1.0
            frac = {e: lumi[e] / s for e in known}
        for e, f in frac.items():
            total[e] = total.get(e, 0.0) + f * max(yields.get(p, 0.0), 0.0)
    norm = sum(total.values())
    return {e: v / norm for e, v in total.items()} if norm > 0 else {}


def histogram_eras(meta: dict[str, Any], cfg: StatisticsConfig) -> list[str]:
    """Eras the histograms were filled from: metadata, else configuration, else all."""
    return ([str(e) for e in meta.get("eras", [])] or list(cfg.input.eras or [])
            or list(cfg.luminosity.eras))


def _summed(obsh: ObservableHistograms, procs: list[str], var: str, m: np.ndarray
            ) -> tuple[np.ndarray, np.ndarray]:
    vals = sum(m @ obsh.contents[p][var].values for p in procs)
    vars_ = sum(m @ obsh.contents[p][var].variances for p in procs)
    return np.asarray(vals, dtype=float), np.asarray(vars_, dtype=float)


def _syst_modifiers(
    name: str,
    nom: np.ndarray,
    up: np.ndarray,
    down: np.ndarray,
    mode: ShapeMode,
    threshold: float,
) -> tuple[list[dict[str, Any]], list[tuple[str, float]]]:
    """Modifiers of one systematic on one sample, and the pruned (type, effect) pairs."""
    mods: list[dict[str, Any]] = []
    pruned: list[tuple[str, float]] = []
    n_tot = float(nom.sum())
    safe = np.where(nom > 0, nom, 1.0)

    def shape_effect(a: np.ndarray) -> float:
        rel = np.where(nom > 0, np.abs(a - nom) / safe, 0.0)
        return float(rel.max(initial=0.0))

    if mode is ShapeMode.full:
        eff = max(shape_effect(up), shape_effect(down))
        if eff < threshold:
            pruned.append(("histosys", eff))
        else:
            mods.append(
                {"name": name, "type": "histosys",
                 "data": {"hi_data": up.tolist(), "lo_data": down.tolist()}}
            )
        return mods, pruned
    hi = float(up.sum()) / n_tot
    lo = float(down.sum()) / n_tot
    norm_eff = max(abs(hi - 1.0), abs(lo - 1.0))
    if norm_eff < threshold:
        pruned.append(("normsys", norm_eff))
    else:
        mods.append({"name": name, "type": "normsys", "data": {"hi": hi, "lo": lo}})
    up_s = up / hi if hi > 0 else nom.copy()
    down_s = down / lo if lo > 0 else nom.copy()
    shape_eff = max(shape_effect(up_s), shape_effect(down_s))
    if shape_eff < threshold:
        pruned.append(("histosys", shape_eff))
    else:
        mods.append(
            {"name": name, "type": "histosys",
             "data": {"hi_data": up_s.tolist(), "lo_data": down_s.tolist()}}
        )
    return mods, pruned


def build_model(
    hset: HistogramSet, cfg: StatisticsConfig, signal: str | None = None
) -> ModelBuild:
    """Build the pyhf workspace specification for one signal hypothesis.

    Args:
        hset: the analysis histograms.
        cfg: statistics configuration.
        signal: signal process (defaults to ``cfg.signal``).

    Returns:
        ModelBuild: the spec with the fitted templates, pruned modifiers and notes.

    Raises:
        StatisticsInputError: on any inconsistency between histograms and configuration.
    """
    signal = signal or cfg.signal
    _check_hash(hset, cfg)
    meta = hset.meta
    build = ModelBuild(spec={}, channels=[], signal=signal, systematics=[])
    if not meta.get("eras") and not meta.get("era_yields") and not cfg.input.eras:
        build.notes.append(
            f"{hset.source} names no eras: luminosity uncertainties assume all of "
            f"{list(cfg.luminosity.eras)}; set statistics.input.eras"
        )
    channels_spec, observations = [], []
    kept_params: set[str] = set()
    all_systs: set[str] = set()
    for ch in cfg.input.channels:
        where = f"{hset.source} [{ch}/{cfg.input.observable}]"
        obsh = hset.get(ch, cfg.input.observable)
        m, edges = merge_matrix(obsh.edges, cfg.input.include_flow, cfg.input.rebin_edges, where)
        procs = sorted(obsh.contents)
        mc = [p for p in procs if not _is_data(p, meta)]
        groups, unassigned = group_processes(mc, cfg, signal, where)
        if unassigned:
            build.notes.append(f"{ch}: processes in no sample group (not fitted): {unassigned}")
        used = [p for ps in groups.values() for p in ps]
        for p in used:
            if NOMINAL not in obsh.contents[p]:
                msg = f"process {p!r} in {where} has no 'nominal' variation"
                raise StatisticsInputError(msg)
        union = sorted({v for p in used for v in obsh.contents[p]})
        names = systematic_names(union, where)
        for p in used:
            missing = sorted(set(union) - set(obsh.contents[p]))
            if missing:
                msg = (
                    f"process {p!r} in {where} lacks variation(s) {missing[:5]}"
                    f"{' ...' if len(missing) > 5 else ''} that other processes have; "
                    "every MC process must carry every variation (fill foreign-era ones "
                    "with nominal)"
                )
                raise StatisticsInputError(msg)
        for p in used:
            nominal = obsh.contents[p][NOMINAL].values
            if not np.any(nominal):
                continue
            empty = [v for v in union if not np.any(obsh.contents[p][v].values)]
            if empty:
                msg = (
                    f"process {p!r} in {where} lacks variation(s) {empty[:5]}"
                    f"{' ...' if len(empty) > 5 else ''}: all bins are zero while nominal is "
                    "not; the variation is missing from the histograms"
                )
                raise StatisticsInputError(msg)
        systs = select_systematics(names, cfg, where)
        all_systs.update(systs)
        proc_yield = {p: float((m @ obsh.contents[p][NOMINAL].values).sum()) for p in used}
        samples_spec, nominals = [], {}
        for sample, members in groups.items():
            nom, var = _summed(obsh, members, NOMINAL, m)
            if nom.sum() <= 0:
                msg = (
                    f"sample {sample!r} (processes {members}) is empty in {where}: total "
                    f"yield {nom.sum():.3g}; remove it from statistics.backgrounds or check "
                    "the selection"
                )
                raise StatisticsInputError(msg)
            if np.any(nom < 0):
                build.notes.append(
                    f"{ch}/{sample}: negative yields in bins "
                    f"{np.flatnonzero(nom < 0).tolist()} set to 0"
                )
                nom = np.clip(nom, 0.0, None)
            nominals[sample] = nom
            mods: list[dict[str, Any]] = []
            if sample == signal:
                mods.append({"name": cfg.poi_name, "type": "normfactor", "data": None})
            fr = era_fractions(members, proc_yield, meta, cfg)
            for comp in cfg.luminosity.components:
                delta = sum(f * comp.uncertainty.get(e, 0.0) for e, f in fr.items())
                if delta > 0:
                    mods.append(
                        {"name": comp.name, "type": "normsys",
                         "data": {"hi": 1.0 + delta, "lo": 1.0 - delta}}
                    )
            xs = cfg.xsec_uncertainties.get(sample)
            if xs:
                mods.append(
                    {"name": f"xsec_{sample}", "type": "normsys",
                     "data": {"hi": 1.0 + xs, "lo": 1.0 - xs}}
                )
            if cfg.systematics.mc_stat:
                mods.append(
                    {"name": f"staterror_{ch}", "type": "staterror",
                     "data": np.sqrt(np.clip(var, 0.0, None)).tolist()}
                )
            for s in systs:
                up = np.clip(_summed(obsh, members, f"{s}_up", m)[0], 0.0, None)
                down = np.clip(_summed(obsh, members, f"{s}_down", m)[0], 0.0, None)
                smods, spruned = _syst_modifiers(
                    s, nom, up, down, ShapeMode(cfg.systematics.shape_mode),
                    cfg.systematics.pruning_threshold,
                )
                mods.extend(smods)
                kept_params.update(md["name"] for md in smods)
                build.pruned.extend(
                    {"parameter": s, "channel": ch, "sample": sample, "modifier": t,
                     "effect": eff}
                    for t, eff in spruned
                )
            samples_spec.append({"name": sample, "data": nom.tolist(), "modifiers": mods})
        total = np.asarray(sum(nominals.values()))
        empty_bins = np.flatnonzero(total <= 0)
        if empty_bins.size:
            msg = (
                f"fitted bins {empty_bins.tolist()} of {where} have no MC prediction; merge them "
                "with statistics.input.rebin_edges"
            )
            raise StatisticsInputError(msg)
        observed = None
        data_procs = [p for p in procs if _is_data(p, meta)]
        if data_procs:
            observed = np.asarray(sum(m @ obsh.contents[p][NOMINAL].values for p in data_procs))
        channels_spec.append({"name": ch, "samples": samples_spec})
        observations.append(
            {"name": ch, "data": (observed if observed is not None else total).tolist()}
        )
        build.channels.append(ChannelModel(ch, edges, observed, nominals, groups))
    build.systematics = sorted(all_systs)
    build.pruned_parameters = sorted(all_systs - kept_params)
    lo, hi = cfg.poi_bounds
    build.spec = {
        "channels": channels_spec,
        "observations": observations,
        "measurements": [
            {
                "name": "measurement",
                "config": {
                    "poi": cfg.poi_name,
                    "parameters": [
                        {"name": cfg.poi_name, "bounds": [[lo, hi]], "inits": [cfg.poi_init]}
                    ],
                },
            }
        ],
        "version": "1.0.0",
    }
    return build


def _check_hash(hset: HistogramSet, cfg: StatisticsConfig) -> None:
    want = cfg.input.expected_config_hash
    if want is None:
        return
    have = hset.meta.get("config_hash")
    if have != want:
        msg = (
            f"histograms in {hset.source} were made with config_hash {have!r}, but the "
            f"statistics configuration expects {want!r}: the file belongs to another "
            "configuration; rerun the analysis stage or update statistics.input.expected_config_hash"
        )
        raise StatisticsInputError(msg)

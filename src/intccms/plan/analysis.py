"""The analysis side of the plan, built from the configuration once on the driver.

Era constants (the ``@name`` values functors see), one :class:`CorrectionsSpec` per era (built
here, so every correction file and key is checked at start-up), the variation names and the
worker-side :class:`AnalysisPlan` (picklable and free of secrets).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping
from typing import Any

from omegaconf import DictConfig, OmegaConf

from intccms.physics.behaviours import resolve_behaviour
from intccms.physics.corrections.era import era_values
from intccms.physics.corrections.loading import get_correction
from intccms.physics.corrections.spec import CorrectionsSpec
from intccms.physics.functors import Functor
from intccms.physics.pipeline import AnalysisPlan, Channel, Observable


def _container(node: Any) -> Any:
    return OmegaConf.to_container(node, resolve=True, enum_to_str=True) if node is not None else None


def make_functor(entry: Mapping[str, Any], analysis: DictConfig) -> Functor:
    """The functor of one configuration entry, with the coffea behaviours it asks for resolved
    against the configured collections and objects (coffea is imported only then)."""
    kind = entry.get("behaviour")
    if not kind:
        return Functor.from_config(entry)
    objects = {str(k): list(v.inputs) for k, v in analysis.objects.items()}
    behaviour = resolve_behaviour(str(kind), list(entry.get("inputs", ())), analysis.collections, objects)
    return Functor.from_config(entry, behaviour)


def era_constants(cfg: DictConfig, eras: list[str]) -> dict[str, dict[str, Any]]:
    """Per-era values available to functors as ``@name`` (triggers, b-tag WP, era, year)."""
    out: dict[str, dict[str, Any]] = {}
    root = str(cfg.paths.jsonpog)
    for era in eras:
        era_cfg = _container(cfg.eras[era])
        values = era_values(era, era_cfg)
        consts: dict[str, Any] = {"era": era, "year": values["year"], "triggers": list(era_cfg["triggers"])}
        for name, const in cfg.corrections.constants.items():
            path = f"{root.rstrip('/')}/{str(const.file).format(**values)}"
            corr = get_correction(path, str(const.key).format(**values), era=era)
            consts[name] = float(corr.evaluate(*[str(a).format(**values) for a in const.args]))
        out[era] = consts
    return out


def corrections_specs(cfg: DictConfig, eras: list[str]) -> dict[str, CorrectionsSpec]:
    """One :class:`CorrectionsSpec` per era with corrections; built here once to validate."""
    definitions = _container(cfg.corrections.definitions) or {}
    specs: dict[str, CorrectionsSpec] = {}
    for era in eras:
        names = list(cfg.corrections.by_era.get(era, []) or [])
        if not names:
            continue
        spec = CorrectionsSpec.create(era, _container(cfg.eras[era]), definitions, names, str(cfg.paths.jsonpog))
        spec.build()
        specs[era] = spec
    return specs


def variation_names(cfg: DictConfig, specs: Mapping[str, CorrectionsSpec]) -> tuple[str, ...]:
    """``nominal`` then every variation any era produces (filtered by ``workflow.variations``)."""
    names: list[str] = []
    for spec in specs.values():
        for name in spec.build().variation_names():
            if name not in names:
                names.append(name)
    patterns = list(cfg.workflow.variations)
    unmatched = [p for p in patterns if p != "*" and not any(fnmatch.fnmatchcase(n, p) for n in names)]
    if unmatched and names:
        # A typo here would silently drop systematics from every histogram and fit.
        msg = (f"workflow.variations: {unmatched} match no variation of the configured corrections "
               f"(e.g. {', '.join(names[:4])}, ... {len(names)} in all; patterns are globs such as 'jes*')")
        raise ValueError(msg)
    names = [n for n in names if any(fnmatch.fnmatchcase(n, p) for p in patterns)]
    return ("nominal", *names)


def build_plan(cfg: DictConfig, specs: Mapping[str, CorrectionsSpec]) -> AnalysisPlan:
    """The worker-side plan from the ``analysis`` group (picklable, secret-free)."""
    a = cfg.analysis
    observables = {
        name: Observable(
            functor=make_functor(_container(o), a),
            bins=int(o.binning.bins), start=float(o.binning.start), stop=float(o.binning.stop),
        )
        for name, o in a.observables.items()
    }
    channels = {}
    for name, ch in a.channels.items():
        for obs in ch.observables:
            if obs not in observables:
                msg = f"analysis.channels.{name}.observables: '{obs}' is not defined (known: {sorted(observables)})"
                raise ValueError(msg)
        channels[name] = Channel(
            cuts={k: make_functor(_container(v), a) for k, v in ch.cuts.items()},
            observables=tuple(ch.observables), use_baseline=bool(ch.use_baseline),
        )
    return AnalysisPlan(
        collections={k: tuple(v) for k, v in a.collections.items()},
        event_columns=tuple(a.event_columns),
        mc_only=frozenset(a.mc_only),
        skim=make_functor(_container(a.skim), a),
        objects={k: make_functor(_container(v), a) for k, v in a.objects.items()},
        baseline={k: make_functor(_container(v), a) for k, v in a.baseline.items()},
        channels=channels,
        observables=observables,
        variations=variation_names(cfg, specs),
        compiled_kernels_after=cfg.workflow.compiled_kernels_after,
    )

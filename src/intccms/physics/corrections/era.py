"""All corrections of one era, built from configuration, and the variation names they make."""

from __future__ import annotations

import difflib
import fnmatch
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from intccms.physics.corrections.inputs import FlatEvaluator, InputSpec
from intccms.physics.corrections.jec import JesSource, JetEnergyCorrection
from intccms.physics.corrections.loading import category_keys, correction_inputs
from intccms.physics.corrections.weights import WeightCorrection, WeightSource


class CorrectionConfigError(ValueError):
    """A correction's configuration does not match its file (names correction, key and era)."""


def era_values(era: str, era_cfg: Mapping[str, Any]) -> dict[str, str]:
    """Placeholders available to correction strings: ``{era}``, ``{year}``, ``{folder}``..."""
    return {
        "era": era,
        "year": str(era_cfg["year"]),
        "folder": str(era_cfg["correction_folder"]),
        "jec_campaign": str(era_cfg["jec_campaign"]),
        "pileup_key": str(era_cfg["pileup_key"]),
        "trigger_sf_key": str(era_cfg["trigger_sf_key"]),
    }


def _fmt(text: str, values: Mapping[str, str], *, where: str) -> str:
    try:
        return text.format(**values)
    except KeyError as err:
        msg = f"{where}: unknown placeholder {err} in '{text}' (known: {sorted(values)})"
        raise CorrectionConfigError(msg) from None


@dataclass
class EraCorrections:
    """The object and weight corrections applied to one era's simulation."""

    era: str
    objects: list[JetEnergyCorrection] = field(default_factory=list)
    weights: list[WeightCorrection] = field(default_factory=list)

    @classmethod
    def from_config(
        cls,
        era: str,
        era_cfg: Mapping[str, Any],
        definitions: Mapping[str, Mapping[str, Any]],
        names: Sequence[str],
        jsonpog_root: str,
    ) -> EraCorrections:
        """Build (and thereby validate) the corrections ``names`` for ``era``.

        Every file is opened and every key, input and selector checked, so a missing file or
        key, or a selector the file does not know, fails here, at start-up, with a message
        naming the correction, the file, the key and the era.
        """
        values = era_values(era, era_cfg)
        out = cls(era=era)
        for name in names:
            if name not in definitions:
                msg = f"era {era}: correction '{name}' is not defined (known: {sorted(definitions)})"
                raise CorrectionConfigError(msg)
            cfg = definitions[name]
            where = f"correction '{name}' (era {era})"
            path = f"{jsonpog_root.rstrip('/')}/{_fmt(cfg['file'], values, where=where)}"
            try:
                if cfg["type"] == "object":
                    out.objects.append(_object_correction(name, cfg, path, values, era, where))
                elif cfg["type"] == "event":
                    out.weights.append(_weight_correction(name, cfg, path, values, era, where))
                else:
                    msg = f"{where}: type must be 'object' or 'event', not '{cfg['type']}'"
                    raise CorrectionConfigError(msg)
            except KeyError as err:
                raise CorrectionConfigError(f"{where}: {err.args[0]}") from None
        jes = [src for obj in out.objects for src in obj.sources]
        varied = {f for obj in out.objects for f in (obj.target, *obj.also_scaled)}
        for wc in out.weights:
            wc.links = _resolve_links(wc, jes)
            _check_selectors(wc, era)
            if wc.links:
                wc.stage_on(varied)
        return out

    def warm(self) -> None:
        """Build the lookup tables the chunks build at first use (JES sources, two-stage
        weights): a worker's warm-up does it beside the first stages, a driver never."""
        for obj in self.objects:
            obj.warm()
        for wc in self.weights:
            wc.warm()

    def variation_bases(self) -> list[str]:
        """Base names of every variation this era produces (object first, then weights)."""
        bases = [v for obj in self.objects for v in obj.variation_bases]
        bases += [s.variation for w in self.weights for s in w.sources]
        return bases

    def variation_names(self) -> list[str]:
        """``{base}_up`` / ``{base}_down`` for every source of this era."""
        return [f"{b}_{d}" for b in self.variation_bases() for d in ("up", "down")]


def _object_correction(
    name: str, cfg: Mapping[str, Any], path: str, values: Mapping[str, str], era: str, where: str
) -> JetEnergyCorrection:
    levels = [_fmt(level, values, where=where) for level in cfg["levels"]]
    key_pattern = cfg.get("uncertainty_key") or "{jec_campaign}_{source}_AK4PFchs"
    sources = []
    for entry in cfg["jes_sources"]:
        vals = dict(values, source=entry["source"])
        sources.append(
            JesSource(
                source=entry["source"],
                key=_fmt(key_pattern, vals, where=where),
                variation=_fmt(entry["variation"], vals, where=where),
            )
        )
    if not cfg.get("collection"):
        msg = "object corrections need 'collection'"
        raise KeyError(msg)
    return JetEnergyCorrection(
        name=name,
        collection=cfg["collection"],
        path=path,
        levels=levels,
        level_inputs=cfg["level_inputs"],
        sources=sources,
        era=era,
        raw_factor=cfg.get("raw_factor") or "rawFactor",
        target=cfg.get("target") or "pt",
        also_scaled=tuple(("mass",) if cfg.get("also_scaled") is None else cfg["also_scaled"]),
    )


def _weight_correction(
    name: str, cfg: Mapping[str, Any], path: str, values: Mapping[str, str], era: str, where: str
) -> WeightCorrection:
    key = _fmt(cfg.get("key") or "", values, where=where)
    inputs = [input_name for input_name, _ in correction_inputs(path, key, era=era)]
    specs = []
    configured = cfg["inputs"]
    for input_name in inputs:
        if input_name not in configured:
            msg = (f"input '{input_name}' of key '{key}' in {path} is not configured "
                   f"(configured: {sorted(configured)})")
            raise KeyError(msg)
        spec = configured[input_name]
        literal = spec.get("literal")
        specs.append(
            InputSpec(
                name=input_name,
                field=spec.get("field"),
                literal=_fmt(literal, values, where=where) if literal is not None else None,
                systematic=bool(spec.get("systematic")),
                absolute=bool(spec.get("abs")),
            )
        )
    unknown = set(configured) - set(inputs)
    if unknown:
        msg = f"inputs {sorted(unknown)} are not inputs of key '{key}' in {path}"
        raise KeyError(msg)
    evaluator = FlatEvaluator(path, key, specs, era=era)

    def _source(entry: Mapping[str, Any], *, linked: bool = False) -> WeightSource:
        flav = entry.get("flavours")
        # Linked selectors keep ``{source}``: it is filled per object variation at fill time.
        vals = dict(values, source="{source}") if linked else values
        return WeightSource(
            variation=entry["variation"] if linked else _fmt(entry["variation"], vals, where=where),
            up=_fmt(entry["up"], vals, where=where),
            down=_fmt(entry["down"], vals, where=where),
            flavours=tuple(int(f) for f in flav) if flav is not None else None,
        )

    return WeightCorrection(
        name=name,
        evaluator=evaluator,
        nominal=cfg.get("nominal", "nominal"),
        obj=cfg.get("object"),
        reduction=cfg.get("reduction", "product"),
        flavour_field=cfg.get("flavour_field", "hadronFlavour"),
        sources=[_source(s) for s in cfg.get("sources", [])],
        linked=[_source(s, linked=True) for s in cfg.get("varies_with", [])],
    )


def _resolve_links(correction: WeightCorrection, jes: Sequence[JesSource]) -> dict[str, WeightSource]:
    """Each object variation's linked source, ``{source}`` filled with its configured source.

    A linked entry's ``variation`` is an fnmatch pattern on the object variation's base name
    (``jes*``); ``{source}`` in its ``up``/``down`` is the JES source as configured
    (``AbsoluteStat`` for ``jesAbsoluteStat_2017``: the b-tag file has no year suffix).
    """
    links: dict[str, WeightSource] = {}
    for src in jes:
        entry = next((e for e in correction.linked if fnmatch.fnmatchcase(src.variation, e.variation)), None)
        if entry is not None:
            links[src.variation] = WeightSource(
                variation=src.variation,
                up=entry.up.replace("{source}", src.source),
                down=entry.down.replace("{source}", src.source),
                flavours=entry.flavours,
            )
    return links


def _check_selectors(correction: WeightCorrection, era: str) -> None:
    """Every selector (nominal, sources, linked sources) is a value the file's category has.

    correctionlib would otherwise take the category's default for an unknown selector, or fail
    in the middle of a job on the first object that reaches it.
    """
    ev = correction.evaluator
    slot = next((spec.name for spec in ev.specs if spec.systematic), None)
    if slot is None:
        return
    allowed = category_keys(ev.path, ev.key, slot)
    if allowed is None:
        return
    wanted = [("nominal", correction.nominal_selector)]
    wanted += [(f"{src.variation} {d}", getattr(src, d)) for src in correction.sources for d in ("up", "down")]
    wanted += [(f"varies_with {src.variation} {d}", getattr(src, d))
               for src in correction.links.values() for d in ("up", "down")]
    for role, selector in wanted:
        if selector not in allowed:
            close = difflib.get_close_matches(selector, allowed, n=3)
            hint = f"; did you mean {close}?" if close else ""
            msg = (f"correction '{correction.name}' (era {era}): selector '{selector}' ({role}) is not a "
                   f"value of input '{slot}' of key '{ev.key}' in {ev.path}{hint} (allowed: {list(allowed)})")
            raise CorrectionConfigError(msg)


def linked_source(correction: WeightCorrection, object_variation: str) -> WeightSource | None:
    """The source of ``correction`` that moves with an object variation (``varies_with``).

    Resolved at start-up from the configured JES sources (see :func:`_resolve_links`); ``None``
    when no ``varies_with`` entry matches the object variation.

    Raises:
        CorrectionConfigError: the variation matches a ``varies_with`` pattern but is not an
            object variation of the era, so its source is unknown.
    """
    link = correction.links.get(object_variation)
    if link is not None:
        return link
    if any(fnmatch.fnmatchcase(object_variation, e.variation) for e in correction.linked):
        msg = (f"correction '{correction.name}': object variation '{object_variation}' matches a "
               f"varies_with pattern but is not an object variation of this era "
               f"(known: {sorted(correction.links)})")
        raise CorrectionConfigError(msg)
    return None

"""Load correctionlib files lazily, once per process, with errors that name file, key and era."""

from __future__ import annotations

import gzip
import json
import math
import re
from functools import lru_cache
from typing import Any, cast

import correctionlib._core

from intccms.physics.corrections.file_memo import per_file


class CorrectionFileError(FileNotFoundError):
    """A correction file or a key in it is missing or unreadable."""


@lru_cache(maxsize=32)
def _file_text(path: str) -> str:
    opener = gzip.open if path.endswith(".gz") else open
    try:
        with opener(path, "rb") as handle:
            return handle.read().decode()
    except FileNotFoundError:
        msg = f"correction file {path} does not exist (check paths.jsonpog / INTCCMS_JSONPOG)"
        raise CorrectionFileError(msg) from None
    except (OSError, UnicodeDecodeError, EOFError) as err:
        msg = f"correction file {path} is unreadable: {err}"
        raise CorrectionFileError(msg) from None


@lru_cache(maxsize=32)
def _load_json(path: str) -> dict[str, Any]:
    try:
        return cast(dict[str, Any], json.loads(_file_text(path)))
    except json.JSONDecodeError as err:
        msg = f"correction file {path} is unreadable: {err}"
        raise CorrectionFileError(msg) from None


@lru_cache(maxsize=32)
def _load_set(path: str) -> correctionlib._core.CorrectionSet:
    return correctionlib._core.CorrectionSet.from_string(json.dumps(_load_json(path)))


@lru_cache(maxsize=32)
def _corrections_by_name(path: str) -> dict[str, dict[str, Any]]:
    return {str(c.get("name")): c for c in _load_json(path).get("corrections", [])}


_NAMED_OBJECT = re.compile(r'\{\s*"name"\s*:\s*("(?:[^"\\]|\\.)*")')
_SCHEMA_VERSION = re.compile(r'\A\s*\{\s*"schema_version"\s*:\s*(\d+)\s*[,}]')
_DECODER = json.JSONDecoder()


@lru_cache(maxsize=32)
def _named_objects(path: str) -> dict[str, list[int]]:
    """Where each object whose first key is ``"name"`` starts in the file's text, by name."""
    found: dict[str, list[int]] = {}
    for match in _NAMED_OBJECT.finditer(_file_text(path)):
        found.setdefault(match.group(1), []).append(match.start())
    return found


@lru_cache(maxsize=1024)
def _decoded_alone(path: str, key: str) -> dict[str, Any] | None:
    """Correction ``key`` decoded from its own span of the file's text, or ``None`` when it
    cannot be found that way (the caller then decodes the whole file).

    A UL ``jet_jerc.json.gz`` is ~19 MB of JSON of which a simulated sample uses ~6; decoding
    all of it was a third of a worker's set-up. In valid JSON an unescaped ``{"name": "KEY"``
    opens an object (a quote inside a string is escaped), and an object with a correction's
    fields (``inputs``, ``output``, ``data``) is one of the file's corrections: no node of the
    schema below a correction has them. The last such object wins, as in a whole-file decode.
    """
    text = _file_text(path)
    found = None
    for start in _named_objects(path).get(json.dumps(key), []):
        try:
            obj, _ = _DECODER.raw_decode(text, start)
        except json.JSONDecodeError:
            return None
        if isinstance(obj, dict) and obj.get("name") == key and {"inputs", "output", "data"} <= obj.keys():
            found = obj
    return found


def _schema_version(path: str) -> int:
    """The file's ``schema_version`` (read from the head of the text when it is written first)."""
    match = _SCHEMA_VERSION.match(_file_text(path))
    return int(match.group(1)) if match else int(_load_json(path).get("schema_version", 2))


def correction_json(path: str, key: str) -> dict[str, Any] | None:
    """The JSON of correction ``key`` in file ``path``, or ``None`` when the file has none."""
    found = _decoded_alone(path, key)
    return found if found is not None else _corrections_by_name(path).get(key)


def parse_correction(corr: dict[str, Any], schema_version: int = 2) -> correctionlib._core.Correction:
    """One correction's JSON (possibly edited: sliced, probed) parsed by correctionlib on its own.

    Every such parse goes through this one ``json.dumps`` (:func:`correction_text`), so a value
    read back from an edited copy is the value the unedited correction gives.
    """
    return parse_text(correction_text(corr, schema_version), corr["name"])


def correction_text(corr: dict[str, Any], schema_version: int = 2) -> str:
    """The text correctionlib parses one correction from (kept by the file's memo, so a worker
    with the cache parses the same text without decoding the file)."""
    return json.dumps({"schema_version": schema_version, "corrections": [corr]})


def parse_text(text: str, name: str) -> correctionlib._core.Correction:
    return correctionlib._core.CorrectionSet.from_string(text)[name]


def parse_variants(corr: dict[str, Any], variants: list[dict[str, Any]],
                   schema_version: int = 2) -> list[correctionlib._core.Correction]:
    """``corr`` with the keys of each variant replaced (a probe's ``name`` and formulas), each
    parsed as :func:`parse_correction` would: the same text for every value, but the part the
    variants share (the tables, most of the text) is dumped once, not once per variant."""
    replaced = {k for variant in variants for k in variant}
    if any(set(variant) != replaced for variant in variants) or "name" not in replaced:
        return [parse_correction({**corr, **variant}, schema_version) for variant in variants]
    body = json.dumps({k: v for k, v in corr.items() if k not in replaced})
    out = []
    for variant in variants:
        extra = ", ".join(f"{json.dumps(k)}: {json.dumps(v)}" for k, v in variant.items())
        joined = f"{body[:-1]}, {extra}}}" if body != "{}" else f"{{{extra}}}"
        text = f'{{"schema_version": {json.dumps(schema_version)}, "corrections": [{joined}]}}'
        out.append(correctionlib._core.CorrectionSet.from_string(text)[variant["name"]])
    return out


def correction_inputs(path: str, key: str, *, era: str) -> list[tuple[str, str]]:
    """(name, type) of every input of correction ``key``, read from the file's JSON where it is
    there (a compound correction is parsed); the same errors as :func:`get_correction`.

    A worker evaluating the b-tag shape through its systematic slices never needs the whole
    correction (every systematic, ~9 MB of text) parsed; its inputs are all that is asked of it.
    """
    get_correction_checks(path, key, era=era)
    found = _inputs(path, key)
    if found is not None:
        return list(found)
    return [(i.name, i.type) for i in get_correction(path, key, era=era).inputs]


@per_file
def _inputs(path: str, key: str) -> tuple[tuple[str, str], ...] | None:
    corr = correction_json(path, key)
    return None if corr is None else tuple((str(i["name"]), str(i["type"])) for i in corr.get("inputs", []))


@lru_cache(maxsize=1024)
def _load_correction(path: str, key: str) -> correctionlib._core.Correction:
    """One correction of a file, parsed on its own.

    A UL ``jet_jerc.json.gz`` holds 93 corrections, among them six large ``L2Relative`` tables
    (one per data-taking period); a simulated sample uses one. Parsing only the corrections asked
    for takes a worker's correctionlib set-up from ~1.8 s to ~0.3 s of CPU per era. The values
    are the same: the correction's JSON is the one the whole file would be parsed from.
    Compound corrections refer to others by name, so their file is parsed whole.
    """
    text = _text_alone(path, key)
    return _load_set(path)[key] if text is None else parse_text(text, key)


@per_file
def _text_alone(path: str, key: str) -> str | None:
    """:func:`correction_text` of correction ``key`` (``None``: a compound correction)."""
    corr = correction_json(path, key)
    return None if corr is None else correction_text(corr, _schema_version(path))


def get_correction(path: str, key: str, *, era: str) -> correctionlib._core.Correction:
    """The correction ``key`` of file ``path``; cached per process (never at import time).

    This is correctionlib's low-level object: its ``evalv`` takes the pipeline's flat,
    equal-length numpy arrays directly, where the high-level wrapper would copy and broadcast
    every argument on each of the hundreds of evaluations of a chunk.

    Raises:
        CorrectionFileError: the file or the key is missing; the message names both and the era.
    """
    get_correction_checks(path, key, era=era)
    return _load_correction(path, key)


def get_correction_checks(path: str, key: str, *, era: str) -> None:
    """Raise :class:`CorrectionFileError` (naming file, key and era) unless ``path`` loads and
    holds ``key`` (a correction or a compound correction)."""
    try:
        if _holds(path, key):
            return
        keys = _keys(path)
    except CorrectionFileError as err:
        # The file loaders are cached per path; the key and the era are added here.
        msg = f"{err}; it should hold correction key '{key}' for era {era}"
        raise CorrectionFileError(msg) from None
    close = [k for k in keys if k.split("_")[0] == key.split("_")[0]][:5]
    msg = f"correction key '{key}' not found in {path} (era {era}); similar keys: {close}"
    raise CorrectionFileError(msg)


def _keys(path: str) -> list[str]:
    """Every correction and compound correction the file holds (from the whole file's decode)."""
    compound = _load_json(path).get("compound_corrections") or []
    return [*_corrections_by_name(path), *(str(c.get("name")) for c in compound)]


@per_file
def _holds(path: str, key: str) -> bool:
    """Whether the file holds ``key`` (a correction or a compound correction)."""
    return _decoded_alone(path, key) is not None or key in _keys(path)


@lru_cache(maxsize=2048)
def systematic_slice(path: str, key: str, selector: str) -> tuple[str, correctionlib._core.Correction] | None:
    """Correction ``key`` with its outermost string category fixed to ``selector``.

    Scale-factor files put the systematic (``central``, ``up_jesAbsolute``...) in a string
    category at the root; correctionlib looks that string up again for every object. The slice
    drops it, which makes each evaluation about a third cheaper. Returns the name of the dropped
    input and the sliced correction, or ``None`` when the correction is not organised this way
    (the caller then evaluates the full correction, which also reports unknown selectors).
    """
    found = _slice_text(path, key, selector)
    if found is None:
        return None
    dropped, text = found
    try:
        return dropped, parse_text(text, f"{key}[{selector}]")
    except Exception:  # noqa: BLE001 - an unusual structure: evaluate the full correction instead
        return None


def _sliced_json(path: str, key: str, selector: str) -> tuple[str, dict[str, Any]] | None:
    """The dropped input's name and the JSON of :func:`systematic_slice`'s correction."""
    corr = correction_json(path, key)
    node = corr.get("data") if corr else None
    if corr is None or not isinstance(node, dict) or node.get("nodetype") != "category":
        return None
    inputs = corr.get("inputs", [])
    dropped = cast(str, node.get("input"))  # checked below: a string input of that name
    if not any(i.get("name") == dropped and i.get("type") == "string" for i in inputs):
        return None
    value = next((item["value"] for item in node.get("content", []) if item.get("key") == selector),
                 node.get("default"))
    if value is None:
        return None
    name = f"{key}[{selector}]"
    return dropped, {**corr, "name": name, "inputs": [i for i in inputs if i.get("name") != dropped], "data": value}


@per_file
def _slice_text(path: str, key: str, selector: str) -> tuple[str, str] | None:
    found = _sliced_json(path, key, selector)
    return None if found is None else (found[0], correction_text(found[1], _schema_version(path)))


def _edge(value: Any) -> float:
    if isinstance(value, str):
        return math.inf if value.lstrip("+") == "inf" else -math.inf
    return float(value)


def _walk(node: Any, ranges: dict[str, list[float]]) -> None:
    """Widen ``ranges`` by every non-clamped binning under ``node``.

    Iterative, and it looks only into containers that can hold nodes: a UL b-tag shape holds
    ~700k JSON values and a JES source ~50k, most of them numbers in ``edges`` and formula
    ``parameters`` lists, which hold numbers only (schema v2) and are not walked.
    """
    stack = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            kind = item.get("nodetype")
            if kind == "binning" and item.get("flow") != "clamp":
                edges = item["edges"]
                _widen(ranges, item["input"], _edge(edges[0]), _edge(edges[-1]))
            elif kind == "multibinning" and item.get("flow") != "clamp":
                for name, edges in zip(item["inputs"], item["edges"], strict=True):
                    _widen(ranges, name, _edge(edges[0]), _edge(edges[-1]))
            stack.extend(v for k, v in item.items() if k not in _NUMBER_LISTS and isinstance(v, (dict, list)))
        elif isinstance(item, list):
            stack.extend(v for v in item if isinstance(v, (dict, list)))


_NUMBER_LISTS = frozenset({"edges", "parameters"})  # keys of lists that hold numbers (or "inf")


def _widen(ranges: dict[str, list[float]], name: str, low: float, high: float) -> None:
    if name in ranges:
        ranges[name][0] = min(ranges[name][0], low)
        ranges[name][1] = max(ranges[name][1], high)
    else:
        ranges[name] = [low, high]


@per_file
def input_ranges(path: str, key: str) -> dict[str, tuple[float, float]]:
    """Range covered by the bins of each real input of a correction.

    CMS recommends evaluating outside a table's range at its edge (the last bin), not failing
    and not returning 1; inputs are clipped into ``[low, high)`` before evaluation. Bins with
    ``flow: clamp`` already do this and are skipped.
    """
    corr = correction_json(path, key)
    if corr is None:
        return {}
    ranges: dict[str, list[float]] = {}
    _walk(corr.get("data"), ranges)
    return {name: (lo, hi) for name, (lo, hi) in ranges.items()}


def _category_nodes(node: Any, name: str, found: list[dict[str, Any]]) -> None:
    if isinstance(node, dict):
        if node.get("nodetype") == "category" and node.get("input") == name:
            found.append(node)
            return  # an input is categorised once on any path through the tree
        for value in node.values():
            _category_nodes(value, name, found)
    elif isinstance(node, list):
        for value in node:
            _category_nodes(value, name, found)


@per_file
def category_keys(path: str, key: str, input_name: str) -> tuple[str, ...] | None:
    """The values a string input of a correction accepts everywhere in its tree.

    A selector missing from a category would silently take the category's default (or fail
    on some objects only), so selectors are checked against these values at start-up.
    Returns ``None`` when the input is not categorised (nothing to check).
    """
    corr = correction_json(path, key)
    if corr is None:
        return None
    nodes: list[dict[str, Any]] = []
    _category_nodes(corr.get("data"), input_name, nodes)
    if not nodes:
        return None
    allowed = [str(item["key"]) for item in nodes[0].get("content", [])]
    for node in nodes[1:]:
        present = {str(item["key"]) for item in node.get("content", [])}
        allowed = [k for k in allowed if k in present]
    return tuple(allowed)


@per_file
def is_identity(path: str, key: str) -> bool:
    """Whether the correction gives exactly 1 for every input it accepts (an MC jet's
    ``L3Absolute`` and ``L2L3Residual``): multiplying by it changes no bit, so it need not be
    evaluated. Out-of-range inputs that correctionlib refuses (``flow: error``) keep it evaluated."""
    corr = correction_json(path, key)
    return corr is not None and _gives_one(corr.get("data"), corr.get("generic_formulas") or [])


def _gives_one(node: Any, formulas: list[Any]) -> bool:
    if isinstance(node, bool):
        return False
    if isinstance(node, (int, float)):
        return float(node) == 1.0
    if not isinstance(node, dict):
        return False
    kind = node.get("nodetype")
    if kind == "formula":
        return str(node.get("expression", "")).strip() in {"1", "1.0"}
    if kind == "formularef":
        index = node.get("index")
        return (isinstance(index, int) and 0 <= index < len(formulas)
                and str(formulas[index].get("expression", "")).strip() in {"1", "1.0"})
    if kind in ("binning", "multibinning"):
        flow = node.get("flow")
        return flow != "error" and (flow == "clamp" or _gives_one(flow, formulas)) and all(
            _gives_one(child, formulas) for child in node.get("content", []))
    if kind == "category":
        default = node.get("default")
        return (default is None or _gives_one(default, formulas)) and all(
            _gives_one(item.get("value"), formulas) for item in node.get("content", []))
    return False


def parsed_correction(path: str, key: str) -> correctionlib._core.Correction:
    """The correction as every evaluation of it parses it (cached per process; the file and the
    key are assumed checked, as by :func:`get_correction`)."""
    return _load_correction(path, key)

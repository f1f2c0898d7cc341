"""coffea's vector and candidate behaviours for the configured functions that ask for them.

A functor with ``behaviour: vector``, ``candidate`` or ``nanoevents`` receives its collection and
object inputs as coffea records (``muons.delta_r(jets)``, ``(muon + jet).mass``); every other
functor keeps the plain records of the pipeline and pays nothing. Which coffea record each input
becomes is decided once, on the driver, from the configured fields (:func:`resolve_behaviour`),
so that a missing field is a configuration error; on a worker, attaching it relabels the same
columns, with the kinematic fields in double precision as the plain functions compute them
(:meth:`Behaviour.attach`). coffea is imported only when a functor asks.

* ``vector``: ``PtEtaPhiMLorentzVector`` for records with ``pt, eta, phi, mass``,
  ``PolarTwoVector`` for records with ``pt, phi`` (MET).
* ``candidate``: ``PtEtaPhiMCandidate`` instead (needs ``charge``), ``PolarTwoVector`` for MET.
* ``nanoevents``: the record names of coffea's NanoAOD schema by collection (``Muon``, ``Jet``,
  ``FatJet``, ``MissingET``...), with their kinematic methods; cross-references between
  collections (``matched_jet``) need NanoEvents itself and are not available.

Like NanoEvents, records get zeros for the fields NanoAOD does not store (the ``charge`` of
jets, the ``mass`` of photons). An object (``muons``) takes the fields of the collection it is
built from: its functor's first input, followed through other objects.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import awkward as ak
import numpy as np

KINDS = ("vector", "candidate", "nanoevents")
_P4 = ("pt", "eta", "phi", "mass")
_P2 = ("pt", "phi")


class BehaviourError(ValueError):
    """A functor asks for behaviours its inputs cannot have."""


@dataclass(frozen=True)
class InputBehaviour:
    """The coffea record one input becomes, and the fields that record needs."""

    position: int
    name: str
    record: str
    fields: tuple[str, ...]
    zero_fields: tuple[str, ...] = ()


@dataclass(frozen=True)
class Behaviour:
    """The behaviours of one functor's inputs (picklable: names only, no coffea objects)."""

    kind: str
    inputs: tuple[InputBehaviour, ...]

    def attach(self, args: Sequence[Any], function: str) -> list[Any]:
        """``args`` with coffea's behaviours on the inputs that get them (the same columns, the
        kinematic ones in double precision).

        Raises:
            BehaviourError: an input lacks a field its record needs (a function that builds an
                object with other fields than its source collection).
        """
        behavior = coffea_behavior(self.kind)
        out = list(args)
        for spec in self.inputs:
            value = out[spec.position]
            if not isinstance(value, ak.Array):
                msg = (f"function {function}: input '{spec.name}' is a {type(value).__name__}, "
                       f"not an awkward array of records for coffea's {spec.record}")
                raise BehaviourError(msg)
            present = set(ak.fields(value))
            for name in spec.zero_fields:
                if name not in present:
                    value = ak.with_field(value, 0.0, name)
                    present.add(name)
            missing = [f for f in spec.fields if f not in present]
            if missing:
                msg = (f"function {function}: input '{spec.name}' has no field(s) {missing} "
                       f"needed by coffea's {spec.record} (fields: {sorted(present)})")
                raise BehaviourError(msg)
            value = _in_double_precision(value, [f for f in spec.fields if f != "charge"])
            out[spec.position] = ak.Array(value, with_name=spec.record, behavior=behavior)
        return out


def _in_double_precision(value: ak.Array, names: Sequence[str]) -> ak.Array:
    """``value`` packed, with the record fields ``names`` (NanoAOD stores them as float32) as
    float64: coffea's four-vector arithmetic then gives the numbers of the plain functions,
    which compute in double precision."""
    wanted = set(names)

    def promote(layout: Any, **_: Any) -> Any:  # noqa: ANN401
        if not isinstance(layout, ak.contents.RecordArray) or layout.is_tuple:
            return None
        contents = [
            ak.values_astype(content, np.float64, highlevel=False) if name in wanted else content
            for name, content in zip(layout.fields, layout.contents, strict=True)
        ]
        return ak.contents.RecordArray(contents, layout.fields, length=layout.length, parameters=layout.parameters)

    # Packed first: the pipeline's objects are often an index into all the chunk's objects, which
    # every later coffea operation would otherwise broadcast through.
    return ak.transform(promote, ak.to_packed(value), behavior=value.behavior)


def coffea_behavior(kind: str) -> dict[Any, Any]:
    """coffea's behaviour mapping of ``kind`` (imported here: coffea takes seconds to import;
    shared, never modified)."""
    if kind == "vector":
        # coffea takes ~2 s to import: only functions that ask for behaviours load it
        from coffea.nanoevents.methods import vector

        return vector.behavior  # type: ignore[no-any-return]
    if kind == "candidate":
        # coffea takes ~2 s to import: only functions that ask for behaviours load it
        from coffea.nanoevents.methods import candidate

        return candidate.behavior  # type: ignore[no-any-return]
    if kind == "nanoevents":
        # coffea takes ~2 s to import: only functions that ask for behaviours load it
        from coffea.nanoevents.methods import nanoaod

        return nanoaod.behavior  # type: ignore[no-any-return]
    msg = f"behaviour '{kind}' is not one of {list(KINDS)}"
    raise BehaviourError(msg)


def source_collection(name: str, collections: Mapping[str, Sequence[str]],
                      objects: Mapping[str, Sequence[str]]) -> str | None:
    """The collection an input comes from: itself, or an object's first input, followed."""
    seen: set[str] = set()
    while name not in collections:
        inputs = objects.get(name)
        if not inputs or name in seen:
            return None
        seen.add(name)
        name = inputs[0]
    return name


def resolve_behaviour(kind: str, inputs: Sequence[str], collections: Mapping[str, Sequence[str]],
                      objects: Mapping[str, Sequence[str]]) -> Behaviour:
    """The coffea record of every collection or object among ``inputs``.

    Args:
        kind: ``vector``, ``candidate`` or ``nanoevents``.
        inputs: the functor's inputs; event columns and era constants (``@name``) stay as they are.
        collections: collection name -> configured fields (``@name`` fields are ignored).
        objects: object name -> its functor's inputs.

    Raises:
        BehaviourError: an unknown kind, or an input without the fields its record needs.
    """
    behavior = coffea_behavior(kind)
    collections = {str(k): [str(f) for f in v] for k, v in collections.items()}
    objects = {str(k): [str(i) for i in v] for k, v in objects.items()}
    specs = []
    for position, name in enumerate(str(i) for i in inputs):
        if name.startswith("@") or (name not in collections and name not in objects):
            continue
        source = source_collection(name, collections, objects)
        if source is None:
            msg = (f"input '{name}' is not built from a collection (its function's first input "
                   f"should be one), so its fields and coffea record are unknown")
            raise BehaviourError(msg)
        fields = {f for f in collections[source] if not f.startswith("@")}
        what = f"input '{name}'" + (f" (built from {source})" if source != name else "")
        record = _record_name(kind, source, fields, what)
        required = _required_fields(behavior, record)
        zero_fields = tuple(f for f in required if f not in fields and _filled_by_nanoevents(source, f))
        missing = [f for f in required if f not in fields and f not in zero_fields]
        if missing:
            msg = (f"{what} lacks {missing} needed by coffea's {record}: add them to "
                   f"analysis.collections.{source}")
            raise BehaviourError(msg)
        specs.append(InputBehaviour(position, name, record, required, zero_fields))
    return Behaviour(kind, tuple(specs))


def _record_name(kind: str, source: str, fields: set[str], what: str) -> str:
    if kind == "nanoevents":
        # coffea takes ~2 s to import: only functions that ask for behaviours load it
        from coffea.nanoevents.schemas import NanoAODSchema

        return str(NanoAODSchema.mixins.get(source, "NanoCollection"))
    if set(_P4) <= fields:
        return "PtEtaPhiMCandidate" if kind == "candidate" else "PtEtaPhiMLorentzVector"
    if set(_P2) <= fields:
        return "PolarTwoVector"
    msg = (f"{what} has neither {', '.join(_P4)} nor {', '.join(_P2)}: coffea's {kind} "
           f"behaviours need these names (fields: {sorted(fields)})")
    raise BehaviourError(msg)


def _required_fields(behavior: Mapping[Any, Any], record: str) -> tuple[str, ...]:
    """The fields coffea's class for ``record`` reads (from its vector and candidate bases)."""
    # coffea takes ~2 s to import: only functions that ask for behaviours load it
    from coffea.nanoevents.methods import candidate, vector

    cls = behavior.get(record)
    if not isinstance(cls, type):
        return ()
    required: tuple[str, ...] = ()
    if issubclass(cls, vector.PtEtaPhiMLorentzVector):
        required = _P4
    elif issubclass(cls, vector.PtEtaPhiELorentzVector):
        required = ("pt", "eta", "phi", "energy")
    elif issubclass(cls, vector.PolarTwoVector):
        required = _P2
    if issubclass(cls, candidate.Candidate):
        required = (*required, "charge")
    return required


def _filled_by_nanoevents(collection: str, name: str) -> bool:
    """Whether NanoEvents fills this field with zeros where NanoAOD has none (the charge of
    jets, the mass of photons)."""
    # coffea takes ~2 s to import: only functions that ask for behaviours load it
    from coffea.nanoevents.schemas import NanoAODSchema

    return f"{collection}_{name}" in NanoAODSchema.full_like_items

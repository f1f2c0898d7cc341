"""The ``processor`` group: which coffea processor runs, with what arguments and schema.

The group's YAML key for the class is ``class``, a Python keyword that no dataclass field can
carry; the root schema therefore leaves ``processor`` untyped and this module types it at
start-up (from :func:`intccms.config.validate.validate_config`), naming a wrong key or type as
``processor.<key>`` like every other group.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from omegaconf import MISSING, DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from intccms.config.keys import unknown_key_message

CLASS_KEY = "class"
_CLASS_FIELD = "class_path"


class ProcessorConfigError(ValueError):
    """The ``processor`` group has an unknown key, a wrong type or a missing value."""


@dataclass
class ProcessorConfig:
    """A coffea processor run on every chunk (``processor`` group).

    Attributes:
        class_path: ``pkg.module.MyProcessor`` (YAML key ``class``); a ``ProcessorABC`` subclass.
        kwargs: keyword arguments of the class's constructor.
        schema: NanoEvents schema: a name in ``coffea.nanoevents`` (``NanoAODSchema``) or an
            import path of a ``BaseSchema`` subclass.
        treename: the tree holding the events.
        python_path: directories put in front of ``sys.path`` to import the class (relative to
            the working directory); modules imported from them are sent to the workers with
            the processor, so only the job needs the files.
    """

    class_path: str = MISSING
    kwargs: dict[str, Any] = field(default_factory=dict)
    schema: str = "NanoAODSchema"
    treename: str = "Events"
    python_path: list[str] = field(default_factory=list)


def yaml_keys() -> list[str]:
    """The keys the group accepts, as written in YAML."""
    return sorted(CLASS_KEY if f.name == _CLASS_FIELD else f.name for f in fields(ProcessorConfig))


def _yaml_name(key: str) -> str:
    head, _, rest = key.partition(".")
    head = CLASS_KEY if head == _CLASS_FIELD else head
    return f"{head}.{rest}" if rest else head


def parse_processor_config(node: Any) -> ProcessorConfig:
    """The ``processor`` node checked against :class:`ProcessorConfig`.

    Raises:
        ProcessorConfigError: naming ``processor.<key>`` (with the closest valid keys for an
            unknown one) for an unknown key, a wrong type or a missing ``class``.
    """
    if isinstance(node, ProcessorConfig):
        return node
    plain = OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else node
    if not isinstance(plain, Mapping):
        msg = f"processor: expected a mapping with the keys {yaml_keys()}, got {type(plain).__name__}"
        raise ProcessorConfigError(msg)
    values: dict[str, Any] = {}
    for key, value in plain.items():
        name = str(key)
        if name == _CLASS_FIELD or name not in yaml_keys():
            raise ProcessorConfigError(unknown_key_message(f"processor.{name}", yaml_keys()))
        values[_CLASS_FIELD if name == CLASS_KEY else name] = value
    try:
        merged = OmegaConf.merge(OmegaConf.structured(ProcessorConfig), values)
        parsed = OmegaConf.to_object(merged)
    except OmegaConfBaseException as err:
        key = _yaml_name(str(getattr(err, "full_key", "") or ""))
        text = str(getattr(err, "msg", err)).splitlines()[0].replace(_CLASS_FIELD, CLASS_KEY)
        if "missing mandatory value" in text.lower() and key == CLASS_KEY:
            text = "missing: set it to the import path of your processor, e.g. processor.class=mypkg.module.MyProcessor"
        msg = f"processor.{key}: {text}" if key else f"processor: {text}"
        raise ProcessorConfigError(msg) from None
    assert isinstance(parsed, ProcessorConfig)
    return parsed


__all__ = ["CLASS_KEY", "ProcessorConfig", "ProcessorConfigError", "parse_processor_config", "yaml_keys"]

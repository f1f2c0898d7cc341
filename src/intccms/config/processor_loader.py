"""Import the configured processor class and schema on the driver and refuse bad ones at start-up.

Everything that can be checked before a worker is asked for is checked here: the import path
(module, then attribute), that the class derives from ``ProcessorABC``, that its constructor
accepts ``kwargs``, that the instance pickles (it travels to every worker) and that the schema
is a NanoEvents schema. Modules imported from ``processor.python_path`` are pickled by value,
so workers that do not have those files still run the processor.
"""

from __future__ import annotations

import contextlib
import difflib
import importlib
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import cloudpickle
import coffea.nanoevents
from coffea.nanoevents.schemas.base import BaseSchema
from coffea.processor import ProcessorABC

from intccms.config.processor import ProcessorConfig


class ProcessorLoadError(ValueError):
    """The configured processor or schema cannot be imported, built or sent to the workers."""


@dataclass(frozen=True)
class LoadedProcessor:
    """The processor instance and the schema class, ready to be sent to the workers."""

    instance: ProcessorABC
    schema: type[BaseSchema]
    class_path: str
    # Source of each module sent by value (path -> text): workers show the user's lines in
    # tracebacks although they do not have the files.
    sources: Mapping[str, str] = field(default_factory=dict)


def _add_python_path(entries: list[str]) -> list[Path]:
    dirs = []
    for entry in entries:
        path = Path(entry).expanduser().resolve()
        if not path.is_dir():
            msg = f"processor.python_path: {entry} is not a directory (resolved to {path})"
            raise ProcessorLoadError(msg)
        if str(path) not in sys.path:
            sys.path.insert(0, str(path))
        dirs.append(path)
    return dirs


def _public_names(module: ModuleType) -> list[str]:
    return sorted(n for n in vars(module) if not n.startswith("_"))


def import_object(path: str, key: str) -> Any:
    """``pkg.module.Name`` imported; errors name the module and the attribute.

    Args:
        path: dotted import path of a module attribute.
        key: configuration key shown in errors (``processor.class``).

    Raises:
        ProcessorLoadError: the path has no module part, the module does not import (its own
            error is quoted), or the module has no such attribute (close names suggested).
    """
    module_name, _, attr = path.rpartition(".")
    if not module_name or not attr:
        msg = f"{key}: '{path}' is not an import path of the form package.module.ClassName"
        raise ProcessorLoadError(msg)
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        missing = getattr(err, "name", None)
        why = (f"no module named '{missing}'" if isinstance(err, ModuleNotFoundError) and missing
               else f"{type(err).__name__}: {err}")
        msg = (f"{key}: cannot import module '{module_name}' (for attribute '{attr}'): {why}; "
               "install the package or add its folder to processor.python_path")
        raise ProcessorLoadError(msg) from None
    except Exception as err:  # noqa: BLE001 - the user's module raised while importing
        msg = f"{key}: importing module '{module_name}' raised {type(err).__name__}: {err}"
        raise ProcessorLoadError(msg) from None
    if not hasattr(module, attr):
        close = difflib.get_close_matches(attr, _public_names(module), n=3)
        hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        where = getattr(module, "__file__", None) or module_name
        msg = f"{key}: module '{module_name}' ({where}) has no attribute '{attr}'{hint}"
        raise ProcessorLoadError(msg)
    return getattr(module, attr)


def _schema(name: str) -> type[BaseSchema]:
    found = (import_object(name, "processor.schema") if "." in name
             else getattr(coffea.nanoevents, name, None))
    if found is None:
        known = sorted(n for n in dir(coffea.nanoevents) if n.endswith("Schema"))
        msg = f"processor.schema: '{name}' is not a schema of coffea.nanoevents (known: {known}) nor an import path"
        raise ProcessorLoadError(msg)
    if not (isinstance(found, type) and issubclass(found, BaseSchema)):
        msg = f"processor.schema: '{name}' is {found!r}, not a coffea.nanoevents BaseSchema subclass"
        raise ProcessorLoadError(msg)
    return found


def _ship_by_value(dirs: list[Path]) -> dict[str, str]:
    """Pickle modules loaded from ``dirs`` by value: the workers need not have the files.

    Returns:
        The source of each such module, by its file path.
    """
    roots = [str(d) + os.sep for d in dirs]
    sources = {}
    for module in list(sys.modules.values()):
        origin = getattr(module, "__file__", None)
        if origin and any(str(Path(origin).resolve()).startswith(r) for r in roots):
            cloudpickle.register_pickle_by_value(module)
            with contextlib.suppress(OSError, UnicodeDecodeError):
                sources[origin] = Path(origin).read_text()
    return sources


def load_processor(cfg: ProcessorConfig) -> LoadedProcessor:
    """Import, check and build the configured processor.

    Raises:
        ProcessorLoadError: naming the key at fault (``processor.class``, ``processor.kwargs``,
            ``processor.schema``, ``processor.python_path``).
    """
    dirs = _add_python_path(list(cfg.python_path))
    cls = import_object(cfg.class_path, "processor.class")
    if not isinstance(cls, type) or not issubclass(cls, ProcessorABC):
        what = f"the class {cls.__module__}.{cls.__qualname__}" if isinstance(cls, type) else f"a {type(cls).__name__}"
        msg = (f"processor.class: '{cfg.class_path}' is {what}, not a subclass of coffea.processor.ProcessorABC "
               "(a processor derives from it and defines process(events) and postprocess(accumulator))")
        raise ProcessorLoadError(msg)
    try:
        instance = cls(**dict(cfg.kwargs))
    except Exception as err:  # noqa: BLE001 - the user's constructor: any error is a config error
        msg = f"processor.kwargs: {cfg.class_path}(**{dict(cfg.kwargs)}) raised {type(err).__name__}: {err}"
        raise ProcessorLoadError(msg) from None
    schema = _schema(str(cfg.schema))
    sources = _ship_by_value(dirs)
    try:
        cloudpickle.dumps(instance)
    except Exception as err:  # noqa: BLE001 - anything unpicklable inside the user's instance
        msg = (f"processor.class: the {cfg.class_path} instance cannot be pickled to send it to the "
               f"workers: {type(err).__name__}: {err}")
        raise ProcessorLoadError(msg) from None
    return LoadedProcessor(instance=instance, schema=schema, class_path=cfg.class_path, sources=sources)


__all__ = ["LoadedProcessor", "ProcessorLoadError", "import_object", "load_processor"]

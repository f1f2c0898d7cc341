"""Physics functions referenced from configuration by import path, with named inputs."""

from __future__ import annotations

import importlib
import logging
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from hydra.utils import get_method

from intccms.physics.behaviours import Behaviour


class FunctorError(ValueError):
    """A configured function cannot be imported or called with its inputs."""


@lru_cache(maxsize=256)
def import_function(path: str) -> Callable[..., Any]:
    """Import ``package.module.function`` (or ``package.module.Class.method``) with Hydra's
    locator; the error names the path and what is missing (Hydra's own error log is muted:
    a typo is reported once, by the caller)."""
    module_name = path.rpartition(".")[0]
    if not module_name:
        msg = f"'{path}' is not an import path (expected 'package.module.function')"
        raise FunctorError(msg)
    hydra_log = logging.getLogger("hydra.utils")
    level = hydra_log.level
    hydra_log.setLevel(logging.CRITICAL)
    try:
        return get_method(path)
    except ValueError:
        msg = f"'{path}' is not callable"
        raise FunctorError(msg) from None
    except ImportError:
        raise FunctorError(_why_not_importable(path)) from None
    finally:
        hydra_log.setLevel(level)


def _why_not_importable(path: str) -> str:
    """Which part of ``path`` is missing: the module, or the attribute (with what there is)."""
    module_name, _, attr = path.rpartition(".")
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        return f"cannot import module '{module_name}' for function '{path}': {err}"
    names = [n for n in dir(module) if not n.startswith("_")]
    return f"module '{module_name}' has no function '{attr}' (available: {names})"


_SHARED = threading.local()


@contextmanager
def shared_results() -> Iterator[None]:
    """Within the block, a function called twice on the same input objects with the same
    parameters runs once (e.g. ``mtt`` as an observable and as a classifier feature of one fill).

    Keys hold the inputs themselves, so an object's id cannot be reused while its entry lives.
    """
    previous = getattr(_SHARED, "memo", None)
    _SHARED.memo = {}
    try:
        yield
    finally:
        _SHARED.memo = previous


def call_shared(path: str, func: Callable[..., Any], args: Sequence[Any], params: Mapping[str, Any]) -> Any:
    """``func(*args, **params)``, reusing a result of the enclosing :func:`shared_results`."""
    memo = getattr(_SHARED, "memo", None)
    if memo is None:
        return func(*args, **params)
    key = (path, tuple(id(a) for a in args), repr(sorted(params.items())))
    hit = memo.get(key)
    if hit is not None and all(a is b for a, b in zip(hit[0], args, strict=True)):
        return hit[1]
    value = func(*args, **params)
    memo[key] = (tuple(args), value)
    return value


@dataclass(frozen=True)
class Functor:
    """A function with the names of its inputs and its keyword parameters, and the coffea
    behaviours its inputs get when it asks for them (``behaviour:``)."""

    function: str
    inputs: tuple[str, ...] = ()
    params: Mapping[str, Any] = field(default_factory=dict)
    behaviour: Behaviour | None = None

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any], behaviour: Behaviour | None = None) -> Functor:
        """The functor of a configuration entry; a ``behaviour`` it names must come resolved
        (:func:`intccms.physics.behaviours.resolve_behaviour`), since that needs the collections."""
        if cfg.get("behaviour") and behaviour is None:
            msg = f"function {cfg['function']}: behaviour '{cfg['behaviour']}' was not resolved"
            raise FunctorError(msg)
        return cls(
            function=str(cfg["function"]),
            inputs=tuple(cfg.get("inputs", ())),
            params=dict(cfg.get("params", {})),
            behaviour=behaviour,
        )

    def __call__(self, namespace: Mapping[str, Any]) -> Any:
        func = import_function(self.function)
        try:
            args = [namespace[name] for name in self.inputs]
        except KeyError as err:
            msg = (
                f"function {self.function}: input {err} is not available "
                f"(known: {sorted(k for k in namespace if not k.startswith('_'))})"
            )
            raise FunctorError(msg) from None
        behaviour = self.behaviour
        if behaviour is not None:
            def with_behaviour(*values: Any, **params: Any) -> Any:  # noqa: ANN401
                return func(*behaviour.attach(values, self.function), **params)

            # Shared results are keyed on the plain inputs, so a repeated call still reuses one.
            return call_shared(f"{self.function}[{behaviour.kind}]", with_behaviour, args, self.params)
        return call_shared(self.function, func, args, self.params)


def depends_on(inputs: Sequence[str], varying: set[str]) -> bool:
    """True when any input is in the set of names that change under object variations."""
    return any(name in varying for name in inputs)

"""The second tier of a worker process: compiled kernels, loaded once it has analysed enough
events to repay loading them.

:mod:`intccms.physics.kernels` runs the per-jet steps that cost a chunk with every variation
most in numpy passes as a few tight loops: each JES fill's jet selection in the nominal order,
b-tag table lookup and cubic (~30 passes) and ``mtt``; each JES source's formula; the b-tag
table's split of the chunk's jets into bins (``benchmarks/bench_kernels.py``). Together about
25-30 % less CPU per chunk (``bench_variations.py --tier``). Loading them costs a fresh
process ~1.2 s of CPU (importing numba, its extensions and the kernels from numba's cache;
compiling them the first time on a machine, ~3.5 s). A short
job on many workers would lose more than it gains, so, as in a JIT's second tier, a process
loads the kernels before its next chunk once it has analysed ``after`` events
(``workflow.compiled_kernels_after``): a long job's workers run compiled, a short one's never
pay for it. The two tiers give the same numbers bit for bit.
"""

from __future__ import annotations

import importlib
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from types import ModuleType

log = logging.getLogger(__name__)

_kernels: ModuleType | None = None
_unavailable = False
_suspended = 0
_events = 0


def kernels() -> ModuleType | None:
    """The kernels module where this process has loaded it, else ``None`` (the numpy tier)."""
    return None if _suspended else _kernels


def load() -> ModuleType | None:
    """Import (compile or load from numba's cache) the kernels once; ``None`` where numba
    cannot (the numpy tier then stays, with a warning once)."""
    global _kernels, _unavailable
    if _kernels is None and not _unavailable:
        start = time.process_time()
        try:
            module = importlib.import_module("intccms.physics.kernels")
        except (ImportError, OSError, RuntimeError) as err:  # numba missing or broken; no cache location
            _unavailable = True
            log.warning("compiled kernels unavailable, staying with numpy: %s: %s", type(err).__name__, err)
            return None
        _kernels = module
        log.info("compiled kernels loaded after %d events (%.2f s of CPU)", _events, time.process_time() - start)
    return kernels()


def before_chunk(after: int | None) -> None:
    """Load the kernels when this process has analysed ``after`` events (``None``: never)."""
    if after is not None and _kernels is None and _events >= after:
        load()


def after_chunk(events: int) -> None:
    """Count a chunk's events towards the threshold."""
    global _events
    _events += events


@contextmanager
def numpy_tier() -> Iterator[None]:
    """Run with the numpy code even where the kernels are loaded (benchmarks and tests compare
    the tiers)."""
    global _suspended
    _suspended += 1
    try:
        yield
    finally:
        _suspended -= 1

"""What a worker derives from a correction file, kept per process and in a per-user cache.

Every worker process derives the same things from the same files: the JES source table and the
b-tag leaves (read back from correctionlib through hundreds of probe parses), input ranges, the
texts of the corrections it parses. That was about a second of CPU per worker, paid by every
worker at the same moment, which is what kept two workers from being twice as fast as one.

Results are kept per file in memory and, when a directory is available, pickled to
``$INTCCMS_CACHE_DIR`` (else ``$XDG_CACHE_HOME/intccms``, else ``~/.cache/intccms``), under
``corrections/``, named by a digest of the file's bytes and of this package's code, so an edited
file or a new version never reads an old result. ``INTCCMS_CACHE_DIR=off`` turns the disk part
off. The directory must belong to the user and be closed to others (it is made so when it is
created, refused otherwise): a pickle is code, and only the user can write there. Writes are
atomic; an unreadable or corrupt entry is ignored and written again; an entry no worker has read
for two weeks (an old file, an old version) is removed.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import logging
import os
import pickle
import stat
import sys
import threading
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple, TypeVar, cast

import correctionlib
import numpy as np

log = logging.getLogger(__name__)

CACHE_ENV = "INTCCMS_CACHE_DIR"
_SUBDIR = "corrections"
_FORMAT = 1

T = TypeVar("T")


@dataclass
class _Store:
    """One file's results: ``values[(function, *args)]``; ``digest`` names it on disk (``None``:
    memory only)."""

    digest: str | None
    values: dict[tuple[Hashable, ...], Any] = field(default_factory=dict)
    added: bool = False


_STORES: dict[str, _Store] = {}
_LOCK = threading.RLock()
_WARNED: set[str] = set()


def per_file(fn: Callable[..., T]) -> Callable[..., T]:
    """Memoise ``fn(path, *args)`` (hashable, picklable arguments and result) in ``path``'s store.

    Exceptions are not kept. ``fn.cache_clear()`` forgets this function's results in this
    process (not on disk).
    """
    name = f"{fn.__module__}.{fn.__qualname__}"
    counts = {"hits": 0, "misses": 0}

    @functools.wraps(fn)
    def memo(path: str, *args: Hashable) -> T:
        store = _store(path)
        key = (name, *args)
        try:
            value = store.values[key]
        except KeyError:
            pass
        else:
            counts["hits"] += 1
            return cast(T, value)
        counts["misses"] += 1
        value = fn(path, *args)
        with _LOCK:
            store.values.setdefault(key, value)
            store.added = True
            return cast(T, store.values[key])

    def cache_clear() -> None:
        with _LOCK:
            for store in _STORES.values():
                for key in [k for k in store.values if k[0] == name]:
                    del store.values[key]

    def cache_info() -> MemoInfo:
        """Hits and misses in this process (a result read from disk is a hit), and results held."""
        with _LOCK:
            held = sum(1 for store in _STORES.values() for k in store.values if k[0] == name)
        return MemoInfo(counts["hits"], counts["misses"], held)

    memo.cache_clear = cache_clear  # type: ignore[attr-defined]
    memo.cache_info = cache_info  # type: ignore[attr-defined]
    return memo


class MemoInfo(NamedTuple):
    hits: int
    misses: int
    currsize: int


def forget() -> None:
    """Drop every file's results from this process (the disk cache stays)."""
    with _LOCK:
        _STORES.clear()


def save() -> None:
    """Write the results added since the files were read to the cache (a worker's warm-up calls
    this when it is done; a failure to write only leaves the cache as it was)."""
    with _LOCK:
        pending = [s for s in _STORES.values() if s.added and s.values and s.digest is not None]
        if not pending:
            return
        folder = _open_folder()
        if folder is None:
            return
        try:
            for store in pending:
                assert store.digest is not None
                merged = {**_read(folder, store.digest), **store.values}
                if _write(folder, store.digest, merged):
                    store.added = False
            _prune(folder)
        finally:
            os.close(folder)


UNUSED_FOR_S = 14 * 86400  # an entry no worker has read for this long is removed (old files, old code)


def _prune(folder: int) -> None:
    """Remove entries unused for :data:`UNUSED_FOR_S` (a read marks an entry used) and temporary
    files a killed writer left behind."""
    now = time.time()
    for name in os.listdir(folder):
        stale = UNUSED_FOR_S if name.endswith(".pickle") else 86400 if name.endswith(".tmp") else None
        if stale is None:
            continue
        with contextlib.suppress(OSError):
            info = os.stat(name, dir_fd=folder, follow_symlinks=False)
            if now - info.st_mtime > stale:
                os.unlink(name, dir_fd=folder)


def _store(path: str) -> _Store:
    with _LOCK:
        store = _STORES.get(path)
        if store is None:
            digest = _digest(path)
            store = _Store(digest)
            if digest is not None:
                folder = _open_folder()
                if folder is not None:
                    try:
                        store.values.update(_read(folder, digest))
                    finally:
                        os.close(folder)
            _STORES[path] = store
        return store


def _digest(path: str) -> str | None:
    """The file's bytes and this package's code (and the libraries whose results are kept)."""
    try:
        data = Path(path).read_bytes()
    except OSError:
        return None  # the function itself reports it
    digest = hashlib.sha256(_code_fingerprint().encode())
    digest.update(data)
    return digest.hexdigest()


@functools.lru_cache(maxsize=1)
def _code_fingerprint() -> str:
    package = Path(__file__).parent
    digest = hashlib.sha256()
    for source in sorted(package.glob("*.py")):
        digest.update(source.name.encode())
        digest.update(source.read_bytes())
    versions = (_FORMAT, correctionlib.__version__, np.__version__, sys.version, pickle.HIGHEST_PROTOCOL)
    digest.update(repr(versions).encode())
    return digest.hexdigest()


def cache_root() -> Path | None:
    """The cache's directory (``None``: off)."""
    configured = os.environ.get(CACHE_ENV, "")
    if configured.lower() in {"off", "none", "0", "false"}:
        return None
    if configured:
        return Path(configured)
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    try:
        base = Path(xdg) if xdg else Path.home() / ".cache"
    except RuntimeError:  # no home (a container's user without a passwd entry)
        return None
    return base / "intccms"


def _open_folder() -> int | None:
    """A descriptor of the user's own, closed cache folder (every later access goes through it,
    so a renamed or swapped path is never followed), or ``None``."""
    root = cache_root()
    if root is None:
        return None
    target = root / _SUBDIR
    try:
        target.mkdir(mode=0o700, parents=True, exist_ok=True)
        folder = os.open(target, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    except OSError as err:
        _warn_once(str(target), f"correction cache {target} not used: {err}")
        return None
    info = os.fstat(folder)
    if info.st_uid != os.geteuid():
        os.close(folder)
        _warn_once(str(target), f"correction cache {target} not used: it belongs to another user")
        return None
    if info.st_mode & 0o077:
        os.fchmod(folder, 0o700)  # the user's own folder, left open by an earlier umask
    return folder


def _read(folder: int, digest: str) -> dict[tuple[Hashable, ...], Any]:
    try:
        handle = os.open(f"{digest}.pickle", os.O_RDONLY | os.O_NOFOLLOW, dir_fd=folder)
    except OSError:
        return {}
    try:
        info = os.fstat(handle)
        if not stat.S_ISREG(info.st_mode) or info.st_uid != os.geteuid():
            return {}
        with os.fdopen(os.dup(handle), "rb") as stream:
            loaded = pickle.load(stream)  # noqa: S301 - the user's own closed folder (checked above)
        with contextlib.suppress(OSError):
            os.utime(handle)  # used: kept by the pruning
        if isinstance(loaded, dict) and loaded.get("format") == _FORMAT and isinstance(loaded.get("values"), dict):
            return cast(dict[tuple[Hashable, ...], Any], loaded["values"])
        return {}
    except Exception as err:  # noqa: BLE001 - a truncated or foreign entry: derive again, write again
        log.debug("correction cache entry %s unreadable (%s); rebuilding it", digest, err)
        return {}
    finally:
        os.close(handle)


def _write(folder: int, digest: str, values: dict[tuple[Hashable, ...], Any]) -> bool:
    temporary = f".{digest}.{os.getpid()}.{threading.get_ident()}.tmp"
    try:
        payload = pickle.dumps({"format": _FORMAT, "values": values}, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception as err:  # noqa: BLE001 - a result that does not pickle stays in memory only
        log.debug("correction cache entry %s not written: %s", digest, err)
        return False
    try:
        handle = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600, dir_fd=folder)
        with os.fdopen(handle, "wb") as stream:
            stream.write(payload)
        os.replace(temporary, f"{digest}.pickle", src_dir_fd=folder, dst_dir_fd=folder)
    except OSError as err:
        _warn_once(digest, f"correction cache entry not written: {err}")
        with contextlib.suppress(OSError):
            os.unlink(temporary, dir_fd=folder)
        return False
    return True


def _warn_once(key: str, message: str) -> None:
    if key not in _WARNED:
        _WARNED.add(key)
        log.info(message)

"""A processor's output on disk: the accumulator as coffea saves it, its histograms as ROOT.

``output.coffea`` is ``coffea.util.save`` of the whole output (``coffea.util.load`` reads it
back). ``histograms.root`` holds every ``hist.Hist`` found in it, named after the dict keys
that lead to it (nested dicts become ROOT directories); a category axis (dataset, process,
...) is split into one histogram per category, ``{key}__{category}``, so each ROOT histogram
is a plain TH1/TH2/TH3. Both files are written under a temporary name and renamed, so a reader
never sees a partial file.
"""

from __future__ import annotations

import itertools
import logging
import os
import re
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import coffea.util
import hist
import uproot

log = logging.getLogger(__name__)

_CATEGORY_AXES = (hist.axis.StrCategory, hist.axis.IntCategory, hist.axis.Boolean)
_UNSAFE = re.compile(r"[^A-Za-z0-9_.+\-=]+")


def _safe(name: Any) -> str:
    """A ROOT-friendly name: no ``/`` (directories), no spaces or quotes."""
    text = "_".join(str(p) for p in name) if isinstance(name, tuple) else str(name)
    return _UNSAFE.sub("_", text).strip("_") or "_"


def find_histograms(output: Any, path: tuple[str, ...] = ()
                    ) -> Iterator[tuple[tuple[str, ...], hist.Hist[Any]]]:
    """Every ``hist.Hist`` in nested mappings, with the (sanitised) keys leading to it."""
    if isinstance(output, hist.Hist):
        yield path, output
    elif isinstance(output, Mapping):
        for key, value in output.items():
            yield from find_histograms(value, (*path, _safe(key)))


def split_categories(name: str, h: hist.Hist[Any]) -> Iterator[tuple[str, hist.Hist[Any]]]:
    """One histogram per combination of category values, named ``name__value1__value2``."""
    cats = [i for i, ax in enumerate(h.axes) if isinstance(ax, _CATEGORY_AXES)]
    if not cats or len(cats) == len(h.axes):
        yield name, h
        return
    choices = [[(h.axes[i].name or f"axis{i}", v) for v in h.axes[i]] for i in cats]
    for combo in itertools.product(*choices):
        sliced = h[{axis: hist.loc(value) for axis, value in combo}]
        assert isinstance(sliced, hist.Hist)  # dense axes remain: a histogram, not a bin
        yield "__".join([name, *(_safe(value) for _, value in combo)]), sliced


def _atomic_target(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}-", suffix=path.suffix)
    os.close(fd)
    return Path(tmp)


def save_coffea(path: Path, output: Any) -> Path:
    """``coffea.util.save(output)`` to ``path``, atomically."""
    tmp = _atomic_target(path)
    try:
        coffea.util.save(output, str(tmp))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def save_root(path: Path, output: Any) -> tuple[Path | None, list[str]]:
    """Every histogram of ``output`` as ROOT, atomically; none: no file.

    Returns:
        The file (None without histograms) and the keys written.
    """
    found = list(find_histograms(output))
    if not found:
        return None, []
    written: list[str] = []
    tmp = _atomic_target(path)
    try:
        with uproot.recreate(tmp) as out:
            for keys, h in found:
                for name, part in split_categories("/".join(keys) or "output", h):
                    if part.ndim > 3:
                        log.warning("%s has %d dense axes; ROOT holds at most 3, not written", name, part.ndim)
                        continue
                    out[name] = part
                    written.append(name)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path, written


__all__ = ["find_histograms", "save_coffea", "save_root", "split_categories"]

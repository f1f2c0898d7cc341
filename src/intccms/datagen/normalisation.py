"""Skim efficiencies and the size of a data sample that matches the MC expectation.

A data file is a SingleMuon-like mixture of the background processes: for an integrated
luminosity ``L`` the skim keeps ``sum_p sigma_p L eps_p`` events, where ``eps_p`` is process
``p``'s skim efficiency (generator-level phase-space probability times the fraction of
generated events passing the skim). ``eps_p`` is measured once per process and era with a
fixed-seed pilot run (up to :data:`PILOT_EVENTS` skimmed events, ~1 % precision; in a mixture,
processes with a small share of the total get fewer), cached in the process. Because the MC
files carry their own exact skim bookkeeping in ``Runs``, data generated with
:func:`expected_data_events` agrees with the weighted MC sum after any selection within
statistics; the count is divided by ``1 - OUT_OF_JSON_FRACTION`` because
that share of data events lies outside the golden JSON and is removed by the lumi mask.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from intccms.datagen.eras import era_info
from intccms.datagen.lumi import OUT_OF_JSON_FRACTION
from intccms.datagen.processes import resolve_process
from intccms.datagen.stream import SkimStream

__all__ = ["DEFAULT_BACKGROUNDS", "ProcessLike", "expected_data_events", "mixture", "skim_efficiency"]

PILOT_EVENTS = 12_000
_PILOT_FIRST = 200  # events of every process's pilot in a mixture before its share is known
_PILOT_STEP = 200
_PILOT_MAX_TRIES = 4_000_000
_PILOT_SEED = 20240611

ProcessLike = str | tuple[str, Mapping[str, Any]] | Mapping[str, Any]

# backgrounds with a non-negligible skim efficiency (lower HT bins pass < 1e-4 of the time)
DEFAULT_BACKGROUNDS: tuple[tuple[str, dict[str, Any]], ...] = (
    ("ttbar_semilep", {}),
    ("ttbar_had", {}),
    ("ttbar_dilep", {}),
    ("wjets", {"ht_min": 400, "ht_max": 600}),
    ("wjets", {"ht_min": 600, "ht_max": 800}),
    ("wjets", {"ht_min": 800, "ht_max": 1200}),
    ("wjets", {"ht_min": 1200, "ht_max": 2500}),
    ("wjets", {"ht_min": 2500, "ht_max": None}),
    ("dyjets", {"ht_min": 400, "ht_max": 600}),
    ("dyjets", {"ht_min": 600, "ht_max": 800}),
    ("dyjets", {"ht_min": 800, "ht_max": 1200}),
    ("dyjets", {"ht_min": 1200, "ht_max": 2500}),
    ("single_top", {"channel": "tW_top"}),
    ("single_top", {"channel": "tW_antitop"}),
    ("single_top", {"channel": "s"}),
    ("single_top", {"channel": "t_top"}),
    ("single_top", {"channel": "t_antitop"}),
    ("diboson", {"channel": "WW"}),
    ("diboson", {"channel": "WZ"}),
    ("diboson", {"channel": "ZZ"}),
    ("qcd", {"ht_min": 1000, "ht_max": 1500}),
    ("qcd", {"ht_min": 1500, "ht_max": 2000}),
    ("qcd", {"ht_min": 2000, "ht_max": None}),
)


def _normalise(process: ProcessLike) -> tuple[str, tuple[tuple[str, Any], ...]]:
    if isinstance(process, str):
        return process, ()
    if isinstance(process, tuple):
        kind, params = process
        return kind, tuple(sorted(dict(params).items()))
    params = dict(process)
    kind = str(params.pop("kind"))
    return kind, tuple(sorted(params.items()))


@dataclass
class _Pilot:
    """A fixed-seed pilot stream and its (skimmed, tried) counts after every step."""

    stream: SkimStream
    history: list[tuple[int, int]] = field(default_factory=list)
    exhausted: bool = False


_PILOTS: dict[tuple[str, tuple[tuple[str, Any], ...], str], _Pilot] = {}


def _pilot(kind: str, params: tuple[tuple[str, Any], ...], era: str, events: int = PILOT_EVENTS) -> float:
    """Skim efficiency from the first ``events`` skimmed events of the process's pilot stream.

    The stream is kept, so a later call with more events continues it; the answer for a given
    ``events`` never depends on earlier calls.
    """
    key = (kind, params, era)
    if key not in _PILOTS:
        proc = resolve_process(kind, dict(params))
        seed = np.random.SeedSequence([_PILOT_SEED, *kind.encode(), *repr(params).encode()])
        _PILOTS[key] = _Pilot(SkimStream(proc, era, np.random.default_rng(seed), max_tries=_PILOT_MAX_TRIES))
    pilot = _PILOTS[key]
    stream = pilot.stream
    try:
        # precise (~0.9 %) for the abundant processes, bounded in time for the rare ones,
        # whose share of the data is small anyway
        while (not pilot.exhausted and (not pilot.history or pilot.history[-1][0] < events)
               and stream.tried < _PILOT_MAX_TRIES // 2):
            stream.take(_PILOT_STEP)
            pilot.history.append(((len(pilot.history) + 1) * _PILOT_STEP, stream.tried))
    except RuntimeError:
        pilot.exhausted = True
    if not pilot.history:  # a sample that (almost) never passes the skim: no data from it
        return 0.0
    taken, tried = next((h for h in pilot.history if h[0] >= events), pilot.history[-1])
    return stream.process.p_gen * taken / tried


def skim_efficiency(process: ProcessLike, era: str) -> float:
    """Fraction of a process's full (unskimmed) sample that passes the skim.

    Args:
        process (ProcessLike): kind name, ``(kind, params)`` or a mapping with ``kind``.
        era (str): era name.

    Returns:
        float: the efficiency, measured with a fixed-seed pilot run (cached).
    """
    era_info(era)
    kind, params = _normalise(process)
    return _pilot(kind, params, era)


def mixture(era: str, processes: Sequence[ProcessLike] | None = None) -> list[tuple[str, dict[str, Any], float]]:
    """Background processes with their skimmed cross-sections ``sigma * eps`` (pb)."""
    out = []
    for process in processes or DEFAULT_BACKGROUNDS:
        kind, params = _normalise(process)
        if kind in ("zprime", "data"):
            msg = f"data are a mixture of background processes; {kind!r} cannot be one of them"
            raise ValueError(msg)
        proc = resolve_process(kind, dict(params))
        xsec = proc.xsec_pb
        if xsec is None:
            msg = (f"no cross-section known for {kind} {dict(params)}; use one of the sample "
                   f"bins of ANALYSIS.md (e.g. ht_min=600, ht_max=800)")
            raise ValueError(msg)
        out.append((kind, params, proc, xsec))
    # a short pilot for all, then more events for the processes with a large share
    era_info(era)
    first = [xsec * _pilot(kind, params, era, _PILOT_FIRST) for kind, params, _, xsec in out]
    top = max(first, default=0.0)
    result = []
    for (kind, params, proc, xsec), x in zip(out, first, strict=True):
        share = x / top if top > 0 else 0.0
        events = max(_PILOT_FIRST, _PILOT_STEP * int(np.ceil(PILOT_EVENTS * share / _PILOT_STEP)))
        result.append((kind, dict(proc.params), xsec * _pilot(kind, params, era, events)))
    return result


def expected_data_events(
    era: str, luminosity_pb: float, processes: Sequence[ProcessLike] | None = None
) -> int:
    """Number of data events to generate so data match the MC expectation at ``luminosity_pb``.

    Args:
        era (str): era name.
        luminosity_pb (float): integrated luminosity in pb^-1 (e.g. the era's, 59830 for 2018).
        processes (Sequence | None): the background processes of the MC model
            (default :data:`DEFAULT_BACKGROUNDS`).

    Returns:
        int: events to pass as ``n_events`` for ``kind="data"`` (same ``processes`` in params).
    """
    total = sum(x for _, _, x in mixture(era, processes)) * luminosity_pb
    return round(total / (1.0 - OUT_OF_JSON_FRACTION))

"""Expected read times: bytes at a given bandwidth, or at the rates a saved run report measured.

A run report (``outputs/<name>/report/report.json``, :mod:`intccms.outputs.report`) gives the
job's own events/s and Gbit/s read over its wall time, so the estimate uses what this facility
achieved rather than a nominal link speed.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path

RateFn = Callable[[float, float], float]


class RunReportError(ValueError):
    """A saved run report cannot be read or has no usable rate."""


def bandwidth_rate(gbps: float) -> RateFn:
    """Seconds to read ``bytes`` at ``gbps`` Gbit/s (events are ignored)."""
    return lambda nbytes, _events: nbytes * 8 / (gbps * 1e9)


def report_rates(path: str | Path) -> dict[str, RateFn]:
    """Read-time functions at the event and data rates of a saved run report.

    Args:
        path: ``report.json`` or the folder holding it.

    Raises:
        RunReportError: missing file, bad JSON, or no positive rate in it.
    """
    p = Path(path)
    if p.is_dir():
        p = p / "report.json"
    try:
        data = json.loads(p.read_text())
    except (OSError, json.JSONDecodeError) as err:
        msg = f"inspect.reads.report: cannot read run report {p}: {err}; point it at outputs/<name>/report/report.json"
        raise RunReportError(msg) from None
    out: dict[str, RateFn] = {}
    eps = float(data.get("events_per_s") or 0.0)
    gbps = float(data.get("gbps_read") or 0.0)
    if eps > 0:
        out[f"run report {eps:,.0f} events/s"] = lambda _nbytes, events: events / eps
    if gbps > 0:
        out[f"run report {gbps:.3g} Gbit/s"] = bandwidth_rate(gbps)
    if not out:
        msg = f"inspect.reads.report: {p} has no positive events_per_s or gbps_read"
        raise RunReportError(msg)
    return out


def rate_functions(bandwidths: Sequence[float], report: str | None) -> dict[str, RateFn]:
    """Label -> read-time function for every configured bandwidth and the run report."""
    out = {f"{b:g} Gbit/s": bandwidth_rate(b) for b in bandwidths}
    if report:
        out.update(report_rates(report))
    return out

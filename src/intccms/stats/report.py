"""results.json and the terminal summary (rich)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table


def _clean(obj: Any) -> Any:
    """JSON-safe copy: numpy scalars to float, NaN/inf to None."""
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if hasattr(obj, "tolist") and not isinstance(obj, (str, bytes)):
        return _clean(obj.tolist())
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    return obj


def write_results(results: dict[str, Any], path: Path) -> Path:
    """Write ``results`` as indented JSON (atomic rename) and return the path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(_clean(results), indent=2, sort_keys=False))
    tmp.replace(path)
    return path


def print_summary(results: dict[str, Any], console: Console | None = None) -> None:
    """Fit result, limits, top impacts and pruning as rich tables."""
    console = console or Console()
    poi = results["poi_name"]
    t = Table(title=f"Statistics: {results['signal']} ({results['data']})")
    t.add_column("quantity")
    t.add_column("value", justify="right")
    fit = results.get("fit")
    if fit:
        t.add_row(f"{poi} (best fit)", f"{fit['poi']['value']:.4g} ± {fit['poi']['uncertainty']:.3g}")
        if fit.get("at_bounds"):
            t.add_row("parameters at bounds", ", ".join(fit["at_bounds"]))
    lim = results.get("limits")
    if lim:
        obs = lim.get("observed")
        t.add_row(f"95% CL upper limit on {poi} (obs.)", "blinded" if obs is None else f"{obs:.4g}")
        b = lim["expected_band"]
        t.add_row(
            f"95% CL upper limit on {poi} (exp.)",
            f"{b['0']:.4g} [-1σ {b['-1']:.4g}, +1σ {b['+1']:.4g}; -2σ {b['-2']:.4g}, +2σ {b['+2']:.4g}]",
        )
    t.add_row("parameters / pruned modifiers", f"{results['model']['n_parameters']} / {len(results['pruned'])}")
    if results["pruned_parameters"]:
        t.add_row("systematics pruned everywhere", ", ".join(results["pruned_parameters"]))
    t.add_row("time [s]", ", ".join(f"{k} {v:.2f}" for k, v in results["timing"].items()))
    console.print(t)
    rank = results.get("ranking")
    if rank:
        r = Table(title=f"Impact on {poi} (post-fit)")
        for c in ("parameter", "pull", "Δ up", "Δ down"):
            r.add_column(c, justify="right" if c != "parameter" else "left")
        for e in rank:
            r.add_row(e["name"], f"{e['bestfit']:.2f} ± {e['uncertainty']:.2f}",
                      f"{e['postfit_up']:+.3g}", f"{e['postfit_down']:+.3g}")
        console.print(r)

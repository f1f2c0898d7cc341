"""The end-of-run summary: events read and selected per dataset, time, rate, skipped files."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from intccms.core.records import ChunkRecord


def skipped_costs(skipped: Mapping[str, str], metadata: Mapping[str, Any] | None) -> dict[str, dict[str, Any]]:
    """Per skipped file: its dataset, the error and the entries it had (its cost in events).

    A file is left out whole, whichever stage failed on it, so its cost is every entry its
    ``Events`` tree had according to the metadata stage; ``"unknown"`` where the file could
    not be opened to count them.

    Args:
        skipped: file -> error.
        metadata: dataset name -> :class:`~intccms.plan.metadata.DatasetMetadata`.
    """
    where = {f: (name, fm) for name, meta in (metadata or {}).items() for f, fm in meta.files.items()}
    out: dict[str, dict[str, Any]] = {}
    for file, error in skipped.items():
        name, fm = where.get(file, (None, None))
        known = fm is not None and getattr(fm, "counted", True)
        out[file] = {"dataset": name, "error": error, "entries": int(fm.num_entries) if fm is not None and known else "unknown"}
    return out


def summarise(
    records: Sequence[ChunkRecord], datasets: Mapping[str, Any], wall_s: float,
    skipped: Mapping[str, str], metadata: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Per-dataset and total counts of the analysis (or processor, or skim) stage, and what skipping cost.

    ``skipped_files`` maps each skipped file to its dataset, error and entries (see
    :func:`skipped_costs`); ``skipped_events`` is the sum of the known entries and
    ``skipped_files_unknown_entries`` the number of files whose entries could not be counted.
    """
    stages = {r.stage for r in records}
    stage = next((s for s in ("analysis", "processor") if s in stages), "skim")
    per: dict[str, dict[str, float]] = {}
    for r in records:
        if r.stage != stage:
            continue
        d = per.setdefault(r.dataset, {"events_read": 0, "events_selected": 0, "chunks": 0,
                                       "failed_chunks": 0, "bytes_read": 0})
        d["chunks"] += 1
        d["failed_chunks"] += int(r.failed)
        d["events_read"] += r.events_read
        d["events_selected"] += r.events_selected
        d["bytes_read"] += r.bytes_read
    total_read = sum(d["events_read"] for d in per.values())
    costs = skipped_costs(skipped, metadata)
    known = [c["entries"] for c in costs.values() if c["entries"] != "unknown"]
    return {
        "stage": stage,
        "datasets": per,
        "events_read": total_read,
        "events_selected": sum(d["events_selected"] for d in per.values()),
        "wall_time_s": wall_s,
        "events_per_s": total_read / wall_s if wall_s > 0 else 0.0,
        "skipped_files": costs,
        "skipped_events": sum(known),
        "skipped_files_unknown_entries": len(costs) - len(known),
    }


def print_summary(summary: Mapping[str, Any], *, console: Console | None = None) -> None:
    """Rich table of :func:`summarise`."""
    console = console or Console(stderr=True)
    table = Table(title=f"{summary['stage']} summary", show_footer=True)
    table.add_column("dataset", footer="total")
    table.add_column("events read", justify="right", footer=f"{summary['events_read']:,}")
    table.add_column("selected", justify="right", footer=f"{summary['events_selected']:,}")
    table.add_column("chunks", justify="right")
    table.add_column("failed", justify="right")
    for name, d in sorted(summary["datasets"].items()):
        table.add_row(name, f"{int(d['events_read']):,}", f"{int(d['events_selected']):,}",
                      str(int(d["chunks"])), str(int(d["failed_chunks"])))
    console.print(table)
    console.print(f"wall time {summary['wall_time_s']:.1f} s, {summary['events_per_s']:,.0f} events/s")
    if summary["skipped_files"]:
        unknown = summary.get("skipped_files_unknown_entries", 0)
        extra = f" plus {unknown} file(s) of unknown size" if unknown else ""
        console.print(f"[yellow]skipped {len(summary['skipped_files'])} bad file(s), costing "
                      f"{summary['skipped_events']:,} events{extra}:[/yellow]")
        for f, cost in summary["skipped_files"].items():
            entries = cost["entries"] if isinstance(cost["entries"], str) else f"{cost['entries']:,} events"
            # Errors quote lists and ranges in brackets: escaped so rich does not read them as markup.
            console.print(f"  [yellow]{escape(f)}[/yellow] ({cost['dataset']}, {entries}): {escape(cost['error'])}")

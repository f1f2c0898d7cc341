"""The end-of-run summary: events read and selected per dataset, time, rate, skipped files."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from rich.console import Console
from rich.table import Table

from intccms.execute.records import ChunkRecord


def summarise(
    records: Sequence[ChunkRecord], datasets: Mapping[str, Any], wall_s: float,
    skipped: Mapping[str, str],
) -> dict[str, Any]:
    """Per-dataset and total counts of the analysis (or skim) stage."""
    stage = "analysis" if any(r.stage == "analysis" for r in records) else "skim"
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
    return {
        "stage": stage,
        "datasets": per,
        "events_read": total_read,
        "events_selected": sum(d["events_selected"] for d in per.values()),
        "wall_time_s": wall_s,
        "events_per_s": total_read / wall_s if wall_s > 0 else 0.0,
        "skipped_files": dict(skipped),
        "skipped_events": sum(r.entry_stop - r.entry_start for r in records if r.failed and r.stage == stage),
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
        console.print(f"[yellow]skipped {len(summary['skipped_files'])} bad file(s), "
                      f"{summary['skipped_events']:,} events in failed chunks:[/yellow]")
        for f, err in summary["skipped_files"].items():
            console.print(f"  [yellow]{f}[/yellow]: {err}")

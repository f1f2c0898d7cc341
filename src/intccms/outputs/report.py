"""The run report: throughput, data rates, core efficiency and failures from the per-chunk records.

It is computed from the same :class:`~intccms.core.records.ChunkRecord` numbers the workers
export to Prometheus, so the report and the dashboards agree. Rates follow the idap-200gbps
conventions: events/s and Gbit/s over the run's wall time, and core efficiency as the summed chunk
time over wall time x cores.

Chunks and attempts: the report keeps one record per chunk (its last attempt), while a worker
meters every attempt it runs. ``chunks`` and ``failed_chunks`` count chunks; ``attempts`` and
``failed_attempts`` count attempts the way the worker counters do:
``intccms_chunk_duration_seconds_count`` == attempts and ``intccms_chunks_failed_total`` ==
failed_attempts (every attempt that raised and was run again, plus the chunks given up). An
attempt lost with its worker (OOM kill, node loss) is in ``attempts`` but in no counter: its
process and its /metrics died with it.

Fixed costs: what a worker process pays once (imports, correction files parsed, tables built
lazily at its first chunk, cold caches) lands in the first chunk each worker runs of a stage.
:func:`first_chunk_extra` estimates it from the records alone, so it needs nothing measured on the
worker and covers set-up no timer inside the task could name.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.table import Table

from intccms.core.records import ChunkRecord

if TYPE_CHECKING:
    from rich.console import Console

__all__ = ["GroupStats", "RunReport", "build_report", "first_chunk_extra", "print_report", "summary_rows",
           "write_report"]

REPORT_JSON = "report.json"


@dataclass(slots=True)
class GroupStats:
    """Totals of the chunks of one dataset, stage or worker."""

    chunks: int = 0
    failed: int = 0
    retried: int = 0
    attempts: int = 0
    failed_attempts: int = 0
    events_read: int = 0
    events_selected: int = 0
    bytes_read: int = 0
    bytes_written: int = 0
    chunk_time_s: float = 0.0
    peak_rss: int = 0

    def add(self, record: ChunkRecord) -> None:
        """Fold one record into the totals."""
        self.chunks += 1
        self.failed += int(record.failed)
        self.retried += int(record.attempts > 1)
        self.attempts += record.attempts
        # every attempt before the last failed; the last one too when the chunk was given up
        self.failed_attempts += record.attempts - 1 + int(record.failed)
        self.events_read += record.events_read
        self.events_selected += record.events_selected
        self.bytes_read += record.bytes_read
        self.bytes_written += record.bytes_written
        self.chunk_time_s += record.duration
        self.peak_rss = max(self.peak_rss, record.peak_rss)


@dataclass(slots=True)
class RunReport:
    """What a run did and how fast. All byte counts are bytes; rates use the run's wall time.

    Attributes:
        wall_time_s: wall time of the run (seconds).
        n_cores: cores (worker threads) the run had.
        events_read / events_selected / bytes_read / bytes_written: totals over all chunks.
        events_per_s: events_read / wall_time_s.
        events_per_s_per_core: events_per_s / n_cores.
        gbps_read / gbps_written: bytes x 8 / 1e9 / wall_time_s.
        chunk_time_s: summed chunk durations.
        core_efficiency: chunk_time_s / (wall_time_s x n_cores).
        chunks / failed_chunks / retried_chunks: counts (failed includes skipped bad input).
        attempts: chunk attempts including retries (intccms_chunk_duration_seconds_count).
        failed_attempts: attempts that failed, retried ones included (intccms_chunks_failed_total).
        peak_rss_per_worker: peak resident memory of each worker process (ru_maxrss, bytes).
        first_chunk_extra_s: worker -> stage -> seconds its first chunk took beyond what the
            same work costs later (:func:`first_chunk_extra`); a stage is absent where there is
            nothing to compare with.
        first_chunk_extra_total_s: the sum of first_chunk_extra_s over workers and stages.
        per_dataset / per_stage / per_worker: the same totals broken down.
        failures: file, entry range, stage and error of each failed chunk.
        chunk_durations_s: every chunk's duration (for the distribution plot).
        throughput: (t, events/s) points relative to the run start, binned.
        workers_timeline: (t, workers) points relative to the run start.
    """

    wall_time_s: float
    n_cores: int
    events_read: int = 0
    events_selected: int = 0
    bytes_read: int = 0
    bytes_written: int = 0
    events_per_s: float = 0.0
    events_per_s_per_core: float = 0.0
    gbps_read: float = 0.0
    gbps_written: float = 0.0
    chunk_time_s: float = 0.0
    core_efficiency: float = 0.0
    chunks: int = 0
    failed_chunks: int = 0
    retried_chunks: int = 0
    attempts: int = 0
    failed_attempts: int = 0
    peak_rss_per_worker: dict[str, int] = field(default_factory=dict)
    first_chunk_extra_s: dict[str, dict[str, float]] = field(default_factory=dict)
    first_chunk_extra_total_s: float = 0.0
    per_dataset: dict[str, GroupStats] = field(default_factory=dict)
    per_stage: dict[str, GroupStats] = field(default_factory=dict)
    per_worker: dict[str, GroupStats] = field(default_factory=dict)
    failures: list[dict[str, Any]] = field(default_factory=list)
    chunk_durations_s: list[float] = field(default_factory=list)
    throughput: list[tuple[float, float]] = field(default_factory=list)
    workers_timeline: list[tuple[float, int]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """Plain dictionary for report.json."""
        return asdict(self)


def _throughput(records: Sequence[ChunkRecord], t0: float, wall: float, bins: int = 50) -> list[tuple[float, float]]:
    """Events/s over time: each chunk's events spread evenly over its duration, then binned."""
    if wall <= 0 or not records:
        return []
    width = wall / bins
    rates = [0.0] * bins
    for rec in records:
        start, end = rec.t_start - t0, rec.t_end - t0
        if end <= start:
            index = min(max(int(end / width), 0), bins - 1)
            rates[index] += rec.events_read / width
            continue
        per_s = rec.events_read / (end - start)
        first, last = max(int(start / width), 0), min(int(end / width), bins - 1)
        for i in range(first, last + 1):
            overlap = min(end, (i + 1) * width) - max(start, i * width)
            if overlap > 0:
                rates[i] += per_s * overlap / width
    return [((i + 0.5) * width, rates[i]) for i in range(bins)]


def first_chunk_extra(records: Sequence[ChunkRecord]) -> dict[str, dict[str, float]]:
    """Per worker and stage: the first chunk's time beyond what the same work costs later.

    For the first successful chunk of each (worker, stage), by start time:
    ``duration - events_read x median(duration / events_read)`` of the *later* chunks (every
    worker's chunks but its first, successful ones) of the same stage and dataset; a stage
    without events (metadata) compares whole chunks. The reference is per dataset because the
    cost of an event differs between datasets (collision data has no variations).

    This is an estimate from durations, chosen over a timer inside the task because it counts
    every one-time cost, including those paid lazily deep in the physics (a JES table built at
    its first use) or by the interpreter (imports). It is noisy by the spread of chunk
    durations and may come out negative where there is no set-up to see; a worker whose first
    chunk has no later chunk of its dataset to compare with is left out. With several threads
    per worker, chunks started beside the first share its set-up and are not counted.

    Args:
        records: one record per chunk, failed ones included (they are ignored).

    Returns:
        worker -> stage -> seconds.
    """
    ok = sorted((r for r in records if not r.failed), key=lambda r: r.t_start)
    first: dict[tuple[str, str], ChunkRecord] = {}
    unit_times: dict[tuple[str, str], list[float]] = {}
    for rec in ok:
        if (rec.worker, rec.stage) not in first:
            first[(rec.worker, rec.stage)] = rec
            continue
        unit_times.setdefault((rec.stage, rec.dataset), []).append(rec.duration / max(rec.events_read, 1))
    out: dict[str, dict[str, float]] = {}
    for (worker, stage), rec in sorted(first.items()):
        later = unit_times.get((stage, rec.dataset))
        if later:
            out.setdefault(worker, {})[stage] = rec.duration - max(rec.events_read, 1) * statistics.median(later)
    return out


def build_report(
    records: Sequence[ChunkRecord],
    *,
    wall_time_s: float,
    n_cores: int,
    workers_timeline: Sequence[tuple[float, int]] = (),
) -> RunReport:
    """Summarise a run from its chunk records.

    Args:
        records: one record per chunk (failed and skipped ones included).
        wall_time_s: wall time of the run in seconds (> 0).
        n_cores: worker threads available to the run (> 0).
        workers_timeline: (UNIX time, workers connected) samples, for the throughput plot.

    Returns:
        The report.

    Raises:
        ValueError: when wall_time_s or n_cores is not positive.
    """
    if wall_time_s <= 0 or n_cores <= 0:
        msg = f"build_report: wall_time_s and n_cores must be > 0, got wall_time_s={wall_time_s}, n_cores={n_cores}"
        raise ValueError(msg)
    report = RunReport(wall_time_s=float(wall_time_s), n_cores=int(n_cores))
    total = GroupStats()
    for rec in records:
        total.add(rec)
        for table, key in ((report.per_dataset, rec.dataset), (report.per_stage, rec.stage), (report.per_worker, rec.worker)):
            table.setdefault(key, GroupStats()).add(rec)
        report.chunk_durations_s.append(rec.duration)
        if rec.failed:
            report.failures.append(
                {"dataset": rec.dataset, "stage": rec.stage, "file": rec.file, "entry_start": rec.entry_start,
                 "entry_stop": rec.entry_stop, "attempts": rec.attempts, "error": rec.error}
            )
    report.events_read, report.events_selected = total.events_read, total.events_selected
    report.bytes_read, report.bytes_written = total.bytes_read, total.bytes_written
    report.chunk_time_s = total.chunk_time_s
    report.chunks, report.failed_chunks, report.retried_chunks = total.chunks, total.failed, total.retried
    report.attempts, report.failed_attempts = total.attempts, total.failed_attempts
    report.events_per_s = total.events_read / wall_time_s
    report.events_per_s_per_core = report.events_per_s / n_cores
    report.gbps_read = total.bytes_read * 8 / 1e9 / wall_time_s
    report.gbps_written = total.bytes_written * 8 / 1e9 / wall_time_s
    report.core_efficiency = total.chunk_time_s / (wall_time_s * n_cores)
    report.peak_rss_per_worker = {name: stats.peak_rss for name, stats in sorted(report.per_worker.items())}
    report.first_chunk_extra_s = first_chunk_extra(records)
    report.first_chunk_extra_total_s = sum(s for stages in report.first_chunk_extra_s.values() for s in stages.values())
    starts = [r.t_start for r in records if r.t_start > 0]
    t0 = min([*starts, *(t for t, _ in workers_timeline)], default=0.0)
    report.throughput = _throughput([r for r in records if r.t_start > 0], t0, wall_time_s)
    report.workers_timeline = [(t - t0, int(n)) for t, n in workers_timeline]
    return report


#: (label, JSON key, formatter) of the summary table; print_report and the tests share it.
SUMMARY: tuple[tuple[str, str, Callable[[Any], str]], ...] = (
    ("Events read", "events_read", lambda v: f"{v:,d}"),
    ("Events selected", "events_selected", lambda v: f"{v:,d}"),
    ("Wall time", "wall_time_s", lambda v: f"{v:,.3f} s"),
    ("Cores", "n_cores", lambda v: f"{v:d}"),
    ("Event rate", "events_per_s", lambda v: f"{v:,.1f} events/s"),
    ("Event rate per core", "events_per_s_per_core", lambda v: f"{v:,.1f} events/s"),
    ("Data read", "bytes_read", lambda v: f"{v:,d} B"),
    ("Data rate read", "gbps_read", lambda v: f"{v:.6f} Gbit/s"),
    ("Data written", "bytes_written", lambda v: f"{v:,d} B"),
    ("Data rate written", "gbps_written", lambda v: f"{v:.6f} Gbit/s"),
    ("Chunk time (sum)", "chunk_time_s", lambda v: f"{v:,.3f} s"),
    ("Core efficiency", "core_efficiency", lambda v: f"{v:.4f}"),
    ("First chunks' extra time (sum)", "first_chunk_extra_total_s", lambda v: f"{v:,.3f} s"),
    ("Chunks", "chunks", lambda v: f"{v:,d}"),
    ("Failed or skipped chunks", "failed_chunks", lambda v: f"{v:,d}"),
    ("Retried chunks", "retried_chunks", lambda v: f"{v:,d}"),
    ("Attempts", "attempts", lambda v: f"{v:,d}"),
    ("Failed attempts", "failed_attempts", lambda v: f"{v:,d}"),
)


def summary_rows(report: RunReport) -> list[tuple[str, str]]:
    """(label, formatted value) rows of the run summary table."""
    data = report.to_dict()
    return [(label, fmt(data[key])) for label, key, fmt in SUMMARY]


def print_report(report: RunReport, console: Console | None = None) -> None:
    """Print the summary, the per-stage/per-dataset breakdown, memory per worker and failures."""

    console = console or Console()
    summary = Table(title="Run summary", show_header=False)
    summary.add_column("quantity")
    summary.add_column("value", justify="right")
    for label, text in summary_rows(report):
        summary.add_row(label, text)
    console.print(summary)
    for title, groups in (("Per stage", report.per_stage), ("Per dataset", report.per_dataset)):
        table = Table(title=title)
        for col in ("name", "chunks", "failed", "retried", "events read", "events selected", "bytes read",
                    "bytes written", "chunk time [s]"):
            table.add_column(col, justify="left" if col == "name" else "right")
        for name, g in sorted(groups.items()):
            table.add_row(name, f"{g.chunks:,d}", f"{g.failed:,d}", f"{g.retried:,d}", f"{g.events_read:,d}",
                          f"{g.events_selected:,d}", f"{g.bytes_read:,d}", f"{g.bytes_written:,d}",
                          f"{g.chunk_time_s:,.3f}")
        console.print(table)
    memory = Table(title="Peak memory and first chunk's extra time per worker")
    memory.add_column("worker")
    memory.add_column("peak RSS [MiB]", justify="right")
    memory.add_column("first chunk's extra time [s]", justify="right")
    for worker, rss in report.peak_rss_per_worker.items():
        extra = report.first_chunk_extra_s.get(worker, {})
        memory.add_row(worker, f"{rss / 2**20:,.1f}", ", ".join(f"{stage} {s:,.3f}" for stage, s in sorted(extra.items())))
    console.print(memory)
    if report.failures:
        failures = Table(title="Failed chunks")
        for col in ("dataset", "stage", "file", "entries", "attempts", "error"):
            failures.add_column(col)
        for f in report.failures:
            failures.add_row(f["dataset"], f["stage"], f["file"], f"{f['entry_start']}-{f['entry_stop']}",
                             str(f["attempts"]), f["error"] or "")
        console.print(failures)


def write_report(report: RunReport, output_dir: str | Path, *, plots: bool = True) -> list[Path]:
    """Write report.json and the report plots into ``output_dir``.

    Args:
        report: the run report.
        output_dir: directory (created if missing).
        plots: draw the PNGs too (``workflow.run_plots``).

    Returns:
        Paths written: report.json, then the PNGs.
    """
    from intccms.outputs.report_plots import write_plots  # matplotlib: only when plotting

    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / REPORT_JSON
    path.write_text(json.dumps(report.to_dict(), indent=2, sort_keys=True) + "\n")
    return [path, *(write_plots(report, out) if plots else [])]

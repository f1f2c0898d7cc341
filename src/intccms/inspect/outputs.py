"""Outputs of an inspection: rich tables on the terminal, ``inspect.json`` and CSV files.

Files written to ``inspect.output_dir``:

- ``inspect.json``: configuration, per-file numbers and errors, per-dataset and per-era totals,
  distributions, extrapolations, the traced reads and each dataset's top branches;
- ``files.csv``: one row per inspected file (errors included);
- ``branches.csv``: one row per file and branch (written as files finish);
- ``datasets.csv``: one row per dataset; ``dataset_branches.csv``: one row per dataset and branch.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.table import Table

from intccms.config.inspect import as_dict
from intccms.inspect.sample import Estimate
from intccms.inspect.scan import FileReport

if TYPE_CHECKING:
    from intccms.inspect.run import InspectResult

BRANCH_FIELDS = ["dataset", "file", "branch", "group", "compressed", "uncompressed", "ratio",
                 "algorithm", "level", "baskets"]
FILE_FIELDS = ["dataset", "era", "file", "size", "size_source", "events", "compressed", "uncompressed",
               "ratio", "header_overhead", "other_trees_bytes", "baskets", "branches", "block_algorithm",
               "scan_bytes", "error"]


class BranchRowWriter:
    """Streams per-file, per-branch rows to CSV as reports arrive."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fh: Any = None
        self._writer: Any = None

    def __enter__(self) -> BranchRowWriter:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = self.path.open("w", newline="")
        self._writer = csv.writer(self._fh)
        self._writer.writerow(BRANCH_FIELDS)
        return self

    def write(self, report: FileReport) -> None:
        """Write the report's branch rows."""
        for b in report.branches:
            self._writer.writerow([report.dataset, report.url, b.name, b.group, b.compressed, b.uncompressed,
                                   f"{b.ratio:.4f}", b.algorithm, b.level, b.baskets])

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._fh.close()


def _clean(value: Any) -> Any:
    """JSON-safe: dataclasses to dicts, non-finite floats to None."""
    if isinstance(value, Estimate):
        return value.to_dict()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _clean(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def file_row(f: FileReport) -> dict[str, Any]:
    """One file's numbers (no branch list)."""
    return {"dataset": f.dataset, "era": f.era, "file": f.url, "size": f.size, "size_source": f.size_source,
            "events": f.events, "compressed": f.compressed, "uncompressed": f.uncompressed,
            "ratio": round(f.uncompressed / f.compressed, 4) if f.compressed else None,
            "header_overhead": f.header_overhead if f.ok else None, "other_trees_bytes": f.other_trees_bytes,
            "baskets": f.baskets, "branches": f.n_branches, "block_algorithm": f.block_algorithm,
            "scan_bytes": f.scan_bytes, "error": f.error}


def to_json(result: InspectResult) -> dict[str, Any]:
    """The whole result as plain data."""
    top = result.config.top_branches
    datasets = {}
    for name, d in result.datasets.items():
        entry = _clean(d)
        entry["ratio"] = d.ratio
        branches = sorted(result.branches.get(name, {}).values(), key=lambda b: -b.compressed)
        entry["top_branches"] = [dict(_clean(b), ratio=b.ratio) for b in branches[:top]]
        datasets[name] = entry
    files = []
    for f in result.files:
        row = file_row(f)
        row["algorithms"] = f.algorithms
        row["open_bytes"] = f.open_bytes
        row["reads"] = _clean(f.reads)
        files.append(row)
    return {
        "config": as_dict(result.config),
        "wall_time_s": result.wall_time_s,
        "total": _clean(result.total),
        "eras": _clean(result.eras),
        "datasets": datasets,
        "reads_trace": _clean(result.trace),
        "bad_files": [{"file": f.url, "dataset": f.dataset, "error": f.error} for f in result.bad_files],
        "notes": result.notes,
        "files": files,
    }


def write_outputs(result: InspectResult, out_dir: Path) -> list[Path]:
    """Write ``inspect.json``, ``files.csv``, ``datasets.csv`` and ``dataset_branches.csv``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    p = out_dir / "inspect.json"
    p.write_text(json.dumps(to_json(result), indent=1, allow_nan=False))
    paths.append(p)
    p = out_dir / "files.csv"
    with p.open("w", newline="") as fh:
        file_writer = csv.DictWriter(fh, FILE_FIELDS)
        file_writer.writeheader()
        for f in result.files:
            file_writer.writerow(file_row(f))
    paths.append(p)
    p = out_dir / "datasets.csv"
    stages = sorted({s for d in result.datasets.values() for s in d.reads})
    with p.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["dataset", "era", "is_data", "files_listed", "files_inspected", "files_bad", "size_source",
                         "size_total", "size_spread", "events_total", "events_spread", "ratio",
                         *[f"{s}_{k}" for s in stages for k in ("fraction", "expected_bytes_total", "events_per_byte")]])
        for d in result.datasets.values():
            assert d.size is not None and d.events is not None
            row = [d.name, d.era, d.is_data, d.n_listed, d.n_inspected, d.n_bad, d.size_source, d.size.total,
                   d.size.spread, d.events.total, d.events.spread, f"{d.ratio:.4f}"]
            for s in stages:
                st = d.reads.get(s)
                row += ([f"{st.fraction:.6f}", st.expected_bytes_total.total if st.expected_bytes_total else "",
                         f"{st.events_per_byte:.6g}"] if st else ["", "", ""])
            writer.writerow(row)
    paths.append(p)
    p = out_dir / "dataset_branches.csv"
    with p.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["dataset", "branch", "group", "compressed", "uncompressed", "ratio", "baskets", "files",
                         "algorithms"])
        for name, branches in result.branches.items():
            for b in sorted(branches.values(), key=lambda b: -b.compressed):
                writer.writerow([name, b.name, b.group, b.compressed, b.uncompressed, f"{b.ratio:.4f}", b.baskets,
                                 b.files, ";".join(sorted(b.algorithms))])
    paths.append(p)
    return paths


def human_bytes(n: float) -> str:
    """``1.23 GB`` style (decimal units, as storage systems quote)."""
    for unit in ("B", "kB", "MB", "GB", "TB", "PB"):
        if abs(n) < 1000 or unit == "PB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.2f} {unit}"
        n /= 1000
    return f"{n:.2f} PB"


def human_time(s: float) -> str:
    """Seconds as ``12 ms``, ``12.3 s``, ``4.5 min`` or ``6.7 h``."""
    if s < 1:
        return f"{s * 1000:.0f} ms"
    if s < 120:
        return f"{s:.1f} s"
    if s < 7200:
        return f"{s / 60:.1f} min"
    return f"{s / 3600:.1f} h"


def _est(e: Estimate | None, fmt: Any = human_bytes) -> str:
    if e is None:
        return "-"
    if e.n_sampled >= e.n_listed or e.spread == 0:
        return fmt(e.total)
    spread = "?" if e.spread is None else fmt(e.spread)
    return f"{fmt(e.total)} ± {spread}"


def _count(x: float) -> str:
    return f"{x:,.0f}"


def dataset_table(result: InspectResult) -> Table:
    """One row per dataset: files, size, events, ratio, compression, analysis read fraction."""
    primary = (result.trace.input_stages or ["analysis"])[0]
    how = "" if result.trace.input_stages else "; this workflow reads skims, not these inputs"
    table = Table(title=f"inputs per dataset (reads: {primary} stage{how})")
    for col in ("dataset", "era", "files (bad)", "size", "events", "median file", "ratio", "compression",
                "read frac.", "read bytes"):
        table.add_column(col, justify="left" if col in ("dataset", "era", "compression") else "right")
    for d in result.datasets.values():
        st = d.reads.get(primary)
        algos = ", ".join(sorted(d.algorithms, key=lambda a: -d.algorithms[a])) or "-"
        files = f"{d.n_inspected}/{d.n_listed}" + (f" ([red]{d.n_bad}[/red])" if d.n_bad else "")
        median = (f"{human_bytes(d.size_dist.median)}, {d.events_dist.median:,.0f} ev."
                  if d.size_dist and d.events_dist and d.events_dist.count else "-")
        table.add_row(d.name, d.era, files, _est(d.size), _est(d.events, _count), median, f"{d.ratio:.2f}", algos,
                      f"{st.fraction:.1%}" if st else "-", _est(st.expected_bytes_total) if st else "-")
    return table


def era_table(result: InspectResult) -> Table:
    """Totals per era and overall, with expected read times."""
    table = Table(title="totals per era (± standard error of the extrapolation)")
    for col in ("era", "datasets", "files (bad)", "size", "events", "stage", "bytes read", "read time"):
        table.add_column(col, justify="left" if col in ("era", "stage", "read time") else "right")
    groups = [*result.eras.values(), *([result.total] if result.total else [])]
    for g in groups:
        stages = [s for s in result.trace.input_stages if s in g.reads] or list(g.reads)[:1]
        stage = stages[0] if stages else None
        times = "; ".join(f"{human_time(v)} @ {k}" for k, v in g.read_time_s.get(stage, {}).items()) if stage else "-"
        table.add_row(g.name, str(g.datasets), f"{g.n_inspected}/{g.n_listed} ({g.n_bad})", _est(g.size),
                      _est(g.events, _count), stage or "-", _est(g.reads.get(stage)) if stage else "-", times)
    return table


def branch_table(result: InspectResult) -> Table:
    """Top branches by compressed bytes over all inspected files."""
    totals = result.bytes_by("name")
    read = result.branches_read()
    table = Table(title=f"top {result.config.top_branches} branches by bytes on storage (* read by the analysis)")
    for col in ("branch", "compressed", "uncompressed", "ratio", "share"):
        table.add_column(col, justify="left" if col == "branch" else "right")
    grand = sum(t[0] for t in totals.values()) or 1
    for name, (c, u) in sorted(totals.items(), key=lambda kv: -kv[1][0])[: result.config.top_branches]:
        table.add_row(name + (" *" if name in read else ""), human_bytes(c), human_bytes(u),
                      f"{u / c:.2f}" if c else "-", f"{c / grand:.1%}")
    return table


def print_summary(result: InspectResult, console: Console | None = None) -> None:
    """Print the dataset, era and branch tables, bad files and notes."""
    console = console or Console(stderr=True)
    console.print(dataset_table(result))
    console.print(era_table(result))
    if result.branches:
        console.print(branch_table(result))
    for kind, stages in result.trace.traces.items():
        for stage, st in stages.items():
            console.print(f"[bold]{stage}[/bold] ({kind}) reads {len(st.branches)} branches "
                          f"(traced on {st.entries} entries of {st.file})")
    bad = result.bad_files
    if bad:
        console.print(f"[red]{len(bad)} bad file(s)[/red] (listed in inspect.json and files.csv):")
        for f in bad[:20]:
            console.print(f"  {f.dataset}: {f.error}")
    for note in result.notes:
        console.print(f"[yellow]note:[/yellow] {note}")
    if result.outputs:
        console.print(f"outputs in {result.outputs[0].parent}")

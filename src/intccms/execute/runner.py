"""Run one task per work item on the Dask cluster with a live progress bar.

Results are handed to a callback as they complete (so histograms merge incrementally and
memory stays flat). A task that raises is retried by Dask (``workflow.retries``); a chunk
whose input is bad comes back as a failed record and is either skipped (``skip_bad_files``)
or stops the run with the file named.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from distributed import Client, as_completed
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from intccms.execute.attempts import chunk_attempts
from intccms.execute.records import ChunkRecord
from intccms.plan.workitems import WorkItem

log = logging.getLogger(__name__)


class BadInputError(RuntimeError):
    """An input file could not be read and ``skip_bad_files`` is off."""


@dataclass
class StageOutcome:
    """Records of a stage and the files it skipped."""

    records: list[ChunkRecord] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)  # file -> error


def run_stage(
    client: Client,
    name: str,
    items: Sequence[WorkItem],
    task: Callable[..., tuple[Any, ChunkRecord]],
    args_for: Callable[[WorkItem], tuple[Any, ...]],
    on_result: Callable[[WorkItem, Any], None],
    *,
    retries: int,
    skip_bad_files: bool,
    console: Console | None = None,
    on_progress: Callable[[int, int], None] | None = None,
    run_metrics: Any = None,
) -> StageOutcome:
    """Submit ``task(item, *args_for(item))`` for every item and collect as they finish.

    Raises:
        BadInputError: a chunk failed on bad input and ``skip_bad_files`` is false.
    """
    outcome = StageOutcome()
    if not items:
        return outcome
    if run_metrics is not None:
        run_metrics.planned(len(items), name)
    futures = {}
    for item in items:
        fut = client.submit(task, item, *args_for(item), retries=retries, pure=False,
                            key=f"{name}-{item.dataset}-{item.file_index}-{item.chunk_index}-{id(items)}")
        futures[fut] = item
    progress = Progress(
        TextColumn(f"[bold]{name}[/bold]"), BarColumn(), MofNCompleteColumn(),
        TextColumn("chunks"), TextColumn("{task.fields[events]:,} events"),
        TimeElapsedColumn(), TimeRemainingColumn(),
        console=console or Console(stderr=True), transient=False,
    )
    done = 0
    by_key: dict[str, ChunkRecord] = {}
    with progress:
        bar = progress.add_task(name, total=len(items), events=0)
        events = 0
        try:
            for fut in as_completed(list(futures)):
                item = futures[fut]
                try:
                    payload, record = fut.result()
                except Exception as err:
                    for other in futures:
                        other.cancel()
                    msg = (f"{name} of {item.file} entries [{item.entry_start}, {item.entry_stop}) "
                           f"failed after {retries} retries: {type(err).__name__}: {err}")
                    raise RuntimeError(msg) from err
                outcome.records.append(record)
                by_key[fut.key] = record
                if record.failed:
                    if not skip_bad_files:
                        for other in futures:
                            other.cancel()
                        msg = (f"bad input in dataset {item.dataset}: {record.error} "
                               "(set workflow.skip_bad_files=true to skip such files)")
                        raise BadInputError(msg)
                    outcome.skipped.setdefault(item.file, record.error or "unreadable")
                    log.warning("skipping %s: %s", item.file, record.error)
                else:
                    on_result(item, payload)
                events += record.events_read
                done += 1
                if run_metrics is not None:
                    run_metrics.completed(1, name)
                progress.update(bar, advance=1, events=events)
                if on_progress is not None:
                    on_progress(done, len(items))
            # Chunks run again after an error or a lost worker (asked while futures are held).
            for key, attempts in chunk_attempts(client, by_key, retries).items():
                by_key[key].attempts = max(by_key[key].attempts, attempts)
        finally:
            for fut in futures:
                fut.release()
    return outcome

"""Run one task per work item on the Dask cluster with a live progress bar.

Results are handed to a callback as they complete (so histograms merge incrementally and
memory stays flat), and their futures are released in batches once the scheduler's retry counts
are read, so a worker does not keep every result it returned until the stage ends (70,000 chunk
results of a facility run would otherwise pile up in the workers' memory). A task that raises is retried by Dask (``workflow.retries``), except for
rejected credentials and unreachable storage, which stop the job at once; a chunk
whose input is bad comes back as a failed record and is either skipped (``skip_bad_files``)
or stops the run with the file named. A skipped chunk is reported to ``on_failed``, so the
caller can leave out the whole file, including its chunks that did succeed.

With ``payload_on_workers`` a chunk's payload stays on the worker that made it: the driver
fetches only the chunk's record and hands ``on_result`` the payload's future, to be merged on
the cluster (coffea processor outputs, which may be large).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from distributed import Client, as_completed
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from intccms.core.records import ChunkRecord
from intccms.plan.workitems import WorkItem
from intccms.runner.attempts import chunk_attempts
from intccms.runner.watch import NoWorkersWatch
from intccms.storage import FATAL_STORAGE_ERRORS

log = logging.getLogger(__name__)


class BadInputError(RuntimeError):
    """An input file could not be read and ``skip_bad_files`` is off."""


@dataclass
class NotRetried:
    """A storage outage, rejected credentials or a missing bucket, returned instead of raised so
    that Dask does not retry it: storage has bounded retries of its own, and repeating them per
    Dask retry multiplies the time to fail (wrong credentials or a bucket never get better)."""

    error: BaseException
    reason: str = "storage errors are not retried by Dask"

    def stop(self, stage: str, item: WorkItem) -> BaseException:
        """The error that stops the job: the same type, with the chunk named."""
        msg = (f"{stage} of {item.file} entries [{item.entry_start}, {item.entry_stop}) failed and "
               f"was not retried ({self.reason}): {self.error}")
        try:
            return type(self.error)(msg)
        except TypeError:  # an exception class with another signature: keep it as it is
            return self.error


def fail_fast(task: Callable[..., Any], *args: Any) -> Any:
    """Run ``task(*args)`` on a worker; rejected credentials, unreachable storage and a missing
    bucket come back as :class:`NotRetried` instead of being raised (and retried by Dask)."""

    try:
        return task(*args)
    except FATAL_STORAGE_ERRORS as err:
        return NotRetried(err)


def record_only(result: Any) -> Any:
    """Runs on a worker: a chunk's ``(payload, record)`` without the payload (or a NotRetried)."""
    return result if isinstance(result, NotRetried) else (None, result[1])


RELEASE_BATCH = 256
"""Fetched results whose futures are held at most, per stage, before their attempts are read
from the scheduler (one call per batch) and the futures released."""


def _count_and_release(client: Client, held: dict[str, tuple[Any, ChunkRecord]], retries: int) -> None:
    """Read the attempts of finished chunks, then drop their futures.

    The scheduler forgets a task once its future is released, so the count is read first. For
    a payload that stays on the workers the caller keeps what it needs (a future of its own);
    releasing the chunk's future lets its worker free the payload once merged, so only about one
    payload per worker thread is kept alive for the retry counts. For a fetched result, the
    worker's copy is no longer needed at all.
    """
    for key, attempts in chunk_attempts(client, {k: r for k, (_, r) in held.items()}, retries).items():
        held[key][1].attempts = max(held[key][1].attempts, attempts)
    for future, _ in held.values():
        future.release()
    held.clear()


def stage_progress(title: str, console: Console, unit: str = "chunks",
                   counter: str = "{task.fields[events]:,} events") -> Progress:
    """The live bar of a stage: done of total ``unit``, a running ``counter`` (a format of the
    task's fields), elapsed and remaining time."""
    return Progress(TextColumn(f"[bold]{title}[/bold]"), BarColumn(), MofNCompleteColumn(), TextColumn(unit),
                    TextColumn(counter), TimeElapsedColumn(), TimeRemainingColumn(),
                    console=console, transient=False)


@dataclass
class StageOutcome:
    """Records of a stage and the files it skipped."""

    records: list[ChunkRecord] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)  # file -> error


def run_stage(
    client: Client,
    name: str,
    items: Sequence[WorkItem],
    task: Callable[..., tuple[Any, ChunkRecord] | NotRetried],
    args_for: Callable[[WorkItem], tuple[Any, ...]],
    on_result: Callable[[WorkItem, Any], None],
    *,
    retries: int,
    skip_bad_files: bool,
    console: Console | None = None,
    on_progress: Callable[[int, int], None] | None = None,
    run_metrics: Any = None,
    on_failed: Callable[[WorkItem, ChunkRecord], None] | None = None,
    payload_on_workers: bool = False,
    no_workers_timeout_s: float | None = None,
) -> StageOutcome:
    """Submit ``task(item, *args_for(item))`` for every item and collect as they finish.

    ``on_result(item, payload)`` gets every successful chunk, ``on_failed(item, record)`` every
    chunk skipped as bad input (``skip_bad_files``), each exactly once per item. With
    ``payload_on_workers`` the payload is not fetched: ``on_result`` gets the future of the
    task's ``(payload, record)`` result, which the caller holds as long as it needs it.

    With ``no_workers_timeout_s``, a stage whose chunks wait that long with no worker connected
    fails (:mod:`.watch`) instead of waiting for one forever.

    Raises:
        BadInputError: a chunk failed on bad input and ``skip_bad_files`` is false.
        NoWorkersError: no worker was connected for ``no_workers_timeout_s``.
    """
    outcome = StageOutcome()
    if not items:
        return outcome
    if run_metrics is not None:
        run_metrics.planned(len(items), name)
    futures = {}
    heavy: dict[Any, Any] = {}  # record future -> the chunk's own future (payload_on_workers)
    for item in items:
        key = f"{name}-{item.dataset}-{item.file_index}-{item.chunk_index}-{id(items)}"
        fut = client.submit(fail_fast, task, item, *args_for(item), retries=retries, pure=False, key=key)
        if payload_on_workers:
            light = client.submit(record_only, fut, pure=False, key=f"{key}-record")
            heavy[light] = fut
            fut = light
        futures[fut] = item
    progress = stage_progress(name, console or Console(stderr=True))
    done = 0
    held: dict[str, tuple[Any, ChunkRecord]] = {}  # finished chunks whose attempts are unread
    threads = sum(client.nthreads().values())
    hold = max(2, threads) if payload_on_workers else max(RELEASE_BATCH, threads)
    watch = NoWorkersWatch(client, no_workers_timeout_s, [*futures, *heavy.values()])
    with progress, watch:
        bar = progress.add_task(name, total=len(items), events=0)
        events = 0
        try:
            for fut in as_completed(list(futures)):
                item = futures[fut]
                try:
                    result = fut.result()
                except Exception as err:
                    for other in [*futures, *heavy.values()]:
                        other.cancel()
                    if watch.fired_after is not None:
                        raise watch.error(name, len(items) - done, len(items)) from None
                    msg = (f"{name} of {item.file} entries [{item.entry_start}, {item.entry_stop}) "
                           f"failed after {retries} retries: {type(err).__name__}: {err}")
                    raise RuntimeError(msg) from err
                if isinstance(result, NotRetried):
                    for other in [*futures, *heavy.values()]:
                        other.cancel()
                    raise result.stop(name, item) from result.error
                payload, record = result
                outcome.records.append(record)
                if payload_on_workers:
                    payload = heavy.pop(fut)
                    held[payload.key] = (payload, record)
                else:
                    held[fut.key] = (fut, record)
                if len(held) >= hold:
                    _count_and_release(client, held, retries)
                if record.failed:
                    if not skip_bad_files:
                        for other in [*futures, *heavy.values()]:
                            other.cancel()
                        msg = (f"bad input in dataset {item.dataset} at the {name} stage: "
                               f"{record.error or item.file + ' is unreadable'} "
                               "(set workflow.skip_bad_files=true to skip such files)")
                        raise BadInputError(msg)
                    outcome.skipped.setdefault(item.file, record.error or f"{item.file} is unreadable")
                    log.warning("skipping %s: %s", item.file, record.error)
                    if on_failed is not None:
                        on_failed(item, record)
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
            _count_and_release(client, held, retries)
        finally:
            for fut in futures:
                fut.release()
    return outcome

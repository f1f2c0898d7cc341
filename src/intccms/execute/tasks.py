"""The functions that run on Dask workers, one call per work item.

Input problems (missing, corrupt or truncated file, missing tree or branch) are caught here
and returned as a failed :class:`ChunkRecord` naming the file, so the driver can skip the file
(``skip_bad_files``) or stop with a clear message. Everything else propagates, and Dask retries,
except rejected credentials and unreachable storage (:func:`~intccms.runner.worker.raise_if_not_input`), which the
runner's ``fail_fast`` wrapper hands back so the job stops at their first occurrence.
"""

from __future__ import annotations

import fnmatch
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import numpy as np

from intccms.core.records import ChunkRecord
from intccms.metrics.worker import chunk_metrics, current_worker_label
from intccms.physics.corrections.spec import CorrectionsSpec
from intccms.physics.events import branch_names, build_events, excluded, resolve_fields
from intccms.physics.functors import Functor
from intccms.physics.pipeline import AnalysisPlan, ChunkAnalysis, ChunkContext, ChunkResult
from intccms.plan.metadata import FileMetadata, file_metadata
from intccms.plan.workitems import WorkItem
from intccms.runner.worker import INPUT_ERRORS, peak_rss, raise_if_not_input
from intccms.storage import (
    StorageOptions,
    open_source,
    write_part,
)


def _worker_name() -> str:
    """The same worker label the Prometheus metrics use, so report and metrics agree."""

    return current_worker_label()


@contextmanager
def _meter(dataset: str, stage: str) -> Iterator[Any]:
    """Prometheus metrics of the chunk (the worker process's registry)."""

    with chunk_metrics(dataset, stage) as meter:
        yield meter


def _describe(err: BaseException, url: str) -> str:
    text = str(err) if url in str(err) else f"{url}: {err}"
    return f"{type(err).__name__}: {text}"


def _input_failed(record: ChunkRecord, meter: Any, err: BaseException) -> None:
    """Record a chunk whose input cannot be read as failed (storage outages are raised instead)."""
    record.failed, record.error = True, _describe(err, record.file)
    record.t_end = time.time()
    meter.add(bytes_read=record.bytes_read)
    raise_if_not_input(err)
    meter.fail()


def analysis_task(
    item: WorkItem,
    ctx: ChunkContext,
    plan: AnalysisPlan,
    corrections: CorrectionsSpec | None,
    options: StorageOptions | None,
) -> tuple[ChunkResult | None, ChunkRecord]:
    """Read one chunk's branches and analyse it."""
    record = ChunkRecord(dataset=item.dataset, stage="analysis", file=item.file,
                         entry_start=item.entry_start, entry_stop=item.entry_stop,
                         worker=_worker_name(), t_start=time.time())
    with _meter(item.dataset, "analysis") as meter:
        analysis = ChunkAnalysis(plan, ctx, corrections.build() if corrections else None)
        try:
            with open_source(item.file, options=options) as source:
                columns = source.read(analysis.branches(), item.entry_start, item.entry_stop)
                record.bytes_read = int(source.bytes_read)
        except INPUT_ERRORS as err:
            _input_failed(record, meter, err)
            return None, record
        result = analysis.run(columns)
        record.events_read = item.entries
        record.events_selected = result.events_selected
        meter.add(events_read=record.events_read, events_selected=record.events_selected,
                  bytes_read=record.bytes_read)
    record.t_end = time.time()
    record.peak_rss = peak_rss()
    return result, record


def metadata_task(dataset: str, url: str, is_data: bool, options: StorageOptions | None
                  ) -> tuple[FileMetadata, ChunkRecord]:
    """Count one file's entries and generator weights, metered and recorded like a chunk."""
    record = ChunkRecord(dataset=dataset, stage="metadata", file=url, entry_start=0, entry_stop=0,
                         worker=_worker_name(), t_start=time.time())
    with _meter(dataset, "metadata") as meter:
        meta = file_metadata(url, is_data, options)
        record.entry_stop, record.bytes_read = meta.num_entries, meta.bytes_read
        record.failed, record.error = meta.error is not None, meta.error
        meter.add(bytes_read=record.bytes_read)
        if record.failed:
            meter.fail()
    record.t_end = time.time()
    record.peak_rss = peak_rss()
    return meta, record


def skim_task(
    item: WorkItem,
    target: str,
    fmt: str,
    keep_patterns: tuple[str, ...],
    drop: frozenset[str],
    skim: Functor,
    collections: Mapping[str, tuple[str, ...]],
    constants: Mapping[str, Any],
    options: StorageOptions | None,
    writer_kwargs: Mapping[str, Any] | None,
) -> tuple[dict[str, Any] | None, ChunkRecord]:
    """Apply the skim function to one chunk and write the kept branches as one part.

    The skim function's own inputs (with the era's constants expanded, e.g. this era's
    trigger paths) are required: a file without one is bad input that names the branch.
    Branches matching ``keep_patterns`` are kept where the file has them.
    """

    collections = resolve_fields(collections, constants)
    required = branch_names({c: collections[c] for c in skim.inputs if c in collections}, ())

    record = ChunkRecord(dataset=item.dataset, stage="skim", file=item.file,
                         entry_start=item.entry_start, entry_stop=item.entry_stop,
                         worker=_worker_name(), t_start=time.time())
    with _meter(item.dataset, "skim") as meter:
        try:
            with open_source(item.file, options=options) as source:
                available = source.columns()
                keep = [c for c in available
                        if any(fnmatch.fnmatchcase(c, p) for p in keep_patterns) and not excluded(c, drop)]
                keep += [c for c in required if c not in keep]
                columns = source.read(keep, item.entry_start, item.entry_stop)
                record.bytes_read = int(source.bytes_read)
        except INPUT_ERRORS as err:
            _input_failed(record, meter, err)
            return None, record
        events = build_events(columns, collections, ())
        namespace: dict[str, Any] = dict(events)
        namespace.update({f"@{k}": v for k, v in constants.items()})
        mask = np.asarray(skim(namespace), dtype=bool)
        selected = {name: values[mask] for name, values in columns.items()}
        written = write_part(selected, target, fmt, options=options, writer_kwargs=writer_kwargs)
        record.events_read = item.entries
        record.events_selected = int(np.count_nonzero(mask))
        record.bytes_written = int(written.bytes)
        meter.add(events_read=record.events_read, events_selected=record.events_selected,
                  bytes_read=record.bytes_read, bytes_written=record.bytes_written)
    record.t_end = time.time()
    record.peak_rss = peak_rss()
    part = {"url": written.url, "entries": written.entries, "bytes": written.bytes,
            "source_file": item.file, "entry_start": item.entry_start,
            "entry_stop": item.entry_stop, "fmt": fmt, "chunk": item.chunk_index,
            "file_index": item.file_index}
    return part, record


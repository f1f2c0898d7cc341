"""One chunk on a worker: NanoEvents (virtual mode) through the storage layer, then ``process()``.

What can go wrong is sorted the way the runner needs it:

* the file cannot be opened, or a lazy read inside ``process()`` fails in uproot on the file's
  bytes (truncated, corrupt): bad input, a failed record, skipped whole with
  ``skip_bad_files``;
* rejected credentials or unreachable storage, wherever they surface: raised, and the runner
  stops the job at once;
* any other exception in ``process()``, a ``None`` output or an output that cannot be
  accumulated: the user's code, returned as :class:`~intccms.runner.stage.NotRetried` (the same
  chunk would raise it again) with the dataset, file, entry range and the innermost frames.
"""

from __future__ import annotations

import hashlib
import linecache
import time
import traceback
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cloudpickle
import fsspec
import uproot
from coffea.nanoevents import NanoEventsFactory
from coffea.nanoevents.schemas.base import BaseSchema
from coffea.processor import ProcessorABC

import intccms.storage
from intccms.core.records import ChunkRecord
from intccms.metrics.worker import ChunkMeter, chunk_metrics, current_worker_label
from intccms.plan.metadata import INPUT_ERRORS, describe_input_error
from intccms.plan.workitems import WorkItem
from intccms.processor.accumulators import NotAnAccumulatorError, check_accumulator
from intccms.runner.stage import NotRetried
from intccms.runner.worker import peak_rss
from intccms.storage import StorageAuthError, StorageOptions, StorageUnreachableError
from intccms.storage.uproot_file import open_uproot

STAGE = "processor"
# Frames in these packages mean "raised while reading the file", not by the user's code.
_READER_ROOTS = tuple(str(Path(str(m.__file__)).parent) for m in (uproot, fsspec, intccms.storage))
_TRACEBACK_FRAMES = 8
_instances: dict[str, tuple[ProcessorABC, type[BaseSchema]]] = {}


class ProcessorError(RuntimeError):
    """The user's ``process()`` raised, returned None or returned something not accumulable."""


@dataclass(frozen=True)
class ProcessorSpec:
    """What every chunk needs besides its work item, scattered once to every worker.

    The processor and schema travel pickled with cloudpickle (modules from
    ``processor.python_path`` by value) and are unpickled once per worker process.
    """

    payload: bytes
    token: str
    class_path: str
    treename: str
    sources: Mapping[str, str] = field(default_factory=dict)  # modules sent by value: path -> text

    @classmethod
    def create(cls, instance: ProcessorABC, schema: type[BaseSchema], class_path: str,
               treename: str, sources: Mapping[str, str] | None = None) -> ProcessorSpec:
        payload = cloudpickle.dumps((instance, schema))
        return cls(payload, hashlib.sha256(payload).hexdigest()[:16], class_path, treename,
                   dict(sources or {}))

    def load(self) -> tuple[ProcessorABC, type[BaseSchema]]:
        """The processor instance and schema class (cached per worker process)."""
        found = _instances.get(self.token)
        if found is None:
            _instances.clear()  # one run's processor at a time per worker process
            found = _instances[self.token] = cloudpickle.loads(self.payload)
        return found


def coffea_metadata(item: WorkItem, treename: str, dataset_meta: Mapping[str, Any],
                    fileuuid: str) -> dict[str, Any]:
    """``events.metadata`` as coffea's Runner builds it, plus the dataset's own entries."""
    meta: dict[str, Any] = {
        "dataset": item.dataset, "filename": item.file, "treename": treename,
        "entrystart": item.entry_start, "entrystop": item.entry_stop, "fileuuid": fileuuid,
    }
    meta.update(dataset_meta)
    return meta


def _where(item: WorkItem) -> str:
    return f"dataset {item.dataset}, file {item.file}, entries [{item.entry_start}, {item.entry_stop})"


def _raised_while_reading(err: BaseException) -> bool:
    """Whether the innermost frame of ``err`` is in uproot, fsspec or the storage layer."""
    frames = traceback.extract_tb(err.__traceback__)
    return bool(frames) and frames[-1].filename.startswith(_READER_ROOTS)


def _user_frames(err: BaseException, sources: Mapping[str, str]) -> list[str]:
    """The traceback below ``process()``, innermost last, with the lines of modules sent by
    value (their code objects only say ``<dynamic-code>``; their globals keep ``__file__``)."""
    lines = []
    frames = list(traceback.walk_tb(err.__traceback__))[1:]  # from process() inwards
    for frame, lineno in frames[-_TRACEBACK_FRAMES:]:
        filename = frame.f_code.co_filename
        if filename == "<dynamic-code>":
            filename = str(frame.f_globals.get("__file__", filename))
        source = sources.get(filename)
        text = (source.splitlines()[lineno - 1] if source and 0 < lineno <= source.count("\n") + 1
                else linecache.getline(filename, lineno))
        lines.append(f'  File "{filename}", line {lineno}, in {frame.f_code.co_name}')
        if text.strip():
            lines.append(f"    {text.strip()}")
    return lines


def _user_error(spec: ProcessorSpec, item: WorkItem, err: BaseException) -> NotRetried:
    msg = "\n".join([f"{spec.class_path}.process() raised {type(err).__name__}: {err} ({_where(item)})",
                     "Traceback (most recent call last):", *_user_frames(err, spec.sources)])
    return NotRetried(ProcessorError(msg), reason="an error in process() is not retried")


def _bad_input(record: ChunkRecord, meter: ChunkMeter, err: BaseException, bytes_read: int = 0) -> None:
    """A chunk whose file cannot be read: a failed record naming the file, for skip_bad_files."""
    record.failed, record.error = True, describe_input_error(err, record.file)
    record.bytes_read, record.t_end = bytes_read, time.time()
    meter.add(bytes_read=bytes_read)
    meter.fail()


def processor_task(item: WorkItem, spec: ProcessorSpec, dataset_meta: Mapping[str, Any],
                   options: StorageOptions | None) -> tuple[Any, ChunkRecord] | NotRetried:
    """Run the processor on one chunk; returns its output (kept on the worker) and record."""
    record = ChunkRecord(dataset=item.dataset, stage=STAGE, file=item.file,
                         entry_start=item.entry_start, entry_stop=item.entry_stop,
                         worker=current_worker_label(), t_start=time.time())
    processor, schema = spec.load()
    with chunk_metrics(item.dataset, STAGE) as meter:
        try:
            source = open_uproot(item.file, spec.treename, options)
        except (StorageAuthError, StorageUnreachableError):
            raise  # an outage is not a bad file: skipping it would silently drop data
        except INPUT_ERRORS as err:
            _bad_input(record, meter, err)
            return None, record
        with source:
            try:
                events = NanoEventsFactory.from_root(
                    file=source.directory, treepath=spec.treename, schemaclass=schema, mode="virtual",
                    entry_start=item.entry_start, entry_stop=item.entry_stop,
                    metadata=coffea_metadata(item, spec.treename, dataset_meta, source.uuid),
                ).events()
            except INPUT_ERRORS as err:
                _bad_input(record, meter, err, source.bytes_read)
                return None, record
            try:
                output = processor.process(events)
            except Exception as err:  # sorted below: a storage outage, bad input or the user's code
                record.bytes_read = source.bytes_read
                if _raised_while_reading(err):
                    translated = source.translate(err)
                    if isinstance(translated, StorageAuthError | StorageUnreachableError):
                        raise translated from err
                    if isinstance(err, INPUT_ERRORS):
                        _bad_input(record, meter, err, source.bytes_read)
                        return None, record
                meter.fail()
                return _user_error(spec, item, err)
            record.bytes_read = source.bytes_read
        try:
            check_accumulator(output, f"{spec.class_path}.process() output")
        except NotAnAccumulatorError as err:
            meter.fail()
            return NotRetried(ProcessorError(f"{err} ({_where(item)})"),
                              reason="an output that cannot be accumulated is not retried")
        record.events_read = item.entries
        meter.add(events_read=record.events_read, bytes_read=record.bytes_read)
    record.t_end = time.time()
    record.peak_rss = peak_rss()
    return output, record


__all__ = ["STAGE", "ProcessorError", "ProcessorSpec", "coffea_metadata", "processor_task"]

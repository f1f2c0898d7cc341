"""The processor stage on the driver: chunks through the runner, outputs merged on the workers.

Each chunk's output stays on the worker that made it. A file's chunks are merged in entry
order as they arrive; a complete file joins the run's merge in plan order; a file with a chunk
skipped as bad input never joins (its merged chunks are dropped with it). Both merges are
:class:`~intccms.processor.merge.OrderedTree` s of Dask tasks, so the driver holds futures, and
the one output it fetches is the final merge.
"""

from __future__ import annotations

import operator
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from distributed import Client, Future
from rich.console import Console

from intccms.core.records import ChunkRecord
from intccms.plan.workitems import WorkItem
from intccms.processor.merge import OrderedTree, merge_outputs
from intccms.processor.task import STAGE, ProcessorSpec, processor_task
from intccms.runner.stage import run_stage
from intccms.storage import StorageOptions


@dataclass(frozen=True)
class Node:
    """A future of an output and the chunks it covers (for merge error messages)."""

    future: Future[Any]
    first: str
    last: str

    @property
    def label(self) -> str:
        return self.first if self.first == self.last else f"{self.first} to {self.last}"


@dataclass
class ProcessorOutcome:
    """What the stage produced: the merged output (None if nothing was kept), records, skips."""

    output: Any
    records: list[ChunkRecord] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    files_merged: int = 0


def _label(item: WorkItem) -> str:
    return f"{item.dataset}:{item.file}[{item.entry_start}:{item.entry_stop}]"


class _Merger:
    """Files' and the run's ordered trees, fed by the runner's callbacks."""

    def __init__(self, client: Client, items: Sequence[WorkItem], retries: int) -> None:
        self._client = client
        self._retries = retries
        self._tag = uuid.uuid4().hex[:8]
        self._merges = 0
        self.file_of: dict[WorkItem, int] = {}
        self.chunk_of: dict[WorkItem, int] = {}
        self.chunks: list[int] = []
        files: dict[tuple[str, str], int] = {}
        for item in items:
            index = files.setdefault((item.dataset, item.file), len(files))
            if index == len(self.chunks):
                self.chunks.append(0)
            self.file_of[item] = index
            self.chunk_of[item] = self.chunks[index]
            self.chunks[index] += 1
        self.run: OrderedTree[Node] = OrderedTree(self._combine)
        self._files: dict[int, OrderedTree[Node]] = {}
        self.dropped: set[int] = set()

    def _combine(self, left: Node, right: Node) -> Node:
        self._merges += 1
        future = self._client.submit(merge_outputs, left.future, right.future, left.label, right.label,
                                     pure=False, retries=self._retries,
                                     key=f"{STAGE}-merge-{self._tag}-{self._merges}")
        return Node(future, left.first, right.last)

    def chunk_done(self, item: WorkItem, chunk: Future[Any]) -> None:
        index = self.file_of[item]
        if index in self.dropped:
            return
        payload = self._client.submit(operator.getitem, chunk, 0, pure=False,
                                      key=f"{STAGE}-output-{self._tag}-{index}-{self.chunk_of[item]}")
        tree = self._files.setdefault(index, OrderedTree(self._combine))
        tree.put(self.chunk_of[item], Node(payload, _label(item), _label(item)))
        if tree.settled == self.chunks[index]:
            self.run.put(index, tree.result(self.chunks[index]))
            del self._files[index]

    def chunk_failed(self, item: WorkItem, _record: ChunkRecord) -> None:
        index = self.file_of[item]
        if index not in self.dropped:
            self.dropped.add(index)
            self._files.pop(index, None)  # its merged chunks are dropped with it
            self.run.put(index, None)

    def result(self) -> Node | None:
        return self.run.result(len(self.chunks))


def run_processor_stage(
    client: Client, items: Sequence[WorkItem], spec: ProcessorSpec,
    dataset_meta: Mapping[str, Mapping[str, Any]], options: StorageOptions, *, retries: int,
    skip_bad_files: bool, console: Console | None = None, run_metrics: Any = None,
    no_workers_timeout_s: float | None = None,
) -> ProcessorOutcome:
    """Run the processor on every item and merge the outputs on the cluster.

    Args:
        items: the work items in plan order (by file, then entry range): the merge order.
        spec: the pickled processor, schema and tree name.
        dataset_meta: dataset -> the entries added to ``events.metadata``.

    Raises:
        BadInputError: a chunk failed on bad input and ``skip_bad_files`` is false.
        ProcessorError: ``process()`` raised or returned something that cannot be accumulated.
        MergeError: two outputs could not be added.
    """
    merger = _Merger(client, items, retries)
    spec_future = client.scatter(spec, broadcast=True, hash=False)
    outcome = run_stage(
        client, STAGE, items, processor_task,
        lambda item: (spec_future, dict(dataset_meta[item.dataset]), options),
        merger.chunk_done, retries=retries, skip_bad_files=skip_bad_files, console=console,
        run_metrics=run_metrics, on_failed=merger.chunk_failed, payload_on_workers=True,
        no_workers_timeout_s=no_workers_timeout_s,
    )
    final = merger.result()
    output = final.future.result() if final is not None else None
    return ProcessorOutcome(output=output, records=outcome.records, skipped=outcome.skipped,
                            files_merged=len(merger.chunks) - len(merger.dropped))


__all__ = ["ProcessorOutcome", "run_processor_stage"]

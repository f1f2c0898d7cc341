"""The runner releases fetched results as it goes: a worker never keeps every result it returned."""

from __future__ import annotations

from typing import Any

import numpy as np
from rich.console import Console

from intccms.core.records import ChunkRecord
from intccms.plan.workitems import WorkItem
from intccms.runner import stage as runner

PAYLOAD = 200_000  # bytes of each result


def payload_task(item: WorkItem) -> tuple[np.ndarray, ChunkRecord]:
    """A chunk whose result is a sizeable array, like a chunk's histograms."""
    record = ChunkRecord(item.dataset, "analysis", item.file, item.entry_start, item.entry_stop,
                         events_read=item.entries)
    return np.full(PAYLOAD // 8, float(item.chunk_index)), record


def _results_on_workers(dask_worker: Any) -> int:  # noqa: ANN401 - injected by Client.run
    return sum(1 for key in dask_worker.data if str(key).startswith("analysis-"))


def test_fetched_results_are_released_during_the_stage(dask_client: Any, monkeypatch: Any) -> None:
    monkeypatch.setattr(runner, "RELEASE_BATCH", 10)
    items = [WorkItem("ds", "f.root", 0, i, i * 10, (i + 1) * 10) for i in range(60)]
    seen: list[float] = []
    held: list[int] = []

    def on_result(item: WorkItem, payload: np.ndarray) -> None:
        seen.append(float(payload[0]))
        held.append(sum(dask_client.run(_results_on_workers).values()))

    outcome = runner.run_stage(dask_client, "analysis", items, payload_task, lambda item: (), on_result,
                               retries=0, skip_bad_files=False, console=Console(quiet=True))
    assert sorted(seen) == [float(i) for i in range(60)]
    assert [r.attempts for r in outcome.records] == [1] * 60
    # When the last result is handed over, every other one has been consumed: at most a batch
    # of them may still be on the workers (without the release, all 60 are).
    assert held[-1] <= 10 + 1, held

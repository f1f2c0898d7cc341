"""A stage whose workers are all lost fails after ``cluster.no_workers_timeout_s``, naming the
key, instead of waiting forever; a worker that comes back in time lets it finish."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from distributed import Client, LocalCluster
from fixtures.demo import SMALL_2017, small_overrides
from rich.console import Console

from intccms.core.records import ChunkRecord
from intccms.plan.workitems import WorkItem
from intccms.runner import stage as runner
from intccms.runner.watch import NoWorkersError

N = 12


def slow_task(item: WorkItem) -> tuple[int, ChunkRecord]:
    time.sleep(0.2)
    record = ChunkRecord(item.dataset, "analysis", item.file, item.entry_start, item.entry_stop,
                         events_read=item.entries)
    return item.chunk_index, record


@pytest.fixture
def one_worker() -> Iterator[tuple[LocalCluster, Client]]:
    """A cluster of its own (its worker is taken away): one thread-based worker, one thread."""
    with (LocalCluster(n_workers=1, threads_per_worker=1, processes=False,
                       dashboard_address="127.0.0.1:0") as cluster, Client(cluster) as client):
        client.wait_for_workers(1, timeout=30)
        yield cluster, client


def _items() -> list[WorkItem]:
    return [WorkItem("ds", "f.root", 0, i, i * 10, (i + 1) * 10) for i in range(N)]


def test_a_stage_without_workers_fails_naming_the_key(one_worker: tuple[LocalCluster, Client]) -> None:
    cluster, client = one_worker
    seen: list[int] = []

    def on_result(item: WorkItem, index: int) -> None:
        seen.append(index)
        if len(seen) == 1:
            cluster.scale(0)  # every worker lost, none coming back

    start = time.monotonic()
    with pytest.raises(NoWorkersError) as info:
        runner.run_stage(client, "analysis", _items(), slow_task, lambda item: (), on_result, retries=1,
                         skip_bad_files=False, console=Console(quiet=True), no_workers_timeout_s=1.5)
    elapsed = time.monotonic() - start
    message = str(info.value)
    assert "cluster.no_workers_timeout_s=1.5" in message
    assert f"of {N} chunks left" in message and "analysis" in message
    assert 1 <= len(seen) < N
    assert 1.5 < elapsed < 30  # after the timeout, not forever


def test_a_worker_back_within_the_timeout_lets_the_stage_finish(
        one_worker: tuple[LocalCluster, Client]) -> None:
    cluster, client = one_worker
    seen: list[int] = []

    def on_result(item: WorkItem, index: int) -> None:
        seen.append(index)
        if len(seen) == 1:
            cluster.scale(0)
            threading.Timer(1.0, cluster.scale, args=(1,)).start()  # a restarted worker

    outcome = runner.run_stage(client, "analysis", _items(), slow_task, lambda item: (), on_result, retries=1,
                               skip_bad_files=False, console=Console(quiet=True), no_workers_timeout_s=20.0)
    assert sorted(seen) == list(range(N))
    assert len(outcome.records) == N


def test_the_timeout_is_checked_at_start_up() -> None:
    from intccms.config import ConfigError, compose_config

    with pytest.raises(ConfigError, match=r"cluster\.no_workers_timeout_s"):
        compose_config("demo", ["cluster.no_workers_timeout_s=0"])


_LOSE: dict[str, Any] = {}  # the cluster whose worker the first metadata task takes away


def first_then_lose_the_worker(*args: Any, **kwargs: Any) -> Any:  # noqa: ANN401 - the task's result
    """The metadata task; its first call takes the (thread-based) worker away, then finishes."""

    _LOSE["calls"] = _LOSE.get("calls", 0) + 1
    if _LOSE["calls"] == 1:
        threading.Timer(0.1, _LOSE["cluster"].scale, args=(0,)).start()
        time.sleep(0.5)
    return _LOSE["real"](*args, **kwargs)


def test_the_jobs_metadata_stage_fails_too_when_its_workers_are_gone(
        one_worker: tuple[LocalCluster, Client], demo_data: Any, tmp_path: Any,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The metadata stage, which has its own loop, is watched as the chunk stages are."""
    from intccms.config import compose_config
    from intccms.execute import job, stages

    cluster, client = one_worker
    _LOSE.clear()
    _LOSE.update(cluster=cluster, real=stages.metadata_task)
    cfg = compose_config("demo", small_overrides(demo_data, tmp_path, SMALL_2017, "cluster.no_workers_timeout_s=1.5"))
    monkeypatch.setattr(stages, "metadata_task", first_then_lose_the_worker)
    with pytest.raises(NoWorkersError, match=r"^metadata: .*cluster\.no_workers_timeout_s=1\.5"):
        job.run_job(cfg, client=client, console=Console(quiet=True))
    assert _LOSE["calls"] >= 1

"""Workers sampled during the run: the report's worker timeline and cores, and the run's
workers-present gauge, from what the scheduler really had rather than from the configuration."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fixtures.demo import SMALL_2017, small_overrides
from prometheus_client import CollectorRegistry

from intccms.metrics import names, worker
from intccms.metrics.sampler import WorkerSampler, wanted_workers
from intccms.metrics.scheduler import RunMetrics


class FakeClient:
    """Answers nthreads() from a script of {address: threads} snapshots (the last one repeats)."""

    status = "running"

    def __init__(self, snapshots: list[dict[str, int]]) -> None:
        self.snapshots = snapshots
        self.calls = 0

    def nthreads(self) -> dict[str, int]:
        snap = self.snapshots[min(self.calls, len(self.snapshots) - 1)]
        self.calls += 1
        return snap


def test_sampler_follows_workers_that_come_and_go() -> None:
    client = FakeClient([{"a": 4, "b": 4}, {"a": 4}, {"a": 4, "c": 8, "d": 8}])
    run = RunMetrics("sampler-unit", registry=CollectorRegistry())
    sampler = WorkerSampler(client, interval_s=3600)  # no background sample: driven by hand
    sampler.start(run, wanted=5)
    assert run.values()["workers_present"] == 2
    assert run.values()["workers_wanted"] == 5
    assert sampler.sample() == 1
    assert run.values()["workers_present"] == 1
    sampler.stop()  # the last sample sees the scaled-up cluster
    assert run.values()["workers_present"] == 3
    assert [n for _, n in sampler.timeline] == [2, 1, 3]
    times = [t for t, _ in sampler.timeline]
    assert times == sorted(times)
    # cores: every worker seen once (a, b, c, d), not n_workers x threads of any one sample
    assert sampler.n_threads == 4 + 4 + 8 + 8
    assert sampler.max_workers == 3
    sampler.stop()  # idempotent: no further sample
    assert len(sampler.timeline) == 3


def test_sampler_thread_samples_every_interval_and_stops_on_exit() -> None:
    client = FakeClient([{"a": 1}])
    with WorkerSampler(client, interval_s=0.05) as sampler:
        sampler.start()
        deadline = 200
        while len(sampler.timeline) < 4 and deadline:
            time.sleep(0.05)
            deadline -= 1
    assert len(sampler.timeline) >= 4
    calls = client.calls
    time.sleep(0.2)
    assert client.calls == calls, "the thread must be gone after the with block"


def test_wanted_workers_from_the_configuration() -> None:
    assert wanted_workers({"kind": "local", "n_workers": 3}, present=7) == 3
    k8s = {"kind": "kubernetes", "kubernetes": {"adapt": {"minimum": 1, "maximum": 12}}}
    assert wanted_workers(k8s, present=2) == 12
    assert wanted_workers({"kind": "kubernetes", "kubernetes": {"image": "x"}}, present=2) == 10  # the default bound
    assert wanted_workers({"kind": "kubernetes", "kubernetes": None}, present=2) == 2
    from omegaconf import OmegaConf

    from intccms.config.kubernetes import AdaptConfig, KubernetesClusterConfig
    from intccms.config.schema import ClusterConfig, ClusterKind

    composed = OmegaConf.structured(ClusterConfig(
        kind=ClusterKind.kubernetes, kubernetes=KubernetesClusterConfig(adapt=AdaptConfig(maximum=7))))
    assert wanted_workers(composed, present=2) == 7
    assert wanted_workers({"kind": "address"}, present=4) == 4


@pytest.fixture
def fresh_run_id(monkeypatch: pytest.MonkeyPatch) -> str:
    rid = f"sampler-{uuid.uuid4().hex[:8]}"
    monkeypatch.setattr(worker, "_run_id", None)
    monkeypatch.setenv(names.RUN_ID_ENV, rid)
    return rid


@pytest.fixture(scope="module")
def two_by_two() -> Iterator[Any]:
    """Two worker processes of two threads: 4 cores, where the job's configuration says 1 x 1."""
    distributed = pytest.importorskip("distributed")
    with (distributed.LocalCluster(n_workers=2, threads_per_worker=2, processes=True, host="127.0.0.1",
                                   dashboard_address="127.0.0.1:0") as cluster,
          distributed.Client(cluster) as client):
        client.wait_for_workers(2)
        yield client


@pytest.mark.e2e
@pytest.mark.slow
def test_job_report_has_the_clusters_workers_and_cores(
    two_by_two: Any, demo_data: Path, tmp_path: Path, fresh_run_id: str
) -> None:
    from prometheus_client import REGISTRY

    from intccms.config import compose_config
    from intccms.execute.job import run_job

    cfg = compose_config("demo", small_overrides(
        demo_data, tmp_path, SMALL_2017[:1], "workflow.variations=[]", "workflow.run_plots=false",
        "cluster.n_workers=1", "cluster.threads_per_worker=1",
    ))
    result = run_job(cfg, client=two_by_two)
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    assert report["n_cores"] == 4, "cores are the scheduler's threads, not cluster.n_workers x threads_per_worker"
    assert report["events_per_s_per_core"] == pytest.approx(report["events_per_s"] / 4)
    timeline = report["workers_timeline"]
    assert len(timeline) >= 2  # a sample at the start of the stages and one at the report
    assert [n for _, n in timeline] == [2] * len(timeline)
    times = [t for t, _ in timeline]
    assert times == sorted(times) and times[0] == pytest.approx(0.0, abs=1.0)
    assert times[-1] >= report["wall_time_s"] - 1.0, "sampled until the end of the stages"
    assert result.records
    # the scheduler-side gauges (this process: LocalCluster) saw the real workers
    run = {"run": fresh_run_id}
    assert REGISTRY.get_sample_value(names.RUN_WORKERS_PRESENT, run) == 2
    assert REGISTRY.get_sample_value(names.RUN_WORKERS_WANTED, run) == 1  # what the configuration asked for
    # and the metadata stage is counted with the others
    planned = REGISTRY.get_sample_value(names.RUN_CHUNKS_PLANNED, {**run, "stage": "metadata"})
    done = REGISTRY.get_sample_value(f"{names.RUN_CHUNKS_COMPLETED}_total", {**run, "stage": "metadata"})
    assert planned == done == report["per_stage"]["metadata"]["chunks"] >= 1

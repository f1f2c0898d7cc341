"""Processors through the whole job on generated NanoAOD, against coffea's own Runner.

The two examples run unmodified through ``intccms run processor`` and through coffea's
``processor.Runner`` with ``IterativeExecutor`` on the same files and chunks: integer counts
agree exactly and weighted sums to 1e-12 relative. Bad input and broken processors are named.
"""

from __future__ import annotations

import os
import shutil
import signal
import textwrap
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Self

import fsspec
import numpy as np
import psutil
import pytest
import uproot
from coffea.util import load
from coffea.util import load as coffea_load
from distributed import Client
from fixtures.badfiles import rewrite_in_baskets, truncate_last_basket
from fixtures.demo import SMALL_2017, small_overrides, two_worker_cluster
from fixtures.processors import assert_same_output, coffea_reference
from fixtures.s3 import S3Server
from prometheus_client import REGISTRY

from intccms.config import compose_config
from intccms.execute.job import run_job
from intccms.execute.results import JobResult
from intccms.metrics import names
from intccms.processor.task import ProcessorError
from intccms.runner.stage import BadInputError
from intccms.storage.credentials import (
    CREDENTIAL_VARS,
    ENV_S3_ACCESS_KEY_ID,
    ENV_S3_ENDPOINT,
    ENV_S3_SECRET_ACCESS_KEY,
)

# coffea's NanoAOD schema warns about cross-references the generated files do not carry.
pytestmark = [pytest.mark.e2e, pytest.mark.filterwarnings("ignore:Missing cross-reference index:RuntimeWarning")]
EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
# 2000 entries per chunk: coffea's Runner cuts the demo files (12000, 8000, 4000 entries) into
# the same chunks as the facility, so both see identical events per call of process().
CHUNK = 2000
TT = "TTToSemiLeptonic_2017"

USER_PROCESSORS = '''
    import time

    import numpy as np
    from coffea import processor
    from dimuon import DimuonProcessor

    class SlowDimuon(DimuonProcessor):
        """The dimuon example, 0.3 s slower per chunk: time to kill a worker mid-run."""
        def process(self, events):
            time.sleep(0.3)
            return super().process(events)

    class Metadata(processor.ProcessorABC):
        """events.metadata of every chunk, as a set."""
        def process(self, events):
            return {"metadata": {tuple(sorted(events.metadata.items()))}, "events": len(events)}
        def postprocess(self, accumulator):
            pass

    class Raising(processor.ProcessorABC):
        def process(self, events):
            if events.metadata["entrystart"] >= 4000:
                return {"ratio": len(events) / 0}
            return {"ratio": 1.0}
        def postprocess(self, accumulator):
            pass

    class Heavy(processor.ProcessorABC):
        """About 100 MB per chunk (a fixed-size array, like a large histogram)."""
        def process(self, events):
            return {"big": np.full(12_500_000, float(len(events))), "chunks": 1}
        def postprocess(self, accumulator):
            pass

    class ReturnsColumns(processor.ProcessorABC):
        def process(self, events):
            return {"muon_pt": events.Muon.pt}
        def postprocess(self, accumulator):
            pass
'''


def _overrides(data: Path, out: Path | str, datasets: list[str], *extra: str) -> list[str]:
    return small_overrides(data, out, datasets, f"processor.python_path=[{EXAMPLES}]",
                           f"workflow.chunksize={CHUNK}", *extra)


def _run(client: Client, data: Path, out: Path | str, datasets: list[str], *extra: str) -> JobResult:
    return run_job(compose_config("processor", _overrides(data, out, datasets, *extra)), client=client)


def _events_read(stage: str) -> float:
    """This worker's events_read counter of ``stage`` summed over runs and datasets."""
    return sum(s.value for m in REGISTRY.collect() if m.name == names.EVENTS_READ
               for s in m.samples if s.name.endswith("_total") and s.labels.get("stage") == stage)


def _executing(dask_worker: Any) -> int:  # noqa: ANN401 - distributed's Worker
    return len(dask_worker.state.executing)


def _wait_until_idle(client: Client, timeout: float = 60.0) -> None:
    """Wait until no worker of the shared cluster runs a task: a chunk of an earlier test's job
    that was cancelled while it ran still finishes, and meters its events, on its thread."""
    deadline = time.monotonic() + timeout
    while any(client.run(_executing).values()):
        if time.monotonic() > deadline:
            pytest.fail(f"the shared cluster's workers still ran tasks after {timeout:.0f} s")
        time.sleep(0.1)


@pytest.mark.parametrize("example", ["dimuon", "zprime_ttbar"])
def test_examples_equal_coffeas_own_runner(dask_client, demo_data: Path, tmp_path: Path, example: str) -> None:
    _wait_until_idle(dask_client)
    before = sum(dask_client.run(_events_read, "processor").values())
    cfg = compose_config("processor", _overrides(demo_data, tmp_path, SMALL_2017, f"processor={example}"))
    result = run_job(cfg, client=dask_client)
    want, coffea_chunks = coffea_reference(cfg, SMALL_2017, CHUNK)
    chunks = sorted((r.file, r.entry_start, r.entry_stop) for r in result.records if r.stage == "processor")
    assert chunks == coffea_chunks and len(chunks) == 14
    assert_same_output(result.processor_output, want)

    # Saved as coffea saves it, and every histogram as ROOT under its keys, one per dataset.
    assert result.coffea_path == tmp_path / "processor" / "output.coffea"
    assert_same_output(load(str(result.coffea_path)), result.processor_output)
    key = "mass" if example == "dimuon" else "CMS_WORKSHOP/mtt"
    h = result.processor_output["mass"] if example == "dimuon" else result.processor_output["CMS_WORKSHOP"]["mtt"]
    with uproot.open(result.root_path) as f:
        root_h = f[f"{key}__{TT}"]
        np.testing.assert_allclose(root_h.values(), h[{"dataset": TT}].values(), rtol=1e-12)
        assert root_h.member("fXaxis").member("fTitle") == h.axes[1].label
    # Per-worker metrics counted every event of the stage. Dask runs a task at least once, and a
    # chunk it ran a second time is metered again (one CI run of many metered one 2,000-event
    # chunk twice, with no retry in the report); the report counts each chunk once.
    metered = sum(dask_client.run(_events_read, "processor").values()) - before
    assert metered in (28000, 28000 + CHUNK), metered
    assert result.summary["stage"] == "processor" and result.summary["events_read"] == 28000
    assert (tmp_path / "report" / "report.json").is_file()


@pytest.fixture
def user_module(tmp_path: Path) -> tuple[Path, str]:
    """Test processors in a folder the workers do not have: they arrive pickled by value."""
    folder = tmp_path / "user_code"
    folder.mkdir()
    name = f"user_procs_{uuid.uuid4().hex[:8]}"
    (folder / f"{name}.py").write_text(textwrap.dedent(USER_PROCESSORS))
    return folder, name


def _python_path(folder: Path) -> str:
    return f"processor.python_path=[{folder},{EXAMPLES}]"


def test_events_metadata_is_what_coffea_passes(dask_client, demo_data: Path, tmp_path: Path, user_module) -> None:
    folder, name = user_module
    datasets = [TT, "SingleMuon_2017"]
    cfg = compose_config("processor", _overrides(demo_data, tmp_path / "out", datasets,
                                                 f"processor.class={name}.Metadata",
                                                 _python_path(folder)))
    result = run_job(cfg, client=dask_client)
    want, _ = coffea_reference(cfg, datasets, CHUNK)
    assert result.processor_output == want
    seen = [dict(m) for m in result.processor_output["metadata"]]
    assert len(seen) == 10 and {m["dataset"] for m in seen} == set(datasets)
    data = next(m for m in seen if m["dataset"] == "SingleMuon_2017")
    assert data["is_data"] is True and data["era"] == "2017" and data["process"] == "data"
    assert len(data["fileuuid"]) == 36 and data["treename"] == "Events"


def test_an_exception_in_process_names_the_file_and_entries(dask_client, demo_data, tmp_path, user_module) -> None:
    folder, name = user_module
    tt = demo_data / "2017" / TT / "nano_0.root"
    with pytest.raises(ProcessorError) as caught:
        _run(dask_client, demo_data, tmp_path / "out", [TT], f"processor.class={name}.Raising",
             _python_path(folder))
    text = str(caught.value)
    assert f"{name}.Raising.process() raised ZeroDivisionError: division by zero" in text
    assert f"dataset {TT}, file {tt}, entries [" in text and "entries [0, 2000)" not in text
    assert 'return {"ratio": len(events) / 0}' in text  # the user's line, from the worker
    assert "not retried" in text


def test_an_output_that_is_not_an_accumulator_is_a_clear_error(dask_client, demo_data, tmp_path, user_module) -> None:
    folder, name = user_module
    with pytest.raises(ProcessorError, match=rf"{name}\.ReturnsColumns\.process\(\) output\['muon_pt'\] is an "
                                             r"awkward Array.*column_accumulator.*entries \["):
        _run(dask_client, demo_data, tmp_path / "out", [TT], f"processor.class={name}.ReturnsColumns",
             _python_path(folder))


def test_skipped_bad_files_leave_the_output_of_a_run_without_them(dask_client, demo_data, tmp_path) -> None:
    good = demo_data / "2017" / TT / "nano_0.root"
    _run(dask_client, demo_data, tmp_path / "warmup", [TT])  # makes sure the input exists
    copy = tmp_path / "copy.root"
    shutil.copyfile(good, copy)
    truncated = tmp_path / "truncated.root"  # fails when counted (metadata stage)
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    bad_basket = tmp_path / "bad_basket.root"  # counts, its first chunks run, its last one fails
    rewrite_in_baskets(good, bad_basket, CHUNK)
    truncate_last_basket(bad_basket, "Muon_pt")

    def files(*paths: Path) -> str:
        return f"datasets.{TT}.files=[{','.join(map(str, paths))}]"

    with pytest.raises(BadInputError, match=r"bad_basket\.root"):
        _run(dask_client, demo_data, tmp_path / "strict", [TT], files(good, bad_basket))
    lenient = _run(dask_client, demo_data, tmp_path / "lenient", [TT], "workflow.skip_bad_files=true",
                   files(good, bad_basket, truncated, copy))
    clean = _run(dask_client, demo_data, tmp_path / "clean", [TT], files(good, copy))
    assert set(lenient.skipped) == {str(bad_basket), str(truncated)}
    assert set(lenient.summary["skipped_files"]) == {str(bad_basket), str(truncated)}
    ran = {r.file for r in lenient.records if r.stage == "processor" and not r.failed}
    assert str(bad_basket) in ran  # its good chunks did run, and were dropped with the file
    got, want = lenient.processor_output, clean.processor_output
    assert got["cutflow"] == want["cutflow"] and got["sumw"] == want["sumw"]
    for field in ("value", "variance"):
        assert np.array_equal(got["mass"].view(flow=True)[field], want["mass"].view(flow=True)[field])
    assert lenient.coffea_path.read_bytes() == clean.coffea_path.read_bytes()


@pytest.mark.s3
def test_inputs_and_outputs_on_s3_give_the_local_result(dask_client, demo_data, tmp_path, s3_server: S3Server,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    local = _run(dask_client, demo_data, tmp_path / "local", [TT], "processor=zprime_ttbar")
    fs = fsspec.filesystem("s3", key=s3_server.key, secret=s3_server.secret, skip_instance_cache=True,
                           client_kwargs={"endpoint_url": s3_server.endpoint})
    bucket = f"processor-{uuid.uuid4().hex[:8]}"
    fs.mkdir(bucket)
    fs.put_file(str(demo_data / "2017" / TT / "nano_0.root"), f"{bucket}/in/tt.root")
    for var in CREDENTIAL_VARS:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv(ENV_S3_ACCESS_KEY_ID, s3_server.key)
    monkeypatch.setenv(ENV_S3_SECRET_ACCESS_KEY, s3_server.secret)
    monkeypatch.setenv(ENV_S3_ENDPOINT, s3_server.endpoint)
    over = ("processor=zprime_ttbar", f"datasets.{TT}.files=[s3://{bucket}/in/tt.root]")
    first = _run(dask_client, demo_data, f"s3://{bucket}/out", [TT], *over)
    _wait_until_idle(dask_client)  # nothing of the first run still reads when the count starts
    s3_server.reset_records()
    remote = _run(dask_client, demo_data, f"s3://{bucket}/out", [TT], *over)  # counts from the stored cache
    _wait_until_idle(dask_client)
    assert [r.stage for r in first.records].count("metadata") == 1
    assert {r.stage for r in remote.records} == {"processor"}
    # Every byte the chunks report was served by S3 for that object, and nothing else was.
    gets = [(r["range"], r["bytes"]) for r in s3_server.records()
            if r["method"] == "GET" and r["path"] == f"/{bucket}/in/tt.root"]
    reported = sorted((r.entry_start, r.bytes_read) for r in remote.records)
    assert sum(r.bytes_read for r in remote.records) == s3_server.bytes_sent(f"{bucket}/in/tt.root") > 0, (
        f"chunks reported {reported}; S3 served {gets}")
    got, want = remote.processor_output, local.processor_output
    assert got["cutflow"] == want["cutflow"] and got["sumw"] == want["sumw"]
    for field in ("value", "variance"):
        assert np.array_equal(got["CMS_WORKSHOP"]["mtt"].view(flow=True)[field],
                              want["CMS_WORKSHOP"]["mtt"].view(flow=True)[field])
    assert not remote.coffea_path.exists()  # the private staging folder is gone after the run
    fs.get_file(f"{bucket}/out/processor/output.coffea", str(tmp_path / "stored.coffea"))
    stored = coffea_load(str(tmp_path / "stored.coffea"))
    assert stored["cutflow"] == got["cutflow"]
    assert np.array_equal(stored["CMS_WORKSHOP"]["mtt"].view(flow=True)["value"],
                          got["CMS_WORKSHOP"]["mtt"].view(flow=True)["value"])
    assert fs.exists(f"{bucket}/out/processor/histograms.root") and fs.exists(f"{bucket}/out/report/report.json")


class PeakRss:
    """The driver's peak resident memory above its level at entry, sampled every 10 ms."""

    def __init__(self) -> None:
        self._process = psutil.Process()
        self._stop = threading.Event()
        self.base = self.peak = self._process.memory_info().rss
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(0.01):
            self.peak = max(self.peak, self._process.memory_info().rss)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def growth(self) -> int:
        return self.peak - self.base


def test_large_outputs_merge_on_the_workers_not_in_the_driver(dask_client, demo_data, tmp_path, user_module) -> None:
    folder, name = user_module
    size = 12_500_000 * 8  # 100 MB per chunk, 12 chunks
    cfg = compose_config("processor", _overrides(demo_data, tmp_path / "out", [TT], "workflow.chunksize=1000",
                                                 f"processor.class={name}.Heavy", _python_path(folder)))
    with PeakRss() as rss:
        result = run_job(cfg, client=dask_client)
    big = result.processor_output["big"]
    assert result.processor_output["chunks"] == 12 and np.all(big == 12000.0)
    # The chunks made 1.2 GB; the driver received one merged output and wrote it to disk: it
    # grows by less than 2.5 outputs (measured: 1.9; merging the same outputs on the driver as
    # they arrive: 3.0; gathering them first: 12).
    assert rss.growth < 2.5 * size, f"driver grew by {rss.growth / 1e6:.0f} MB"


def _kill_a_worker_after(client: Client, done_chunks: int) -> threading.Thread:
    """Kill one worker process (SIGKILL, as the OOM killer would) once ``done_chunks`` chunks
    are in memory; its nanny starts a new one."""
    def chunks_done(dask_scheduler: Any) -> int:
        return sum(1 for key, ts in dask_scheduler.tasks.items()
                   if str(key).startswith("processor-TT") and ts.state == "memory")

    def kill() -> None:
        deadline = time.time() + 60
        while client.run_on_scheduler(chunks_done) < done_chunks and time.time() < deadline:
            time.sleep(0.05)
        pid = next(iter(client.run(os.getpid).values()))
        os.kill(pid, signal.SIGKILL)

    thread = threading.Thread(target=kill, daemon=True)
    thread.start()
    return thread


def test_a_worker_killed_mid_run_changes_nothing(demo_data, tmp_path, user_module) -> None:
    folder, name = user_module
    over = (f"processor.class={name}.SlowDimuon", _python_path(folder), "workflow.chunksize=1000")
    with two_worker_cluster() as client:  # its own workers: one of them is killed
        clean = _run(client, demo_data, tmp_path / "clean", [TT], *over)
        killer = _kill_a_worker_after(client, 3)
        killed = _run(client, demo_data, tmp_path / "killed", [TT], *over)
        killer.join()
    assert max(r.attempts for r in killed.records) >= 2  # the chunk running on the killed worker
    assert killed.processor_output["cutflow"] == clean.processor_output["cutflow"]
    for field in ("value", "variance"):
        assert np.array_equal(killed.processor_output["mass"].view(flow=True)[field],
                              clean.processor_output["mass"].view(flow=True)[field])
    assert killed.coffea_path.read_bytes() == clean.coffea_path.read_bytes()

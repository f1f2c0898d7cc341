"""Run report from hand-made chunk records: totals, ratios, JSON vs printed numbers, plots."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from rich.console import Console

from intccms.core.records import ChunkRecord
from intccms.outputs.report import SUMMARY, build_report, print_report, write_report
from intccms.outputs.report_plots import PLOTS

MB = 1_000_000


def records() -> list[ChunkRecord]:
    return [
        ChunkRecord("ttbar", "skim", "f1.root", 0, 1000, worker="w1", events_read=1000, events_selected=100,
                    bytes_read=1 * MB, bytes_written=50_000, t_start=100.0, t_end=102.0, peak_rss=500 * MB),
        ChunkRecord("ttbar", "analysis", "s1.parquet", 0, 2000, worker="w2", events_read=2000, events_selected=300,
                    bytes_read=3 * MB, t_start=101.0, t_end=105.0, attempts=2, peak_rss=600 * MB),
        ChunkRecord("dy", "skim", "f2.root", 0, 500, worker="w1", t_start=102.0, t_end=103.0, failed=True,
                    error="OSError: bad basket", attempts=3, peak_rss=700 * MB),
    ]


def test_totals_and_ratios() -> None:
    report = build_report(records(), wall_time_s=10.0, n_cores=2, workers_timeline=[(99.0, 1), (100.5, 2)])
    assert (report.events_read, report.events_selected) == (3000, 400)
    assert (report.bytes_read, report.bytes_written) == (4 * MB, 50_000)
    assert report.events_per_s == pytest.approx(300.0)
    assert report.events_per_s_per_core == pytest.approx(150.0)
    assert report.gbps_read == pytest.approx(4 * MB * 8 / 1e9 / 10)
    assert report.gbps_written == pytest.approx(50_000 * 8 / 1e9 / 10)
    assert report.chunk_time_s == pytest.approx(7.0)
    assert report.core_efficiency == pytest.approx(7.0 / 20.0)
    assert (report.chunks, report.failed_chunks, report.retried_chunks, report.attempts) == (3, 1, 2, 6)
    # as the worker counters count: the retried chunk's first attempt, all three of the given-up one
    assert report.failed_attempts == 1 + 3
    assert (report.per_stage["skim"].attempts, report.per_stage["skim"].failed_attempts) == (4, 3)
    assert (report.per_stage["analysis"].attempts, report.per_stage["analysis"].failed_attempts) == (2, 1)
    assert report.peak_rss_per_worker == {"w1": 700 * MB, "w2": 600 * MB}
    assert report.failures == [
        {"dataset": "dy", "stage": "skim", "file": "f2.root", "entry_start": 0, "entry_stop": 500, "attempts": 3,
         "error": "OSError: bad basket"}
    ]
    skim, ttbar = report.per_stage["skim"], report.per_dataset["ttbar"]
    assert (skim.chunks, skim.failed, skim.events_read, skim.bytes_written) == (2, 1, 1000, 50_000)
    assert (ttbar.chunks, ttbar.events_read, ttbar.bytes_read, ttbar.retried) == (2, 3000, 4 * MB, 1)
    assert report.per_worker["w1"].chunk_time_s == pytest.approx(3.0)
    # the throughput curve integrates back to the events read
    width = report.throughput[1][0] - report.throughput[0][0]
    assert sum(rate for _, rate in report.throughput) * width == pytest.approx(3000)
    # timeline is relative to the earliest known time (the first worker sample here)
    assert report.workers_timeline == [(0.0, 1), (1.5, 2)]


def test_invalid_inputs_are_named() -> None:
    with pytest.raises(ValueError, match="wall_time_s=0"):
        build_report(records(), wall_time_s=0, n_cores=2)
    empty = build_report([], wall_time_s=1.0, n_cores=1)
    assert (empty.events_read, empty.core_efficiency, empty.throughput) == (0, 0.0, [])


def _number(text: str) -> tuple[float, int]:
    """The first number in ``text`` and its count of decimals."""
    match = re.search(r"-?[\d,]+(?:\.(\d+))?", text)
    assert match, text
    return float(match.group(0).replace(",", "")), len(match.group(1) or "")


def test_json_equals_printed_numbers(tmp_path: Path) -> None:
    report = build_report(records(), wall_time_s=10.0, n_cores=2)
    paths = write_report(report, tmp_path)
    data = json.loads(paths[0].read_text())
    console = Console(record=True, width=200, color_system=None)
    print_report(report, console)
    printed = console.export_text()
    lines = printed.splitlines()
    for label, key, _ in SUMMARY:
        line = next(ln for ln in lines if re.search(rf"│ {re.escape(label)} +│", ln))
        value, decimals = _number(line.split("│")[2])
        assert value == pytest.approx(data[key], abs=0.5 * 10**-decimals), (label, line, data[key])
    assert "OSError: bad basket" in printed
    assert data["peak_rss_per_worker"] == {"w1": 700 * MB, "w2": 600 * MB}
    w1_line = next(ln for ln in lines if re.search(r"│ w1 +│", ln))
    assert _number(w1_line.split("│")[2])[0] == pytest.approx(data["peak_rss_per_worker"]["w1"] / 2**20, abs=0.05)
    for stage, stats in data["per_stage"].items():
        row = next(ln for ln in lines if re.search(rf"│ {stage} +│", ln))
        cells = [_number(c)[0] for c in row.split("│")[2:-1]]
        assert cells[:7] == [stats[k] for k in ("chunks", "failed", "retried", "events_read", "events_selected",
                                                  "bytes_read", "bytes_written")]


def test_plots_are_written(tmp_path: Path) -> None:
    report = build_report(records(), wall_time_s=10.0, n_cores=2, workers_timeline=[(100.0, 1), (101.0, 2)])
    paths = write_report(report, tmp_path / "report")
    assert [p.name for p in paths] == ["report.json", *PLOTS]
    for path in paths[1:]:
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert path.stat().st_size > 10_000
    # an empty run still produces every file
    empty = write_report(build_report([], wall_time_s=1.0, n_cores=1), tmp_path / "empty")
    assert all(p.exists() for p in empty)


def test_histogram_plot_leaves_the_global_matplotlib_style_alone(tmp_path: Path) -> None:
    """The CMS style is applied per figure: a later figure in the same process (another
    tool's plots, a notebook's) keeps the defaults it had before."""
    import hist
    import matplotlib as mpl

    from intccms.outputs.plots import stacked_plot

    h = hist.Hist(hist.axis.StrCategory(["TTToSemiLeptonic", "data"], name="process"),
                  hist.axis.StrCategory(["nominal"], name="variation"),
                  hist.axis.Regular(10, 0.0, 1000.0, name="mtt"), storage=hist.storage.Weight())
    h.fill(process="TTToSemiLeptonic", variation="nominal", mtt=[300.0, 500.0, 500.0], weight=1.5)
    h.fill(process="data", variation="nominal", mtt=[300.0, 510.0])
    before = dict(mpl.rcParams)
    path = stacked_plot(h, tmp_path / "p.png", channel="ch", groups={}, signals=[])
    assert path.stat().st_size > 5_000
    changed = {k for k, v in mpl.rcParams.items() if str(before.get(k)) != str(v)}
    assert not changed, sorted(changed)[:10]


def test_first_chunk_extra_time_per_worker_against_later_chunks_of_its_dataset() -> None:
    """Each worker's first chunk of a stage is compared with the later chunks of the same
    dataset: a cheap dataset (collision data) elsewhere in the run must not inflate the estimate,
    a failed chunk is never a first chunk, and a worker with nothing to compare is left out."""

    def rec(worker: str, dataset: str, start: float, seconds: float, events: int = 1000, *,
            stage: str = "analysis", failed: bool = False) -> ChunkRecord:
        return ChunkRecord(dataset, stage, f"{dataset}.root", 0, events, worker=worker, events_read=events,
                           t_start=start, t_end=start + seconds, failed=failed)

    runs = [
        rec("w1", "ttbar", 0.0, 0.5, failed=True),  # failed: not w1's first chunk
        rec("w1", "ttbar", 1.0, 3.0, events=2000),  # 2000 events at 1 ms/event + 1 s of set-up
        rec("w1", "ttbar", 4.0, 1.0),
        rec("w2", "ttbar", 0.0, 1.6),  # 0.6 s of set-up
        rec("w2", "ttbar", 2.0, 1.0),
        rec("w2", "data", 3.0, 0.1),  # 0.1 ms/event: must not be the reference for ttbar
        rec("w2", "data", 4.0, 0.1),
        rec("w3", "dy", 0.0, 5.0),  # no later dy chunk anywhere: nothing to compare with
        rec("w1", "ttbar", 0.0, 0.2, events=0, stage="metadata"),
        rec("w1", "ttbar", 1.0, 0.05, events=0, stage="metadata"),
    ]
    report = build_report(runs, wall_time_s=10.0, n_cores=3)
    assert report.first_chunk_extra_s.keys() == {"w1", "w2"}
    assert report.first_chunk_extra_s["w1"] == pytest.approx({"analysis": 1.0, "metadata": 0.15})
    assert report.first_chunk_extra_s["w2"] == pytest.approx({"analysis": 0.6})
    assert report.first_chunk_extra_total_s == pytest.approx(1.75)

"""How much chunk_metrics costs relative to the chunk it measures (budget: < 2 %).

Run ``python -m intccms.metrics.overhead`` to print the numbers for this machine, or
``python -m intccms.metrics.overhead <output_dir>/report/report.json`` for the chunks of a real run
(the cost of metering one chunk, measured here, against that run's chunk times).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import awkward as ak
import numpy as np
import uproot
from prometheus_client import CollectorRegistry

from intccms.metrics.worker import chunk_metrics

#: A chunk workload returns (events_read, events_selected, bytes_read).
Workload = Callable[[], tuple[int, int, int]]


@dataclass(frozen=True, slots=True)
class OverheadResult:
    """Timings of one overhead measurement.

    Attributes:
        chunk_s: median chunk time without metrics.
        chunk_with_metrics_s: median chunk time with metrics (paired runs, noisy).
        metrics_cost_s: median cost of one chunk_metrics enter + add + exit, timed alone.
        fraction: metrics_cost_s / chunk_s, the overhead figure.
        paired_fraction: (chunk_with_metrics_s - chunk_s) / chunk_s; dominated by noise.
        repeats: chunks timed with and without metrics.
    """

    chunk_s: float
    chunk_with_metrics_s: float
    metrics_cost_s: float
    fraction: float
    paired_fraction: float
    repeats: int

    def to_dict(self) -> dict[str, Any]:
        """Plain dictionary for JSON output."""
        return asdict(self)


def write_sample_file(path: Path, n_events: int = 200_000, seed: int = 1) -> Path:
    """Write a NanoAOD-like TTree (jagged muons and jets) for the timing workload."""

    rng = np.random.default_rng(seed)
    n_mu = rng.poisson(1.5, n_events)
    n_jet = rng.poisson(4.0, n_events)
    muons = ak.unflatten(rng.exponential(30.0, int(n_mu.sum())).astype(np.float32), n_mu)
    jets = ak.unflatten(rng.exponential(50.0, int(n_jet.sum())).astype(np.float32), n_jet)
    eta = ak.unflatten(rng.normal(0.0, 1.5, int(n_jet.sum())).astype(np.float32), n_jet)
    branches = {"Muon": ak.zip({"pt": muons}), "Jet": ak.zip({"pt": jets, "eta": eta})}
    with uproot.recreate(path) as out:
        tree = out.mktree(
            "Events",
            {name: array.type for name, array in branches.items()},
            counter_name=lambda c: "n" + c,
            field_name=lambda o, i: f"{o}_{i}",
        )
        tree.extend(branches)
    return path


def root_chunk_workload(path: Path, chunk_size: int = 50_000) -> Workload:
    """A realistic chunk: read muon and jet columns of an entry range with uproot and select."""

    tree = uproot.open(path)["Events"]
    n_entries = int(tree.num_entries)
    state = {"start": 0}

    def chunk() -> tuple[int, int, int]:
        start = state["start"]
        stop = min(start + chunk_size, n_entries)
        state["start"] = 0 if stop >= n_entries else stop
        before = tree.file.source.num_requested_bytes
        arrays = tree.arrays(["Muon_pt", "Jet_pt", "Jet_eta"], entry_start=start, entry_stop=stop)
        bytes_read = tree.file.source.num_requested_bytes - before
        good_jets = (arrays.Jet_pt > 30) & (abs(arrays.Jet_eta) < 2.4)
        selected = (ak.sum(good_jets, axis=1) >= 2) & (ak.max(arrays.Muon_pt, axis=1, initial=0) > 25)
        return stop - start, int(ak.sum(selected)), int(bytes_read)

    return chunk


def time_chunk_metrics(n: int = 2000) -> float:
    """Seconds one chunk's metering costs in this process (chunk_metrics enter, add, exit).

    Run it where the chunks run (``client.run(time_chunk_metrics)`` on Dask workers); a private
    registry keeps the process's served series untouched.
    """
    return _time_metrics_alone(CollectorRegistry(), n)


def job_overhead(report: Mapping[str, Any], metrics_cost_s: float) -> dict[str, Any]:
    """The metrics' share of a real run's chunk time, from its report.json.

    Args:
        report: the run report as written to report.json (``per_stage`` with chunks and chunk_time_s).
        metrics_cost_s: cost of metering one chunk (:func:`time_chunk_metrics` on a worker).

    Returns:
        ``metrics_cost_s``, overall ``fraction`` (chunks x cost / summed chunk time) and the same
        per stage with the stage's mean chunk time.
    """
    per_stage: dict[str, dict[str, float]] = {}
    for stage, stats in report["per_stage"].items():
        chunks, seconds = int(stats["chunks"]), float(stats["chunk_time_s"])
        per_stage[stage] = {
            "chunks": chunks,
            "mean_chunk_s": seconds / chunks if chunks else 0.0,
            "fraction": chunks * metrics_cost_s / seconds if seconds > 0 else 0.0,
        }
    chunks, seconds = int(report["chunks"]), float(report["chunk_time_s"])
    return {
        "metrics_cost_s": metrics_cost_s,
        "fraction": chunks * metrics_cost_s / seconds if seconds > 0 else 0.0,
        "per_stage": per_stage,
    }


def _time_metrics_alone(registry: CollectorRegistry, n: int) -> float:
    """Median cost of chunk_metrics with an empty body (batches of 100 to beat timer noise)."""
    batches = []
    for _ in range(max(n // 100, 5)):
        start = time.perf_counter()
        for _ in range(100):
            with chunk_metrics("overhead", "analysis", registry=registry) as meter:
                meter.add(events_read=50_000, events_selected=100, bytes_read=1_000_000, bytes_written=0)
        batches.append((time.perf_counter() - start) / 100)
    return statistics.median(batches)


def measure_overhead(workload: Workload | None = None, repeats: int = 15) -> OverheadResult:
    """Time a chunk workload with and without chunk_metrics around it.

    Args:
        workload: callable doing one chunk; default reads 50 k events of a generated NanoAOD-like
            ROOT file with uproot and applies a jet/muon selection.
        repeats: chunks timed in each mode (alternating, after one warm-up).

    Returns:
        The timings and the overhead fraction.
    """
    registry = CollectorRegistry()
    with tempfile.TemporaryDirectory(prefix="intccms-overhead-") as tmp:
        if workload is None:
            workload = root_chunk_workload(write_sample_file(Path(tmp) / "sample.root"))
        workload()  # warm-up: file open, caches, awkward kernels
        plain: list[float] = []
        metered: list[float] = []
        for _ in range(repeats):
            start = time.perf_counter()
            workload()
            plain.append(time.perf_counter() - start)
            start = time.perf_counter()
            with chunk_metrics("overhead", "analysis", registry=registry) as meter:
                events, selected, nbytes = workload()
                meter.add(events_read=events, events_selected=selected, bytes_read=nbytes)
            metered.append(time.perf_counter() - start)
    cost = _time_metrics_alone(registry, 2000)
    chunk_s = statistics.median(plain)
    with_s = statistics.median(metered)
    return OverheadResult(
        chunk_s=chunk_s,
        chunk_with_metrics_s=with_s,
        metrics_cost_s=cost,
        fraction=cost / chunk_s,
        paired_fraction=(with_s - chunk_s) / chunk_s,
        repeats=repeats,
    )


def main(argv: Sequence[str] | None = None) -> None:
    """Print the overhead for this machine, or for the chunks of a run given its report.json."""

    parser = argparse.ArgumentParser(prog="python -m intccms.metrics.overhead", description=__doc__)
    parser.add_argument("report", nargs="?", type=Path, help="a run's report/report.json")
    args = parser.parse_args(argv)
    if args.report is not None:
        try:
            report = json.loads(args.report.read_text())
        except (OSError, ValueError) as err:
            msg = f"cannot read the run report {args.report}: {err} (give <output_dir>/report/report.json)"
            raise SystemExit(msg) from None
        result = job_overhead(report, time_chunk_metrics())
        print(f"metrics cost {result['metrics_cost_s'] * 1e6:.1f} us per chunk -> "
              f"{result['fraction']:.4%} of the run's chunk time")
        for stage, row in sorted(result["per_stage"].items()):
            print(f"  {stage:<9} {row['chunks']:>6d} chunks, mean {row['mean_chunk_s'] * 1e3:10.2f} ms, "
                  f"overhead {row['fraction']:.4%}")
        return
    timing = measure_overhead()
    print(
        f"chunk {timing.chunk_s * 1e3:.2f} ms, with metrics {timing.chunk_with_metrics_s * 1e3:.2f} ms, "
        f"metrics alone {timing.metrics_cost_s * 1e6:.1f} us per chunk -> overhead {timing.fraction:.4%} "
        f"(paired difference {timing.paired_fraction:+.2%}, noise-dominated)"
    )


if __name__ == "__main__":
    main()

"""Per-dataset and per-era totals and distributions from the file reports.

Reports are folded in one at a time as they arrive from the cluster, so thousands of files keep
memory flat: per-branch numbers are summed per dataset and the file's branch list is dropped.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from intccms.inspect.sample import Distribution, Estimate, extrapolate
from intccms.inspect.scan import FileReport


@dataclass
class BranchTotals:
    """One branch summed over the inspected files of a dataset."""

    name: str
    group: str
    compressed: int = 0
    uncompressed: int = 0
    baskets: int = 0
    files: int = 0
    algorithms: dict[str, int] = field(default_factory=dict)

    @property
    def ratio(self) -> float:
        """Uncompressed over compressed bytes."""
        return self.uncompressed / self.compressed if self.compressed else 1.0


@dataclass
class StageSummary:
    """What one stage reads from a dataset's inspected files, and the extrapolation.

    Attributes:
        reads_inputs: the configured workflow runs this stage on the original inputs.
        fraction: compressed bytes of the branches read over the files' size.
        decompressed_fraction: uncompressed bytes of those branches over all uncompressed bytes.
        expected_bytes: bytes requested for the inspected files (chunking included).
        events_per_byte: events over expected bytes.
        expected_bytes_total: ``expected_bytes`` extrapolated to the listing.
        read_time_s: label -> seconds to read ``expected_bytes_total`` (bandwidths, run report).
    """

    stage: str
    reads_inputs: bool
    branches: int = 0
    compressed: int = 0
    uncompressed: int = 0
    expected_bytes: int = 0
    fraction: float = 0.0
    decompressed_fraction: float = 0.0
    events_per_byte: float = 0.0
    expected_bytes_total: Estimate | None = None
    read_time_s: dict[str, float] = field(default_factory=dict)


@dataclass
class DatasetSummary:
    """Totals, distributions and extrapolations of one dataset."""

    name: str
    era: str
    is_data: bool
    n_listed: int
    n_inspected: int = 0
    n_bad: int = 0
    size_source: str = "storage"
    size: Estimate | None = None
    events: Estimate | None = None
    compressed: int = 0
    uncompressed: int = 0
    size_inspected: int = 0
    events_inspected: int = 0
    size_dist: Distribution | None = None
    events_dist: Distribution | None = None
    algorithms: dict[str, int] = field(default_factory=dict)
    groups: dict[str, tuple[int, int]] = field(default_factory=dict)
    reads: dict[str, StageSummary] = field(default_factory=dict)

    @property
    def ratio(self) -> float:
        """Uncompressed over compressed bytes of the inspected tree."""
        return self.uncompressed / self.compressed if self.compressed else 1.0


class DatasetAccumulator:
    """Folds file reports of one dataset into branch totals and per-file values."""

    def __init__(self, name: str, era: str, is_data: bool, n_listed: int) -> None:
        self.name, self.era, self.is_data, self.n_listed = name, era, is_data, n_listed
        self.files: list[FileReport] = []
        self.branches: dict[str, BranchTotals] = {}
        self.listing_sizes: dict[str, int] = {}  # every listed file's size, when Rucio gave them

    def add(self, report: FileReport) -> None:
        """Fold one report in; its branch list is summed and dropped."""
        for b in report.branches:
            tot = self.branches.get(b.name)
            if tot is None:
                tot = self.branches[b.name] = BranchTotals(b.name, b.group)
            tot.compressed += b.compressed
            tot.uncompressed += b.uncompressed
            tot.baskets += b.baskets
            tot.files += 1
            key = f"{b.algorithm}({b.level})" if b.algorithm != "none" else "none"
            tot.algorithms[key] = tot.algorithms.get(key, 0) + 1
        report.branches = []
        self.files.append(report)

    def summary(self, input_stages: Sequence[str], rates: Mapping[str, Any]) -> DatasetSummary:
        """The dataset's summary; ``rates`` maps a label to a read-time function."""
        good = [f for f in self.files if f.ok]
        out = DatasetSummary(self.name, self.era, self.is_data, self.n_listed,
                             n_inspected=len(self.files), n_bad=len(self.files) - len(good))
        sizes = [float(f.size) for f in good]
        if self.listing_sizes and len(self.listing_sizes) == self.n_listed:
            out.size_source = "rucio"
            out.size = Estimate(float(sum(self.listing_sizes.values())), 0.0, self.n_listed, self.n_listed)
            out.size_dist = Distribution.of(list(map(float, self.listing_sizes.values())))
        else:
            out.size = extrapolate(sizes, self.n_listed)
            out.size_dist = Distribution.of(sizes)
        events = [float(f.events) for f in good]
        out.events = extrapolate(events, self.n_listed)
        out.events_dist = Distribution.of(events)
        out.size_inspected = int(sum(sizes))
        out.events_inspected = int(sum(events))
        for f in good:
            out.compressed += f.compressed
            out.uncompressed += f.uncompressed
            for algo, nbytes in f.algorithms.items():
                out.algorithms[algo] = out.algorithms.get(algo, 0) + nbytes
        for b in self.branches.values():
            c, u = out.groups.get(b.group, (0, 0))
            out.groups[b.group] = (c + b.compressed, u + b.uncompressed)
        stages = sorted({s for f in good for s in f.reads})
        for stage in stages:
            st = StageSummary(stage, stage in input_stages)
            per_file = []
            for f in good:
                r = f.reads.get(stage)
                if r is None:
                    continue
                st.branches = max(st.branches, r.branches)
                st.compressed += r.compressed
                st.uncompressed += r.uncompressed
                st.expected_bytes += r.expected_bytes
                per_file.append(float(r.expected_bytes))
            st.fraction = st.compressed / out.size_inspected if out.size_inspected else 0.0
            st.decompressed_fraction = st.uncompressed / out.uncompressed if out.uncompressed else 0.0
            st.events_per_byte = out.events_inspected / st.expected_bytes if st.expected_bytes else 0.0
            st.expected_bytes_total = extrapolate(per_file, self.n_listed)
            for label, fn in rates.items():
                st.read_time_s[label] = fn(st.expected_bytes_total.total, out.events.total)
            out.reads[stage] = st
        return out


def combine(estimates: Iterable[Estimate | None]) -> Estimate:
    """Sum of independent estimates; spreads add in quadrature (``None`` if any is unknown)."""
    total, var, n_s, n_l, unknown = 0.0, 0.0, 0, 0, False
    for e in estimates:
        if e is None:
            continue
        total += e.total
        n_s += e.n_sampled
        n_l += e.n_listed
        if e.spread is None:
            unknown = True
        else:
            var += e.spread ** 2
    return Estimate(total, None if unknown else math.sqrt(var), n_s, n_l)


@dataclass
class GroupSummary:
    """Totals of several datasets (an era, or everything)."""

    name: str
    datasets: int
    n_listed: int
    n_inspected: int
    n_bad: int
    size: Estimate
    events: Estimate
    reads: dict[str, Estimate]
    read_time_s: dict[str, dict[str, float]]
    size_dist: Distribution | None = None
    events_dist: Distribution | None = None


def group_summary(name: str, summaries: Sequence[DatasetSummary], rates: Mapping[str, Any],
                  files: Sequence[FileReport] = ()) -> GroupSummary:
    """Sum datasets' estimates (an era's, or the whole selection's).

    Args:
        files: the inspected files of these datasets, for the size and event distributions.
    """
    stages = sorted({s for d in summaries for s in d.reads})
    reads = {s: combine(d.reads[s].expected_bytes_total for d in summaries if s in d.reads) for s in stages}
    events = combine(d.events for d in summaries)
    times = {s: {label: fn(reads[s].total, events.total) for label, fn in rates.items()} for s in stages}
    return GroupSummary(
        name=name, datasets=len(summaries), n_listed=sum(d.n_listed for d in summaries),
        n_inspected=sum(d.n_inspected for d in summaries), n_bad=sum(d.n_bad for d in summaries),
        size=combine(d.size for d in summaries), events=events, reads=reads, read_time_s=times,
        size_dist=Distribution.of([float(f.size) for f in files if f.ok]),
        events_dist=Distribution.of([float(f.events) for f in files if f.ok]),
    )

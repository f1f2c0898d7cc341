"""What one unit of work reports back: the measured numbers behind progress bars, summaries,
the run report and the Prometheus metrics. Kept free of Dask so it pickles cheaply."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(slots=True)
class ChunkRecord:
    """Measurements of one chunk (an entry range of one file) processed by one stage.

    Attributes:
        dataset: dataset name.
        stage: "metadata", "skim" or "analysis".
        file: URL of the input file.
        entry_start: first entry of the chunk.
        entry_stop: one past the last entry of the chunk.
        worker: Dask worker address (or "local").
        events_read: entries read from the input.
        events_selected: events that passed the stage's selection (skim: written; analysis:
            passing any channel in the nominal fill).
        bytes_read: bytes actually requested from storage for this chunk.
        bytes_written: bytes written (skims).
        t_start: wall-clock start (UNIX seconds).
        t_end: wall-clock end (UNIX seconds).
        failed: True when the chunk raised and was given up (or skipped as bad input).
        error: short, secret-free description of the failure.
        attempts: how many times the chunk was tried.
        peak_rss: resident memory of the worker process after the chunk (bytes).
    """

    dataset: str
    stage: str
    file: str
    entry_start: int
    entry_stop: int
    worker: str = "local"
    events_read: int = 0
    events_selected: int = 0
    bytes_read: int = 0
    bytes_written: int = 0
    t_start: float = 0.0
    t_end: float = 0.0
    failed: bool = False
    error: str | None = None
    attempts: int = 1
    peak_rss: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def duration(self) -> float:
        """Seconds spent on the chunk."""
        return max(self.t_end - self.t_start, 0.0)

    def to_dict(self) -> dict[str, Any]:
        """Plain dictionary for JSON output."""
        return asdict(self)

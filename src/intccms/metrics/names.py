"""Metric names and labels in one place: the worker and scheduler code, the recording rules, the
dashboards and their tests all refer to the same strings."""

from __future__ import annotations

from typing import Final

RUN_ID_ENV: Final = "INTCCMS_RUN_ID"
DEFAULT_RUN_ID: Final = "default"

#: Labels of every per-chunk series (``run`` selects a run on the dashboards).
LABELS: Final = ("run", "dataset", "stage", "worker")

# Worker-side series (``_total`` is appended by prometheus-client to counters).
EVENTS_READ: Final = "intccms_events_read"
EVENTS_SELECTED: Final = "intccms_events_selected"
BYTES_READ: Final = "intccms_bytes_read"
BYTES_WRITTEN: Final = "intccms_bytes_written"
CHUNKS_PROCESSED: Final = "intccms_chunks_processed"
CHUNKS_FAILED: Final = "intccms_chunks_failed"
CHUNK_DURATION: Final = "intccms_chunk_duration_seconds"
CHUNKS_IN_FLIGHT: Final = "intccms_chunks_in_flight"
WORKER_INFO: Final = "intccms_worker_info"

# Run-side series (job process or scheduler plugin).
RUN_CHUNKS_PLANNED: Final = "intccms_run_chunks_planned"
RUN_CHUNKS_COMPLETED: Final = "intccms_run_chunks_completed"
RUN_WORKERS_WANTED: Final = "intccms_run_workers_wanted"
RUN_WORKERS_PRESENT: Final = "intccms_run_workers_present"
RUN_LAST_PROGRESS: Final = "intccms_run_last_progress_timestamp_seconds"
RUN_INFO: Final = "intccms_run_info"

#: Chunk-duration histogram buckets (seconds): chunks last from tens of milliseconds (metadata)
#: to minutes (LZMA input analysed with systematics).
DURATION_BUCKETS: Final = (
    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0, float("inf"),
)

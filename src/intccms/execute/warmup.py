"""Build the run's corrections on every worker as it joins, beside the first stages.

Reading and compiling one era's UL correction files takes seconds of CPU per worker process
(correctionlib parsing the JSON, the input ranges, the JES source table, the b-tag table's
leaves read back for every selector). Left to the first
analysis chunk, every worker pays it at the same moment, after the metadata stage, and a short
job's scaling suffers. A worker plugin starts it in a background thread at set-up, so it
overlaps the metadata and skim stages (and a worker that joins later warms up as it joins).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Sequence
from typing import Any

from distributed import WorkerPlugin

from intccms.physics.corrections.spec import CorrectionsSpec

PLUGIN_NAME = "intccms-corrections-warmup"


class CorrectionsWarmup(WorkerPlugin):
    """Builds each :class:`CorrectionsSpec` once in the worker process, in a daemon thread."""

    name = PLUGIN_NAME

    def __init__(self, specs: Sequence[CorrectionsSpec]) -> None:
        self.specs = tuple(specs)
        self.thread: threading.Thread | None = None

    def setup(self, worker: Any = None) -> None:  # noqa: ANN401 - distributed's Worker
        """Start the build and return at once (a worker must not wait for it to join)."""
        self.thread = threading.Thread(target=self._build, name="intccms-warmup", daemon=True)
        self.thread.start()

    def _build(self) -> None:
        for spec in self.specs:
            # The driver checked every file at start-up; a failure here is the chunk's to report.
            with contextlib.suppress(Exception):
                spec.warm()

"""Worker start-up hooks that register the intccms series before the first chunk.

Two ways in, same effect:

* ``dask worker --preload intccms.metrics.preload`` (the chart's worker command): the run id comes
  from ``$INTCCMS_RUN_ID``; datasets and stages may be given as preload arguments
  ``--preload-argv --datasets=a,b --preload-argv --stages=skim,analysis``.
* ``client.register_plugin(WorkerMetricsPlugin(run_id, datasets, stages))`` from the job, which
  also reaches long-lived workers started before the run and tells them its run id.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import click

from intccms.metrics.worker import forget_run, get_run_id, prime_worker_metrics, set_run_id

try:
    from distributed.diagnostics.plugin import WorkerPlugin
except ImportError:  # pragma: no cover - distributed is a dependency
    WorkerPlugin = object  # type: ignore[assignment,misc]  # a stand-in for the class mypy knows

if TYPE_CHECKING:
    from distributed import Worker

PLUGIN_NAME = "intccms-worker-metrics"


def _split(value: str) -> list[str]:
    return [item.strip() for item in value.split(",") if item.strip()]


@click.command()
@click.option("--datasets", default="", help="Comma-separated datasets whose series start at 0.")
@click.option("--stages", default="", help="Comma-separated stages whose series start at 0.")
def dask_setup(worker: Worker, datasets: str, stages: str) -> None:
    """Called by ``dask worker --preload intccms.metrics.preload`` once the worker listens.

    A click command, because Dask hands ``--preload-argv`` only to click-configurable setups.
    """
    prime_worker_metrics(_split(datasets), _split(stages), run=get_run_id(), worker=str(worker.address))


class WorkerMetricsPlugin(WorkerPlugin):
    """Sets the run id in every worker and publishes its series at zero."""

    name = PLUGIN_NAME

    def __init__(self, run_id: str, datasets: Sequence[str] = (), stages: Sequence[str] = ()) -> None:
        self.run_id = run_id
        self.datasets = list(datasets)
        self.stages = list(stages)
        self._previous: str | None = None

    def setup(self, worker: Worker) -> None:
        """Switch the worker process to this run and prime its series."""
        previous = get_run_id()
        set_run_id(self.run_id)
        if previous != self.run_id:
            forget_run(previous, str(worker.address))
        prime_worker_metrics(self.datasets, self.stages, run=self.run_id, worker=str(worker.address))

    def teardown(self, worker: Worker) -> None:
        """Drop the run's worker-info series so finished runs stop counting as live workers."""
        forget_run(self.run_id, str(worker.address))

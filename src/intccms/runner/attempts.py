"""How many times the scheduler ran each chunk: retries after errors and after lost workers.

A task's own code cannot tell that it is a second attempt: when a worker dies (OOM kill, node
loss), the scheduler silently runs its tasks again elsewhere. The scheduler keeps the count:
``TaskState.suspicious`` grows by one for every worker that died while running the task, and
``TaskState.retries`` shrinks by one for every retry after an exception. Reading both once per
stage, while the stage's futures are still held, gives each chunk's attempts for the report.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

log = logging.getLogger(__name__)


def attempts_on_scheduler(dask_scheduler: Any, keys: list[str], retries: int) -> dict[str, int]:  # noqa: ANN401
    """Runs on the scheduler: attempts of each key that ran more than once.

    Args:
        dask_scheduler: The scheduler (injected by ``Client.run_on_scheduler``).
        keys: Task keys of the stage.
        retries: The ``retries`` the tasks were submitted with.

    Returns:
        Key -> attempts, only for keys tried more than once.
    """
    out: dict[str, int] = {}
    for key in keys:
        ts = dask_scheduler.tasks.get(key)
        if ts is None:
            continue
        extra = int(ts.suspicious) + max(retries - int(ts.retries), 0)
        if extra:
            out[key] = 1 + extra
    return out


def chunk_attempts(client: Any, keys: Iterable[str], retries: int) -> dict[str, int]:  # noqa: ANN401
    """Attempts per task key from the scheduler; empty (with a warning) when it cannot be asked.

    Args:
        client: A connected ``distributed.Client``.
        keys: Task keys whose futures are still held.
        retries: The ``retries`` the tasks were submitted with.

    Returns:
        Key -> attempts for keys tried more than once.
    """
    try:
        return dict(client.run_on_scheduler(attempts_on_scheduler, keys=list(keys), retries=retries))
    except Exception as err:  # noqa: BLE001 - the count is informative; never fail a run over it
        log.warning("could not read retry counts from the scheduler: %s", type(err).__name__)
        return {}

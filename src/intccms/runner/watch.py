"""Fail a stage whose chunks wait with no worker connected, instead of waiting forever.

Dask keeps a task whose workers are all gone in the ``no-worker`` state until a worker joins,
and says nothing. On a facility that is what a lost node, evicted pods, a crash loop or an image
that cannot be pulled look like from the driver: a progress bar that stops. The watch polls the
scheduler's worker count; once it has been zero for ``cluster.no_workers_timeout_s`` it cancels
the stage's futures, and the stage raises :class:`NoWorkersError` naming the key and what to
check. A worker that comes back in time (a restarted pod, an autoscaler's new worker) resets it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from typing import Any

from distributed import Client

log = logging.getLogger(__name__)


class NoWorkersError(RuntimeError):
    """A stage's chunks waited ``cluster.no_workers_timeout_s`` with no worker connected."""


class NoWorkersWatch:
    """Watches the worker count while a stage runs (a context manager)."""

    def __init__(self, client: Client, timeout_s: float | None, futures: Sequence[Any]) -> None:
        self.client = client
        self.timeout_s = timeout_s
        self.futures = list(futures)
        self.fired_after: float | None = None  # seconds without a worker when it cancelled
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="intccms-no-workers-watch", daemon=True)

    def __enter__(self) -> NoWorkersWatch:
        if self.timeout_s is not None and self.timeout_s > 0:
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stopped.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10.0)

    def _workers(self) -> int | None:
        try:
            return len(self.client.nthreads())
        except Exception:  # noqa: BLE001 - the scheduler not answering is for the stage to meet
            return None

    def _run(self) -> None:
        assert self.timeout_s is not None
        poll = min(2.0, max(self.timeout_s / 5, 0.05))
        since: float | None = None
        while not self._stopped.wait(poll):
            count = self._workers()
            if count is None or count > 0:
                since = None
                continue
            now = time.monotonic()
            if since is None:
                since = now
                log.warning("no worker is connected; the stage fails if none joins within %g s "
                            "(cluster.no_workers_timeout_s)", self.timeout_s)
            elif now - since >= self.timeout_s:
                self.fired_after = now - since
                self.client.cancel(self.futures)
                return

    def error(self, stage: str, left: int, total: int) -> NoWorkersError:
        """The error the stage raises once the watch has cancelled its chunks."""
        msg = (f"{stage}: no worker was connected for {self.fired_after or 0:.0f} s "
               f"(cluster.no_workers_timeout_s={self.timeout_s:g}) with {left} of {total} chunks left. "
               "The workers were lost and none came back: check their logs and events (memory "
               "limit, eviction, the image, credentials), then rerun (written skim parts and the "
               "metadata cache are reused).")
        return NoWorkersError(msg)


__all__ = ["NoWorkersError", "NoWorkersWatch"]

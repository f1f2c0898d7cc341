"""Workers over the run, sampled on the driver while the stages run.

Three numbers depend on which workers really were there, not on what the configuration asked
for: the worker count of the report's throughput plot, the report's cores (threads of the
workers, which on Kubernetes or a shared scheduler are not ``n_workers x threads_per_worker``),
and the run's workers-present gauge, which must follow workers that join and leave (adaptive
clusters, lost pods). :class:`WorkerSampler` asks the scheduler for its workers' thread counts
(``Client.nthreads``) once per interval from a daemon thread and keeps all three.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from typing import Any, Self

from intccms.config.kubernetes import AdaptConfig

__all__ = ["WorkerSampler", "wanted_workers"]

log = logging.getLogger(__name__)


def wanted_workers(cluster: Mapping[str, Any], present: int) -> int:
    """Workers the run asks for, from the ``cluster`` group.

    Args:
        cluster: the ``cluster`` configuration group.
        present: workers connected at the start (the answer where nothing is configured).

    Returns:
        ``n_workers`` for a local cluster, the autoscaler's maximum
        (``cluster.kubernetes.adapt.maximum``, its default when unset) on Kubernetes, else
        ``present``.
    """
    kind = cluster.get("kind")
    kind = str(getattr(kind, "value", kind))
    if kind == "local":
        return int(cluster.get("n_workers", present))
    if kind == "kubernetes":
        k8s = cluster.get("kubernetes")
        if k8s is not None:
            adapt: Any = k8s.get("adapt") if hasattr(k8s, "get") else getattr(k8s, "adapt", None)
            maximum = adapt.get("maximum") if hasattr(adapt, "get") else getattr(adapt, "maximum", None)
            # the backend fills a missing bound with the autoscaler's default, so do the same
            return int(AdaptConfig().maximum if maximum is None else maximum)
    return int(present)


class WorkerSampler:
    """Samples the scheduler's workers every ``interval_s`` between :meth:`start` and :meth:`stop`.

    Also a context manager whose exit stops the thread, so a failing run leaves no poller behind.

    Attributes:
        timeline: (UNIX time, workers connected) samples, for ``build_report(workers_timeline=...)``.
    """

    def __init__(self, client: Any, *, interval_s: float = 1.0) -> None:
        if interval_s <= 0:
            msg = f"WorkerSampler: interval_s must be > 0, got {interval_s}"
            raise ValueError(msg)
        self.client = client
        self.interval_s = float(interval_s)
        self.timeline: list[tuple[float, int]] = []
        self._threads: dict[str, int] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._run_metrics: Any = None
        self._wanted = 0
        self._last_present: int | None = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self, run_metrics: Any = None, wanted: int = 0) -> WorkerSampler:
        """Take the first sample now, then keep sampling in a daemon thread.

        Args:
            run_metrics: where workers wanted/present go (``RunMetricsLike``), or None.
            wanted: workers the run asks for (:func:`wanted_workers`).

        Returns:
            self.
        """
        if self._thread is not None:
            return self
        self._run_metrics, self._wanted = run_metrics, int(wanted)
        self.sample()
        self._thread = threading.Thread(target=self._loop, name="intccms-worker-sampler", daemon=True)
        self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.sample()
            except Exception as err:  # noqa: BLE001 - a closing client must not kill the run
                log.debug("worker sampler: %s", err)
                if getattr(self.client, "status", "running") in ("closing", "closed"):
                    return

    def sample(self) -> int:
        """Ask the scheduler for its workers now; record and publish the count.

        Returns:
            Workers connected.
        """
        nthreads = {str(k): int(v) for k, v in dict(self.client.nthreads()).items()}
        present = len(nthreads)
        with self._lock:
            self.timeline.append((time.time(), present))
            self._threads.update(nthreads)
            changed = present != self._last_present
            self._last_present = present
        if changed and self._run_metrics is not None:
            self._run_metrics.workers(self._wanted, present)
        return present

    def stop(self) -> None:
        """Stop sampling, with a last sample when the thread was running (idempotent)."""
        thread, self._thread = self._thread, None
        if thread is None:
            return
        self._stop.set()
        thread.join(timeout=10 * self.interval_s + 10)
        try:
            self.sample()
        except Exception as err:  # noqa: BLE001 - the client may already be gone
            log.debug("worker sampler: last sample failed: %s", err)

    @property
    def n_threads(self) -> int:
        """Threads of every worker seen while sampling (each worker address counted once)."""
        with self._lock:
            return sum(self._threads.values())

    @property
    def max_workers(self) -> int:
        """Most workers connected at one sample."""
        with self._lock:
            return max((n for _, n in self.timeline), default=0)

"""The ``kubernetes`` cluster backend: one DaskCluster per run, made by the Dask operator.

The job submits a DaskCluster (through ``KubeCluster(custom_cluster_spec=...)``) and a
DaskAutoscaler, waits a bounded time for the operator, the scheduler and the first workers,
and hands back a ``distributed.Client``. On exit (normal, error, Ctrl-C or SIGTERM from a
deleted Job) it deletes both resources; the operator's owner references let Kubernetes
remove the scheduler and worker Deployments and Services with them.

Every wait is bounded (``cluster.kubernetes.wait``), so a run against a cluster that cannot
start fails with a message naming the DaskCluster instead of hanging.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import threading
import time
import types
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

import distributed
import httpx
import kr8s
from dask_kubernetes.operator import KubeCluster
from dask_kubernetes.operator._objects import (  # the operator's kr8s kinds
    DaskAutoscaler,
    DaskCluster,
)
from dask_kubernetes.operator.kubecluster.kubecluster import CreateMode
from kr8s.asyncio.objects import Pod

from intccms.config.kubernetes import KubernetesClusterConfig
from intccms.execute.backends.k8s_specs import (
    cluster_name,
    make_autoscaler_spec,
    make_cluster_spec,
)

__all__ = ["ClusterStartupError", "KubernetesBackend"]

log = logging.getLogger(__name__)
T = TypeVar("T")
SUBMIT_MARGIN_S = 60.0  # API calls around the bounded operator wait (exists, owner, autoscaler)
CONNECT_TIMEOUT_S = 60.0  # a Client to the scheduler once its pod and Service are up
CRD_HINT = (
    "are the Dask operator's CustomResourceDefinitions installed (helm install the intccms"
    " chart, or see https://kubernetes.dask.org/en/latest/installing.html)?"
)


class ClusterStartupError(RuntimeError):
    """The DaskCluster did not become usable within its configured time."""


class _LoopThread:
    """An asyncio loop in a daemon thread, so blocking callers can run bounded coroutines."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self.loop.run_forever, name="intccms-k8s-loop", daemon=True
        )
        self._thread.start()

    def run(self, factory: Callable[[], Coroutine[Any, Any, T]], timeout: float | None) -> T:
        async def bounded() -> T:
            return await asyncio.wait_for(factory(), timeout)

        return asyncio.run_coroutine_threadsafe(bounded(), self.loop).result()

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=5)
        if not self._thread.is_alive():
            self.loop.close()


class KubernetesBackend:
    """Context manager that owns one DaskCluster for one run.

    Args:
        cfg: The ``cluster.kubernetes`` configuration.
        run_id: Identifier of the run; names the DaskCluster ``<name_prefix>-<run_id>``.

    Example:
        >>> with KubernetesBackend(cfg, run_id="r1") as client:  # doctest: +SKIP
        ...     client.submit(sum, [1, 2]).result()
    """

    def __init__(self, cfg: KubernetesClusterConfig, *, run_id: str) -> None:
        self.cfg = cfg
        self.run_id = run_id
        self.name = cluster_name(cfg, run_id)
        self.namespace = cfg.namespace
        self.cluster_spec = make_cluster_spec(cfg, run_id)
        self.autoscaler_spec = make_autoscaler_spec(cfg, run_id)
        self._loop: _LoopThread | None = None
        self._kube: KubeCluster | None = None
        self._start_task: asyncio.Future[Any] | None = None
        self._client: distributed.Client | None = None
        self._old_sigterm: Any = None
        self._owns_cluster = False  # never delete a DaskCluster this backend did not create

    # -- context manager --------------------------------------------------------------------

    def __enter__(self) -> distributed.Client | None:
        self._install_sigterm()
        try:
            self.submit()
            return self.connect()
        except BaseException:
            self.close()
            self._restore_sigterm()
            raise

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: types.TracebackType | None,
    ) -> None:
        try:
            self.close()
        finally:
            self._restore_sigterm()

    # -- steps ------------------------------------------------------------------------------

    def submit(self) -> None:
        """Create the DaskCluster and DaskAutoscaler; wait until the operator takes them.

        Raises:
            ClusterStartupError: The CRDs are missing or no operator acted in time.
        """
        self._loop = self._loop or _LoopThread()
        # The operator wait is bounded inside; the margin covers the API calls around it.
        bound = self.cfg.wait.operator_timeout_s + SUBMIT_MARGIN_S
        try:
            self._loop.run(self._submit, bound)
        except ClusterStartupError:
            raise
        except TimeoutError as err:
            msg = (
                f"creating DaskCluster {self.namespace}/{self.name} did not finish within"
                f" {bound:g} s (cluster.kubernetes.wait.operator_timeout_s + {SUBMIT_MARGIN_S:g} s);"
                " is the Kubernetes API server answering?"
            )
            raise ClusterStartupError(msg) from err
        except (httpx.HTTPError, kr8s.ServerError, OSError) as err:
            msg = (
                f"could not create DaskCluster {self.name!r} in namespace {self.namespace!r}:"
                f" {type(err).__name__}; check the kubeconfig or the job's ServiceAccount RBAC"
            )
            raise ClusterStartupError(msg) from err

    def connect(self) -> distributed.Client | None:
        """Wait (bounded) for the scheduler and the first workers; return a Client.

        Returns:
            A client connected to the run's scheduler, or None when
            ``cluster.kubernetes.wait.scheduler`` is false (the resources are only submitted,
            e.g. against an API emulator where no pod runs).

        Raises:
            ClusterStartupError: The scheduler or the workers did not come up in time.
        """
        if self._loop is None or self._start_task is None:
            msg = f"KubernetesBackend.connect() before submit() for DaskCluster {self.name!r}"
            raise RuntimeError(msg)
        wait = self.cfg.wait
        if not wait.scheduler:
            log.info(
                "submitted DaskCluster %s/%s without waiting for its scheduler"
                " (cluster.kubernetes.wait.scheduler=false)",
                self.namespace,
                self.name,
            )
            return None
        start_task = self._start_task
        try:
            self._loop.run(lambda: _await(start_task), wait.scheduler_timeout_s)
        except TimeoutError as err:
            msg = (
                f"the scheduler of DaskCluster {self.namespace}/{self.name} was not reachable"
                f" within {wait.scheduler_timeout_s:g} s (cluster.kubernetes.wait."
                f"scheduler_timeout_s); look at `kubectl -n {self.namespace} describe pods -l"
                f" dask.org/cluster-name={self.name}` for image pull or capacity problems"
            )
            raise ClusterStartupError(msg) from err
        assert self._kube is not None
        address = self._kube.scheduler_address
        try:
            self._client = distributed.Client(address, timeout=CONNECT_TIMEOUT_S)
        except (OSError, TimeoutError) as err:
            msg = (
                f"the scheduler of DaskCluster {self.namespace}/{self.name} at {address} is up but"
                f" did not accept a client within {CONNECT_TIMEOUT_S:g} s ({type(err).__name__});"
                " is its comm port reachable from the job (NetworkPolicy, Service)?"
            )
            raise ClusterStartupError(msg) from err
        if wait.workers > 0:
            try:
                self._client.wait_for_workers(wait.workers, timeout=wait.workers_timeout_s)
            except TimeoutError as err:
                msg = (
                    f"DaskCluster {self.namespace}/{self.name} has fewer than {wait.workers}"
                    f" workers after {wait.workers_timeout_s:g} s (cluster.kubernetes.wait);"
                    " check the worker pods' events and the namespace's resource quota"
                )
                raise ClusterStartupError(msg) from err
        log.info("connected to DaskCluster %s/%s", self.namespace, self.name)
        return self._client

    def close(self) -> None:
        """Close the client and delete the DaskAutoscaler and DaskCluster (bounded wait)."""
        if self._client is not None:
            with contextlib.suppress(Exception):
                self._client.close(timeout=10)
            self._client = None
        if self._loop is None:
            return
        try:
            self._loop.run(self._teardown, self.cfg.wait.teardown_timeout_s + 30)
        except TimeoutError:
            log.warning(
                "DaskCluster %s/%s still exists after %g s; delete it with `kubectl -n %s"
                " delete daskcluster %s`",
                self.namespace,
                self.name,
                self.cfg.wait.teardown_timeout_s,
                self.namespace,
                self.name,
            )
        finally:
            self._loop.stop()
            self._loop = None

    # -- coroutines run on the backend's loop ----------------------------------------------------

    async def _submit(self) -> None:
        if not self.namespace:
            self.namespace = (await kr8s.asyncio.api()).namespace
        if await (await DaskCluster(self.name, namespace=self.namespace)).exists():
            msg = (
                f"DaskCluster {self.namespace}/{self.name} already exists (another run with the"
                " same run id or cluster.kubernetes.cluster_name?); choose another name or delete"
                f" it with `kubectl -n {self.namespace} delete daskcluster {self.name}`"
            )
            raise ClusterStartupError(msg)
        await self._owner_from_pod()
        self._owns_cluster = True
        wait = self.cfg.wait
        self._kube = KubeCluster(
            custom_cluster_spec=self.cluster_spec,
            namespace=self.namespace,
            create_mode=CreateMode.CREATE_ONLY,
            shutdown_on_close=False,  # teardown below deletes, bounded and with the autoscaler
            # connect() bounds the wait for the scheduler from when the operator has acted; this
            # outer bound only backs it up, so a slow operator never cuts the scheduler's time.
            resource_timeout=int(wait.operator_timeout_s + wait.scheduler_timeout_s) + 1,
            asynchronous=True,
            quiet=True,
        )
        self._start_task = asyncio.ensure_future(self._kube._start())
        await self._wait_for_operator()
        await self._adapt()

    async def _owner_from_pod(self) -> None:
        """Make the controller of the job's own pod (its Job) the DaskCluster's owner.

        Kubernetes then deletes the cluster with the Job, also when the pod was killed before
        teardown could run. Without the pod or a controller the run goes on unowned (the
        operator's idle timeout still removes an abandoned cluster).
        """
        pod_name = self.cfg.owner_pod
        if not pod_name or self.cluster_spec["metadata"].get("ownerReferences"):
            return
        try:
            pod = await Pod.get(pod_name, namespace=self.namespace)
        except (kr8s.NotFoundError, kr8s.ServerError, httpx.HTTPError) as err:
            log.warning(
                "DaskCluster %s/%s gets no owner: cannot read pod %s (%s); an abandoned cluster"
                " is only removed by cluster.kubernetes.idle_timeout_s",
                self.namespace,
                self.name,
                pod_name,
                type(err).__name__,
            )
            return
        controllers = [
            ref for ref in pod.raw["metadata"].get("ownerReferences") or [] if ref.get("controller")
        ]
        if not controllers:
            log.warning("pod %s has no controller; DaskCluster %s gets no owner", pod_name, self.name)
            return
        ref = controllers[0]
        self.cluster_spec["metadata"]["ownerReferences"] = [
            {k: ref[k] for k in ("apiVersion", "kind", "name", "uid")}
        ]

    async def _wait_for_operator(self) -> None:
        deadline = time.monotonic() + self.cfg.wait.operator_timeout_s
        assert self._start_task is not None
        while time.monotonic() < deadline:
            if self._start_task.done() and self._start_task.exception() is not None:
                err = self._start_task.exception()
                msg = f"creating DaskCluster {self.namespace}/{self.name} failed: {err}; {CRD_HINT}"
                raise ClusterStartupError(msg) from err
            with contextlib.suppress(kr8s.NotFoundError):
                cluster = await DaskCluster.get(self.name, namespace=self.namespace)
                if cluster.raw.get("status", {}).get("phase"):
                    return
            await asyncio.sleep(0.25)
        msg = (
            f"DaskCluster {self.namespace}/{self.name} was not acted on within"
            f" {self.cfg.wait.operator_timeout_s:g} s (cluster.kubernetes.wait.operator_timeout_s);"
            " is the Dask operator running (the chart's dask-kubernetes-operator Deployment)?"
        )
        raise ClusterStartupError(msg)

    async def _adapt(self) -> None:
        """Create or update the DaskAutoscaler with the configured integer bounds."""
        autoscaler = await DaskAutoscaler(self.autoscaler_spec, namespace=self.namespace)
        try:
            await autoscaler.create()
        except httpx.HTTPStatusError as err:
            if err.response.status_code != 409:
                raise
            await autoscaler.patch({"spec": self.autoscaler_spec["spec"]})

    async def _teardown(self) -> None:
        if self._start_task is not None and not self._start_task.done():
            self._start_task.cancel()
            with contextlib.suppress(BaseException):
                await self._start_task
        if self._kube is not None:
            with contextlib.suppress(Exception):
                await self._kube._close()
            KubeCluster._instances.discard(self._kube)
            self._kube = None
        if not (self.namespace and self._owns_cluster):
            return
        self._owns_cluster = False
        for kind in (DaskAutoscaler, DaskCluster):
            with contextlib.suppress(kr8s.NotFoundError):
                obj = await kind.get(self.name, namespace=self.namespace)
                await obj.delete()
        deadline = time.monotonic() + self.cfg.wait.teardown_timeout_s
        while time.monotonic() < deadline:
            if not await (await DaskCluster(self.name, namespace=self.namespace)).exists():
                log.info("deleted DaskCluster %s/%s", self.namespace, self.name)
                return
            await asyncio.sleep(0.5)
        raise TimeoutError(self.name)

    # -- signals ------------------------------------------------------------------------------

    def _install_sigterm(self) -> None:
        """Turn SIGTERM (a deleted Job pod) into KeyboardInterrupt so teardown still runs."""
        if threading.current_thread() is not threading.main_thread():
            return

        def on_sigterm(signum: int, frame: types.FrameType | None) -> None:
            raise KeyboardInterrupt(f"signal {signum}")

        self._old_sigterm = signal.signal(signal.SIGTERM, on_sigterm)

    def _restore_sigterm(self) -> None:
        if self._old_sigterm is not None:
            signal.signal(signal.SIGTERM, self._old_sigterm)
            self._old_sigterm = None


async def _await(awaitable: Awaitable[T]) -> T:
    return await awaitable

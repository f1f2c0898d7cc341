"""The ``kubernetes`` cluster backend: one DaskCluster per run, made by the Dask operator.

The job submits a DaskCluster, its TLS Secret (``cluster.kubernetes.tls``, owned by the
DaskCluster) and a DaskAutoscaler, waits a bounded time for the operator, the scheduler and
the first workers, and hands back a ``distributed.Client`` that holds the run's certificate.
On exit (normal, error, Ctrl-C or SIGTERM from a deleted Job) it deletes all three; the
operator's owner references let Kubernetes remove the scheduler and worker Deployments and
Services with them.

The waits reuse the operator package's own helpers (scheduler pod ready, Service present,
in-cluster address or a port-forward), but not ``KubeCluster``, whose plain ``rpc`` to the
scheduler cannot speak TLS.

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
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import distributed
import httpx
import kr8s
from dask_kubernetes.exceptions import CrashLoopBackOffError
from dask_kubernetes.operator._objects import (  # the operator's kr8s kinds
    DaskAutoscaler,
    DaskCluster,
)
from dask_kubernetes.operator.kubecluster.kubecluster import wait_for_service
from dask_kubernetes.operator.networking import get_scheduler_address, wait_for_scheduler
from kr8s.asyncio.objects import Pod, Secret

from intccms.config.k8s_specs import (
    API_VERSION,
    cluster_name,
    make_autoscaler_spec,
    make_cluster_spec,
    tls_secret_name,
)
from intccms.config.kubernetes import KubernetesClusterConfig
from intccms.execute.backends.k8s_tls import ClusterTLS, make_cluster_tls, make_tls_secret

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
        # Made fresh for each backend, held in memory only; None with tls: false.
        self.tls: ClusterTLS | None = make_cluster_tls(self.name) if cfg.tls else None
        self.tls_secret = tls_secret_name(cfg, run_id) if cfg.tls else ""
        self._loop: _LoopThread | None = None
        self._client: distributed.Client | None = None
        self._old_sigterm: Any = None
        self._owns_cluster = False  # never delete a DaskCluster this backend did not create
        self._owns_secret = False
        self._submitted = False

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
        if self._loop is None or not self._submitted:
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
        try:
            address = self._loop.run(self._scheduler_address, wait.scheduler_timeout_s)
        except CrashLoopBackOffError as err:
            msg = (
                f"the scheduler of DaskCluster {self.namespace}/{self.name} keeps crashing; see"
                f" `kubectl -n {self.namespace} logs -l dask.org/cluster-name={self.name},"
                "dask.org/component=scheduler`"
            )
            raise ClusterStartupError(msg) from err
        except TimeoutError as err:
            msg = (
                f"the scheduler of DaskCluster {self.namespace}/{self.name} was not reachable"
                f" within {wait.scheduler_timeout_s:g} s (cluster.kubernetes.wait."
                f"scheduler_timeout_s); look at `kubectl -n {self.namespace} describe pods -l"
                f" dask.org/cluster-name={self.name}` for image pull or capacity problems"
            )
            raise ClusterStartupError(msg) from err
        security = self.tls.security() if self.tls is not None else None
        try:
            self._client = distributed.Client(address, timeout=CONNECT_TIMEOUT_S, security=security)
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
        cluster = await DaskCluster(self.cluster_spec, namespace=self.namespace)
        try:
            await cluster.create()
        except (kr8s.ServerError, httpx.HTTPStatusError) as err:
            response = getattr(err, "response", None)
            if response is not None and response.status_code == 404:
                msg = f"creating DaskCluster {self.namespace}/{self.name} failed (404); {CRD_HINT}"
                raise ClusterStartupError(msg) from err
            raise
        self._submitted = True
        if self.tls is not None:
            await self._create_tls_secret(str(cluster.raw["metadata"].get("uid", "")))
        await self._wait_for_operator()
        await self._adapt()

    async def _create_tls_secret(self, cluster_uid: str) -> None:
        """Create the run's TLS Secret, owned by the DaskCluster (deleted with it).

        The pods that mount it are made by the operator after this call returns in all but
        a freak case, in which the kubelet simply retries the mount.
        """
        assert self.tls is not None
        owner = ({"apiVersion": API_VERSION, "kind": "DaskCluster", "name": self.name,
                  "uid": cluster_uid} if cluster_uid else None)
        labels = {**self.cluster_spec["metadata"]["labels"], "dask.org/cluster-name": self.name}
        secret = await Secret(make_tls_secret(self.tls_secret, self.tls, labels=labels, owner=owner),
                              namespace=self.namespace)
        try:
            await secret.create()
        except (kr8s.ServerError, httpx.HTTPError) as err:
            # Only the status: the request held the key, so no part of it goes into the message.
            status = getattr(getattr(err, "response", None), "status_code", "no response")
            msg = (
                f"could not create Secret {self.namespace}/{self.tls_secret} for the TLS of"
                f" DaskCluster {self.name} (HTTP {status}); the job's Role needs create and"
                " delete on secrets (or set cluster.kubernetes.tls=false)"
            )
            raise ClusterStartupError(msg) from None
        finally:
            secret.raw.pop("data", None)  # kr8s keeps the server's copy; drop it
        self._owns_secret = True

    async def _delete_tls_secret(self) -> None:
        """Delete the run's Secret by name (no read first: the Role has no get on secrets).

        Kubernetes' garbage collector would also remove it with the DaskCluster, so a failure
        here is only worth a warning and never stops the cluster's own teardown.
        """
        if not self._owns_secret:
            return
        self._owns_secret = False
        secret = await Secret({"metadata": {"name": self.tls_secret}}, namespace=self.namespace)
        try:
            await secret.delete()
        except kr8s.NotFoundError:
            pass
        except (kr8s.ServerError, httpx.HTTPError) as err:
            log.warning("could not delete Secret %s/%s (%s); it goes with DaskCluster %s",
                        self.namespace, self.tls_secret, type(err).__name__, self.name)

    async def _scheduler_address(self) -> str:
        """The scheduler's comm address once its pod is ready and its Service exists.

        In the cluster it is the Service's name; outside it, a port-forward to localhost.
        With TLS the scheme is ``tls://``.
        """
        await wait_for_scheduler(self.name, self.namespace,
                                 timeout=self.cfg.wait.scheduler_timeout_s)
        service = f"{self.name}-scheduler"
        await wait_for_service(service, self.namespace)
        address = str(await get_scheduler_address(service, self.namespace))
        if self.tls is not None:
            address = "tls://" + address.split("://", 1)[-1]
        return address

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
        while time.monotonic() < deadline:
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
        if not self.namespace:
            return
        await self._delete_tls_secret()
        if not self._owns_cluster:
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


"""Cluster backends, picked by ``cluster.kind``: ``local``, ``kubernetes``, ``address``.

Each backend is a context manager that yields a connected :class:`distributed.Client` and tears
its cluster down on exit (also on Ctrl-C).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import dask
from distributed import Client, LocalCluster
from distributed.exceptions import WorkerStartTimeoutError

from intccms.config.kubernetes import parse_kubernetes_config
from intccms.execute.backends.kubernetes import KubernetesBackend

log = logging.getLogger(__name__)


class ClusterError(RuntimeError):
    """The Dask cluster could not be started or reached."""


@contextmanager
def local_cluster(cfg: Mapping[str, Any]) -> Iterator[Client]:
    """A :class:`distributed.LocalCluster` sized by ``cluster.n_workers`` x ``threads_per_worker``."""
    with dask.config.set({"distributed.worker.profile.enabled": bool(cfg.get("worker_profile", False))}):
        cluster = _start_local(cfg)
    try:
        with Client(cluster) as client:
            n = int(cfg["n_workers"])
            wait_for_workers(client, n, float(cfg["workers_timeout_s"]),
                             f"the local cluster's {n} worker(s)")
            yield client
    finally:
        cluster.close()


def wait_for_workers(client: Client, n: int, timeout_s: float, what: str) -> None:
    """Wait at most ``timeout_s`` for ``n`` running workers: tasks submitted to a cluster
    without workers would otherwise wait forever, with no message at all."""
    try:
        client.wait_for_workers(n, timeout=timeout_s)
    except WorkerStartTimeoutError as err:
        msg = (f"waited {timeout_s:g} s (cluster.workers_timeout_s) for {what}; "
               f"{err.available_workers} of {n} arrived")
        raise ClusterError(msg) from None


def _start_local(cfg: Mapping[str, Any]) -> LocalCluster:
    return LocalCluster(
        n_workers=int(cfg["n_workers"]),
        threads_per_worker=int(cfg["threads_per_worker"]),
        processes=bool(cfg["processes"]),
        memory_limit=cfg["memory_limit"],
        dashboard_address=cfg["dashboard_address"],
        host="127.0.0.1",
        silence_logs=logging.WARNING,
    )


@contextmanager
def address_cluster(cfg: Mapping[str, Any]) -> Iterator[Client]:
    """Connect to an existing scheduler (a coffea-casa or Dask Gateway style facility)."""
    address = cfg.get("address")
    if not address:
        msg = "cluster.kind=address needs cluster.address (e.g. tcp://scheduler:8786)"
        raise ClusterError(msg)
    try:
        client = Client(address, timeout=float(cfg["connect_timeout_s"]))
    except (OSError, TimeoutError) as err:
        msg = (
            f"cannot reach the Dask scheduler at {address} within "
            f"{cfg['connect_timeout_s']} s (cluster.connect_timeout_s, {type(err).__name__}); "
            "is it running?"
        )
        raise ClusterError(msg) from None
    try:
        wait_for_workers(client, 1, float(cfg["workers_timeout_s"]),
                         f"a worker of the Dask scheduler at {address} (is any worker connected to it?)")
        yield client
    finally:
        client.close()


@contextmanager
def start_cluster(cfg: Mapping[str, Any], *, run_id: str = "run") -> Iterator[Client]:
    """Start (or connect to) the configured cluster and yield a client."""
    kind = str(cfg["kind"].value if hasattr(cfg["kind"], "value") else cfg["kind"])
    if kind == "local":
        with local_cluster(cfg) as client:
            yield client
    elif kind == "address":
        with address_cluster(cfg) as client:
            yield client
    elif kind == "kubernetes":
        block = cfg.get("kubernetes")
        if block is None:
            msg = "cluster.kind=kubernetes needs the cluster.kubernetes block (cluster=kubernetes)"
            raise ClusterError(msg)
        k8s_cfg = parse_kubernetes_config(block)
        if not k8s_cfg.wait.scheduler:
            msg = (
                "cluster.kubernetes.wait.scheduler=false only submits the DaskCluster and gives no"
                " client; a run needs it true"
            )
            raise ClusterError(msg)
        with KubernetesBackend(k8s_cfg, run_id=run_id) as client:
            assert client is not None
            yield client
    else:
        msg = f"cluster.kind must be local, kubernetes or address, not '{kind}'"
        raise ClusterError(msg)

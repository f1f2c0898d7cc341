"""Why the Kubernetes backend does not use the Dask operator's public ``KubeCluster``, pinned to
the exact dask-kubernetes version: when this test fails after an upgrade, look again.

``KubeCluster`` (2026.3.0) connects to its scheduler with ``distributed.core.rpc(address)`` and
no ``connection_args``, so it cannot speak TLS with the per-run certificates every facility run
uses (``cluster.kubernetes.tls``). The backend therefore creates the ``DaskCluster`` itself and
waits with the operator package's own helpers, some of which it exports only from private
modules; this test names each one, so a rename fails here and not in a facility run.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import inspect

PINNED = "2026.3.0"


def test_the_pinned_operator_version_is_installed() -> None:
    assert importlib.metadata.version("dask-kubernetes") == PINNED


def test_kubecluster_connects_without_tls_so_the_backend_cannot_use_it() -> None:
    from dask_kubernetes.operator import KubeCluster

    source = inspect.getsource(KubeCluster._create_cluster) + inspect.getsource(KubeCluster._connect_cluster)
    assert "self.scheduler_comm = rpc(scheduler_address)" in source
    assert "connection_args" not in source and "security" not in source.lower()


def test_the_operator_helpers_the_backend_uses_exist_where_it_imports_them() -> None:
    used = {
        "dask_kubernetes.operator._objects": ("DaskCluster", "DaskAutoscaler"),
        "dask_kubernetes.operator.kubecluster.kubecluster": ("wait_for_service",),
        "dask_kubernetes.operator.networking": ("get_scheduler_address", "wait_for_scheduler"),
    }
    for module, names in used.items():
        loaded = importlib.import_module(module)
        for name in names:
            assert callable(getattr(loaded, name)), f"{module}.{name}"
    backend = inspect.getsource(importlib.import_module("intccms.execute.backends.kubernetes"))
    for module in used:
        assert f"from {module} import" in backend, module

"""The local backend starts workers with the configured Dask profiler setting."""

from __future__ import annotations

import dask
import pytest

from intccms.config import compose_config
from intccms.execute.backends import local_cluster


@pytest.mark.parametrize("profile", [False, True])
def test_worker_profiler_follows_the_configuration(profile: bool) -> None:
    cfg = compose_config("demo", ["cluster.n_workers=1", f"cluster.worker_profile={str(profile).lower()}"]).cluster
    with local_cluster(cfg) as client:
        seen = client.run(lambda: dask.config.get("distributed.worker.profile.enabled"))
    assert list(seen.values()) == [profile]


def _address_cfg(address: str | None, timeout: float = 1.0) -> dict:
    return {"kind": "address", "address": address, "connect_timeout_s": timeout, "workers_timeout_s": 10.0}


@pytest.mark.parametrize("address", [None, ""])
def test_address_backend_needs_an_address(address: str | None) -> None:
    from intccms.execute.backends import ClusterError, start_cluster

    with pytest.raises(ClusterError, match=r"cluster\.kind=address needs cluster\.address"), \
            start_cluster(_address_cfg(address)):
        pytest.fail("no client without an address")


def test_address_backend_fails_fast_on_an_unreachable_scheduler() -> None:
    import socket
    import time

    from intccms.execute.backends import ClusterError, start_cluster

    with socket.socket() as sock:  # a port nothing listens on once closed
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    address = f"tcp://127.0.0.1:{port}"
    started = time.monotonic()
    reach = rf"cannot reach the Dask scheduler at {address} within 1\.0 s"
    with pytest.raises(ClusterError, match=reach) as info, start_cluster(_address_cfg(address, 1.0)):
        pytest.fail("no client for an unreachable scheduler")
    assert time.monotonic() - started < 15, "the connect timeout bounds the wait"
    assert info.value.__cause__ is None and "is it running?" in str(info.value)


def test_address_backend_connects_and_closes_its_client() -> None:
    from distributed import LocalCluster

    from intccms.execute.backends import start_cluster

    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, protocol="tcp://", dashboard_address="127.0.0.1:0",
                      host="127.0.0.1") as cluster:
        with start_cluster(_address_cfg(cluster.scheduler_address, 10.0)) as client:
            assert client.scheduler.address == cluster.scheduler_address
            assert client.submit(sum, [1, 2]).result(timeout=10) == 3
        assert client.status == "closed"


def test_waiting_for_workers_is_bounded_and_says_what_it_waited_for() -> None:
    """A scheduler without workers: the job used to wait forever for its first task."""
    import time

    from distributed import LocalCluster

    from intccms.execute.backends import ClusterError, start_cluster

    with LocalCluster(n_workers=0, processes=False, protocol="tcp://", dashboard_address="127.0.0.1:0",
                      host="127.0.0.1") as cluster:
        started = time.monotonic()
        cfg = {**_address_cfg(cluster.scheduler_address, 10.0), "workers_timeout_s": 1.0}
        with pytest.raises(ClusterError) as info, start_cluster(cfg):
            pytest.fail("no client for a scheduler without workers")
    assert time.monotonic() - started < 15
    message = str(info.value)
    assert "1 s (cluster.workers_timeout_s)" in message and cluster.scheduler_address in message, message
    assert "0 of 1 arrived" in message, message

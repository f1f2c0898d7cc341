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

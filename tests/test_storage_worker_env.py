"""On ``address`` (and ``kubernetes``) clusters the job sends workers only the *names* of the
credential variables; workers started with the variables in their own environment (as from a
mounted Secret) read and write S3, and no secret value passes through the scheduler."""

from __future__ import annotations

import pickle
from pathlib import Path

import fsspec
import pytest
from distributed import Client, LocalCluster
from fixtures.demo import small_overrides
from fixtures.s3 import S3Server
from rich.console import Console

from intccms.config import compose_config
from intccms.execute.job import run_job
from intccms.storage import CredentialsPlugin
from intccms.storage.credentials import (
    CREDENTIAL_VARS,
    ENV_S3_ACCESS_KEY_ID,
    ENV_S3_ENDPOINT,
    ENV_S3_SECRET_ACCESS_KEY,
)

pytestmark = [pytest.mark.e2e, pytest.mark.s3]
BUCKET = "intccms-worker-env"


def test_address_cluster_workers_use_their_own_environment(
        demo_data: Path, s3_server: S3Server, tmp_path: Path) -> None:
    s3 = s3_server
    fsspec.filesystem("s3", key=s3.key, secret=s3.secret, skip_instance_cache=True,
                      client_kwargs={"endpoint_url": s3.endpoint}).mkdir(BUCKET)
    worker_env = {ENV_S3_ACCESS_KEY_ID: s3.key, ENV_S3_SECRET_ACCESS_KEY: s3.secret}
    with pytest.MonkeyPatch.context() as mp:
        for var in CREDENTIAL_VARS:
            mp.delenv(var, raising=False)
        # Workers get the variables from their deployment only (not inherited from the driver).
        with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, host="127.0.0.1",
                          dashboard_address="127.0.0.1:0", env=worker_env) as cluster, \
                Client(cluster) as client:
            mp.setenv(ENV_S3_ACCESS_KEY_ID, s3.key)
            mp.setenv(ENV_S3_SECRET_ACCESS_KEY, s3.secret)
            mp.setenv(ENV_S3_ENDPOINT, s3.endpoint)
            shipped: list[bytes] = []
            register = client.register_plugin

            def capture(plugin, *args, **kwargs):
                if isinstance(plugin, CredentialsPlugin):
                    shipped.append(pickle.dumps(plugin))
                return register(plugin, *args, **kwargs)

            mp.setattr(client, "register_plugin", capture)
            cfg = compose_config("demo", small_overrides(
                demo_data, tmp_path / "out", ["TTToSemiLeptonic_2017", "SingleMuon_2017"],
                "workflow=skim_and_analysis", "workflow.run_plots=false",
                "workflow.variations=[pileup_*]", "storage=s3", f"workflow.skim_dir=s3://{BUCKET}/skims",
                "cluster=address", f"cluster.address={cluster.scheduler_address}"))
            result = run_job(cfg, client=client, console=Console(quiet=True))
            on_worker = client.run(lambda: __import__("os").environ.get(ENV_S3_SECRET_ACCESS_KEY))
    assert len(shipped) == 1
    assert s3.secret.encode() not in shipped[0] and s3.key.encode() not in shipped[0]
    assert ENV_S3_SECRET_ACCESS_KEY.encode() in shipped[0]  # the name the worker checks
    assert list(on_worker.values()) == [s3.secret]
    # The workers wrote the skims to S3 and read them back for the analysis.
    skims = [r for r in result.records if r.stage == "skim"]
    analysed = [r for r in result.records if r.stage == "analysis"]
    assert skims and analysed and all(r.file.startswith(f"s3://{BUCKET}/skims/") for r in analysed)
    assert sum(r.bytes_read for r in analysed) > 0
    assert sum(r.events_read for r in analysed) == sum(r.events_selected for r in skims)

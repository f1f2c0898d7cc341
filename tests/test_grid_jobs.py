"""Whole jobs against XRootD servers that demand grid credentials (tests/fixtures/grid.py).

* GSI: the job reads its NanoAOD inputs from the GSI server, writes its skims there and
  analyses them, with a proxy from the test CA; the workers use the same proxy file.
* Tokens: the job writes its skims to the ztn + SciTokens server and reads them back with a
  token that has the right scopes; a read-only token stops the job at the first write with a
  message that names the token's scope.
* No credential content (proxy certificates and key, user key, token) appears in the console,
  logs, outputs, provenance, manifests, the task graph or the plugin the scheduler keeps.

The jobs run in this process on their own two fresh worker processes (the XRootD client keeps
authenticated connections per process); the refused job runs as the CLI, in fresh processes.
"""

from __future__ import annotations

import io
import json
import logging
import os
import pickle
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from distributed import Client
from fixtures.demo import small_overrides, two_worker_cluster
from fixtures.graphs import GraphRecorder, recorded
from fixtures.grid import GRID_VARS, GridPKI, GridServer, TokenIssuer, publish_inputs
from rich.console import Console

from intccms.config import compose_config
from intccms.execute.job import run_job
from intccms.execute.prepare import ensure_inputs
from intccms.execute.results import JobResult
from intccms.plan.run import with_generated_files
from intccms.storage import CredentialsPlugin

pytestmark = [pytest.mark.e2e, pytest.mark.xrootd]
SRC = Path(__file__).resolve().parents[1] / "src"
DATASETS = ["TTToSemiLeptonic_2017", "SingleMuon_2017"]


def overrides(data: Path, out: Path, *extra: str) -> list[str]:
    """A small skim-and-analysis job on the session's demo inputs (generated once per session)."""
    return small_overrides(data, out, DATASETS, "workflow=skim_and_analysis",
                           "workflow.variations=[pileup_*]", "storage.timeout_s=5",
                           "storage.retries=1", *extra)


@dataclass
class Env:
    data: Path
    inputs: dict[str, list[Path]]  # local generated files per dataset
    client: Client


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory, grid_pki: GridPKI, demo_data: Path) -> Iterator[Env]:
    """The session's demo inputs and two fresh worker processes for this module's jobs."""
    data = demo_data
    cfg = compose_config("demo", overrides(data, tmp_path_factory.mktemp("unused")))
    cfg = with_generated_files(cfg)
    ensure_inputs(cfg, console=Console(quiet=True))
    inputs = {name: [Path(f) for f in cfg.datasets[name].files] for name in DATASETS}
    with two_worker_cluster() as client:
        yield Env(data, inputs, client)


@pytest.fixture
def restored_environ() -> Iterator[None]:
    """The job points this process's XRootD client at its credentials: undo it afterwards."""
    saved = dict(os.environ)
    for var in GRID_VARS:
        os.environ.pop(var, None)
    yield
    os.environ.clear()
    os.environ.update(saved)


def _worker_grid_env() -> dict[str, str | None]:
    return {v: os.environ.get(v) for v in ("X509_USER_PROXY", "X509_CERT_DIR", "BEARER_TOKEN_FILE")}


def secret_markers(*files: Path, token: str | None = None) -> list[str]:
    """Pieces that only credential *contents* have: every base64 line of each PEM file (proxy
    certificates and key, the user key) and the token."""
    markers = [line for f in files for line in f.read_text().splitlines()
               if line and not line.startswith("-----") and len(line) >= 40]
    return markers + ([token] if token else [])


def run_recorded(client: Client, cfg: Any, console_text: io.StringIO) -> tuple[JobResult, list[bytes], list[bytes]]:
    """Run the job; return its result, the pickled task specs and the pickled credentials plugin."""
    shipped: list[bytes] = []
    register = client.register_plugin

    def capture(plugin: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(plugin, CredentialsPlugin):
            shipped.append(pickle.dumps(plugin))
        return register(plugin, *args, **kwargs)

    client.register_plugin(GraphRecorder())
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(client, "register_plugin", capture)
        result = run_job(cfg, client=client, console=Console(file=console_text, width=300))
    blobs = client.run_on_scheduler(recorded)
    client.unregister_scheduler_plugin(GraphRecorder.name)
    return result, blobs, shipped


def assert_nowhere(markers: list[str], result: JobResult, blobs: list[bytes], shipped: list[bytes],
                   texts: list[str], *extra_dirs: Path) -> None:
    files = [p for root in (result.output_dir, *extra_dirs) for p in root.rglob("*") if p.is_file()]
    assert any(p.name == "config.yaml" for p in files) and any(p.name == "manifest.json" for p in files)
    contents = {str(p): p.read_bytes() for p in files}
    assert blobs and shipped
    for marker in markers:
        raw = marker.encode()
        for name, content in contents.items():
            assert raw not in content, name
        assert not [b for b in blobs if raw in b]
        assert not [b for b in shipped if raw in b]
        for text in texts:
            assert marker not in text


def dataset_overrides(env: Env, server: GridServer) -> list[str]:
    """Copy the generated inputs into the server's export; overrides pointing the datasets at them."""
    over = []
    for name, files in env.inputs.items():
        urls = [server.url("inputs", name, dest.name) for dest in publish_inputs(server, name, files)]
        over.append(f"datasets.{name}.files=[{','.join(urls)}]")
    return over


def test_gsi_job_reads_inputs_and_skims_with_the_proxy(
        env: Env, gsi_server: GridServer, grid_pki: GridPKI, tmp_path: Path, restored_environ: None,
        caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]) -> None:
    proxy = grid_pki.proxy("job-gsi")
    skim_dir = gsi_server.url("skims")
    cfg = compose_config("demo", overrides(
        env.data, tmp_path / "out", *dataset_overrides(env, gsi_server), f"workflow.skim_dir={skim_dir}",
        "credentials.require=x509", f"credentials.x509_proxy={proxy}",
        f"credentials.x509_cert_dir={grid_pki.ca.certdir}"))
    caplog.set_level(logging.INFO)
    console = io.StringIO()
    result, blobs, shipped = run_recorded(env.client, cfg, console)
    assert result.histograms_path is not None and result.histograms_path.is_file()
    skims = [r for r in result.records if r.stage == "skim"]
    analysed = [r for r in result.records if r.stage == "analysis"]
    assert skims and all(r.file.startswith(f"root://{gsi_server.host}/") for r in skims)
    assert analysed and all(r.file.startswith(skim_dir) for r in analysed)
    assert sum(r.events_read for r in analysed) == sum(r.events_selected for r in skims) > 0
    parts = list((gsi_server.export / "skims").rglob("part_*"))
    assert len(parts) == len(skims)
    # The workers used the proxy file the driver checked (set by the credentials plugin).
    assert set(map(json.dumps, env.client.run(_worker_grid_env).values())) == {json.dumps(
        {"X509_USER_PROXY": str(proxy), "X509_CERT_DIR": str(grid_pki.ca.certdir), "BEARER_TOKEN_FILE": None})}
    text = console.getvalue()
    assert f"grid credentials: X509 proxy {proxy} (credentials.x509_proxy): " in " ".join(text.split())
    out, err = capfd.readouterr()
    markers = secret_markers(proxy, grid_pki.user.key)
    assert len(markers) > 20
    assert_nowhere(markers, result, blobs, shipped, [text, out, err, caplog.text],
                   gsi_server.export / "skims")


def test_token_job_writes_and_reads_skims(
        env: Env, token_server: GridServer, token_issuer: TokenIssuer, grid_pki: GridPKI,
        tmp_path: Path, restored_environ: None, caplog: pytest.LogCaptureFixture,
        capfd: pytest.CaptureFixture[str]) -> None:
    token = token_issuer.token_file(tmp_path / "bt_job", "storage.read:/ storage.modify:/")
    os.environ["BEARER_TOKEN"] = "a-stale-value-the-job-must-not-hand-to-the-client"
    skim_dir = token_server.url("skims")
    cfg = compose_config("demo", overrides(
        env.data, tmp_path / "out", f"workflow.skim_dir={skim_dir}", "credentials.require=token",
        f"credentials.bearer_token_file={token}", f"credentials.x509_cert_dir={grid_pki.ca.certdir}"))
    caplog.set_level(logging.INFO)
    console = io.StringIO()
    result, blobs, shipped = run_recorded(env.client, cfg, console)
    skims = [r for r in result.records if r.stage == "skim"]
    analysed = [r for r in result.records if r.stage == "analysis"]
    assert skims and analysed and all(r.file.startswith(skim_dir) for r in analysed)
    assert sum(r.events_read for r in analysed) == sum(r.events_selected for r in skims) > 0
    assert len(list((token_server.export / "skims").rglob("part_*"))) == len(skims)
    assert "BEARER_TOKEN" not in os.environ  # the chosen file wins over a stale value
    worker_env = list(env.client.run(_worker_grid_env).values())
    assert all(e["BEARER_TOKEN_FILE"] == str(token) for e in worker_env)
    text = " ".join(console.getvalue().split())
    assert f"grid credentials: bearer token {token} (credentials.bearer_token_file): issuer {token_issuer.url}" in text
    out, err = capfd.readouterr()
    assert_nowhere(secret_markers(token=token.read_text().strip()), result, blobs, shipped,
                   [console.getvalue(), out, err, caplog.text], token_server.export / "skims")


def test_read_only_token_stops_the_skim_naming_its_scope(
        env: Env, token_server: GridServer, token_issuer: TokenIssuer, grid_pki: GridPKI,
        tmp_path: Path) -> None:
    token = token_issuer.token_file(tmp_path / "bt_ro", "storage.read:/")
    skim_dir = token_server.url("readonly-skims")
    environ = {k: v for k, v in os.environ.items() if k not in GRID_VARS}
    environ.update(PYTHONPATH=str(SRC), BEARER_TOKEN_FILE=str(token), X509_CERT_DIR=str(grid_pki.ca.certdir))
    start = time.monotonic()
    out = subprocess.run([sys.executable, "-m", "intccms.cli", "run", "demo",
                          *overrides(env.data, tmp_path / "out", f"workflow.skim_dir={skim_dir}",
                                     "workflow.retries=0", "cluster.n_workers=1",
                                     "credentials.require=token")],
                         capture_output=True, text=True, timeout=300, env=environ, check=False)
    elapsed = time.monotonic() - start
    assert out.returncode == 1, out.stderr[-3000:]
    text = " ".join(out.stderr.split())
    assert "GridCredentialError" in text and f"refused root://{token_server.host}/" in text
    assert "has scope 'storage.read:/'" in text, text[-2000:]
    assert token.read_text().strip() not in out.stderr + out.stdout
    assert elapsed < 120

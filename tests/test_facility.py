"""The facility as real containers: the chart's Job on the operator's scheduler and workers.

Brings up (``fixtures.facility``) the S3 test server, the Dask scheduler and two workers from
the pod templates the real Dask operator made for the job's DaskCluster, and Prometheus from
the chart, on a private podman network; runs the demo job from the chart's Job spec twice
(clean, then with one worker killed mid-run) and compares with the same configuration run
locally. ``make facility-test`` runs this module; ``make facility-down`` removes leftovers.
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from fixtures.demo import SMALL_2017
from fixtures.facility import (
    BUCKET,
    DATA_MOUNT,
    N_WORKERS,
    REPO,
    FacilityHandle,
    JobRun,
    eventually,
    pm,
    prom_query,
    start_facility,
    wait_for_workers,
)
from fixtures.s3 import S3Server, start_s3_server

# The container tests carry the `facility` marker; the spec-translation tests at the end need
# no container engine and run everywhere.

DATASETS = SMALL_2017
# Small inputs (events per file) and chunks: enough chunks per stage that a worker can be
# killed mid-run, few enough that three runs fit the time budget on 2 cores.
SIZES = {"ZPrimeToTT_M2000_W200": 1500, "TTToSemiLeptonic": 4000, "WJetsToLNu_HT-600To800": 1500,
         "SingleMuon": 3000}
CHUNKSIZE = 1000
# The two processor examples (examples/, in the image), run as the chart's Job with job.config=processor.
EXAMPLES = ("dimuon", "zprime_ttbar")
PROCESSOR_CHUNKSIZE = 500


class Phases:
    """Wall time of each phase of the module (printed with ``-s``, kept for the report)."""

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.last = self.started
        self.times: dict[str, float] = {}

    def done(self, name: str) -> None:
        now = time.monotonic()
        self.times[name] = round(now - self.last, 1)
        self.last = now
        print(f"[facility] {name}: {self.times[name]} s (total {now - self.started:.0f} s)",
              file=sys.__stderr__, flush=True)


def common_overrides(data_dir: str) -> list[str]:
    """The configuration shared by the local run and the facility runs (skims on S3)."""
    over = [f"paths.generated_data={data_dir}", f"dataset_selection=[{','.join(DATASETS)}]",
            "workflow=skim_and_analysis", "storage=s3", "workflow.run_statistics=false",
            "workflow.run_plots=false", f"workflow.chunksize={CHUNKSIZE}"]
    for name in DATASETS:
        over.append(f"datasets.{name}.generate.events_per_file={SIZES[name.rsplit('_', 1)[0]]}")
    return over


def processor_overrides(data_dir: str, example: str) -> list[str]:
    """The example processor on the same generated files (NanoAOD, no skims), chunks dividing
    every file so that coffea's Runner cuts the same ones."""
    over = [f"paths.generated_data={data_dir}", f"dataset_selection=[{','.join(DATASETS)}]",
            f"processor={example}", f"workflow.chunksize={PROCESSOR_CHUNKSIZE}"]
    for name in DATASETS:
        over.append(f"datasets.{name}.generate.events_per_file={SIZES[name.rsplit('_', 1)[0]]}")
    return over


def run_overrides(run_id: str, output_root: str) -> list[str]:
    """Per-run outputs: histograms in the run's folder, skims under the run's S3 prefix."""
    return [f"output_dir={output_root}/{run_id}", f"workflow.skim_dir=s3://{BUCKET}/{run_id}/skims"]


@dataclass
class Runs:
    """Everything the checks look at, gathered while the facility was up."""

    handle: FacilityHandle
    local_dir: Path
    clean: JobRun
    fault: JobRun
    processors: dict[str, JobRun]  # example -> its run with job.config=processor
    prometheus: dict[str, Any]
    identities: dict[str, tuple[str, str]]
    inspected: dict[str, dict[str, Any]]
    rules: list[dict[str, Any]]  # Prometheus' /api/v1/rules groups after the clean run


@dataclass
class LocalReference:
    """The same configuration run on the host, started while the images build."""

    data_dir: Path
    result: Future[Path]


def _local_run(s3: S3Server, data_dir: Path, out: Path) -> Path:
    """The same configuration with a LocalCluster on the host, skims on the project's S3 test
    server (``fixtures.s3``); it also generates the demo inputs the containers then read."""
    _create_bucket(s3.endpoint, s3.key, s3.secret)
    env = {**os.environ, "INTCCMS_S3_ACCESS_KEY_ID": s3.key, "INTCCMS_S3_SECRET_ACCESS_KEY": s3.secret,
           "INTCCMS_S3_ENDPOINT": s3.endpoint, "INTCCMS_RUN_ID": "local"}
    cmd = [str(Path(sys.executable).parent / "intccms"), "run", "demo",
           *common_overrides(str(data_dir)), *run_overrides("local", str(out))]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900, check=False)
    assert proc.returncode == 0, f"local run failed:\n{proc.stderr[-3000:]}"
    # The containers read these inputs through a read-only mount as uid 1000.
    data_dir.chmod(0o755)
    for path in data_dir.rglob("*"):
        path.chmod(0o755 if path.is_dir() else 0o644)
    return out / "local"


@pytest.fixture(scope="module")
def local_reference(facility_base, tmp_path_factory: pytest.TempPathFactory  # noqa: ARG001
                    ) -> Iterator[LocalReference]:
    """Start the local reference run in the background (it overlaps the image builds)."""
    pytest.importorskip("moto.server", reason="moto[server] is not installed")
    data_dir = tmp_path_factory.mktemp("facility-data")
    out = tmp_path_factory.mktemp("facility-local")
    s3 = start_s3_server()
    pool = ThreadPoolExecutor(max_workers=1)
    try:
        yield LocalReference(data_dir, pool.submit(_local_run, s3, data_dir, out))
    finally:
        pool.shutdown(wait=True)
        s3.stop()


def _create_bucket(endpoint: str, key: str, secret: str) -> None:
    import boto3

    s3 = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id=key,
                      aws_secret_access_key=secret, region_name="eu-west-1")
    s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})


def _identity(container: str) -> tuple[str, str]:
    """(uid, NoNewPrivs) of a running container's main process."""
    uid = pm.podman("exec", container, "id", "-u").stdout.strip()
    status = pm.podman("exec", container, "cat", "/proc/1/status").stdout
    nnp = next(line.split()[1] for line in status.splitlines() if line.startswith("NoNewPrivs:"))
    return uid, nnp


def _worker_chunks(handle: FacilityHandle, worker: str, run: str) -> float:
    """Skim chunks a worker finished so far in one run (its own /metrics)."""
    import urllib.request

    ip = handle.facility.ip(worker)
    with urllib.request.urlopen(f"http://{ip}:8788/metrics", timeout=5) as resp:
        text = resp.read().decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("intccms_chunks_processed_total{") and 'stage="skim"' in line
               and f'run="{run}"' in line)


def _prometheus_totals(handle: FacilityHandle, run: str, expected: dict[str, Any]) -> dict[str, Any]:
    """Per-worker and per-stage sums from Prometheus, once they reach the report's totals."""

    def snapshot() -> dict[str, Any]:
        out: dict[str, Any] = {}
        for metric in ("events_read", "bytes_read"):
            for by in ("worker", "stage"):
                rows = prom_query(handle.prometheus_url,
                                  f'sum by ({by}) (intccms_{metric}_total{{run="{run}"}})')
                out[f"{metric}_by_{by}"] = {r["metric"].get(by, ""): int(float(r["value"][1])) for r in rows}
        return out

    def complete() -> dict[str, Any] | None:
        snap = snapshot()
        total = sum(snap["events_read_by_stage"].values())
        return snap if total >= expected["events_read"] else None

    try:
        return eventually(complete, 60, "Prometheus reaching the report's event total")
    except pytest.fail.Exception:
        return snapshot()


def _loaded_rules(handle: FacilityHandle) -> list[dict[str, Any]]:
    """Prometheus' rule groups, once every rule has been evaluated at least once."""
    import json
    import urllib.request

    def groups() -> list[dict[str, Any]]:
        with urllib.request.urlopen(f"{handle.prometheus_url}/api/v1/rules", timeout=10) as resp:
            return list(json.loads(resp.read())["data"]["groups"])

    def evaluated() -> list[dict[str, Any]] | None:
        found = groups()
        rules = [r for g in found for r in g["rules"]]
        return found if rules and all(r.get("health") != "unknown" for r in rules) else None

    try:
        return eventually(evaluated, 90, "Prometheus evaluating every rule once")
    except pytest.fail.Exception:
        return groups()


@pytest.fixture(scope="module")
def runs(local_reference: LocalReference, facility_images, dask_operator,
         facility_state: Path) -> Iterator[Runs]:
    phases = Phases()
    facility, handle = start_facility(dask_operator, facility_images, facility_state,
                                      local_reference.data_dir, common_overrides(DATA_MOUNT))
    phases.done("facility up")
    try:
        _create_bucket(handle.s3.host_url, handle.s3.key, handle.s3.secret)
        local_dir = local_reference.result.result(timeout=900)
        phases.done("waiting for the local reference run")
        wait_for_workers(handle, N_WORKERS)

        identities: dict[str, tuple[str, str]] = {}

        def while_clean(job: str) -> None:
            eventually(lambda: pm.inspect("container", job) and
                       pm.inspect("container", job)["State"]["Running"], 30, "the job container running")
            # the job first: a short job may be over by the time the other containers are asked
            identities[job] = _identity(job)
            for name in [n for n in facility.containers if n != job]:
                state = pm.inspect("container", name)
                if state and state["State"]["Running"]:
                    identities[name] = _identity(name)

        clean = handle.run_job("clean", run_overrides("clean", "/work/outputs"), during=while_clean)
        assert clean.exit_code == 0, f"clean job failed:\n{clean.logs[-4000:]}"
        phases.done("clean job")
        prometheus = _prometheus_totals(handle, "clean", clean.report())
        rules = _loaded_rules(handle)
        phases.done("prometheus totals")

        processors = {}
        for example in EXAMPLES:
            job = handle.chart_job({"job": {"config": "processor",
                                            "overrides": processor_overrides(DATA_MOUNT, example)}})
            processors[example] = handle.run_job(example, [f"output_dir=/work/outputs/{example}"], job=job)
        phases.done("processor jobs")

        victim = handle.workers[0]

        def kill_a_worker(job: str) -> str:
            eventually(lambda: _worker_chunks(handle, victim, "fault") >= 1, 300,
                       f"{victim} finishing its first skim chunk")
            facility.kill(victim)
            return victim

        fault = handle.run_job("fault", run_overrides("fault", "/work/outputs"), during=kill_a_worker)
        assert fault.exit_code == 0, f"job with a killed worker failed:\n{fault.logs[-4000:]}"
        phases.done("job with a killed worker")
        report = fault.report()
        print(f"[facility] killed {victim}: {report['retried_chunks']} retried chunks,"
              f" {report['attempts']} attempts for {report['chunks']} chunks", file=sys.__stderr__)
        inspected = {name: pm.inspect("container", name) or {} for name in facility.containers}
        yield Runs(handle, local_dir, clean, fault, processors, prometheus, identities, inspected, rules)
    finally:
        facility.down()
        phases.done("facility down")


def _hists(run_dir: Path) -> dict[str, Any]:
    paths = sorted(run_dir.glob("**/histograms.pkl"))
    assert paths, f"no histograms.pkl under {run_dir}"
    with open(paths[0], "rb") as handle:
        return pickle.load(handle)["histograms"]


def _assert_same_histograms(a: dict[str, Any], b: dict[str, Any]) -> None:
    assert a.keys() == b.keys()
    for channel in a:
        assert a[channel].keys() == b[channel].keys()
        for obs, ha in a[channel].items():
            hb = b[channel][obs]
            assert list(ha.axes["process"]) == list(hb.axes["process"])
            assert list(ha.axes["variation"]) == list(hb.axes["variation"])
            va, vb = ha.view(flow=True), hb.view(flow=True)
            # Chunks merge in plan order whatever finished first (FileGroupedAccumulator), so the
            # containers, the local run and the run with a killed worker agree bit for bit.
            np.testing.assert_array_equal(vb.value, va.value)
            np.testing.assert_array_equal(vb.variance, va.variance)


@pytest.mark.facility
@pytest.mark.slow
@pytest.mark.timeout(1500)
def test_project_image_is_under_the_size_target(facility_images) -> None:  # noqa: ANN001
    """The one image for job, scheduler and workers stays under 1.5 GB (docs/facility.md)."""
    image = facility_images["image"]
    assert 0 < image.size_bytes < 1.5e9, f"{image.ref}: {image.size_bytes / 1e9:.2f} GB"


@pytest.mark.facility
@pytest.mark.slow
@pytest.mark.timeout(1500)
def test_job_from_the_chart_runs_skim_and_analysis_on_the_facility(runs: Runs) -> None:
    report = runs.clean.report()
    assert set(report["per_stage"]) >= {"skim", "analysis"}
    assert report["failed_chunks"] == 0
    # Both containerised workers did work; the job itself computed nothing.
    assert len(report["per_worker"]) == N_WORKERS
    # Every Dask connection of the run was TLS (cluster.kubernetes.tls, the chart's default).
    assert all(w.startswith("tls://") for w in report["per_worker"])
    assert "done" in runs.clean.logs


@pytest.mark.facility
@pytest.mark.slow
@pytest.mark.timeout(1500)
@pytest.mark.parametrize("example", EXAMPLES)
# coffea's NanoAOD schema warns about cross-references the generated files do not carry.
@pytest.mark.filterwarnings("ignore:Missing cross-reference index:RuntimeWarning")
def test_processor_examples_equal_coffeas_own_runner(runs: Runs, example: str) -> None:
    """``job.config=processor`` runs the example unmodified from the image; its saved output
    equals coffea's Runner (IterativeExecutor) on the same files on the host."""
    from coffea.util import load
    from fixtures.processors import assert_same_output, coffea_reference

    from intccms.config import compose_config

    job = runs.processors[example]
    assert job.exit_code == 0, f"{example} job failed:\n{job.logs[-4000:]}"
    report = job.report()
    assert report["failed_chunks"] == 0 and set(report["per_stage"]) >= {"processor"}
    assert len(report["per_worker"]) == N_WORKERS and all(w.startswith("tls://") for w in report["per_worker"])
    got = load(str(job.output_dir / "processor" / "output.coffea"))
    cfg = compose_config("processor", [*processor_overrides(str(runs.handle.data_dir), example),
                                       f"processor.python_path=[{REPO / 'examples'}]"])
    want, chunks = coffea_reference(cfg, list(DATASETS), PROCESSOR_CHUNKSIZE)
    assert report["per_stage"]["processor"]["chunks"] == len(chunks) == sum(SIZES.values()) // PROCESSOR_CHUNKSIZE
    assert_same_output(got, want)


@pytest.mark.facility
@pytest.mark.slow
@pytest.mark.timeout(1500)
def test_skims_are_on_the_s3_server_with_the_charts_credentials(runs: Runs) -> None:
    import boto3

    handle = runs.handle
    s3 = boto3.client("s3", endpoint_url=handle.s3.host_url, aws_access_key_id=handle.s3.key,
                      aws_secret_access_key=handle.s3.secret, region_name="eu-west-1")
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix="clean/skims/").get("Contents", [])]
    assert len(keys) >= len(DATASETS), keys
    report = runs.clean.report()
    assert report["per_stage"]["skim"]["bytes_written"] > 0
    # The key pair reached the containers only through env files, never the image or the args.
    for name, data in runs.inspected.items():
        assert handle.s3.secret not in " ".join(data.get("Config", {}).get("Cmd") or []), name
    image_env = pm.podman("image", "inspect", handle.image, "--format", "{{json .Config.Env}}").stdout
    assert "INTCCMS_S3_SECRET_ACCESS_KEY" not in image_env


@pytest.mark.facility
@pytest.mark.slow
@pytest.mark.timeout(1500)
def test_histograms_equal_the_local_run_bin_for_bin(runs: Runs) -> None:
    _assert_same_histograms(_hists(runs.local_dir), _hists(runs.clean.output_dir))


@pytest.mark.facility
@pytest.mark.slow
@pytest.mark.timeout(1500)
def test_prometheus_totals_equal_the_run_report(runs: Runs) -> None:
    report = runs.clean.report()
    prom = runs.prometheus
    for metric in ("events_read", "bytes_read"):
        for stage, stats in report["per_stage"].items():
            assert prom[f"{metric}_by_stage"].get(stage, 0) == stats[metric], (metric, stage, prom)
        for worker, stats in report["per_worker"].items():
            assert prom[f"{metric}_by_worker"].get(worker, 0) == stats[metric], (metric, worker, prom)
        assert sum(prom[f"{metric}_by_stage"].values()) == report[metric]


@pytest.mark.facility
@pytest.mark.slow
@pytest.mark.timeout(1500)
def test_prometheus_loaded_and_evaluates_the_charts_rules(runs: Runs) -> None:
    """The Prometheus container runs the chart's recording and alert rules: every group of
    charts/intccms/files/prometheus is loaded, every rule evaluated without error."""
    shipped = {g["name"]: {r.get("record") or r.get("alert") for r in g["rules"]}
               for p in sorted((REPO / "charts/intccms/files/prometheus").glob("*.yaml")) if "_test" not in p.name
               for g in yaml.safe_load(p.read_text()).get("groups", [])}
    loaded = {g["name"]: {r["name"] for r in g["rules"]} for g in runs.rules}
    assert shipped and loaded == shipped
    for group in runs.rules:
        for rule in group["rules"]:
            assert rule["health"] == "ok", (group["name"], rule["name"], rule.get("lastError"))


@pytest.mark.facility
@pytest.mark.slow
@pytest.mark.timeout(1500)
def test_every_container_ran_as_the_non_root_user_without_privilege_escalation(runs: Runs) -> None:
    # Live: the main process of every running container, the job's included.
    assert any("-job-" in name for name in runs.identities)
    assert len(runs.identities) >= 3 + N_WORKERS  # s3, scheduler, workers, prometheus, job
    for name, (uid, nnp) in runs.identities.items():
        assert (uid, nnp) == ("1000", "1"), name
    # Configured: every container the facility started, the killed worker included.
    for name, data in runs.inspected.items():
        assert data["Config"]["User"].split(":")[0] == "1000", name
        assert "no-new-privileges" in " ".join(data["HostConfig"].get("SecurityOpt") or []), name
        assert "CAP_SYS_ADMIN" not in (data["HostConfig"].get("CapAdd") or []), name
    # The scheduler and the workers ran (and the runs passed) with a read-only root filesystem.
    for name in (runs.handle.scheduler, *runs.handle.workers):
        assert runs.inspected[name]["HostConfig"]["ReadonlyRootfs"] is True, name


@pytest.mark.facility
@pytest.mark.slow
@pytest.mark.timeout(1500)
def test_a_killed_worker_changes_nothing_but_the_retry_count(runs: Runs) -> None:
    assert runs.fault.killed == runs.handle.workers[0]
    state = pm.inspect("container", runs.fault.killed)
    assert state is not None and state["State"]["ExitCode"] != 0
    _assert_same_histograms(_hists(runs.clean.output_dir), _hists(runs.fault.output_dir))
    report = runs.fault.report()
    assert report["failed_chunks"] == 0
    assert report["retried_chunks"] >= 1
    assert report["attempts"] >= report["chunks"] + report["retried_chunks"]
    assert runs.clean.report()["retried_chunks"] == 0


@pytest.mark.facility
@pytest.mark.slow
@pytest.mark.timeout(1500)
def test_the_scheduler_refuses_clients_without_the_runs_certificate(runs: Runs) -> None:
    """Dask TLS with the run's own certificate: from the host, a client with the run's Secret
    connects; one showing no certificate, one of another CA and a plain tcp:// one are refused,
    and the scheduler logs the failed handshakes. The key is a 0400 file of the pod's user,
    never in a container's command line or environment."""
    import urllib.request
    import warnings

    import distributed
    from distributed.versions import VersionMismatchWarning
    from fixtures.tls import handshake_without_certificate

    handle = runs.handle
    assert handle.tls_secret and handle.scheduler_address.startswith("tls://")
    address = f"{handle.facility.ip(handle.scheduler)}:8786"
    with warnings.catch_warnings():
        # The host's Python is a newer 3.11 patch release than the image's Debian one.
        warnings.simplefilter("ignore", VersionMismatchWarning)
        with distributed.Client(f"tls://{address}", security=handle.client_security(), timeout=20) as client:
            assert client.scheduler_info()["workers"]
            assert all(w.startswith("tls://") for w in client.scheduler_info()["workers"])
        refused = handshake_without_certificate(f"tls://{address}")
        assert refused.startswith("refused"), refused
        for scheme, security in (("tls", distributed.Security.temporary()), ("tcp", None)):
            with pytest.raises((OSError, TimeoutError)):
                distributed.Client(f"{scheme}://{address}", security=security, timeout=5)
    logs = handle.facility.logs(handle.scheduler, 400)
    assert "TLS handshake failed" in logs
    # The operator, which has no certificate, reads the scheduler through Dask's HTTP API.
    with urllib.request.urlopen(f"http://{handle.facility.ip(handle.scheduler)}:8787/api/v1/check_idle",
                                timeout=10) as resp:
        assert "idle_since" in resp.read().decode()
    key = handle.tls_files["tls.key"]
    body = key.splitlines()[1]
    for name in (handle.scheduler, handle.workers[-1]):
        mode = pm.podman("exec", name, "stat", "-c", "%a %u", "/etc/dask-tls/tls.key").stdout.split()
        assert mode == ["400", "1000"], (name, mode)
    for name, data in runs.inspected.items():
        config = data.get("Config", {})
        assert body not in " ".join([*(config.get("Cmd") or []), *(config.get("Env") or [])]), name
    assert body not in runs.clean.logs and body not in runs.fault.logs


@pytest.mark.facility
@pytest.mark.slow
@pytest.mark.timeout(1500)
def test_facility_down_leaves_nothing_behind(runs: Runs) -> None:
    proc = subprocess.run([sys.executable, str(REPO / "images/facility/facility.py"), "down"],
                          capture_output=True, text=True, check=False, timeout=300)
    assert proc.returncode == 0, proc.stderr
    for kind in ("container", "pod", "network"):
        assert pm.names(kind) == [], kind


WORKER_POD = {
    "metadata": {"labels": {"dask.org/component": "worker", "dask.org/cluster-name": "c1"}},
    "spec": {
        "securityContext": {"runAsNonRoot": True, "runAsUser": 1000, "runAsGroup": 1000},
        "containers": [{
            "name": "worker", "image": "registry.example/intccms:1",
            "command": ["intccms-entrypoint"],
            "args": ["worker", "--name", "$(DASK_WORKER_NAME)", "--dashboard-address", ":8788"],
            "env": [{"name": "DASK_WORKER_NAME", "value": "c1-default-worker-abc"},
                    {"name": "INTCCMS_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}}],
            "envFrom": [{"secretRef": {"name": "storage"}}],
            "ports": [{"name": "http-dashboard", "containerPort": 8788}],
            "resources": {"requests": {"cpu": "500m", "memory": "1Gi"},
                          "limits": {"cpu": "1", "memory": "2Gi"}},
            "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
        }],
    },
}


def test_pod_spec_becomes_podman_arguments_without_secrets_on_the_command_line(tmp_path: Path) -> None:
    from fixtures.facility import fac

    ctx = fac.pods.PodContext(name="w1", namespace="ns", network="net", state_dir=tmp_path,
                              secrets={"storage": {"INTCCMS_S3_SECRET_ACCESS_KEY": "s3cr3t"}})
    args = fac.pods.run_args(WORKER_POD, ctx, image="localhost/intccms:x")
    line = " ".join(args)
    assert "s3cr3t" not in line
    env_file = Path(args[args.index("--env-file") + 1])
    assert env_file.read_text() == "INTCCMS_S3_SECRET_ACCESS_KEY=s3cr3t\n"
    assert env_file.stat().st_mode & 0o077 == 0
    assert args[args.index("--user") + 1] == "1000:1000"
    assert "no-new-privileges" in args and args[args.index("--cap-drop") + 1] == "ALL"
    assert args[args.index("--cpus") + 1] == "1"
    assert args[args.index("--memory") + 1] == str(2 * 2**30)
    assert "INTCCMS_NAMESPACE=ns" in args
    image_at = args.index("localhost/intccms:x")
    assert args[image_at + 1:] == ["worker", "--name", "c1-default-worker-abc", "--dashboard-address", ":8788"]
    assert args[args.index("--entrypoint") + 1] == '["intccms-entrypoint"]'


@pytest.mark.parametrize("role", ["scheduler", "worker"])
def test_read_only_dask_pods_write_to_their_scratch_emptydir(tmp_path: Path, role: str) -> None:
    """The backend's read-only scheduler and worker pods become read-only containers whose
    scratch emptyDir is a writable host folder owned by the pod's user."""
    from fixtures.facility import fac

    from intccms.config.k8s_specs import SCRATCH_PATH, make_cluster_spec
    from intccms.config.kubernetes import KubernetesClusterConfig

    if os.geteuid() != 0:
        pytest.skip("emptyDir folders are chowned to the pod's uid, which needs root")
    pod = make_cluster_spec(KubernetesClusterConfig(), "r1")["spec"][role]
    tls = {"intccms-r1-tls": {"tls.crt": "cert", "tls.key": "key", "ca.crt": "ca"}}
    ctx = fac.pods.PodContext(name=f"c-{role}", namespace="ns", network="net", state_dir=tmp_path,
                              secrets=tls)
    args = fac.pods.run_args(pod, ctx, image="localhost/intccms:x")
    assert "--read-only" in args and "--read-only-tmpfs=false" in args
    volumes = [args[i + 1].split(":") for i, a in enumerate(args) if a == "--volume"]
    (host,) = [Path(v[0]) for v in volumes if v[1] == SCRATCH_PATH and len(v) == 2]
    assert host.is_dir() and host.stat().st_uid == 1000 and host.stat().st_mode & 0o700 == 0o700
    # The run's TLS Secret: read-only, its key a 0400 file of the pod's user.
    (tls_dir,) = [Path(v[0]) for v in volumes if v[1] == "/etc/dask-tls"]
    key = tls_dir / "tls.key"
    assert (key.stat().st_mode & 0o777, key.stat().st_uid) == (0o400, 1000)


def test_missing_secret_and_root_user_are_refused(tmp_path: Path) -> None:
    from fixtures.facility import fac

    ctx = fac.pods.PodContext(name="w1", namespace="ns", network="net", state_dir=tmp_path)
    with pytest.raises(fac.pods.PodSpecError, match="storage"):
        fac.pods.run_args(WORKER_POD, ctx)
    root = {**WORKER_POD, "spec": {**WORKER_POD["spec"], "securityContext": {"runAsNonRoot": True, "runAsUser": 0}}}
    ctx = fac.pods.PodContext(name="w1", namespace="ns", network="net", state_dir=tmp_path,
                              secrets={"storage": {}})
    with pytest.raises(fac.pods.PodSpecError, match="runAsNonRoot"):
        fac.pods.run_args(root, ctx)


def test_file_sd_targets_pass_the_charts_pod_relabelling() -> None:
    """The chart's keep rules select the same targets from file_sd as from pod discovery."""
    import re

    import yaml
    from fixtures.facility import fac

    text = (REPO / "charts/intccms/templates/_helpers-prometheus.tpl").read_text()
    block = text[text.index("relabel_configs:"):text.index("- job_name: prometheus")]
    rules = yaml.safe_load(block)["relabel_configs"]
    job = {"job_name": "intccms-dask", "kubernetes_sd_configs": [{"role": "pod"}], "relabel_configs": rules}
    config = fac.file_sd_config({"scrape_configs": [job]}, "/t/*.json")
    assert "kubernetes_sd_configs" not in config["scrape_configs"][0]
    assert config["scrape_configs"][0]["file_sd_configs"][0]["files"] == ["/t/*.json"]
    (target,) = fac.discovery_targets(WORKER_POD, "w1", "ns", "10.0.0.5")
    assert target["targets"] == ["10.0.0.5:8788"]
    labels = target["labels"]
    for rule in rules:
        if rule.get("action") == "keep":
            value = ";".join(labels.get(src, "") for src in rule["source_labels"])
            assert re.fullmatch(rule["regex"], value), rule


def test_secret_volume_becomes_read_only_files_owned_by_the_pod_user(tmp_path: Path) -> None:
    """The chart's grid volumes: the proxy Secret as a 0400 file of the pod's user in a
    read-only mount, the CA directory's hostPath as a read-only bind mount; the proxy's
    content never on the command line."""
    from fixtures.facility import fac

    if os.geteuid() != 0:
        pytest.skip("Secret files are chowned to the pod's uid, which needs root")
    certs = tmp_path / "certs"
    certs.mkdir()
    pod = {**WORKER_POD, "spec": {**WORKER_POD["spec"], "volumes": [
        {"name": "grid-proxy", "secret": {"secretName": "proxy", "defaultMode": 0o400}},
        {"name": "grid-certificates", "hostPath": {"path": str(certs), "type": "Directory"}}]}}
    (container,) = pod["spec"]["containers"]
    pod["spec"]["containers"] = [{**container, "volumeMounts": [
        {"name": "grid-proxy", "mountPath": "/etc/grid-security/intccms-proxy", "readOnly": True},
        {"name": "grid-certificates", "mountPath": "/etc/grid-security/certificates", "readOnly": True}]}]
    ctx = fac.pods.PodContext(name="w1", namespace="ns", network="net", state_dir=tmp_path / "state",
                              secrets={"storage": {}, "proxy": {"x509up": "PROXY-CONTENT"}})
    args = fac.pods.run_args(pod, ctx, image="localhost/intccms:x")
    assert "PROXY-CONTENT" not in " ".join(args)
    volumes = dict(args[i + 1].split(":", 1)[::-1] for i, a in enumerate(args) if a == "--volume")
    folder = Path(volumes["/etc/grid-security/intccms-proxy:ro"])
    proxy = folder / "x509up"
    assert proxy.read_text() == "PROXY-CONTENT"
    assert (proxy.stat().st_mode & 0o777, proxy.stat().st_uid, proxy.stat().st_gid) == (0o400, 1000, 1000)
    assert folder.stat().st_uid == 1000 and folder.stat().st_mode & 0o007 == 0
    assert volumes["/etc/grid-security/certificates:ro"] == str(certs)
    ctx.secrets = {"storage": {}}
    with pytest.raises(fac.pods.PodSpecError, match="Secret 'proxy'"):
        fac.pods.run_args(pod, ctx)

"""The intccms facility as podman containers on one private network.

The pieces come from the same manifests a Kubernetes install uses (see docs/facility.md):
the Dask scheduler and workers from the pod templates the Dask operator creates for the job's
DaskCluster, Prometheus and the analysis Job from the chart, and an S3 test server. This
module starts and stops those containers; the test (tests/fixtures/facility.py) decides what
to run on them.

Command line (what ``make facility-down`` and ``make image`` call)::

    python images/facility/facility.py down     # remove every facility container/pod/network
    python images/facility/facility.py image    # build or reuse the project image
"""

from __future__ import annotations

import json
import os
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import pod_specs as pods
from podman_cli import LABEL, PodmanError, inspect, podman, remove_all, run_args

PROMETHEUS_BINARY = Path("/usr/bin/prometheus")
S3_PORT = 5000


class FacilityError(RuntimeError):
    """A facility container did not start or answer in time; the message names it."""


@dataclass
class S3Endpoint:
    """The S3 test server: its in-network URL, host-reachable URL and key pair."""

    url: str
    host_url: str
    key: str
    secret: str = field(repr=False)


def wait_http(url: str, timeout: float, what: str, accept: tuple[int, ...] = (200,)) -> None:
    """Poll ``url`` until it answers with a status in ``accept``."""
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=5) as resp:
                if resp.status in accept:
                    return
                last = f"HTTP {resp.status}"
        except urllib.error.HTTPError as err:
            if err.code in accept:
                return
            last = f"HTTP {err.code}"
        except (OSError, ValueError) as err:
            last = type(err).__name__
        time.sleep(0.5)
    msg = f"{what} did not answer at {url} within {timeout:.0f} s (last: {last})"
    raise FacilityError(msg)


def discovery_targets(pod: Mapping[str, Any], name: str, namespace: str, ip: str
                      ) -> list[dict[str, Any]]:
    """file_sd entries for a running pod, with the ``__meta_kubernetes_*`` labels that
    Prometheus' pod discovery would attach (one target per container port)."""
    labels = pod.get("metadata", {}).get("labels") or {}
    meta = {f"__meta_kubernetes_pod_label_{_label_name(k)}": str(v) for k, v in labels.items()}
    meta |= {"__meta_kubernetes_pod_name": name, "__meta_kubernetes_namespace": namespace,
             "__meta_kubernetes_pod_ip": ip}
    out = []
    for container in pod.get("spec", {}).get("containers") or []:
        for port in container.get("ports") or []:
            out.append({"targets": [f"{ip}:{port['containerPort']}"],
                        "labels": {**meta,
                                   "__meta_kubernetes_pod_container_name": container["name"],
                                   "__meta_kubernetes_pod_container_port_name": port.get("name", ""),
                                   "__meta_kubernetes_pod_container_port_number":
                                       str(port["containerPort"])}})
    return out


def _label_name(key: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in key)


def file_sd_config(config: Mapping[str, Any], targets_glob: str) -> dict[str, Any]:
    """A Prometheus configuration with every ``kubernetes_sd_configs`` replaced by file_sd.

    Relabelling is kept as it is: the file_sd entries carry the same meta labels.
    """
    out = json.loads(json.dumps(config))
    for job in out.get("scrape_configs") or []:
        if job.pop("kubernetes_sd_configs", None) is not None:
            job["file_sd_configs"] = [{"files": [targets_glob], "refresh_interval": "1s"}]
    return out


class Facility:
    """Containers of one facility, all labelled ``io.intccms.facility=<name>``.

    Args:
        name: Prefix of the network and container names (a DNS label).
        state_dir: Host folder for env files, mounted ConfigMaps and emptyDirs.
        namespace: The namespace the pods believe they are in.
    """

    def __init__(self, name: str, state_dir: Path, namespace: str) -> None:
        self.name = name
        self.state_dir = state_dir
        self.namespace = namespace
        self.network = f"{name}-net"
        self.hosts: dict[str, str] = {}
        self.targets: list[dict[str, Any]] = []
        self.containers: list[str] = []
        state_dir.mkdir(parents=True, exist_ok=True)
        state_dir.chmod(0o711)

    @property
    def labels(self) -> dict[str, str]:
        """Labels put on every podman object of this facility."""
        return {LABEL: self.name}

    def create_network(self) -> None:
        """The private network (bridge, with name resolution between containers)."""
        podman("network", "create", "--label", f"{LABEL}={self.name}", self.network)

    def gateway(self) -> str:
        """The host's address on the facility network: a server on the host that listens on
        all interfaces is reachable from the containers there."""
        data = inspect("network", self.network) or {}
        gateways = [s.get("gateway") for s in data.get("subnets") or [] if s.get("gateway")]
        if not gateways:
            msg = f"network {self.network} has no gateway address: {json.dumps(data)[:500]}"
            raise FacilityError(msg)
        return str(gateways[0])

    def ip(self, container: str) -> str:
        """IP address of a running container on the facility network."""
        data = inspect("container", container)
        if data is None:
            msg = f"container {container} does not exist; see `podman ps -a`"
            raise FacilityError(msg)
        networks = data.get("NetworkSettings", {}).get("Networks") or {}
        address = (networks.get(self.network) or {}).get("IPAddress")
        if not address:
            msg = f"container {container} has no address on {self.network}: {self.logs(container)}"
            raise FacilityError(msg)
        return str(address)

    def logs(self, container: str, tail: int = 40) -> str:
        """Last lines of a container's output (stdout and stderr)."""
        out = podman("logs", "--tail", str(tail), container, check=False)
        return (out.stdout + out.stderr).strip()

    def context(self, name: str, **kwargs: Any) -> pods.PodContext:  # noqa: ANN401
        """A pod context on this facility's network with its Service stand-ins."""
        return pods.PodContext(name=name, namespace=self.namespace, network=self.network,
                               state_dir=self.state_dir, hosts=dict(self.hosts),
                               labels=self.labels, **kwargs)

    def start(self, args: list[str]) -> str:
        """``podman run -d`` and remember the container for teardown."""
        name = args[args.index("--name") + 1]
        run_args(args)
        self.containers.append(name)
        return name

    def start_s3(self, image: str, timeout: float = 90) -> S3Endpoint:
        """The moto S3 server; its IAM key pair comes back through a private folder."""
        name = f"{self.name}-s3"
        creds_dir = self.state_dir / "s3"
        creds_dir.mkdir(exist_ok=True)
        os.chown(creds_dir, 1000, 1000)
        creds_dir.chmod(0o700)
        self.start(["--name", name, "--hostname", name, "--network", self.network,
                    "--label", f"{LABEL}={self.name}", "--user", "1000:1000",
                    "--security-opt", "no-new-privileges", "--cap-drop", "ALL",
                    "--volume", f"{creds_dir}:/run/s3", image])
        host_url = f"http://{self.ip(name)}:{S3_PORT}"
        creds = creds_dir / "credentials.json"
        deadline = time.monotonic() + timeout
        while not creds.exists():
            if time.monotonic() > deadline:
                msg = f"S3 test server {name} wrote no credentials in {timeout} s: {self.logs(name)}"
                raise FacilityError(msg)
            time.sleep(0.3)
        data = json.loads(creds.read_text())
        self.hosts[name] = self.ip(name)
        return S3Endpoint(f"http://{name}:{S3_PORT}", host_url, data["key"], data["secret"])

    def start_pod(self, name: str, pod: Mapping[str, Any], image: str,
                  aliases: tuple[str, ...] = (), entrypoint: list[str] | None = None,
                  **context: Any) -> str:  # noqa: ANN401
        """One pod template as a container; ``aliases`` resolve to it in later containers."""
        args = pods.run_args(pod, self.context(name, **context), image=image,
                             entrypoint=entrypoint)
        self.start(args)
        ip = self.ip(name)
        for alias in aliases:
            self.hosts[alias] = ip
        self.targets += discovery_targets(pod, name, self.namespace, ip)
        return ip

    def start_prometheus(self, deployment: Mapping[str, Any], config_maps: Mapping[str, Mapping[str, str]],
                         base_image: str) -> str:
        """The chart's Prometheus Deployment, pod discovery replaced by file_sd.

        The chart's image cannot be pulled here: the Debian base image runs the host's
        Prometheus binary (same Debian release), mounted read-only.
        """
        import yaml

        pod = deployment["spec"]["template"]
        volumes = {v["name"]: v for v in pod["spec"].get("volumes") or []}
        maps = {k: dict(v) for k, v in config_maps.items()}
        for vol in volumes.values():
            data = maps.get(vol.get("configMap", {}).get("name", ""))
            if data and "prometheus.yml" in data:
                config = file_sd_config(yaml.safe_load(data["prometheus.yml"]),
                                        "/etc/prometheus/targets/*.json")
                data["prometheus.yml"] = yaml.safe_dump(config, sort_keys=False)
        targets = self.state_dir / "prometheus-targets"
        targets.mkdir(exist_ok=True)
        targets.chmod(0o755)
        self.write_targets()
        name = f"{self.name}-prometheus"
        ip = self.start_pod(name, pod, base_image, entrypoint=["/bin/prometheus"],
                            config_maps=maps,
                            extra_mounts=[f"{targets}:/etc/prometheus/targets:ro",
                                          f"{PROMETHEUS_BINARY}:/bin/prometheus:ro"])
        wait_http(f"http://{ip}:9090/-/ready", 60, f"Prometheus ({name})")
        return ip

    def write_targets(self) -> None:
        """Rewrite the file_sd targets (Prometheus re-reads them within a second)."""
        path = self.state_dir / "prometheus-targets" / "pods.json"
        if path.parent.exists():
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps(self.targets, indent=1))
            tmp.chmod(0o644)
            tmp.rename(path)

    def kill(self, container: str) -> None:
        """SIGKILL one container, as a node failure would."""
        podman("kill", "--signal", "KILL", container)

    def wait(self, container: str, timeout: float) -> int:
        """Wait for a container to exit; returns its exit code."""
        try:
            out = podman("wait", container, timeout=timeout)
        except Exception as err:  # noqa: BLE001 - subprocess timeout or podman error
            msg = f"{container} did not finish within {timeout:.0f} s: {err}; {self.logs(container)}"
            raise FacilityError(msg) from None
        return int(out.stdout.strip().splitlines()[-1])

    def down(self) -> list[str]:
        """Remove every container, pod and network of this facility."""
        return remove_all(f"{LABEL}={self.name}")


def main(argv: list[str]) -> int:
    """``down``: remove all facility objects; ``image``: build or reuse the project image."""
    if argv[:1] == ["down"]:
        try:
            removed = remove_all()
        except (PodmanError, FileNotFoundError) as err:
            print(f"nothing to remove: {err}")
            return 0
        print(f"removed {len(removed)} facility objects" + (f": {' '.join(removed)}" if removed else ""))
        return 0
    if argv[:1] == ["image"]:
        import image_build as build

        return build.main()
    print("usage: facility.py down|image", file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))

"""Kubernetes pod specs as ``podman run`` arguments: the facility's stand-in for a kubelet.

A pod template (from a Deployment the Dask operator made, or from the chart's Job) becomes one
container per Kubernetes container, honouring what a single host can honour:

- image, command/args (with the kubelet's ``$(VAR)`` expansion), env, workingDir;
- ``env[].valueFrom.secretKeyRef`` and ``envFrom[].secretRef``: values come from the Secrets
  the caller stands in with and go through a 0600 ``--env-file``, never onto a command line;
  ``valueFrom.fieldRef`` for the pod's namespace, name and IP-less fields;
- ``resources``: limits.cpu -> ``--cpus``, limits.memory -> ``--memory``, requests.memory ->
  ``--memory-reservation``, requests.cpu -> ``--cpu-shares``;
- ``securityContext`` (pod and container): runAsUser/runAsGroup -> ``--user``,
  runAsNonRoot (refused for uid 0), allowPrivilegeEscalation=false ->
  ``--security-opt no-new-privileges``, capabilities.drop/add, readOnlyRootFilesystem ->
  ``--read-only``, seccompProfile RuntimeDefault (podman's default profile);
- volumes: configMap -> a read-only bind mount of a folder holding its keys, emptyDir -> a
  bind mount of a fresh host folder owned by the pod's user (so the test can read outputs),
  secret -> a read-only bind mount of a folder holding the Secret's keys (or its ``items``) as
  files with the volume's ``defaultMode``/item ``mode`` (Kubernetes' 0644 when unset), owned
  by the pod's runAsUser and fsGroup (runAsGroup when there is none), so a proxy mounted with
  0400 is readable by the container user alone, as the XRootD client demands; hostPath -> a
  bind mount of that host folder (read-only when the mount says so; ``type: Directory`` or
  ``File`` must already exist).

Not honoured (no Kubernetes API here): Services (the caller adds ``--add-host`` entries for
their DNS names), probes (the caller polls them), serviceAccount/RBAC, fsGroup (except as
the group of Secret files), imagePullPolicy/imagePullSecrets (images are local), nodeSelector
and tolerations.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

_VAR = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)")
_CPU = re.compile(r"^([0-9.]+)(m?)$")
_MEM = re.compile(r"^([0-9.]+)(Ki|Mi|Gi|Ti|k|K|M|G|T)?$")
_MEM_FACTORS = {None: 1, "k": 10**3, "K": 10**3, "M": 10**6, "G": 10**9, "T": 10**12,
                "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}


class PodSpecError(ValueError):
    """A pod spec field this stand-in cannot turn into a container (the message says which)."""


@dataclass
class PodContext:
    """What a kubelet would know besides the pod spec.

    Attributes:
        name: Pod (and container) name.
        namespace: The namespace, for ``fieldRef: metadata.namespace``.
        network: The podman network to join.
        secrets: Secret name -> {key: value}, standing in for Kubernetes Secrets.
        config_maps: ConfigMap name -> {key: text}.
        hosts: Extra DNS names -> IP (standing in for Services).
        state_dir: Host folder for env files, ConfigMap files and emptyDir folders.
        extra_mounts: Additional ``--volume`` specs (e.g. a read-only input folder).
        labels: Labels put on the container.
    """

    name: str
    namespace: str
    network: str
    state_dir: Path
    secrets: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    config_maps: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    hosts: Mapping[str, str] = field(default_factory=dict)
    extra_mounts: list[str] = field(default_factory=list)
    labels: Mapping[str, str] = field(default_factory=dict)


def cpus(quantity: str) -> float:
    """CPU cores in a Kubernetes CPU quantity ("250m", "2")."""
    match = _CPU.match(str(quantity).strip())
    if match is None:
        msg = f"CPU quantity {quantity!r} is not understood; write e.g. '500m' or '2'"
        raise PodSpecError(msg)
    value = float(match.group(1))
    return value / 1000 if match.group(2) else value


def memory(quantity: str) -> int:
    """Bytes in a Kubernetes memory quantity ("4Gi", "512M")."""
    match = _MEM.match(str(quantity).strip())
    if match is None:
        msg = f"memory quantity {quantity!r} is not understood; write e.g. '4Gi'"
        raise PodSpecError(msg)
    return int(float(match.group(1)) * _MEM_FACTORS[match.group(2)])


def expand(text: str, env: Mapping[str, str]) -> str:
    """The kubelet's ``$(VAR)`` expansion; unknown variables stay as written."""
    return _VAR.sub(lambda m: env.get(m.group(1), m.group(0)), text)


def _env(container: Mapping[str, Any], pod: Mapping[str, Any], ctx: PodContext
         ) -> tuple[dict[str, str], dict[str, str]]:
    """Plain and secret environment of a container, in Kubernetes' precedence order."""
    plain: dict[str, str] = {}
    secret: dict[str, str] = {}
    for source in container.get("envFrom") or []:
        ref = source.get("secretRef") or source.get("configMapRef")
        if ref is None:
            continue
        store = ctx.secrets if "secretRef" in source else ctx.config_maps
        values = store.get(ref["name"])
        if values is None:
            if ref.get("optional"):
                continue
            msg = f"pod {ctx.name}: envFrom references {ref['name']!r}, which was not provided"
            raise PodSpecError(msg)
        (secret if "secretRef" in source else plain).update(values)
    fields = {"metadata.namespace": ctx.namespace, "metadata.name": ctx.name,
              "spec.nodeName": "localhost", "spec.serviceAccountName":
              str(pod.get("spec", {}).get("serviceAccountName", "default"))}
    for item in container.get("env") or []:
        name = item["name"]
        if "value" in item:
            plain[name] = expand(str(item["value"]), {**plain})
            secret.pop(name, None)
            continue
        source = item.get("valueFrom") or {}
        if "secretKeyRef" in source:
            ref = source["secretKeyRef"]
            value = ctx.secrets.get(ref["name"], {}).get(ref["key"])
            if value is None and not ref.get("optional"):
                msg = (f"pod {ctx.name}: env {name} references Secret {ref['name']!r} key"
                       f" {ref['key']!r}, which was not provided")
                raise PodSpecError(msg)
            if value is not None:
                secret[name] = value
                plain.pop(name, None)
        elif "fieldRef" in source:
            path = source["fieldRef"]["fieldPath"]
            if path not in fields:
                msg = f"pod {ctx.name}: env {name} uses fieldRef {path!r}, not available here"
                raise PodSpecError(msg)
            plain[name] = fields[path]
        elif "configMapKeyRef" in source:
            ref = source["configMapKeyRef"]
            plain[name] = ctx.config_maps[ref["name"]][ref["key"]]
    return plain, secret


def _security(container: Mapping[str, Any], pod_spec: Mapping[str, Any], name: str) -> list[str]:
    pod_sc = pod_spec.get("securityContext") or {}
    sc = {**pod_sc, **(container.get("securityContext") or {})}
    args: list[str] = []
    uid = sc.get("runAsUser")
    gid = sc.get("runAsGroup")
    if sc.get("runAsNonRoot") and uid in (None, 0):
        msg = f"pod {name}: runAsNonRoot needs a non-zero runAsUser here (got {uid!r})"
        raise PodSpecError(msg)
    if uid is not None:
        args += ["--user", f"{uid}:{gid if gid is not None else uid}"]
    if sc.get("allowPrivilegeEscalation") is False:
        args += ["--security-opt", "no-new-privileges"]
    caps = sc.get("capabilities") or {}
    for cap in caps.get("drop") or []:
        args += ["--cap-drop", str(cap)]
    for cap in caps.get("add") or []:
        args += ["--cap-add", str(cap)]
    if sc.get("readOnlyRootFilesystem"):
        args += ["--read-only", "--read-only-tmpfs=false"]
    if sc.get("privileged"):
        msg = f"pod {name}: privileged containers are refused by the facility"
        raise PodSpecError(msg)
    return args


def _resources(container: Mapping[str, Any]) -> list[str]:
    res = container.get("resources") or {}
    limits, requests = res.get("limits") or {}, res.get("requests") or {}
    args: list[str] = []
    if "cpu" in limits:
        args += ["--cpus", f"{cpus(limits['cpu']):g}"]
    if "memory" in limits:
        args += ["--memory", str(memory(limits["memory"]))]
    if "memory" in requests:
        args += ["--memory-reservation", str(memory(requests["memory"]))]
    if "cpu" in requests:
        args += ["--cpu-shares", str(max(2, int(cpus(requests["cpu"]) * 1024)))]
    return args


def _secret_files(vol: Mapping[str, Any], host: Path, ctx: PodContext, uid: int, gid: int) -> None:
    """Write a Secret volume's files into ``host`` (emptied first) as the kubelet would."""
    src = vol["secret"]
    data = ctx.secrets.get(src["secretName"])
    if data is None:
        if not src.get("optional"):
            msg = f"pod {ctx.name}: Secret {src['secretName']!r} (volume {vol['name']!r}) was not provided"
            raise PodSpecError(msg)
        data = {}
    mode = int(src.get("defaultMode", 0o644))
    items = src.get("items") or [{"key": k, "path": k} for k in sorted(data)]
    for old in host.iterdir():
        old.unlink()
    for item in items:
        if item["key"] not in data:
            msg = f"pod {ctx.name}: Secret {src['secretName']!r} has no key {item['key']!r}"
            raise PodSpecError(msg)
        path = host / item["path"]
        if path.parent != host:
            msg = f"pod {ctx.name}: Secret item path {item['path']!r} must be a plain file name here"
            raise PodSpecError(msg)
        file_mode = int(item.get("mode", mode))
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(data[item["key"]])
        os.chown(path, uid, gid)
        path.chmod(file_mode)
    os.chown(host, uid, gid)
    host.chmod(0o550)


def _volumes(container: Mapping[str, Any], pod_spec: Mapping[str, Any], ctx: PodContext,
             uid: int, gid: int) -> list[str]:
    volumes = {v["name"]: v for v in pod_spec.get("volumes") or []}
    args: list[str] = []
    for mount in container.get("volumeMounts") or []:
        vol = volumes.get(mount["name"])
        if vol is None:
            msg = f"pod {ctx.name}: volumeMount {mount['name']!r} has no volume"
            raise PodSpecError(msg)
        host = ctx.state_dir / ctx.name / mount["name"]
        host.mkdir(parents=True, exist_ok=True)
        if "configMap" in vol:
            data = ctx.config_maps.get(vol["configMap"]["name"])
            if data is None:
                msg = f"pod {ctx.name}: ConfigMap {vol['configMap']['name']!r} was not provided"
                raise PodSpecError(msg)
            for key, text in data.items():
                (host / key).write_text(text)
                (host / key).chmod(0o644)
            host.chmod(0o755)
            source = host / mount["subPath"] if mount.get("subPath") else host
            args += ["--volume", f"{source}:{mount['mountPath']}:ro"]
        elif "emptyDir" in vol:
            os.chown(host, uid, uid)
            host.chmod(0o700)
            ro = ":ro" if mount.get("readOnly") else ""
            args += ["--volume", f"{host}:{mount['mountPath']}{ro}"]
        elif "secret" in vol:
            _secret_files(vol, host, ctx, uid, gid)
            source = host / mount["subPath"] if mount.get("subPath") else host
            # Kubernetes mounts Secret volumes read-only whatever the mount says.
            args += ["--volume", f"{source}:{mount['mountPath']}:ro"]
        elif "hostPath" in vol:
            host.rmdir()
            path = Path(vol["hostPath"]["path"])
            kind = vol["hostPath"].get("type", "")
            if (kind == "Directory" and not path.is_dir()) or (kind == "File" and not path.is_file()):
                msg = f"pod {ctx.name}: hostPath {path} of volume {mount['name']!r} is not a {kind}"
                raise PodSpecError(msg)
            source = path / mount["subPath"] if mount.get("subPath") else path
            ro = ":ro" if mount.get("readOnly") else ""
            args += ["--volume", f"{source}:{mount['mountPath']}{ro}"]
        else:
            msg = (f"pod {ctx.name}: volume {mount['name']!r} of kind"
                   f" {sorted(set(vol) - {'name'})} cannot be stood in for here")
            raise PodSpecError(msg)
    return args


def run_args(pod: Mapping[str, Any], ctx: PodContext, image: str | None = None,
             entrypoint: list[str] | None = None) -> list[str]:
    """``podman run -d`` arguments for the single container of a pod template.

    Args:
        pod: A pod template (``metadata`` and ``spec``) as in a Deployment or Job.
        ctx: What the kubelet knows besides the spec (name, network, Secrets, ...).
        image: Replace the container's image (a local build of the same image).
        entrypoint: The replacement image's entry point, for containers that rely on their
            image's own (no ``command``), e.g. Prometheus.

    Returns:
        Arguments after ``podman run -d``. Secret values sit in an env file (mode 0600)
        under ``ctx.state_dir``, never in the returned list.
    """
    spec = pod.get("spec") or {}
    containers = spec.get("containers") or []
    if len(containers) != 1:
        msg = f"pod {ctx.name}: exactly one container is supported, got {len(containers)}"
        raise PodSpecError(msg)
    if spec.get("initContainers"):
        msg = f"pod {ctx.name}: initContainers are not supported by the facility stand-in"
        raise PodSpecError(msg)
    (container,) = containers
    plain, secret = _env(container, pod, ctx)
    sc = {**(spec.get("securityContext") or {}), **(container.get("securityContext") or {})}
    uid = int(sc.get("runAsUser", 0))
    gid = int((spec.get("securityContext") or {}).get("fsGroup", sc.get("runAsGroup", uid)))
    labels = {**(pod.get("metadata", {}).get("labels") or {}), **ctx.labels}
    args = ["--name", ctx.name, "--hostname", ctx.name, "--network", ctx.network]
    for key, value in sorted(labels.items()):
        args += ["--label", f"{key}={value}"]
    for host, ip in sorted(ctx.hosts.items()):
        args += ["--add-host", f"{host}:{ip}"]
    args += _security(container, spec, ctx.name)
    args += _resources(container)
    args += _volumes(container, spec, ctx, uid, gid)
    args += [arg for mount in ctx.extra_mounts for arg in ("--volume", mount)]
    if container.get("workingDir"):
        args += ["--workdir", container["workingDir"]]
    for key, value in sorted(plain.items()):
        args += ["--env", f"{key}={value}"]
    if secret:
        env_file = ctx.state_dir / f"{ctx.name}.env"
        fd = os.open(env_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.writelines(f"{k}={v}\n" for k, v in sorted(secret.items()))
        args += ["--env-file", str(env_file)]
    # Only plain variables are expanded: a secret must never land on a command line.
    command = [expand(c, plain) for c in container.get("command") or []]
    cmd_args = [expand(a, plain) for a in container.get("args") or []]
    if command or entrypoint:
        args += ["--entrypoint", json.dumps(command or entrypoint)]
    args.append(image or container["image"])
    args += cmd_args
    return args

"""A thin, typed wrapper around the ``podman`` command line for the local facility.

Every call runs with ``CONTAINERS_CONF`` pointing at this folder's ``containers.conf``
(lowered ulimits, runc, cgroupfs, file events logger), which is what lets podman run as root
on hosts without systemd and with low hard limits.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
CONTAINERS_CONF = HERE / "containers.conf"
# Every object the facility creates carries this label, so teardown finds them all.
LABEL = "io.intccms.facility"


class PodmanError(RuntimeError):
    """A podman command failed; the message names the command and its stderr."""


def podman_env() -> dict[str, str]:
    """Environment for podman calls: ours, with the facility's containers.conf."""
    return {**os.environ, "CONTAINERS_CONF": str(CONTAINERS_CONF)}


def podman(*args: str, check: bool = True, timeout: float | None = 600,
           stdin: bytes | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``podman ARGS`` and return the finished process (text output).

    Args:
        *args: Arguments after ``podman``.
        check: Raise :class:`PodmanError` on a non-zero exit.
        timeout: Seconds before the command is killed.
        stdin: Bytes fed to the command's standard input.

    Returns:
        The completed process with ``stdout``/``stderr`` as text.
    """
    cmd = ["podman", *args]
    proc = subprocess.run(cmd, input=stdin, capture_output=True, env=podman_env(),
                          timeout=timeout, check=False)
    out = subprocess.CompletedProcess(cmd, proc.returncode, proc.stdout.decode(errors="replace"),
                                      proc.stderr.decode(errors="replace"))
    if check and out.returncode != 0:
        msg = f"`podman {' '.join(args[:3])} ...` failed ({out.returncode}): {out.stderr.strip()[-1500:]}"
        raise PodmanError(msg)
    return out


def unavailable_reason() -> str | None:
    """Why podman cannot run containers here, or None when it can.

    Runs a trivial container from the given image is left to the caller; this checks the
    binary, the runtime and that the engine answers.
    """
    for tool in ("podman", "runc"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (run tests/setup/install_podman.sh as root)"
    try:
        podman("info", "--format", "{{.Host.OCIRuntime.Name}}", timeout=60)
    except (PodmanError, subprocess.TimeoutExpired) as err:
        return f"podman cannot run here: {err}"
    return None


def image_exists(ref: str) -> bool:
    """Whether a local image ``ref`` exists."""
    return podman("image", "exists", ref, check=False).returncode == 0


def image_label(ref: str, key: str) -> str | None:
    """Value of label ``key`` of local image ``ref`` (None when absent)."""
    out = podman("image", "inspect", ref, "--format", "json", check=False)
    if out.returncode != 0:
        return None
    labels = (json.loads(out.stdout)[0].get("Labels") or {})
    return labels.get(key)


def inspect(kind: str, name: str) -> dict[str, Any] | None:
    """``podman <kind> inspect NAME`` as a dict, or None when it does not exist."""
    out = podman(kind, "inspect", name, "--format", "json", check=False)
    if out.returncode != 0:
        return None
    data = json.loads(out.stdout)
    return data[0] if isinstance(data, list) else data


def names(kind: str, label: str = LABEL) -> list[str]:
    """Names of the containers, pods or networks that carry ``label``."""
    if kind == "container":
        out = podman("ps", "-a", "--filter", f"label={label}", "--format", "{{.Names}}")
    elif kind == "pod":
        out = podman("pod", "ps", "--filter", f"label={label}", "--format", "{{.Name}}")
    elif kind == "network":
        out = podman("network", "ls", "--filter", f"label={label}", "--format", "{{.Name}}")
    else:
        msg = f"unknown podman object kind {kind!r}; use container, pod or network"
        raise ValueError(msg)
    return [line for line in out.stdout.split() if line]


def remove_all(label: str = LABEL) -> list[str]:
    """Remove every container, pod and network carrying ``label``; returns what was removed."""
    removed: list[str] = []
    containers = names("container", label)
    if containers:
        podman("rm", "-f", "-t", "2", *containers, check=False)
        removed += containers
    pods = names("pod", label)
    if pods:
        podman("pod", "rm", "-f", *pods, check=False)
        removed += pods
    networks = names("network", label)
    if networks:
        podman("network", "rm", "-f", *networks, check=False)
        removed += networks
    return removed


def run_args(args: Sequence[str]) -> str:
    """``podman run -d ARGS``; returns the container id."""
    return podman("run", "-d", *args).stdout.strip()

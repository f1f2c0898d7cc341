"""The project image: Dockerfile facts the chart and the operator specs rely on, and the
entry point's role dispatch (run with stub commands, no container engine needed)."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from intccms.config.k8s_specs import make_cluster_spec
from intccms.config.kubernetes import KubernetesClusterConfig

pytestmark = pytest.mark.k8s
REPO = Path(__file__).resolve().parents[1]
DOCKERFILE = (REPO / "images/Dockerfile").read_text()
ENTRYPOINT = REPO / "images/entrypoint.sh"


def test_dockerfile_contract() -> None:
    assert re.search(r"^ARG BASE_IMAGE=python:3\.11-slim$", DOCKERFILE, re.M)
    assert re.search(r"^USER 1000:1000$", DOCKERFILE, re.M)
    assert set(re.search(r"^EXPOSE (.+)$", DOCKERFILE, re.M).group(1).split()) == {
        "8786", "8787", "8788"
    }
    assert "INTCCMS_CONF_DIR=/opt/intccms/conf" in DOCKERFILE
    assert "COPY conf /opt/intccms/conf" in DOCKERFILE
    # conf/processor/*.yaml import the example processors from INTCCMS_EXAMPLES_DIR
    assert "INTCCMS_EXAMPLES_DIR=/opt/intccms/examples" in DOCKERFILE
    assert "COPY examples /opt/intccms/examples" in DOCKERFILE
    assert re.search(r"pip install -c /opt/intccms/src/constraints\.txt /opt/intccms/src\b", DOCKERFILE), (
        "install the pinned project with the locked closure")
    assert 'ENTRYPOINT ["intccms-entrypoint"]' in DOCKERFILE


@pytest.fixture
def stub_path(tmp_path: Path) -> dict[str, str]:
    for name in ("intccms", "dask"):
        stub = tmp_path / name
        stub.write_text(f'#!/bin/sh\necho {name} "$@"\n')
        stub.chmod(0o755)
    return {**os.environ, "PATH": f"{tmp_path}:{os.environ['PATH']}"}


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["job", "facility", "a=1"], "intccms run facility a=1"),
        (["scheduler", "--port", "8786"], "dask scheduler --port 8786"),
        (["worker", "--nthreads", "1"], "dask worker --nthreads 1"),
        (["intccms", "config", "demo"], "intccms config demo"),
    ],
)
def test_entrypoint_dispatches_roles(stub_path: dict[str, str], args: list[str], expected: str) -> None:
    out = subprocess.run(
        ["sh", str(ENTRYPOINT), *args], env=stub_path, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == expected


def test_operator_pods_use_roles_the_entrypoint_knows() -> None:
    spec = make_cluster_spec(KubernetesClusterConfig(), "r1")
    for role in ("scheduler", "worker"):
        (container,) = spec["spec"][role]["spec"]["containers"]
        assert container["command"] == ["intccms-entrypoint"]
        assert container["args"][0] == role
    assert "COPY images/entrypoint.sh /usr/local/bin/intccms-entrypoint" in DOCKERFILE

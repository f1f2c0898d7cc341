"""Pins live in pyproject.toml; pixi.toml mirrors the same packages at the same versions."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _pyproject() -> dict[str, str]:
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())
    deps = data["project"]["dependencies"] + data["project"]["optional-dependencies"]["test"]
    out = {}
    for dep in deps:
        m = re.match(r"^([A-Za-z0-9_.-]+)(\[[^\]]*\])?\s*(==\s*([^;\s]+))?", dep)
        assert m, dep
        out[m.group(1).lower()] = m.group(4) or "*"
    return out


def _pixi() -> dict[str, str]:
    data = tomllib.loads((ROOT / "pixi.toml").read_text())
    out = {}
    for table in (data["dependencies"], data["feature"]["test"]["dependencies"]):
        for name, spec in table.items():
            out[name.lower()] = spec.removeprefix("==") if isinstance(spec, str) else "*"
    return out


def test_pixi_mirrors_every_pyproject_package_and_pin() -> None:
    py, px = _pyproject(), _pixi()
    missing = sorted(set(py) - set(px))
    assert not missing, f"pixi.toml lacks {missing}"
    extra = sorted(set(px) - set(py) - {"python", "xrootd"})
    assert not extra, f"pixi.toml has packages pyproject.toml does not: {extra}"
    differ = {n: (py[n], px[n]) for n in py if py[n] != "*" and px[n] != py[n]}
    assert not differ, f"pins differ (pyproject, pixi): {differ}"


def test_runtime_dependencies_are_pinned_exactly() -> None:
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert all("==" in dep for dep in data["project"]["dependencies"])


def test_dask_awkward_pin_trap_is_avoided() -> None:
    py = _pyproject()
    assert "dask-awkward" not in py
    assert py["dask"] == py["distributed"]


def test_make_targets_run_the_same_commands_in_either_environment() -> None:
    """`make run` / `make test` expand to real commands with pixi and with the venv."""
    import shutil
    import subprocess

    if shutil.which("make") is None:
        import pytest

        pytest.skip("make is not installed")
    root = Path(__file__).resolve().parents[1]

    def dry(*args: str) -> list[str]:
        out = subprocess.run(["make", "-n", "-C", str(root), *args], capture_output=True, text=True,
                             check=True).stdout
        return [line.strip() for line in out.splitlines()]

    assert "pixi run intccms run run2_skim a=1" in dry("run", "ENV_TOOL=pixi", "CONF=run2_skim", "ARGS=a=1")
    assert any("pixi run python -m pytest -n 2 --dist loadfile --no-loadscope-reorder --durations=15 -k x;" in line
               for line in dry("test", "ENV_TOOL=pixi", "PYTEST_ARGS=-k x"))
    assert ".venv/bin/intccms run demo" in dry("run", "ENV_TOOL=venv")


def test_lock_file_is_the_runtime_closure_of_the_pins_as_installed() -> None:
    """images/constraints.txt: current (``images/lock.py --check``), holding every direct pin at
    its pyproject version, and equal to what the test environment has installed, so the image
    (installed with ``-c`` on it) runs what the tests ran."""
    import subprocess
    import sys
    from importlib.metadata import version

    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    lock_file = ROOT / "images" / "constraints.txt"
    check = subprocess.run([sys.executable, str(ROOT / "images" / "lock.py"), "--check"],
                           capture_output=True, text=True, check=False)
    assert check.returncode == 0, check.stderr
    locked = {}
    for line in lock_file.read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, ver = line.partition("==")
            locked[name] = ver
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())
    for dep in data["project"]["dependencies"]:
        req = Requirement(dep)
        assert locked[canonicalize_name(req.name)] == str(req.specifier).removeprefix("=="), req.name
    assert {n: version(n) for n in locked} == locked
    assert "-c images/constraints.txt" in (ROOT / "Makefile").read_text()

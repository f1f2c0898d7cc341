"""Static checks: ruff (the rule set in pyproject.toml) and mypy (its strictness there) find
nothing, and the import contract (layers) holds.

Both run as the environment's own executables from the repository root, so they read the
project's configuration, not a user-level one. mypy keeps its cache in ``.cache/mypy``: a
second run checks only what changed.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
LINTED = [d for d in ("src", "tests", "benchmarks", "examples") if (ROOT / d).is_dir()]


def _run(tool: str, *args: str) -> subprocess.CompletedProcess[str]:
    exe = BIN / tool
    assert exe.exists(), f"{tool} is not installed in this environment ({exe}); it is a test dependency"
    return subprocess.run([str(exe), *args], cwd=ROOT, capture_output=True, text=True, check=False,
                          timeout=600)


def test_ruff_finds_nothing() -> None:
    proc = _run("ruff", "check", "--no-cache", "--output-format", "concise", *LINTED)
    assert proc.returncode == 0, f"ruff findings:\n{proc.stdout}{proc.stderr}"


@pytest.mark.slow  # about a minute without a cache
def test_mypy_finds_nothing() -> None:
    proc = _run("mypy")  # files, strictness and cache directory: [tool.mypy] in pyproject.toml
    assert proc.returncode == 0, f"mypy findings:\n{proc.stdout}{proc.stderr}"
    assert "Success: no issues found" in proc.stdout, proc.stdout


def test_layers_hold() -> None:
    """The import contract of pyproject.toml ([tool.importlinter]): each layer imports only the
    layers below it, apart from the listed debts."""
    proc = _run("lint-imports", "--no-cache")
    assert proc.returncode == 0, f"import contract broken:\n{proc.stdout}{proc.stderr}"

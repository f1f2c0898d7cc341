"""The chart's Prometheus configuration and rules, checked and unit-tested with promtool."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

PROM_DIR = Path(__file__).resolve().parents[1] / "charts" / "intccms" / "files" / "prometheus"
PROMTOOL = shutil.which("promtool")

pytestmark = [
    pytest.mark.prometheus,
    pytest.mark.skipif(PROMTOOL is None, reason="promtool not installed (tests/setup/install_prometheus.sh)"),
]


def promtool(*args: str, cwd: Path) -> str:
    assert PROMTOOL is not None
    proc = subprocess.run([PROMTOOL, *args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, f"promtool {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout + proc.stderr


def test_config_is_valid(tmp_path: Path) -> None:
    for name in ("prometheus.yml", "rules.yaml"):
        shutil.copy(PROM_DIR / name, tmp_path / name)
    targets = tmp_path / "targets"
    targets.mkdir()
    for name in ("scheduler.json", "workers.json"):
        (targets / name).write_text('[{"targets": ["127.0.0.1:8787"]}]')
    out = promtool("check", "config", "prometheus.yml", cwd=tmp_path)
    assert "1 rule files found" in out
    assert "WARNING" not in out


def test_rules_are_valid() -> None:
    out = promtool("check", "rules", "rules.yaml", cwd=PROM_DIR)
    assert "SUCCESS" in out


def test_rules_unit_tests_pass() -> None:
    promtool("test", "rules", "rules_test.yaml", cwd=PROM_DIR)


@pytest.mark.parametrize(("expected", "wrong", "rule"), [
    ("value: 300\n", "value: 301\n", "intccms:events_read:rate1m"),
    ("value: 80\n", "value: 81\n", "intccms_stage:events_read:rate1m"),
    ("value: 9\n", "value: 10\n", "intccms:events_selected:rate1m"),
    ("value: 0.06\n", "value: 0.07\n", "intccms:bytes_written:gbps1m"),
    ("value: 3.75\n", "value: 3.5\n", "intccms_stage:chunk_duration_seconds:p95_5m"),
])
def test_rules_unit_tests_catch_a_wrong_expectation(tmp_path: Path, expected: str, wrong: str, rule: str) -> None:
    """The rule tests are not vacuous: a changed expected value must make promtool fail."""
    shutil.copy(PROM_DIR / "rules.yaml", tmp_path / "rules.yaml")
    text = (PROM_DIR / "rules_test.yaml").read_text()
    assert text.count(expected) == 1, expected
    (tmp_path / "rules_test.yaml").write_text(text.replace(expected, wrong))
    assert PROMTOOL is not None
    proc = subprocess.run(
        [PROMTOOL, "test", "rules", "rules_test.yaml"], cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False
    )
    assert proc.returncode != 0
    assert rule in proc.stdout + proc.stderr

"""The default `make run` path exactly as a physicist runs it: `intccms run demo`, no overrides
but where to write, on freshly generated inputs, ending with a limit."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

# The README quotes about 90 s for a first run on two quiet cores (generation included) and
# 35 s for a rerun; the test prints both times (a timing is not asserted on a shared machine).


def _run(out: Path, data: Path) -> tuple[subprocess.CompletedProcess[str], float]:
    env = dict(os.environ, INTCCMS_DATA_DIR=str(data))
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "intccms.cli", "run", "demo", f"output_dir={out}"],
                          capture_output=True, text=True, env=env, timeout=900, check=False)
    return proc, time.monotonic() - started


@pytest.mark.timeout(1200)
def test_default_demo_ends_with_a_limit_and_reruns_fast(tmp_path: Path) -> None:
    out, data = tmp_path / "demo", tmp_path / "generated"
    proc, first = _run(out, data)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads((out / "statistics" / "results.json").read_text())
    limits = results["limits"]
    assert limits["observed"] > 0 and limits["expected"] > 0
    band = limits["expected_band"]
    assert [band[k] for k in ("-2", "-1", "0", "+1", "+2")] == sorted(band.values())
    assert (out / "histograms" / "histograms.pkl").is_file() and (out / "histograms" / "histograms.root").is_file()
    assert list((out / "plots").glob("*.png")) and (out / "report" / "report.json").is_file()
    from intccms.outputs.report_plots import PLOTS

    assert all((out / "report" / name).is_file() for name in PLOTS)  # throughput plots
    generated = {p: p.stat().st_mtime_ns for p in data.rglob("*.root")}
    assert len(generated) >= 10  # every process of the reference analysis, two eras, and data
    again, rerun = _run(out, data)
    assert again.returncode == 0, again.stderr[-3000:]
    assert json.loads((out / "statistics" / "results.json").read_text())["limits"]["observed"] == pytest.approx(
        limits["observed"], rel=1e-9)
    # The rerun reuses the generated inputs: not one file is written again.
    assert {p: p.stat().st_mtime_ns for p in data.rglob("*.root")} == generated
    print(f"[default run] first {first:.0f} s, rerun {rerun:.0f} s", file=sys.__stderr__)

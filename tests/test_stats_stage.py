"""The statistics stage in the job: start-up checks, the compatibility of saved
histograms with the configuration, and what a run prints (no cluster, no analysis run)."""

from __future__ import annotations

import dataclasses
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf

from intccms.config import ConfigError, compose_config
from intccms.config.schema import ClusterConfig, PrometheusConfig
from intccms.plan.analysis import build_plan
from intccms.plan.run import RunPlan, observable_axes
from intccms.stats import StatisticsInputError
from intccms.stats.inputs import HistogramSet, ObservableHistograms, Template
from intccms.stats.stage import check_compatible, check_statistics
from intccms.storage import StorageOptions

VARIATIONS = ["nominal", "jesFlavorQCD_up", "jesFlavorQCD_down"]


def _hset(edges: np.ndarray, variations: list[str]) -> HistogramSet:
    n = edges.size + 1
    t = Template(np.ones(n), np.ones(n))
    obsh = ObservableHistograms(edges=edges, contents={
        "TTToSemiLeptonic": {v: t for v in variations}, "data": {"nominal": t}})
    meta = {"processes": {"data": {"is_data": True}, "TTToSemiLeptonic": {"is_data": False}}}
    return HistogramSet({"CMS_WORKSHOP": {"mtt": obsh}}, meta, "s3://bucket/old/histograms.pkl")


@pytest.fixture(scope="module")
def cfg():
    return compose_config("demo", validate=False)


def _plan(cfg, **workflow) -> RunPlan:
    """The run plan's parts the statistics stage reads: workflow, channels, binning, variations."""
    analysis = dataclasses.replace(build_plan(cfg, {}), variations=tuple(VARIATIONS))
    return RunPlan(name="demo", run_id="test", output_url="out", datasets={}, eras={}, storage=StorageOptions(),
                   workflow=dataclasses.replace(OmegaConf.to_object(cfg.workflow), **workflow),
                   cluster=ClusterConfig(), prometheus=PrometheusConfig(), analysis=analysis,
                   observables=observable_axes(cfg), statistics=OmegaConf.to_object(cfg.statistics))


def test_alone_without_input_fails_at_start_up_naming_the_key(cfg):
    plan = _plan(cfg, run_analysis=False)
    with pytest.raises(ConfigError, match=r"statistics\.input\.path"):
        check_statistics(plan)
    scfg = dataclasses.replace(plan.statistics, input=dataclasses.replace(
        plan.statistics.input, path="outputs/demo/histograms/histograms.pkl"))
    plan = dataclasses.replace(plan, statistics=scfg)
    assert check_statistics(plan).input.path == "outputs/demo/histograms/histograms.pkl"
    scfg.input.observable = "ht"
    with pytest.raises(ConfigError, match=r"statistics\.input\.observable: 'ht'"):
        check_statistics(plan)
    with pytest.raises(ConfigError, match=r"no statistics group is selected"):
        check_statistics(dataclasses.replace(plan, statistics=None))


def test_compatible_histograms_pass_and_others_are_named(cfg):
    plan = _plan(cfg)
    b = cfg.analysis.observables.mtt.binning
    edges = np.linspace(b.start, b.stop, b.bins + 1)
    check_compatible(_hset(edges, VARIATIONS), plan)  # no error
    other = np.linspace(b.start, b.stop, b.bins // 2 + 1)
    with pytest.raises(StatisticsInputError,
                       match=r"s3://bucket/old/histograms\.pkl were made by another configuration.*binning"):
        check_compatible(_hset(other, VARIATIONS), plan)
    with pytest.raises(StatisticsInputError,
                       match=r"histograms\.pkl were made by another.*lacks variations \['jesFlavorQCD_down'"):
        check_compatible(_hset(edges, VARIATIONS[:2]), plan)
    with pytest.raises(StatisticsInputError, match=r"unexpected ones \['pileup_2017_up'\]"):
        check_compatible(_hset(edges, [*VARIATIONS, "pileup_2017_up"]), plan)


TESTS = Path(__file__).resolve().parent
# `intccms run demo [overrides]` through the real command line and its logging set-up, with the
# job replaced by its statistics stage on a small model (fit, ranking, limits and every plot).
STATISTICS_RUN = """
import sys
from pathlib import Path
from types import SimpleNamespace

import intccms.execute.job
from intccms import cli
from intccms.stats import run_statistics
from test_stats import make_hists, simple_cfg
from test_stats_modes import PROCS


def statistics_only(cfg, **kwargs):
    out = Path(sys.argv[1])
    run_statistics(make_hists(PROCS), simple_cfg(plots=True, ranking=True), out)
    return SimpleNamespace(wall_time_s=0.0, output_dir=out, output_url=str(out), remote=False)


intccms.execute.job.run_job = statistics_only
sys.exit(cli.main(["run", "demo", *sys.argv[2:]]))
"""


@pytest.mark.parametrize("overrides", [[], ["log_level=DEBUG"]], ids=["default", "debug"])
def test_run_prints_no_library_chatter_unless_debugging(tmp_path: Path, overrides: list[str]) -> None:
    """pyhf logs ~80 'adding modifier' INFO lines per model and mplhep warned of a deprecated
    keyword on every plot: neither reaches a default run; pyhf's lines are there at DEBUG."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONWARNINGS"}  # Python's defaults
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(TESTS), os.environ.get("PYTHONPATH")]))
    proc = subprocess.run([sys.executable, "-c", STATISTICS_RUN, str(tmp_path / "out"), *overrides],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300,
                          check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (tmp_path / "out" / "ranking.png").is_file()
    assert "FutureWarning" not in proc.stderr, proc.stderr[-3000:]
    pyhf_info = re.findall(r"^INFO pyhf\.pdf: .*$", proc.stderr, re.MULTILINE)
    if overrides:
        assert any("adding modifier" in line for line in pyhf_info), proc.stderr[-3000:]
    else:
        assert pyhf_info == [], pyhf_info[:5]

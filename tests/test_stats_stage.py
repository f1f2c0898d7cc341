"""The statistics stage in the job: start-up checks and the compatibility of saved
histograms with the configuration (no cluster, no analysis run)."""

from __future__ import annotations

import numpy as np
import pytest

from intccms.config import ConfigError, compose_config
from intccms.stats import StatisticsInputError
from intccms.stats.inputs import HistogramSet, ObservableHistograms, Template
from intccms.stats.stage import check_compatible, check_statistics, statistics_config

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


def test_alone_without_input_fails_at_start_up_naming_the_key(cfg):
    cfg = cfg.copy()
    cfg.workflow.run_analysis = False
    with pytest.raises(ConfigError, match=r"statistics\.input\.path"):
        check_statistics(cfg)
    cfg.statistics.input.path = "outputs/demo/histograms/histograms.pkl"
    assert check_statistics(cfg).input.path == "outputs/demo/histograms/histograms.pkl"
    cfg.statistics.input.observable = "ht"
    with pytest.raises(ConfigError, match=r"statistics\.input\.observable: 'ht'"):
        check_statistics(cfg)


def test_compatible_histograms_pass_and_others_are_named(cfg):
    scfg = statistics_config(cfg)
    b = cfg.analysis.observables.mtt.binning
    edges = np.linspace(b.start, b.stop, b.bins + 1)
    check_compatible(_hset(edges, VARIATIONS), cfg, scfg, VARIATIONS)  # no error
    other = np.linspace(b.start, b.stop, b.bins // 2 + 1)
    with pytest.raises(StatisticsInputError,
                       match=r"s3://bucket/old/histograms\.pkl were made by another configuration.*binning"):
        check_compatible(_hset(other, VARIATIONS), cfg, scfg, VARIATIONS)
    with pytest.raises(StatisticsInputError,
                       match=r"histograms\.pkl were made by another.*lacks variations \['jesFlavorQCD_down'"):
        check_compatible(_hset(edges, VARIATIONS[:2]), cfg, scfg, VARIATIONS)
    with pytest.raises(StatisticsInputError, match=r"unexpected ones \['pileup_2017_up'\]"):
        check_compatible(_hset(edges, [*VARIATIONS, "pileup_2017_up"]), cfg, scfg, VARIATIONS)

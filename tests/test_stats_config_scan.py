"""Statistics configuration files and the Dask-parallel limit scan."""

from __future__ import annotations

from pathlib import Path

import pytest
from omegaconf import OmegaConf

from intccms.config.statistics import DataMode
from intccms.stats import StatisticsConfig, run_limit_scan
from intccms.stats.plots import signal_mass
from intccms.stats.run import as_config
from intccms.stats.synthetic import SIGNALS, make_histograms, synthetic_config

CONF = Path(__file__).resolve().parents[1] / "conf" / "statistics"


@pytest.mark.parametrize("name", ["demo", "run2"])
def test_yaml_fills_the_structured_config(name):
    # As composed in the job: the statistics group beside the eras group, whose luminosities
    # it takes (one home).
    root = OmegaConf.create({
        "eras": OmegaConf.load(CONF.parent / "eras" / "run2.yaml"),
        "statistics": OmegaConf.merge(OmegaConf.structured(StatisticsConfig), OmegaConf.load(CONF / f"{name}.yaml")),
    })
    cfg = as_config(root.statistics)
    assert isinstance(cfg, StatisticsConfig)
    assert cfg.luminosity.eras == {era: float(root.eras[era].luminosity) for era in root.eras}
    assert cfg.data.mode in set(DataMode)
    lumi = {c.name: c.uncertainty for c in cfg.luminosity.components}
    assert lumi["lumi_2017"] == {"2017": 0.02}
    assert lumi["lumi_corr"]["2018"] == pytest.approx(0.02)
    assert lumi["lumi_1718"] == {"2017": 0.006, "2018": 0.002}
    assert "defaults" not in OmegaConf.load(CONF / f"{name}.yaml")


def test_typo_in_yaml_is_rejected():
    with pytest.raises(Exception, match="poi_nmae"):
        OmegaConf.merge(OmegaConf.structured(StatisticsConfig), {"poi_nmae": "r"})


def test_signal_mass_parsing():
    assert signal_mass("ZPrimeToTT_M2000_W200") == 2000.0
    assert signal_mass("TTToSemiLeptonic") is None


def test_limit_scan_on_dask_matches_serial(tmp_path):
    distributed = pytest.importorskip("distributed")
    hists = make_histograms(seed=3, nbins=5, signal_scale=5.0)
    cfg = synthetic_config()
    cfg.systematics.include = ["jesFlavorQCD", "pileup_2017"]
    cfg.systematics.mc_stat = False
    serial = run_limit_scan(hists, cfg, SIGNALS[:2])
    with distributed.Client(processes=False, n_workers=1, threads_per_worker=2,
                            dashboard_address=None) as client:
        with distributed.get_task_stream(client) as stream:
            par = run_limit_scan(hists, cfg, SIGNALS[:2], client, output_dir=tmp_path)
        address = next(iter(client.scheduler_info()["workers"]))
    # one task per signal point, run on the cluster's worker
    tasks = [t for t in stream.data if t["key"].startswith("limit_for_signal")]
    assert len(tasks) == 2
    assert [p["worker"] for p in par["points"]] == [address, address]
    assert [p["worker"] for p in serial["points"]] == [None, None]
    assert [p["signal"] for p in par["points"]] == SIGNALS[:2]
    for a, b in zip(serial["points"], par["points"], strict=True):
        assert a["mass"] == b["mass"]
        assert a["expected"] == pytest.approx(b["expected"], rel=1e-6)
        assert a["observed"] == pytest.approx(b["observed"], rel=1e-6)
    assert (tmp_path / "limit_scan.png").read_bytes()[:4] == b"\x89PNG"


def _statistics_option(top_level: Path) -> str | None:
    """The ``statistics`` option a top-level configuration selects in its defaults list."""
    for entry in OmegaConf.load(top_level).get("defaults", []):
        if isinstance(entry, str) or not hasattr(entry, "items"):
            continue
        for key, value in entry.items():
            if key.split()[-1] == "statistics":
                return str(value)
    return None


def test_every_scanned_signal_is_a_dataset_process_of_the_configs_using_it():
    from intccms.config import compose_config

    users: dict[str, list[str]] = {}
    for top in sorted(CONF.parent.glob("*.yaml")):
        option = _statistics_option(top)
        if option is not None:
            users.setdefault(option, []).append(top.stem)
    # every statistics configuration is used by a top-level configuration, and checked below
    assert set(users) == {p.stem for p in CONF.glob("*.yaml")}
    for option, tops in users.items():
        own = OmegaConf.load(CONF / f"{option}.yaml")
        for top in tops:
            cfg = compose_config(top)
            processes = {d.process for d in cfg.datasets.values()}
            wanted = [cfg.statistics.signal, *cfg.statistics.signal_scan]
            assert list(cfg.statistics.signal_scan) == list(own.signal_scan), top
            missing = [s for s in wanted if s not in processes]
            assert not missing, f"{top} (statistics={option}) scans {missing}: not in its datasets"
    assert "ZPrimeToTT_M1500_W150" not in OmegaConf.load(CONF / "run2.yaml").signal_scan
    # every run2 scan point has a dataset per era of the simulation
    run2 = compose_config("run2_full")
    for s in run2.statistics.signal_scan:
        eras = {d.era for d in run2.datasets.values() if d.process == s}
        assert eras == {"2016postVFP", "2017", "2018"}, s

"""Configuration composition and start-up validation."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from pathlib import Path

import pytest
from omegaconf import DictConfig, OmegaConf

from intccms.config import ConfigError, compose_config

TOP_LEVEL = ["demo", "run2_skim", "run2_analysis", "run2_full"]


@pytest.mark.parametrize("name", TOP_LEVEL)
def test_top_level_configs_compose(name: str) -> None:
    cfg = compose_config(name)
    assert cfg.name == name
    assert cfg.analysis.channels["CMS_WORKSHOP"].observables == ["mtt"]
    assert set(cfg.corrections.by_era) == {"2016preVFP", "2016postVFP", "2017", "2018"}


def test_modes_of_the_top_level_configs() -> None:
    skim = compose_config("run2_skim").workflow
    assert skim.save_skimmed_output and not skim.run_analysis
    ana = compose_config("run2_analysis").workflow
    assert ana.use_skimmed_input and ana.run_analysis and not ana.save_skimmed_output
    full = compose_config("run2_full").workflow
    assert full.save_skimmed_output and full.run_analysis and full.use_skimmed_input


def test_run2_datasets_have_normalisation_inputs() -> None:
    cfg = compose_config("run2_full")
    mc = {n: d for n, d in cfg.datasets.items() if not d.is_data}
    assert mc and all(d.xsec and d.xsec > 0 for d in mc.values())
    assert cfg.datasets["TTToSemiLeptonic_2017"].xsec == pytest.approx(364.31)
    assert cfg.datasets["TTToSemiLeptonic_2017"].das_name.startswith("/TTToSemiLeptonic")
    data_eras = {d.era for d in cfg.datasets.values() if d.is_data}
    assert {"2016preVFP", "2017", "2018"} <= data_eras


def test_unknown_key_names_the_key() -> None:
    with pytest.raises(ConfigError, match="n_wokers") as info:
        compose_config("demo", ["cluster.n_wokers=3"])
    assert "did you mean 'n_workers'?" in str(info.value)
    assert "Valid keys under 'cluster':" in str(info.value) and "threads_per_worker" in str(info.value)
    with pytest.raises(ConfigError, match="did you mean 'chunksize'") as info:
        compose_config("demo", ["workflow.chunksiz=3"])
    assert "skim_format" in str(info.value)


def test_wrong_type_names_the_key() -> None:
    with pytest.raises(ConfigError, match="chunksize"):
        compose_config("demo", ["workflow.chunksize=many"])


def test_bad_enum_lists_allowed_values() -> None:
    with pytest.raises(ConfigError, match=r"(?s)skim_format.*parquet"):
        compose_config("demo", ["workflow.skim_format=hdf5"])


def test_unknown_group_option_lists_available() -> None:
    with pytest.raises(ConfigError, match=r"(?s)cluster/lcoal.*local"):
        compose_config("demo", ["cluster=lcoal"])


def test_bad_function_path_names_the_key() -> None:
    with pytest.raises(ConfigError, match=r"analysis\.objects\.muons\.function"):
        compose_config("demo", ["analysis.objects.muons.function=intccms.physics.objects.nope"])


def test_channel_with_undefined_observable() -> None:
    with pytest.raises(ConfigError, match="'mbb' is not defined"):
        compose_config("demo", ["analysis.channels.CMS_WORKSHOP.observables=[mtt,mbb]"])


def test_undefined_correction_for_an_era() -> None:
    with pytest.raises(ConfigError, match="'jer' is not defined"):
        compose_config("demo", ["corrections.by_era.2017=[jec,jer]"])


def test_cli_reports_config_error_and_exit_code() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "intccms.cli", "config", "demo", "workflow.chunksiz=10"],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 2
    assert "chunksiz" in proc.stderr


def test_dataset_added_from_the_command_line() -> None:
    cfg = compose_config("demo", [
        '+datasets.MyDY_2018={era: "2018", process: DYJetsToLL, xsec: 6077.22, files: [/data/dy_1.root]}',
        "+datasets.MyDY_2018.max_files=3",
    ])
    ds = cfg.datasets.MyDY_2018
    assert (ds.era, ds.process, ds.xsec, list(ds.files), ds.max_files) == (
        "2018", "DYJetsToLL", 6077.22, ["/data/dy_1.root"], 3)
    assert ds.is_data is False  # schema defaults filled in


@pytest.mark.parametrize(("override", "message"), [
    ("+datasets.MyDY_2018.eraa=2018", "datasets.MyDY_2018.eraa is not a known key; did you mean 'era'?"),
    ("+datasets.MyDY_2018={era: '2018', xsec: lots}", "datasets.MyDY_2018: xsec: Value 'lots'"),
    ("+analysis.channels.new={cutz: {}}", "analysis.channels.new.cutz is not a known key; did you mean 'cuts'?"),
    ("+datasets.TTToSemiLeptonic_2017={era: '2017'}", "exists already"),
])
def test_bad_dataset_from_the_command_line_names_it(override: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        compose_config("demo", [override])


def test_cli_error_with_brackets_is_printed_not_parsed_as_markup() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "intccms.cli", "config", "demo", "+datasets.X={era: '2018', files: [/a/b.root], xsec: x}"],
        capture_output=True, text=True, check=False,
    )
    assert result.returncode == 2
    assert "datasets.X" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(("override", "message"), [
    ("datasets.SingleMuon_2017.process=SingleMuon", "collision data must use process 'data'"),
    ("datasets.TTToSemiLeptonic_2017.process=data", "is_data=False"),
])
def test_data_is_known_by_its_flag_and_process(override: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        compose_config("demo", [override])


def test_variation_pattern_matching_nothing_fails_at_start_up() -> None:
    from intccms.plan.analysis import variation_names

    class _Spec:  # the one method variation_names asks of an era's corrections
        def build(self):  # noqa: ANN202
            return self

        def variation_names(self) -> list[str]:
            return ["pileup_2017_up", "pileup_2017_down", "jesFlavorQCD_up", "jesFlavorQCD_down"]

    ok = compose_config("demo", ["workflow.variations=[jes*]"])
    assert variation_names(ok, {"2017": _Spec()}) == ("nominal", "jesFlavorQCD_up", "jesFlavorQCD_down")
    typo = compose_config("demo", ["workflow.variations=[jes*,pilup_*]"])
    with pytest.raises(ValueError, match=r"workflow.variations: \['pilup_\*'\] match no variation"):
        variation_names(typo, {"2017": _Spec()})


@pytest.fixture(scope="module")
def cluster_configs() -> dict[str, DictConfig]:
    """The demo configuration with the local and the Kubernetes cluster, composed once."""
    return {"local": compose_config("demo"), "kubernetes": compose_config("demo", ["cluster=kubernetes"])}


K8S = "cluster.kubernetes"


@pytest.mark.parametrize(("cluster", "key", "value"), [
    ("local", "cluster.n_workers", 0),
    ("local", "cluster.n_workers", -1),
    ("local", "cluster.threads_per_worker", 0),
    ("local", "cluster.memory_limit", "lots"),
    ("local", "cluster.workers_timeout_s", 0),
    ("local", "cluster.connect_timeout_s", -1),
    ("kubernetes", f"{K8S}.wait.workers_timeout_s", 0),
    ("kubernetes", f"{K8S}.wait.scheduler_timeout_s", -5),
    ("kubernetes", f"{K8S}.wait.workers", 11),
    ("kubernetes", f"{K8S}.adapt.maximum", 0),
    ("kubernetes", f"{K8S}.worker.threads", 0),
    ("kubernetes", f"{K8S}.worker.memory_limit", "lots"),
    ("kubernetes", f"{K8S}.worker.resources.limits.memory", "lots"),
    ("kubernetes", f"{K8S}.scheduler.resources.requests.cpu", "fast"),
    ("kubernetes", f"{K8S}.scheduler.comm_port", 0),
])
def test_cluster_numbers_are_checked_at_start_up_naming_the_key(
        cluster_configs: dict[str, DictConfig], cluster: str, key: str, value: object) -> None:
    """A zero worker count used to leave the job waiting forever; a bad size failed inside Dask
    without naming the key."""
    from intccms.config.validate import validate_config

    cfg = copy.deepcopy(cluster_configs[cluster])
    OmegaConf.update(cfg, key, value)
    with pytest.raises(ConfigError) as info:
        validate_config(cfg)
    assert str(info.value).startswith(f"{key}="), info.value


def test_a_bad_log_level_is_a_config_error_listing_the_levels() -> None:
    proc = subprocess.run([sys.executable, "-m", "intccms.cli", "run", "demo", "log_level=LOUD"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    message = " ".join(proc.stderr.split())
    assert "log_level: Invalid value 'LOUD'" in message and "DEBUG, INFO, WARNING, ERROR, CRITICAL" in message, message


def test_era_facts_and_jes_sources_are_read_from_the_configuration(tmp_path: Path) -> None:
    """The generator, the synthetic statistics model and the statistics defaults take the era
    luminosities and the JES sources from conf/, so an edit there reaches all of them."""
    import shutil

    from intccms.core.conf import conf_dir
    from intccms.datagen.corrections import _BTAG_JES, JES_SOURCES

    assert set(_BTAG_JES) == set(JES_SOURCES) and len(JES_SOURCES) == 27
    conf = tmp_path / "conf"
    shutil.copytree(conf_dir(), conf)
    eras = conf / "eras" / "run2.yaml"
    eras.write_text(eras.read_text().replace("luminosity: 41480", "luminosity: 41000"))
    corrections = conf / "corrections" / "run2.yaml"
    corrections.write_text(corrections.read_text().replace(
        "        - {source: TimePtEta, variation: \"jesTimePtEta_{year}\"}\n", ""))
    code = ("from intccms.datagen.eras import ERAS; from intccms.datagen.corrections import JES_SOURCES; "
            "from intccms.stats.synthetic import ERAS as S, variation_names; "
            "from intccms.config.statistics import LuminosityConfig; "
            "print(ERAS['2017'].lumi_pb, S['2017'], LuminosityConfig().eras['2017'], len(JES_SOURCES), "
            "any('TimePtEta' in v for v in variation_names()))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "INTCCMS_CONF_DIR": str(conf)}).stdout.split()
    assert out == ["41000.0", "41000.0", "41000.0", "26", "False"]

"""Dataset planning checks that need no files: which eras lack data or simulation."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from intccms.config import compose_config
from intccms.plan.datasets import Dataset, resolve_dataset, select_datasets, unmatched_eras


def _ds(name: str, era: str, is_data: bool) -> Dataset:
    return Dataset(name=name, process="data" if is_data else "tt", era=era, is_data=is_data,
                   xsec=None if is_data else 1.0, files=("f.root",))


def test_unmatched_eras_names_each_lopsided_era() -> None:
    datasets = {d.name: d for d in [_ds("a", "2017", True), _ds("b", "2017", False),
                                    _ds("c", "2018", False), _ds("d", "2016preVFP", True)]}
    assert unmatched_eras(datasets) == ["era 2016preVFP: collision data but no simulation selected",
                                        "era 2018: simulation but no collision data selected"]
    only_mc = {d.name: d for d in [_ds("b", "2017", False), _ds("c", "2018", False)]}
    assert unmatched_eras(only_mc) == []


SHARED = Path(os.environ.get("INTCCMS_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


@pytest.mark.realdata
@pytest.mark.skipif(not (SHARED / "datasets" / "2016").is_dir(), reason=f"UL listings {SHARED}/datasets absent")
def test_run2_listings_2016_eras_are_flagged() -> None:
    """The shared UL16 listings hold postVFP simulation and preVFP (HIPM) data only."""
    cfg = compose_config("run2_full", ["dataset_selection=[TTToSemiLeptonic_*,SingleMuon*]"])
    chosen = select_datasets(OmegaConf.to_container(cfg.datasets, resolve=True), list(cfg.dataset_selection))
    datasets = {n: resolve_dataset(n, d) for n, d in chosen.items() if d["era"].startswith("2016")}
    assert unmatched_eras(datasets) == ["era 2016postVFP: simulation but no collision data selected",
                                        "era 2016preVFP: collision data but no simulation selected"]


OPENDATA = SHARED / "datasets" / "opendata2016" / "nanoaods.json"


@pytest.mark.realdata
@pytest.mark.skipif(not OPENDATA.is_file(), reason=f"CMS Open Data listing {OPENDATA} absent")
@pytest.mark.parametrize("top", ["run2_skim", "run2_analysis", "run2_full"])
def test_opendata2016_group_resolves_to_the_listed_eospublic_files(top: str) -> None:
    """The Open Data group composes with every top-level configuration, and each dataset reads
    exactly the nominal files of its listing entry, on the public EOS redirector."""
    import json

    cfg = compose_config(top, ["datasets=opendata2016", f"paths.shared_data={SHARED}"])
    chosen = select_datasets(OmegaConf.to_container(cfg.datasets, resolve=True), list(cfg.dataset_selection))
    datasets = {n: resolve_dataset(n, d) for n, d in chosen.items()}
    listing = json.loads(OPENDATA.read_text())
    assert {n.removeprefix("opendata_") for n in datasets} == set(listing)
    for name, ds in datasets.items():
        expected = [f["path"] for f in listing[name.removeprefix("opendata_")]["nominal"]["files"]]
        assert list(ds.files) == expected, name
        assert all(f.startswith("root://eospublic.cern.ch//eos/opendata/cms/") for f in ds.files)
        assert ds.is_data == (name == "opendata_data") and (ds.xsec is None) == ds.is_data
    assert unmatched_eras(datasets) == []  # data and simulation of one era, 2016postVFP
    assert {ds.era for ds in datasets.values()} == {"2016postVFP"}

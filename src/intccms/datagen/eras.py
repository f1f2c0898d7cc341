"""Per-era constants shared by the generator and the synthetic correction files.

The era facts (correction folder, JEC campaign, pileup and trigger scale-factor keys,
integrated luminosity) are the configuration's (``conf/eras/run2.yaml``); the generator adds the
deepJet working points of the real UL ``btagging.json.gz`` files. Run ranges are the real
SingleMuon run ranges of each era (2016 is split at run 278769, the APV/VFP fix).
"""

from __future__ import annotations

from dataclasses import dataclass

from intccms.core.conf import run2_eras

__all__ = ["ERAS", "EraInfo", "era_info"]


@dataclass(frozen=True)
class EraInfo:
    """What one data-taking era needs in generation and in the correction files."""

    name: str
    year: str
    folder: str
    campaign: str
    pileup_key: str
    trigger_sf_key: str
    lumi_pb: float
    btag_wp: tuple[float, float, float]
    run_range: tuple[int, int]
    pileup_mean_mc: float
    pileup_mean_data: float

    @property
    def golden_year(self) -> str:
        """The golden JSON is per calendar year: both 2016 eras share one file."""
        return self.year


# What only the generator needs, per era: the deepJet working points of the real UL
# ``btagging.json.gz`` files, the SingleMuon run range and the pileup means. Everything else
# (year, folder, campaign, keys, luminosity) is read from ``conf/eras/run2.yaml``.
_GENERATOR_FACTS: dict[str, tuple[tuple[float, float, float], tuple[int, int], float, float]] = {
    "2016preVFP": ((0.0508, 0.2598, 0.6502), (272007, 278768), 24.0, 25.5),
    "2016postVFP": ((0.0480, 0.2489, 0.6377), (278769, 284044), 25.0, 26.0),
    "2017": ((0.0532, 0.3040, 0.7476), (297046, 306462), 31.0, 32.5),
    "2018": ((0.0490, 0.2783, 0.7100), (315252, 325175), 32.0, 33.0),
}


def _eras() -> dict[str, EraInfo]:
    out = {}
    for name, era in run2_eras().items():
        btag_wp, run_range, pu_mc, pu_data = _GENERATOR_FACTS[name]
        out[name] = EraInfo(name, str(era["year"]), str(era["correction_folder"]), str(era["jec_campaign"]),
                            str(era["pileup_key"]), str(era["trigger_sf_key"]), float(era["luminosity"]),
                            btag_wp, run_range, pu_mc, pu_data)
    return out


ERAS: dict[str, EraInfo] = _eras()


def era_info(era: str) -> EraInfo:
    """Look up an era by name.

    Args:
        era (str): one of ``2016preVFP``, ``2016postVFP``, ``2017``, ``2018``.

    Returns:
        EraInfo: the era's constants.
    """
    try:
        return ERAS[era]
    except KeyError:
        msg = f"unknown era {era!r}; choose one of {', '.join(ERAS)}"
        raise ValueError(msg) from None

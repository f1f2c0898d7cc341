"""Per-era constants shared by the generator and the synthetic correction files.

The values mirror the reference analysis (``ANALYSIS.md``, "Eras"): correction folder,
JEC campaign, pileup and trigger scale-factor keys, integrated luminosity, and the deepJet
working points of the real UL ``btagging.json.gz`` files. Run ranges are the real
SingleMuon run ranges of each era (2016 is split at run 278769, the APV/VFP fix).
"""

from __future__ import annotations

from dataclasses import dataclass

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


_TRIG_2016 = "NUM_Mu50_or_TkMu50_DEN_CutBasedIdGlobalHighPt_and_TkIsoLoose"
_TRIG_1718 = "NUM_Mu50_or_OldMu100_or_TkMu100_DEN_CutBasedIdGlobalHighPt_and_TkIsoLoose"

ERAS: dict[str, EraInfo] = {
    "2016preVFP": EraInfo(
        "2016preVFP", "2016", "2016preVFP_UL", "Summer19UL16APV_V7_MC",
        "Collisions16_UltraLegacy_goldenJSON", _TRIG_2016, 19520.0,
        (0.0508, 0.2598, 0.6502), (272007, 278768), 24.0, 25.5,
    ),
    "2016postVFP": EraInfo(
        "2016postVFP", "2016", "2016postVFP_UL", "Summer19UL16_V7_MC",
        "Collisions16_UltraLegacy_goldenJSON", _TRIG_2016, 16810.0,
        (0.0480, 0.2489, 0.6377), (278769, 284044), 25.0, 26.0,
    ),
    "2017": EraInfo(
        "2017", "2017", "2017_UL", "Summer19UL17_V5_MC",
        "Collisions17_UltraLegacy_goldenJSON", _TRIG_1718, 41480.0,
        (0.0532, 0.3040, 0.7476), (297046, 306462), 31.0, 32.5,
    ),
    "2018": EraInfo(
        "2018", "2018", "2018_UL", "Summer19UL18_V5_MC",
        "Collisions18_UltraLegacy_goldenJSON", _TRIG_1718, 59830.0,
        (0.0490, 0.2783, 0.7100), (315252, 325175), 32.0, 33.0,
    ),
}


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

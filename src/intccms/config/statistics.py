"""Structured configuration of the statistics stage.

Plain dataclasses so that Hydra can register them as the schema of the ``statistics``
group; YAML files in ``conf/statistics/`` only fill them. Only OmegaConf-supported field
types are used (str, int, float, bool, Enum, Optional, lists and dicts of those, nested
dataclasses).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

from intccms.core.conf import era_luminosities


class DataMode(str, Enum):
    """Which dataset the model is fitted to."""

    data = "data"  # the observed data (process "data" in the histograms)
    asimov = "asimov"  # the expected data at the nominal parameters and ``asimov_poi``
    toy = "toy"  # a Poisson fluctuation of the Asimov main measurement, seeded


class ShapeMode(str, Enum):
    """How an up/down pair becomes modifiers of one nuisance parameter."""

    # the member shadows str.split, which mypy reports for a str mixin; Enum resolves it at runtime
    split = "split"  # type: ignore[assignment]  # normsys (rate) + histosys on the rate-normalised shape
    full = "full"  # one histosys on the full template


@dataclass
class InputConfig:
    """What part of the histogram file is fitted.

    ``include_flow`` adds the underflow to the first and the overflow to the last bin (the
    observable's flow bins hold events outside its range, e.g. mtt > 3 TeV). ``rebin_edges``
    merges bins: every value must be an existing bin edge. ``eras`` names the eras in the
    histograms when the file does not say (ROOT files carry no metadata); None means every
    era of ``luminosity.eras``, and the results then note the assumption.

    ``path`` names the histogram file of an earlier run (``histograms.pkl`` or
    ``histograms.root``; a local path, ``s3://bucket/key`` or ``root://host//path``) for
    running the stage alone (``workflow.run_analysis=false``); in the job after the analysis
    stage it is ignored and the fresh histograms are used. Either way the job checks that
    the histograms were made by a compatible configuration (channels, observable binning,
    variations) before fitting.
    """

    path: str | None = None
    channels: list[str] = field(default_factory=lambda: ["CMS_WORKSHOP"])
    observable: str = "mtt"
    include_flow: bool = True
    rebin_edges: list[float] | None = None
    expected_config_hash: str | None = None
    eras: list[str] | None = None


@dataclass
class DataConfig:
    """Observed, Asimov or toy data; ``blind`` hides the observed data everywhere (the fit
    then runs on Asimov data and no observed limit is given)."""

    mode: DataMode = DataMode.data
    asimov_poi: float = 0.0
    seed: int = 12345
    blind: bool = False


@dataclass
class LumiComponent:
    """One luminosity nuisance parameter: relative uncertainty per era it touches.

    Histograms are merged over eras, so the effective normsys on a sample is
    sum_era f_era * uncertainty[era], with f_era the sample's yield fraction from that era.
    """

    name: str = "lumi"
    uncertainty: dict[str, float] = field(default_factory=dict)


def _cms_run2_lumi() -> list[LumiComponent]:
    """CMS Run-2 luminosity uncertainty scheme (LUM-17-003, LUM-17-004, LUM-18-002)."""
    y16 = {"2016preVFP": 0.010, "2016postVFP": 0.010}
    return [
        LumiComponent("lumi_2016", dict(y16)),
        LumiComponent("lumi_2017", {"2017": 0.020}),
        LumiComponent("lumi_2018", {"2018": 0.015}),
        LumiComponent(
            "lumi_corr",
            {"2016preVFP": 0.006, "2016postVFP": 0.006, "2017": 0.009, "2018": 0.020},
        ),
        LumiComponent("lumi_1718", {"2017": 0.006, "2018": 0.002}),
    ]


@dataclass
class LuminosityConfig:
    """Era luminosities (pb^-1, used for era fractions when the histogram metadata has no
    ``era_yields``) and the luminosity uncertainty components."""

    eras: dict[str, float] = field(default_factory=era_luminosities)  # conf/eras/run2.yaml
    components: list[LumiComponent] = field(default_factory=_cms_run2_lumi)


@dataclass
class SystematicsConfig:
    """Which variations become nuisance parameters and how.

    ``include``/``exclude`` are glob patterns on the systematic name (the variation without
    ``_up``/``_down``); an ``include`` entry without wildcard is required to be present.
    A modifier whose relative effect is below ``pruning_threshold`` (rate: |hi-1|, |lo-1|;
    shape: largest relative bin difference) is dropped and listed in the results.
    """

    include: list[str] = field(default_factory=lambda: ["*"])
    exclude: list[str] = field(default_factory=list)
    shape_mode: ShapeMode = ShapeMode.split
    pruning_threshold: float = 0.001
    mc_stat: bool = True


@dataclass
class FitConfig:
    """Minimiser options of the maximum-likelihood fit.

    ``maxiter`` bounds every fit; ``strategy`` and ``tolerance`` apply to MINUIT (through
    cabinetry), used only for models the analytic likelihood does not cover.
    """

    strategy: int | None = None
    maxiter: int | None = None
    tolerance: float | None = 0.01


@dataclass
class LimitConfig:
    """Asymptotic CLs upper limit (q~_mu test statistic)."""

    enabled: bool = True
    confidence_level: float = 0.95
    rtol: float = 1e-4


@dataclass
class StatisticsConfig:
    """Everything the statistics stage needs to turn histograms into a result."""

    input: InputConfig = field(default_factory=InputConfig)
    signal: str = "ZPrimeToTT_M2000_W200"
    signal_scan: list[str] = field(default_factory=list)
    backgrounds: dict[str, list[str]] = field(
        default_factory=lambda: {
            "ttbar": ["TTTo*"],
            "wjets": ["WJetsToLNu_HT-*"],
        }
    )
    xsec_uncertainties: dict[str, float] = field(default_factory=dict)
    data: DataConfig = field(default_factory=DataConfig)
    luminosity: LuminosityConfig = field(default_factory=LuminosityConfig)
    systematics: SystematicsConfig = field(default_factory=SystematicsConfig)
    poi_name: str = "mu"
    poi_init: float = 1.0
    poi_bounds: list[float] = field(default_factory=lambda: [0.0, 50.0])
    fit: FitConfig = field(default_factory=FitConfig)
    limits: LimitConfig = field(default_factory=LimitConfig)
    ranking: bool = True
    top_n_ranking: int = 15
    plots: bool = True
    show_table: bool = True

"""Statistics stage: from analysis histograms to a physics result.

Contract: input is the analysis stage's histogram file (pickle or ROOT, local or remote)
and a :class:`StatisticsConfig`; output is ``workspace.json`` (a pyhf workspace),
``results.json`` (fit, ranking, CLs limits, pruned systematics, timing) and PNG plots.
Every ``{name}_up``/``{name}_down`` pair becomes one nuisance parameter ``{name}``.
Model building (:mod:`.model`) is pure: templates in, pyhf specification out. Fits,
ranking and limits minimise the model's analytic likelihood (:mod:`.likelihood`, exact
gradient, checked against pyhf) through one :class:`~.optimize.Objective` per model.
"""

from intccms.config.statistics import DataMode, ShapeMode, StatisticsConfig
from intccms.stats.errors import FitConvergenceError, StatisticsError, StatisticsInputError
from intccms.stats.inputs import HistogramSet, load_histograms
from intccms.stats.limits import LimitResult, upper_limits
from intccms.stats.model import ModelBuild, build_model
from intccms.stats.optimize import Objective
from intccms.stats.run import limit_for_signal, run_limit_scan, run_statistics
from intccms.stats.synthetic import time_full_model

__all__ = [
    "DataMode",
    "FitConvergenceError",
    "HistogramSet",
    "LimitResult",
    "ModelBuild",
    "Objective",
    "ShapeMode",
    "StatisticsConfig",
    "StatisticsError",
    "StatisticsInputError",
    "build_model",
    "limit_for_signal",
    "load_histograms",
    "run_limit_scan",
    "run_statistics",
    "time_full_model",
    "upper_limits",
]

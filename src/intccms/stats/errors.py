"""Errors of the statistics stage, each naming what is wrong and how to fix it."""

from __future__ import annotations


class StatisticsError(Exception):
    """Base class of every error raised by :mod:`intccms.stats`."""


class StatisticsInputError(StatisticsError, ValueError):
    """The histograms do not fit the statistics configuration (missing process,
    missing or unpaired variation, empty sample, configuration hash mismatch, ...)."""


class FitConvergenceError(StatisticsError, RuntimeError):
    """A maximum-likelihood fit did not converge.

    Attributes:
        at_bounds: names of the parameters that ended at (or next to) one of their bounds.
    """

    def __init__(self, msg: str, at_bounds: list[str] | None = None) -> None:
        super().__init__(msg)
        self.at_bounds = list(at_bounds or [])

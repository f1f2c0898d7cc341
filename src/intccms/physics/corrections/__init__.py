"""Corrections from correctionlib files, driven entirely by configuration.

A correction is a configuration entry (:class:`intccms.config.schema.CorrectionConfig`): an
object correction (JEC from raw pT with JES uncertainty sources as object variations) or an
event-weight correction (pileup, muon SFs, b-tag shape) with up/down sources and sources that
move with an object variation (``varies_with``). Nothing is special-cased per correction.
"""

from intccms.physics.corrections.era import CorrectionConfigError, EraCorrections
from intccms.physics.corrections.loading import CorrectionFileError

__all__ = ["CorrectionConfigError", "CorrectionFileError", "EraCorrections"]

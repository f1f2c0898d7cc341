"""Synthetic CMS Run-2 inputs: NanoAODv9-like events and jsonpog-like correction files.

The default demo job and the core tests run on these instead of real CMS data.

- :func:`generate_file` writes skimmed NanoAOD files of a process ``kind``
  (:data:`PROCESS_KINDS`) for an era, with a ``Runs`` tree that keeps the event count and
  the sum of generator weights of the full sample, as CMS skims do. The physics model is
  described in :mod:`.processes` (hard processes), :mod:`.truth` (decays) and :mod:`.reco`
  (detector); the skim in :data:`.reco.SKIM_DESCRIPTION`.
- ``kind="data"`` gives a SingleMuon-like mixture of the backgrounds with run and lumi
  numbers from :func:`write_golden_json`'s certification (1 % outside it);
  :func:`expected_data_events` says how many events match a luminosity.
- :func:`write_correction_files` writes ``POG/{JME,MUO,LUM,BTV}/<era>_UL`` files with the
  names, inputs and selectors of the real ones and plausible synthetic values.
"""

from intccms.datagen.corrections import write_correction_files
from intccms.datagen.eras import ERAS
from intccms.datagen.lumi import OUT_OF_JSON_FRACTION, golden_json, write_golden_json
from intccms.datagen.nanoaod import (
    PROCESS_KINDS,
    GeneratedFile,
    ensure_generated,
    generate_file,
    read_runs,
)
from intccms.datagen.normalisation import DEFAULT_BACKGROUNDS, expected_data_events, skim_efficiency
from intccms.datagen.reco import SKIM_DESCRIPTION

# Bumped whenever the same seed and parameters give different events, so that cached demo
# files are generated again.
GENERATOR_VERSION = 3

__all__ = [
    "DEFAULT_BACKGROUNDS", "ERAS", "GENERATOR_VERSION", "OUT_OF_JSON_FRACTION", "PROCESS_KINDS", "SKIM_DESCRIPTION",
    "GeneratedFile", "ensure_generated", "expected_data_events", "generate_file", "golden_json",
    "read_runs", "skim_efficiency", "write_correction_files", "write_golden_json",
]

"""Input inspection: what the input files hold and what the configured analysis reads of them.

Contract: given the job's configuration (datasets, storage, cluster, analysis, workflow) and its
``inspect`` section, :func:`run_inspect` reports per file the events, size on storage and, per
branch, compressed and uncompressed bytes, compression and baskets (from TTree metadata only:
no basket is read); per dataset and era totals, distributions and, in sampling mode,
extrapolations with their spread; and which branches the skim and analysis stages read, traced
on one real chunk, with the bytes and time that costs. A missing, truncated or unreadable file is
reported with its error and never stops an inspection.

Modules: :mod:`.config` (schema), :mod:`.scan` (one file), :mod:`.tracing` and :mod:`.reads`
(what the stages read), :mod:`.sample` (sampling, extrapolation), :mod:`.summary` (totals),
:mod:`.timing` (read times), :mod:`.rucio` (optional sizes), :mod:`.outputs` (tables, JSON,
CSV), :mod:`.plots`, :mod:`.run` (the orchestration).
"""

from intccms.config.compose import compose_inspect
from intccms.config.inspect import InspectConfig, inspect_config
from intccms.inspect.run import InspectResult, run_inspect
from intccms.inspect.scan import BranchInfo, FileReport, scan_file

__all__ = ["BranchInfo", "FileReport", "InspectConfig", "InspectResult", "compose_inspect", "inspect_config",
           "run_inspect", "scan_file"]

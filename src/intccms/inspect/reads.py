"""What the configured analysis reads, learnt from the code path itself.

The real skim and analysis tasks (:mod:`intccms.execute.tasks`) run on one small chunk of a real
input of each kind (simulation, data) while :func:`~intccms.inspect.tracing.record_ranges` notes
the byte ranges they request; the baskets inside those ranges name the branches each stage reads.
Whatever the stage functions do (configured collections, skim functions, simulation-only
branches dropped for data) is therefore measured, not restated. With
``workflow.run_mva_training`` the training stage's chunk task
(:func:`intccms.mva.dataset.training_chunk_task`) is traced the same way on simulation: it reads
the original inputs of the datasets in ``mva.classes`` unless the workflow reads skims.
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from intccms.config.schema import WorkflowConfig
from intccms.execute.tasks import analysis_task, skim_task
from intccms.inspect.tracing import branches_read, record_ranges
from intccms.mva.dataset import class_of, training_chunk_task
from intccms.mva.features import specs_from_config
from intccms.physics.events import branch_names
from intccms.physics.pipeline import ChunkContext
from intccms.plan.datasets import Dataset
from intccms.plan.run import RunPlan
from intccms.plan.workitems import WorkItem
from intccms.storage import open_source
from intccms.storage.formats.root import open_root
from intccms.storage.schemes import backend_for

STAGES = ("skim", "analysis")
TRAINING = "mva_training"


class TraceError(RuntimeError):
    """A stage could not be run on the traced chunk (the message names the file and stage)."""


@dataclass
class StageTrace:
    """Branches one stage read from one traced chunk.

    Attributes:
        bytes_requested: bytes the stage's own byte counting reported for the chunk.
    """

    stage: str
    kind: str
    dataset: str
    file: str
    entries: int
    branches: list[str] = field(default_factory=list)
    bytes_requested: int = 0


@dataclass
class ReadsTrace:
    """Traces per kind (``mc``/``data``) and stage, the stages that read the inputs and the
    datasets the training stage reads."""

    traces: dict[str, dict[str, StageTrace]] = field(default_factory=dict)
    input_stages: list[str] = field(default_factory=list)
    training_datasets: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def branches_for(self, ds: Dataset) -> dict[str, list[str]]:
        """Stage -> branches the stages read from one dataset (the training stage's only for
        the datasets it trains on)."""
        kind = "data" if ds.is_data else "mc"
        return {stage: t.branches for stage, t in self.traces.get(kind, {}).items()
                if stage != TRAINING or ds.name in self.training_datasets}


def input_stages(wf: WorkflowConfig) -> list[str]:
    """Stages that read the original inputs in the configured workflow."""
    stages = []
    if wf.save_skimmed_output:
        stages.append("skim")
    if wf.run_analysis and not wf.use_skimmed_input:
        stages.append("analysis")
    if wf.run_mva_training and not wf.use_skimmed_input:
        stages.append(TRAINING)
    return stages


def training_datasets(plan: RunPlan) -> list[str]:
    """Datasets the training stage reads: simulation whose process is in ``mva.classes``.

    Empty when ``workflow.run_mva_training`` is off (then no ``mva`` group is needed).
    """
    if not plan.workflow.run_mva_training or plan.mva is None:
        return []
    classes = plan.mva.classes
    return sorted(name for name, ds in plan.datasets.items()
                  if not ds.is_data and class_of(ds.process, classes.signal, classes.background) is not None)


class StageRunner:
    """Runs the real stage tasks on one chunk, with the run plan's constants and corrections."""

    def __init__(self, plan: RunPlan) -> None:
        assert plan.analysis is not None and plan.skim is not None
        self.run = plan
        self.options = plan.storage
        self.plan = plan.analysis
        self.mva = plan.mva if plan.workflow.run_mva_training else None

    def stages(self, ds: Dataset) -> tuple[str, ...]:
        """The stages traced on a dataset of this kind (training: simulation, when it is on)."""
        return (*STAGES, TRAINING) if self.mva is not None and not ds.is_data else STAGES

    def mva_training(self, item: WorkItem, ds: Dataset) -> int:
        """Run the training stage's chunk task; return the bytes it counted."""
        assert self.mva is not None  # stages() offers this stage only with training on
        ctx = ChunkContext(process=ds.process, era=ds.era, is_data=False, norm=1.0,
                           constants=self.run.eras[ds.era].constants)
        _, record = training_chunk_task(item, ctx, self.plan, self.mva.channel,
                                        specs_from_config(self.mva.features), self.run.corrections_for(ds.name),
                                        self.options)
        if record.failed:
            raise TraceError(f"mva_training stage on {item.file}: {record.error}")
        return record.bytes_read

    def analysis(self, item: WorkItem, ds: Dataset) -> int:
        """Run the analysis task; return the bytes it counted."""
        era = self.run.eras[ds.era]
        ctx = ChunkContext(process=ds.process, era=ds.era, is_data=ds.is_data, norm=1.0,
                           golden_json=era.golden_json if ds.is_data else None, constants=era.constants)
        _, record = analysis_task(item, ctx, self.plan, self.run.corrections_for(ds.name), self.options)
        if record.failed:
            raise TraceError(f"analysis stage on {item.file}: {record.error}")
        return record.bytes_read

    def skim(self, item: WorkItem, ds: Dataset) -> int:
        """Run the skim task (writing to a temporary folder); return the bytes it counted."""
        # The arguments skim_stage builds for its tasks, for one chunk.
        sp = self.run.skim
        assert sp is not None
        skim_inputs = {c: sp.collections[c] for c in sp.skim.inputs if c in sp.collections}
        keep = sp.keep + tuple(branch_names(skim_inputs, ()))
        drop = sp.mc_only if ds.is_data else frozenset()
        with tempfile.TemporaryDirectory(prefix="intccms-inspect-") as tmp:
            target = str(Path(tmp) / f"part.{sp.extension}")
            _, record = skim_task(item, target, sp.fmt, keep, drop, sp.skim, sp.collections,
                                  self.run.eras[ds.era].constants, self.options, sp.writer_kwargs)
        if record.failed:
            raise TraceError(f"skim stage on {item.file}: {record.error}")
        return record.bytes_read


def trace_file(runner: StageRunner, ds: Dataset, url: str, entries: int, tree: str,
               stages: Sequence[str] | None = None) -> dict[str, StageTrace]:
    """Run each stage (default: :meth:`StageRunner.stages`) on the first ``entries`` entries of
    ``url`` and name the branches read."""

    options = runner.options
    stages = runner.stages(ds) if stages is None else stages
    with open_source(url, options=options, tree=tree) as src:
        stop = min(src.num_entries, entries)
    if stop <= 0:
        raise TraceError(f"{url} has no entries to trace")
    item = WorkItem(ds.name, url, 0, 0, 0, stop)
    backend = backend_for(url, options)
    path = backend.path(url)
    out: dict[str, StageTrace] = {}
    for stage in stages:
        with record_ranges() as log:
            counted = getattr(runner, stage)(item, ds)
        ranges = log.for_file(path)
        handle, _ = open_root(backend, url)
        with handle:
            names = branches_read(handle[tree], ranges)
        out[stage] = StageTrace(stage, "data" if ds.is_data else "mc", ds.name, url, stop, names, counted)
    return out


def trace_reads(plan: RunPlan, files: Mapping[str, Sequence[str]], *, entries: int, tree: str = "Events",
                max_attempts: int = 3) -> ReadsTrace:
    """Trace the stages once per kind (simulation, data) on the first readable file.

    Args:
        plan: the run plan (its datasets are the selected ones).
        files: dataset -> files to try, in order (the inspected ones).
        entries: entries of the traced chunk.
        max_attempts: files tried per kind before giving up (bad files are skipped).

    Returns:
        The traces; a kind whose files all fail has a note instead.
    """
    result = ReadsTrace(input_stages=input_stages(plan.workflow), training_datasets=training_datasets(plan))
    runner = StageRunner(plan)
    for is_data in (False, True):
        kind = "data" if is_data else "mc"
        candidates = [(ds, f) for name, ds in plan.datasets.items() if ds.is_data == is_data
                      for f in files.get(name, ())]
        errors: list[str] = []
        for ds, url in candidates[:max_attempts]:
            try:
                result.traces[kind] = trace_file(runner, ds, url, entries, tree)
                break
            except Exception as err:  # noqa: BLE001 - try the next file of this kind
                errors.append(f"{type(err).__name__}: {err}")
        if candidates and kind not in result.traces:
            result.notes.append(f"analysis reads of {kind} not traced; {len(errors)} file(s) failed, "
                                f"first: {errors[0] if errors else 'none tried'}")
    return result

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
from typing import Any

from omegaconf import DictConfig, OmegaConf

from intccms.plan.datasets import Dataset
from intccms.plan.workitems import WorkItem
from intccms.storage import StorageOptions, open_source
from intccms.storage.formats.root import open_root
from intccms.storage.schemes import backend_for

STAGES = ("skim", "analysis")
TRAINING = "mva_training"
SKIM_EXTENSIONS = {"parquet": "parquet", "ttree": "root", "rntuple": "root"}


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


def _training(cfg: DictConfig) -> bool:
    return bool(OmegaConf.select(cfg, "workflow.run_mva_training", default=False))


def input_stages(cfg: DictConfig) -> list[str]:
    """Stages that read the original inputs in the configured workflow."""
    wf = cfg.workflow
    stages = []
    if wf.save_skimmed_output:
        stages.append("skim")
    if wf.run_analysis and not wf.use_skimmed_input:
        stages.append("analysis")
    if _training(cfg) and not wf.use_skimmed_input:
        stages.append(TRAINING)
    return stages


def training_datasets(cfg: DictConfig, datasets: Mapping[str, Dataset]) -> list[str]:
    """Datasets the training stage reads: simulation whose process is in ``mva.classes``.

    Empty when ``workflow.run_mva_training`` is off (then no ``mva`` group is needed).
    """
    if not _training(cfg):
        return []
    from intccms.config.mva import load_mva_config
    from intccms.mva.dataset import class_of

    classes = load_mva_config(cfg.get("mva")).classes
    return sorted(name for name, ds in datasets.items()
                  if not ds.is_data and class_of(ds.process, classes.signal, classes.background) is not None)


def _container(node: Any) -> Any:
    return OmegaConf.to_container(node, resolve=True, enum_to_str=True) if node is not None else None


class StageRunner:
    """Runs the real stage tasks on one chunk, with the job's plan, constants and corrections."""

    def __init__(self, cfg: DictConfig, eras: Sequence[str], options: StorageOptions) -> None:
        from intccms.execute.stages import build_plan, corrections_specs, era_constants

        self.cfg = cfg
        self.options = options
        self.constants = era_constants(cfg, list(eras))
        self.specs = corrections_specs(cfg, list(eras))
        self.plan = build_plan(cfg, self.specs)
        self.mva = None
        if _training(cfg):
            from intccms.config.mva import load_mva_config

            self.mva = load_mva_config(cfg.get("mva"))

    def stages(self, ds: Dataset) -> tuple[str, ...]:
        """The stages traced on a dataset of this kind (training: simulation, when it is on)."""
        return (*STAGES, TRAINING) if self.mva is not None and not ds.is_data else STAGES

    def mva_training(self, item: WorkItem, ds: Dataset) -> int:
        """Run the training stage's chunk task; return the bytes it counted."""
        from intccms.mva.dataset import training_chunk_task
        from intccms.mva.features import specs_from_config
        from intccms.physics.pipeline import ChunkContext

        assert self.mva is not None  # stages() offers this stage only with training on
        ctx = ChunkContext(process=ds.process, era=ds.era, is_data=False, norm=1.0,
                           constants=self.constants[ds.era])
        _, record = training_chunk_task(item, ctx, self.plan, self.mva.channel,
                                        specs_from_config(self.mva.features), self.specs.get(ds.era),
                                        self.options)
        if record.failed:
            raise TraceError(f"mva_training stage on {item.file}: {record.error}")
        return record.bytes_read

    def analysis(self, item: WorkItem, ds: Dataset) -> int:
        """Run the analysis task; return the bytes it counted."""
        from intccms.execute.tasks import analysis_task
        from intccms.physics.pipeline import ChunkContext

        era_cfg = self.cfg.eras[ds.era]
        golden = str(era_cfg.golden_json) if ds.is_data and era_cfg.golden_json else None
        ctx = ChunkContext(process=ds.process, era=ds.era, is_data=ds.is_data, norm=1.0,
                           golden_json=golden, constants=self.constants[ds.era])
        spec = None if ds.is_data else self.specs.get(ds.era)
        _, record = analysis_task(item, ctx, self.plan, spec, self.options)
        if record.failed:
            raise TraceError(f"analysis stage on {item.file}: {record.error}")
        return record.bytes_read

    def skim(self, item: WorkItem, ds: Dataset) -> int:
        """Run the skim task (writing to a temporary folder); return the bytes it counted."""
        from intccms.execute.tasks import skim_task
        from intccms.physics.events import branch_names
        from intccms.physics.functors import Functor

        # The arguments skim_stage builds for its tasks, for one chunk.
        a, wf = self.cfg.analysis, self.cfg.workflow
        fmt = str(wf.skim_format.value if hasattr(wf.skim_format, "value") else wf.skim_format)
        skim = Functor.from_config(_container(a.skim))
        collections = {k: tuple(v) for k, v in a.collections.items()}
        skim_inputs = {c: collections[c] for c in skim.inputs if c in collections}
        keep = tuple(a.skim_keep) + tuple(branch_names(skim_inputs, ()))
        writer_kwargs = (_container(self.cfg.storage.writer_kwargs) or {}).get(fmt, {})
        drop = frozenset(a.mc_only) if ds.is_data else frozenset()
        with tempfile.TemporaryDirectory(prefix="intccms-inspect-") as tmp:
            target = str(Path(tmp) / f"part.{SKIM_EXTENSIONS[fmt]}")
            _, record = skim_task(item, target, fmt, keep, drop, skim, collections,
                                  self.constants[ds.era], self.options, writer_kwargs)
        if record.failed:
            raise TraceError(f"skim stage on {item.file}: {record.error}")
        return record.bytes_read


def trace_file(runner: StageRunner, ds: Dataset, url: str, entries: int, tree: str,
               stages: Sequence[str] | None = None) -> dict[str, StageTrace]:
    """Run each stage (default: :meth:`StageRunner.stages`) on the first ``entries`` entries of
    ``url`` and name the branches read."""
    from intccms.inspect.tracing import branches_read, record_ranges

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


def trace_reads(cfg: DictConfig, datasets: Mapping[str, Dataset], files: Mapping[str, Sequence[str]],
                options: StorageOptions, *, entries: int, tree: str = "Events",
                max_attempts: int = 3) -> ReadsTrace:
    """Trace the stages once per kind (simulation, data) on the first readable file.

    Args:
        datasets: the selected datasets.
        files: dataset -> files to try, in order (the inspected ones).
        entries: entries of the traced chunk.
        max_attempts: files tried per kind before giving up (bad files are skipped).

    Returns:
        The traces; a kind whose files all fail has a note instead.
    """
    result = ReadsTrace(input_stages=input_stages(cfg))
    eras = sorted({d.era for d in datasets.values()})
    try:
        result.training_datasets = training_datasets(cfg, datasets)
        runner = StageRunner(cfg, eras, options)
    except Exception as err:  # noqa: BLE001 - reads are optional: say why they are missing
        result.notes.append(f"analysis reads not traced: cannot set up the stages: {type(err).__name__}: {err}")
        return result
    for is_data in (False, True):
        kind = "data" if is_data else "mc"
        candidates = [(ds, f) for name, ds in datasets.items() if ds.is_data == is_data
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

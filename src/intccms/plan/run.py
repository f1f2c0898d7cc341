"""The run plan: everything a job does, decided once from the composed configuration.

:func:`build_run_plan` is the only place where the configuration (a Hydra ``DictConfig``) is
read for a run. It resolves the selected datasets to files, reads the era constants, builds and
checks every era's corrections, builds the worker-side analysis plan and types every group; the
stages (metadata, skim, analysis, training, statistics, processor, outputs) receive the frozen
:class:`RunPlan` and never the configuration. Provenance records the plan as it was run
(:meth:`RunPlan.provenance`), generated input files included.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, cast

from omegaconf import DictConfig, OmegaConf

from intccms.config.compose import to_yaml
from intccms.config.mva import MvaConfig, load_mva_config
from intccms.config.processor import ProcessorConfig, ProcessorConfigError, parse_processor_config
from intccms.config.schema import ClusterConfig, PrometheusConfig, WorkflowConfig
from intccms.config.statistics import StatisticsConfig
from intccms.core.errors import ConfigError
from intccms.physics.corrections.spec import CorrectionsSpec
from intccms.physics.functors import Functor
from intccms.physics.pipeline import AnalysisPlan
from intccms.plan.analysis import build_plan, corrections_specs, era_constants, make_functor
from intccms.plan.datasets import (
    Dataset,
    generated_file_paths,
    resolve_dataset,
    select_datasets,
    unmatched_eras,
)
from intccms.storage import StorageOptions, load_credentials
from intccms.storage.grid import GridSettings

SKIM_EXTENSIONS = {"parquet": "parquet", "ttree": "root", "rntuple": "root"}


@dataclass(frozen=True)
class EraPlan:
    """One era of the run: what normalisation, the golden JSON and the functors need."""

    name: str
    year: str
    luminosity: float  # pb^-1
    golden_json: str | None
    constants: Mapping[str, Any]  # the ``@name`` values functors see (triggers, b-tag WP, ...)
    corrections: CorrectionsSpec | None  # None: no corrections configured for the era


@dataclass(frozen=True)
class SkimPlan:
    """What the skim stage writes and where (``workflow.skim_*``, ``analysis.skim*``)."""

    directory: str
    fmt: str
    extension: str
    skim: Functor
    definition: Mapping[str, Any]  # the skim functor as configured (part of the skim signature)
    keep: tuple[str, ...]
    collections: Mapping[str, tuple[str, ...]]
    mc_only: frozenset[str]  # branches never read from (nor written for) collision data
    writer_kwargs: Mapping[str, Any]


@dataclass(frozen=True)
class ObservableAxis:
    """Binning and label of one observable's histograms."""

    bins: int
    start: float
    stop: float
    label: str = ""


@dataclass(frozen=True)
class PlotSettings:
    """How processes are stacked and drawn (``analysis.plot``)."""

    groups: Mapping[str, tuple[str, ...]]
    signals: tuple[str, ...]
    log_y: bool


@dataclass(frozen=True)
class RunPlan:
    """A whole run, typed and frozen; built by :func:`build_run_plan`.

    ``analysis`` and ``skim`` are None for a processor run, ``processor`` is None otherwise.
    """

    name: str
    run_id: str
    output_url: str
    datasets: Mapping[str, Dataset]
    eras: Mapping[str, EraPlan]
    storage: StorageOptions
    workflow: WorkflowConfig
    cluster: ClusterConfig
    prometheus: PrometheusConfig
    analysis: AnalysisPlan | None = None
    skim: SkimPlan | None = None
    observables: Mapping[str, ObservableAxis] = field(default_factory=dict)
    plot: PlotSettings = field(default_factory=lambda: PlotSettings({}, (), True))
    statistics: StatisticsConfig | None = None
    mva: MvaConfig | None = None
    processor: ProcessorConfig | None = None
    # The resolved configuration with every generated dataset's files filled in (provenance).
    config_yaml: str = ""
    warnings: tuple[str, ...] = ()

    @property
    def variations(self) -> tuple[str, ...]:
        """``nominal`` then every variation the histograms get."""
        return self.analysis.variations if self.analysis is not None else ("nominal",)

    def constants(self) -> dict[str, Mapping[str, Any]]:
        """Era -> the functor constants of that era."""
        return {name: era.constants for name, era in self.eras.items()}

    def corrections(self) -> dict[str, CorrectionsSpec]:
        """Era -> its corrections, for the eras that have any (simulation only)."""
        return {name: era.corrections for name, era in self.eras.items() if era.corrections is not None}

    def corrections_for(self, dataset: str) -> CorrectionsSpec | None:
        """The corrections a dataset's chunks get: none for collision data."""
        ds = self.datasets[dataset]
        return None if ds.is_data else self.eras[ds.era].corrections

    def summary(self) -> dict[str, Any]:
        """The plan as JSON-able data (``provenance/plan.json``): what was run, on which files."""
        return {
            "name": self.name,
            "run_id": self.run_id,
            "output": self.output_url,
            "workflow": cast("dict[str, Any]", OmegaConf.to_container(OmegaConf.structured(self.workflow),
                                                                       enum_to_str=True)),
            "datasets": {n: {"era": d.era, "process": d.process, "is_data": d.is_data, "xsec": d.xsec,
                             "files": list(d.files)} for n, d in sorted(self.datasets.items())},
            "eras": {n: {"year": e.year, "luminosity": e.luminosity, "golden_json": e.golden_json,
                         "corrections": list(e.corrections.names) if e.corrections else []}
                     for n, e in sorted(self.eras.items())},
            "variations": list(self.variations),
            "processor": self.processor.class_path if self.processor is not None else None,
        }


def storage_options(cfg: DictConfig) -> StorageOptions:
    """Storage options from the ``storage`` group; credentials stay as env-var references and
    grid credential files (the ``credentials`` group) as paths."""
    return StorageOptions(
        s3_endpoint=cfg.storage.s3_endpoint,
        timeout_s=float(cfg.storage.timeout_s),
        retries=int(cfg.storage.retries),
        credentials=load_credentials(grid=GridSettings.from_config(cfg.get("credentials"))),
        reader_kwargs=cast("dict[str, Any]", OmegaConf.to_container(cfg.storage.reader_kwargs, resolve=True) or {}),
    )


def with_generated_files(cfg: DictConfig) -> DictConfig:
    """A copy of ``cfg`` whose generated datasets without explicit ``files`` name the
    generator's output paths (the configuration given is left as it is)."""
    filled = copy.deepcopy(cfg)
    root = str(filled.paths.generated_data)
    for name, ds in filled.datasets.items():
        if ds.generate is not None and not ds.files:
            ds.files = generated_file_paths(root, str(name), str(ds.era), int(ds.generate.n_files))
    return filled


def resolve_datasets(cfg: DictConfig, options: StorageOptions) -> dict[str, Dataset]:
    """The selected datasets (``dataset_selection``) resolved to files; the storage options
    reach remote globs (endpoint, credentials, timeouts)."""
    return _resolve(with_generated_files(cfg), options)


def _resolve(filled: DictConfig, options: StorageOptions) -> dict[str, Dataset]:
    """:func:`resolve_datasets` of a configuration whose generated files are filled in already."""
    chosen = select_datasets(cast("dict[str, Any]", OmegaConf.to_container(filled.datasets, resolve=True)),
                             list(filled.dataset_selection))
    return {name: resolve_dataset(name, d, options) for name, d in chosen.items()}


def build_run_plan(cfg: DictConfig, *, run_id: str, output_url: str | None = None,
                   storage: StorageOptions | None = None) -> RunPlan:
    """The run's plan from the composed configuration, checked as far as it can be at start-up.

    Args:
        cfg: the composed configuration (:func:`intccms.config.compose_config`).
        run_id: the run's id (metrics labels, the cluster's name).
        output_url: where the outputs go (``output_dir`` when not given).
        storage: the storage options the caller made from ``cfg`` already (made here if not).

    Raises:
        ConfigError, ValueError, DatasetError: naming the key or dataset that is wrong.
    """
    cfg = with_generated_files(cfg)
    options = storage if storage is not None else storage_options(cfg)
    datasets = _resolve(cfg, options)
    names = sorted({d.era for d in datasets.values()})
    unknown = [e for e in names if e not in cfg.eras]
    if unknown:
        msg = f"datasets use eras {unknown} that are not configured under 'eras' (known: {sorted(cfg.eras)})"
        raise ValueError(msg)
    typed = {key: _typed(cfg, key) for key in ("workflow", "cluster", "prometheus")}
    common: dict[str, Any] = {
        "name": str(cfg.name), "run_id": run_id, "output_url": output_url or str(cfg.output_dir),
        "datasets": datasets, "storage": options, "config_yaml": to_yaml(cfg),
        "warnings": tuple(unmatched_eras(datasets)), **typed,
    }
    if cfg.get("processor") is not None:
        try:
            processor = parse_processor_config(cfg.processor)
        except ProcessorConfigError as err:
            raise ConfigError(str(err)) from None
        eras = {e: _era(cfg, e, {}, None) for e in names}
        return RunPlan(eras=eras, processor=processor, **common)
    constants = era_constants(cfg, names)
    specs = corrections_specs(cfg, names)  # every correction file and key checked now
    eras = {e: _era(cfg, e, constants[e], specs.get(e)) for e in names}
    a = cfg.analysis
    return RunPlan(
        eras=eras, analysis=build_plan(cfg, specs), skim=_skim_plan(cfg),
        observables=observable_axes(cfg),
        plot=PlotSettings({str(k): tuple(v) for k, v in a.plot.groups.items()}, tuple(a.plot.signals),
                          bool(a.plot.log_y)),
        statistics=_typed(cfg, "statistics") if cfg.get("statistics") is not None else None,
        mva=load_mva_config(cfg.mva) if cfg.get("mva") is not None else None,
        **common,
    )


def observable_axes(cfg: DictConfig) -> dict[str, ObservableAxis]:
    """Binning and label of every configured observable (``analysis.observables``)."""
    return {str(name): ObservableAxis(int(o.binning.bins), float(o.binning.start), float(o.binning.stop),
                                      str(o.label)) for name, o in cfg.analysis.observables.items()}


def _typed(cfg: DictConfig, key: str) -> Any:  # noqa: ANN401
    """A group as its schema's dataclass (enums and nested dataclasses included)."""
    return OmegaConf.to_object(cfg[key])


def _era(cfg: DictConfig, name: str, constants: Mapping[str, Any], spec: CorrectionsSpec | None) -> EraPlan:
    era = cfg.eras[name]
    return EraPlan(name=name, year=str(era.year), luminosity=float(era.luminosity),
                   golden_json=str(era.golden_json) if era.golden_json else None,
                   constants=dict(constants), corrections=spec)


def _skim_plan(cfg: DictConfig) -> SkimPlan:
    wf, a = cfg.workflow, cfg.analysis
    fmt = str(wf.skim_format.value if hasattr(wf.skim_format, "value") else wf.skim_format)
    definition = cast("dict[str, Any]", OmegaConf.to_container(a.skim, resolve=True, enum_to_str=True))
    writer_kwargs = cast("dict[str, Any]", OmegaConf.to_container(cfg.storage.writer_kwargs, resolve=True))
    return SkimPlan(
        directory=str(wf.skim_dir), fmt=fmt, extension=SKIM_EXTENSIONS[fmt],
        skim=make_functor(definition, a), definition=definition, keep=tuple(a.skim_keep),
        collections={str(k): tuple(v) for k, v in a.collections.items()}, mc_only=frozenset(a.mc_only),
        writer_kwargs=writer_kwargs.get(fmt, {}),
    )

"""Semantic checks after composition: everything that types alone cannot catch."""

from __future__ import annotations

from typing import TYPE_CHECKING

from omegaconf import DictConfig

from intccms.config.compose import ConfigError
from intccms.processor.config import ProcessorConfigError, parse_processor_config

if TYPE_CHECKING:
    from intccms.processor.loader import LoadedProcessor


def validate_config(cfg: DictConfig) -> None:
    """Fail at start-up, naming the key, on references that do not resolve.

    Checks import paths of every functor, observables named by channels, eras of datasets,
    cross-sections of simulation, and corrections named per era; with a ``processor`` group,
    the processor (keys, class, constructor arguments, schema) instead of the analysis.
    """
    if cfg.get("processor") is not None:
        check_processor(cfg)
    else:
        _check_analysis(cfg)
    _check_datasets(cfg)
    _check_cluster_kubernetes(cfg)
    if cfg.workflow.chunksize <= 0:
        msg = f"workflow.chunksize must be positive, got {cfg.workflow.chunksize}"
        raise ConfigError(msg)


def check_processor(cfg: DictConfig) -> LoadedProcessor:
    """The ``processor`` group typed, its class imported, checked and built (at start-up)."""
    # coffea takes ~2 s to import: only configurations with a processor pay for it.
    from intccms.processor.loader import ProcessorLoadError, load_processor

    try:
        loaded = load_processor(parse_processor_config(cfg.processor))
    except (ProcessorConfigError, ProcessorLoadError) as err:
        raise ConfigError(str(err)) from None
    wf = cfg.workflow
    if wf.use_skimmed_input or wf.save_skimmed_output or wf.run_statistics or wf.run_mva_training:
        msg = ("workflow: a processor run reads NanoAOD and runs the processor only; set "
               "workflow.use_skimmed_input, save_skimmed_output, run_statistics and "
               "run_mva_training to false (or use workflow=analysis)")
        raise ConfigError(msg)
    return loaded


def _check_analysis(cfg: DictConfig) -> None:
    """Functors import, channels name defined observables, corrections exist per era."""
    from intccms.physics.functors import FunctorError, import_function

    a = cfg.analysis
    functors = [("analysis.skim", a.skim)]
    functors += [(f"analysis.objects.{k}", v) for k, v in a.objects.items()]
    functors += [(f"analysis.baseline.{k}", v) for k, v in a.baseline.items()]
    functors += [(f"analysis.observables.{k}", v) for k, v in a.observables.items()]
    for ch, channel in a.channels.items():
        functors += [(f"analysis.channels.{ch}.cuts.{k}", v) for k, v in channel.cuts.items()]
        for obs in channel.observables:
            if obs not in a.observables:
                msg = (f"analysis.channels.{ch}.observables: '{obs}' is not defined under "
                       f"analysis.observables (known: {sorted(a.observables)})")
                raise ConfigError(msg)
    for key, functor in functors:
        try:
            import_function(str(functor.function))
        except FunctorError as err:
            raise ConfigError(f"{key}.function: {err}") from None
    for era, names in cfg.corrections.by_era.items():
        if era not in cfg.eras:
            msg = f"corrections.by_era.{era}: '{era}' is not one of the configured eras {sorted(cfg.eras)}"
            raise ConfigError(msg)
        for name in names:
            if name not in cfg.corrections.definitions:
                msg = (f"corrections.by_era.{era}: correction '{name}' is not defined under "
                       f"corrections.definitions (known: {sorted(cfg.corrections.definitions)})")
                raise ConfigError(msg)


def _check_datasets(cfg: DictConfig) -> None:
    """Every dataset has a configured era, data is process 'data', simulation a cross-section."""
    for name, ds in cfg.datasets.items():
        if ds.era not in cfg.eras:
            msg = f"datasets.{name}.era: '{ds.era}' is not one of the configured eras {sorted(cfg.eras)}"
            raise ConfigError(msg)
        process = ds.process or ("data" if ds.is_data else name)
        if ds.is_data != (process == "data"):
            # Histograms, plots and the statistical model know the observed data as process
            # "data": a data set under another name would be stacked as a background.
            msg = (f"datasets.{name}.process: '{process}' with is_data={bool(ds.is_data)}; "
                   "collision data must use process 'data' (or leave it unset) and simulation any other name")
            raise ConfigError(msg)
        if not ds.is_data and ds.xsec is None:
            msg = f"datasets.{name}.xsec: simulation needs a cross-section in pb"
            raise ConfigError(msg)


def _check_cluster_kubernetes(cfg: DictConfig) -> None:
    """cluster.kubernetes is untyped in the root schema: check it against its own dataclass."""
    block = cfg.cluster.get("kubernetes")
    if block is None:
        return
    from intccms.execute.backends.kubernetes_config import (
        KubernetesConfigError,
        parse_kubernetes_config,
    )

    try:
        parse_kubernetes_config(block)
    except KubernetesConfigError as err:
        raise ConfigError(str(err)) from None

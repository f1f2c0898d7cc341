"""Semantic checks after composition: everything that types alone cannot catch."""

from __future__ import annotations

from omegaconf import DictConfig

from intccms.config.compose import ConfigError


def validate_config(cfg: DictConfig) -> None:
    """Fail at start-up, naming the key, on references that do not resolve.

    Checks import paths of every functor, observables named by channels, eras of datasets,
    cross-sections of simulation, and corrections named per era.
    """
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
    for era, names in cfg.corrections.by_era.items():
        if era not in cfg.eras:
            msg = f"corrections.by_era.{era}: '{era}' is not one of the configured eras {sorted(cfg.eras)}"
            raise ConfigError(msg)
        for name in names:
            if name not in cfg.corrections.definitions:
                msg = (f"corrections.by_era.{era}: correction '{name}' is not defined under "
                       f"corrections.definitions (known: {sorted(cfg.corrections.definitions)})")
                raise ConfigError(msg)
    _check_cluster_kubernetes(cfg)
    _check_credentials(cfg)
    if cfg.workflow.chunksize <= 0:
        msg = f"workflow.chunksize must be positive, got {cfg.workflow.chunksize}"
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


def _looks_like_content(value: str) -> bool:
    """A PEM block or a JWT pasted where a path belongs."""
    parts = value.split(".")
    return "-----BEGIN" in value or "\n" in value or (
        len(parts) == 3 and value.startswith("eyJ") and "/" not in value)


def _check_credentials(cfg: DictConfig) -> None:
    """The credentials group holds locations: a pasted proxy or token is refused, unshown."""
    creds = cfg.get("credentials")
    if creds is None:
        return
    for key in ("x509_proxy", "x509_cert_dir", "bearer_token_file"):
        value = creds.get(key)
        if value is not None and _looks_like_content(str(value)):
            msg = (f"credentials.{key} must be a path, and this looks like credential contents "
                   "(not shown); put the proxy or token in a file and give its path")
            raise ConfigError(msg)
    for key in ("min_lifetime_h", "token_min_lifetime_h"):
        if float(creds.get(key, 0.0)) < 0:
            msg = f"credentials.{key} must be >= 0 hours, got {creds.get(key)}"
            raise ConfigError(msg)

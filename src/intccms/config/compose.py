"""Compose the job configuration with Hydra and validate it before any work starts."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydra import compose, initialize_config_dir
from hydra.core.config_store import ConfigStore
from hydra.core.global_hydra import GlobalHydra
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf, open_dict
from omegaconf.errors import OmegaConfBaseException

from intccms.config.schema import RootConfig

SCHEMA_NAME = "intccms_schema"


class ConfigError(ValueError):
    """The configuration cannot be composed or is inconsistent; the message names the key."""


def repo_root() -> Path:
    """Repository root when running from a source checkout (``src/intccms/config`` -> root)."""
    return Path(__file__).resolve().parents[3]


def conf_dir() -> Path:
    """Directory holding the Hydra configuration tree.

    ``INTCCMS_CONF_DIR`` wins (container images copy ``conf/`` to a fixed place); otherwise the
    ``conf/`` folder of the source checkout.
    """
    env = os.environ.get("INTCCMS_CONF_DIR")
    path = Path(env) if env else repo_root() / "conf"
    if not (path / "demo.yaml").is_file():
        msg = (
            f"configuration directory {path} has no demo.yaml; set INTCCMS_CONF_DIR to the "
            "project's conf/ folder"
        )
        raise ConfigError(msg)
    return path


def _register_schema() -> None:
    ConfigStore.instance().store(name=SCHEMA_NAME, node=RootConfig)


def compose_config(
    config_name: str = "demo", overrides: Sequence[str] = (), *, validate: bool = True
) -> DictConfig:
    """Compose a top-level configuration with overrides, typed by :class:`RootConfig`.

    Args:
        config_name: top-level configuration in ``conf/`` (``demo``, ``run2_skim``, ...).
        overrides: Hydra overrides (``key=value``, ``group=option``).
        validate: run the semantic checks of :mod:`intccms.config.validate`.

    Returns:
        The composed, struct-mode configuration.

    Raises:
        ConfigError: unknown key or option, wrong type, or an inconsistent setting.
    """
    _register_schema()
    GlobalHydra.instance().clear()
    extra = os.environ.get("INTCCMS_EXTRA_CONF_DIR")
    search_overrides, new_datasets = _split_dataset_additions(overrides)
    primary = conf_dir()
    if extra:
        extra_dir = Path(extra).resolve()
        if (extra_dir / f"{config_name}.yaml").is_file():
            # A top-level config shipped in the extra directory (e.g. a Kubernetes ConfigMap):
            # it becomes the primary directory and the project's conf/ stays on the search path.
            search_overrides.append(f"hydra.searchpath=[file://{primary}]")
            primary = extra_dir
        else:
            search_overrides.append(f"hydra.searchpath=[file://{extra_dir}]")
    try:
        with initialize_config_dir(config_dir=str(primary), version_base="1.3"):
            cfg = compose(config_name=config_name, overrides=search_overrides)
    except (HydraException, OmegaConfBaseException) as err:
        detail = str(err)
        cause = err.__cause__
        while cause is not None:
            detail += f": {cause}"
            cause = cause.__cause__
        msg = f"cannot compose configuration '{config_name}': {detail}{_key_hint(err)}"
        raise ConfigError(msg) from None
    finally:
        GlobalHydra.instance().clear()
    _add_datasets(cfg, new_datasets)
    try:
        OmegaConf.resolve(cfg)
    except OmegaConfBaseException as err:
        msg = f"cannot resolve configuration '{config_name}': {err}"
        raise ConfigError(msg) from None
    if validate:
        from intccms.config.validate import validate_config

        validate_config(cfg)
    return cfg


def _key_hint(err: BaseException) -> str:
    """For an unknown key, the closest valid keys and the keys that exist at that level."""
    import difflib

    from omegaconf.errors import ConfigAttributeError, ConfigKeyError

    cause: BaseException | None = err
    while cause is not None and not isinstance(cause, ConfigKeyError | ConfigAttributeError):
        cause = cause.__cause__
    full_key = getattr(cause, "full_key", None) if cause is not None else None
    if not full_key or "not in" not in str(cause):
        return ""
    parent, _, key = str(full_key).rpartition(".")
    node = OmegaConf.structured(RootConfig)
    try:
        level = OmegaConf.select(node, parent) if parent else node
    except OmegaConfBaseException:
        return ""
    if not isinstance(level, DictConfig):
        return ""
    allowed = sorted(str(k) for k in level)
    close = difflib.get_close_matches(key, allowed, n=3)
    guess = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    return f"\n{guess} Valid keys under '{parent or '<root>'}': {', '.join(allowed)}"


def _split_dataset_additions(overrides: Sequence[str]) -> tuple[list[str], dict[str, dict[str, Any]]]:
    """Take ``+datasets.NAME={...}`` and ``+datasets.NAME.field=value`` out of the overrides.

    Hydra cannot add an entry to a dictionary of structured configs from the command line
    (``dict is not a subclass of DatasetConfig``); these additions are applied after composition
    instead, through the same schema, so a dataset can be added without writing a YAML file.
    """
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser = OverridesParser.create()
    rest: list[str] = []
    added: dict[str, dict[str, Any]] = {}
    for text in overrides:
        if not text.startswith("+datasets."):
            rest.append(text)
            continue
        try:
            override = parser.parse_override(text)
        except HydraException as err:
            msg = f"cannot parse override '{text}': {err}"
            raise ConfigError(msg) from None
        _, name, *field_path = override.key_or_group.split(".")
        value = override.value()
        entry = added.setdefault(name, {})
        if field_path:
            entry[".".join(field_path)] = value
        elif isinstance(value, dict):
            entry.update(value)
        else:
            msg = f"override '{text}': datasets.{name} must be a mapping such as {{era: '2018', files: [...]}}"
            raise ConfigError(msg)
    return rest, added


def _add_datasets(cfg: DictConfig, added: dict[str, dict[str, Any]]) -> None:
    """Merge command-line datasets into ``cfg.datasets``, validated by :class:`DatasetConfig`."""
    from intccms.config.schema import DatasetConfig

    for name, values in added.items():
        if name in cfg.datasets:
            msg = f"+datasets.{name}: a dataset of that name exists already (override its keys without '+')"
            raise ConfigError(msg)
        entry = OmegaConf.structured(DatasetConfig)
        try:
            for key, value in values.items():
                OmegaConf.update(entry, key, value, merge=True)
            with open_dict(cfg.datasets):
                cfg.datasets[name] = entry
        except OmegaConfBaseException as err:
            msg = f"datasets.{name}: {err}".splitlines()[0]
            raise ConfigError(msg) from None


def to_yaml(cfg: DictConfig) -> str:
    """The fully resolved configuration as YAML (saved next to every output)."""
    return OmegaConf.to_yaml(cfg, resolve=True)

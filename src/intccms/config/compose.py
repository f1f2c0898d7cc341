"""Compose the job configuration with Hydra and validate it before any work starts."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydra import compose, initialize_config_dir
from hydra.core.config_store import ConfigStore
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf, open_dict
from omegaconf.errors import ConfigAttributeError, ConfigKeyError, OmegaConfBaseException

from intccms.config.inspect import InspectConfig, inspect_config
from intccms.config.keys import dict_entry_schema, did_you_mean
from intccms.config.schema import RootConfig
from intccms.config.validate import validate_config
from intccms.core.conf import conf_dir
from intccms.core.errors import ConfigError

SCHEMA_NAME = "intccms_schema"
# The ``inspect`` option added when a configuration does not select one itself.
INSPECT_GROUP_DEFAULT = "default"


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
    search_overrides, new_entries = _split_entry_additions(overrides)
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
        unknown = _unknown_key(err)
        if unknown is not None:
            msg = f"cannot compose configuration '{config_name}': {unknown}"
            raise ConfigError(msg) from None
        msg = f"cannot compose configuration '{config_name}': {_describe(err)}"
        raise ConfigError(msg) from None
    finally:
        GlobalHydra.instance().clear()
    _add_entries(cfg, new_entries)
    try:
        OmegaConf.resolve(cfg)
    except OmegaConfBaseException as err:
        msg = f"cannot resolve configuration '{config_name}': {err}"
        raise ConfigError(msg) from None
    if extra or any(o.lstrip().startswith("+") for o in overrides):
        _check_keys(cfg, config_name)  # only these can add keys the typed compose did not check
    if validate:
        validate_config(cfg)
    return cfg


def _check_keys(cfg: DictConfig, config_name: str) -> None:
    """Every key of the composed configuration is one the schema declares.

    Hydra's ``+key=value`` and a ConfigMap's extra file can add keys below a typed node; merging
    the whole configuration onto a fresh schema catches them, naming the full key.
    """
    try:
        OmegaConf.merge(OmegaConf.structured(RootConfig), OmegaConf.to_container(cfg))
    except OmegaConfBaseException as err:
        unknown = _unknown_key(err)
        detail = unknown if unknown is not None else _describe(err)
        msg = f"configuration '{config_name}': {detail}"
        raise ConfigError(msg) from None


def _describe(err: BaseException) -> str:
    """One line naming the full key of a wrong value (``cluster.n_workers: Value 'x' ...``);
    Hydra's own text (with its causes) when no key is known."""
    cause: BaseException | None = err
    while cause is not None:
        full_key = getattr(cause, "full_key", None)
        if full_key:
            return f"{full_key}: {str(getattr(cause, 'msg', cause)).splitlines()[0]}"
        cause = cause.__cause__ or cause.__context__
    detail = str(err)
    cause = err.__cause__
    while cause is not None:
        detail += f": {cause}"
        cause = cause.__cause__
    return detail


def _unknown_key(err: BaseException) -> str | None:
    """The schema's message for an unknown key behind a Hydra/OmegaConf error, if that is what it is."""

    cause: BaseException | None = err
    while cause is not None and not isinstance(cause, ConfigKeyError | ConfigAttributeError):
        cause = cause.__cause__ or cause.__context__
    full_key = getattr(cause, "full_key", None) if cause is not None else None
    if not full_key or "not in" not in str(cause):
        return None
    return did_you_mean(str(full_key), RootConfig)


def _split_entry_additions(
    overrides: Sequence[str],
) -> tuple[list[str], dict[tuple[str, str], dict[str, Any]]]:
    """Take additions of entries to dictionaries of structured configs out of the overrides.

    Hydra cannot add an entry to a ``dict[str, <dataclass>]`` from the command line (``dict is
    not a subclass of DatasetConfig``), so ``+datasets.NAME={...}``, ``+datasets.NAME.field=x``,
    ``+mva.features.NAME={...}`` or ``+analysis.channels.NAME={...}`` are applied after
    composition instead, through the same schema, without writing a YAML file.

    Returns:
        The other overrides, and the values per (dictionary path, entry name).
    """

    parser = OverridesParser.create()
    rest: list[str] = []
    added: dict[tuple[str, str], dict[str, Any]] = {}
    for text in overrides:
        target = _entry_target(text) if text.startswith("+") and not text.startswith("++") else None
        if target is None:
            rest.append(text)
            continue
        dict_path, name, field_path = target
        try:
            value = parser.parse_override(text).value()
        except HydraException as err:
            msg = f"cannot parse override '{text}': {err}"
            raise ConfigError(msg) from None
        entry = added.setdefault((dict_path, name), {})
        if field_path:
            entry[field_path] = value
        elif isinstance(value, dict):
            entry.update(value)
        else:
            msg = f"override '{text}': {dict_path}.{name} must be a mapping such as {{key: value, ...}}"
            raise ConfigError(msg)
    return rest, added


def _entry_target(text: str) -> tuple[str, str, str] | None:
    """(dictionary path, entry name, field path) when ``+key=...`` adds to a dictionary of
    structured configs; None for any other override."""
    parts = text[1:].partition("=")[0].strip().split(".")
    for i in range(1, len(parts)):
        if dict_entry_schema(".".join(parts[:i]), RootConfig) is not None:
            return ".".join(parts[:i]), parts[i], ".".join(parts[i + 1:])
    return None


def _add_entries(cfg: DictConfig, added: dict[tuple[str, str], dict[str, Any]]) -> None:
    """Merge command-line entries into their dictionaries, each validated by its schema."""
    for (dict_path, name), values in added.items():
        schema = dict_entry_schema(dict_path, RootConfig)
        node = OmegaConf.select(cfg, dict_path)
        assert schema is not None
        if not isinstance(node, DictConfig):
            msg = f"+{dict_path}.{name}: '{dict_path}' is not set in this configuration (select its group first)"
            raise ConfigError(msg)
        if name in node:
            msg = f"+{dict_path}.{name}: an entry of that name exists already (override its keys without '+')"
            raise ConfigError(msg)
        entry = OmegaConf.structured(schema)
        try:
            for key, value in values.items():
                OmegaConf.update(entry, key, value, merge=True)
            with open_dict(node):
                node[name] = entry
        except OmegaConfBaseException as err:
            key = str(getattr(err, "full_key", "") or "")
            unknown = did_you_mean(key, schema, f"{dict_path}.{name}.") if "not in" in str(err) else None
            if unknown is not None:
                raise ConfigError(unknown) from None
            detail = f"{key}: {str(getattr(err, 'msg', err)).splitlines()[0]}" if key else str(err).splitlines()[0]
            msg = f"{dict_path}.{name}: {detail}"
            raise ConfigError(msg) from None


def to_yaml(cfg: DictConfig) -> str:
    """The fully resolved configuration as YAML (saved next to every output)."""
    return OmegaConf.to_yaml(cfg, resolve=True)


def compose_inspect(config_name: str, overrides: Sequence[str] = ()) -> tuple[DictConfig, InspectConfig]:
    """Compose a top-level configuration with the ``inspect`` group and type it.

    Top-level configurations need not list the group: ``+inspect=default`` is appended unless an
    override picks one, or the configuration already has it in its defaults.

    Returns:
        The job configuration and its typed ``inspect`` section.
    """
    chosen = any(o.lstrip("+~").startswith("inspect=") for o in overrides)
    attempts: list[list[str]] = [list(overrides)]
    if not chosen:
        attempts.insert(0, [f"+inspect={INSPECT_GROUP_DEFAULT}", *overrides])
    error: ConfigError | None = None
    for attempt in attempts:
        try:
            cfg = compose_config(config_name, attempt)
        except ConfigError as err:
            # The configuration lists the group itself: compose without appending it.
            if "already at 'inspect'" in str(err) or "Multiple values for inspect" in str(err):
                error = err
                continue
            raise
        return cfg, inspect_config(cfg)
    assert error is not None
    raise error

"""Typed schema of the ``inspect`` group and its composition with the job configuration.

The root schema keeps ``inspect`` untyped (``Any``) so that jobs without it stay valid; the
inspector merges whatever the configuration holds onto :class:`InspectConfig` here, so a typo or
a wrong type fails before any file is opened, naming the key (``inspect.sample.files_per_datset``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any, cast

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from intccms.config.keys import schema_error
from intccms.core.errors import ConfigError


class Executor(str, Enum):
    """Where files are scanned."""

    dask = "dask"  # on the job's cluster (``cluster`` group), with a progress bar
    serial = "serial"  # in this process, one file after the other


@dataclass
class SampleConfig:
    """Which files of each dataset are opened.

    ``files_per_dataset: null`` opens every file; a number opens that many, drawn at random
    (``seed``) from the dataset's listing, and totals are extrapolated to the full listing.
    """

    files_per_dataset: int | None = None
    seed: int = 1


@dataclass
class ReadsConfig:
    """What the configured analysis reads: traced on one small chunk of a real file."""

    enabled: bool = True
    entries: int = 500
    # Expected read time at each bandwidth (Gbit/s).
    bandwidth_gbps: list[float] = field(default_factory=lambda: [1.0, 10.0])
    # A saved run report (``outputs/<name>/report/report.json``): its events/s and Gbit/s.
    report: str | None = None


class RucioAuth(str, Enum):
    """How the Rucio client logs in."""

    auto = "auto"  # the job's X509 proxy, else its bearer token, else rucio.cfg's login
    x509_proxy = "x509_proxy"  # the proxy of the credentials group, verified with its CA directory
    token = "token"  # the bearer token of the credentials group (WLCG discovery order)
    userpass = "userpass"  # username and password from rucio.cfg


@dataclass
class RucioConfig:
    """File sizes from a Rucio server (optional ``rucio-clients`` package)."""

    enabled: bool = False
    auth: RucioAuth = RucioAuth.auto
    host: str | None = None
    auth_host: str | None = None
    account: str | None = None
    scope: str = "cms"
    timeout_s: float = 30.0


@dataclass
class InspectConfig:
    """The ``inspect`` group."""

    tree: str = "Events"
    output_dir: str = "outputs/inspect"
    executor: Executor = Executor.dask
    sample: SampleConfig = field(default_factory=SampleConfig)
    reads: ReadsConfig = field(default_factory=ReadsConfig)
    rucio: RucioConfig = field(default_factory=RucioConfig)
    top_branches: int = 20
    plots: bool = True


def inspect_config(cfg: DictConfig) -> InspectConfig:
    """The typed ``inspect`` section of a composed job configuration.

    Defaults fill every key the configuration leaves out (also when it has no ``inspect`` group
    at all, with ``output_dir`` then under the job's ``output_dir``).

    Raises:
        ConfigError: an unknown key or a wrong type, naming the full key; or a bad value.
    """
    base = OmegaConf.structured(InspectConfig)
    base.output_dir = f"{cfg.output_dir}/inspect"
    given = cfg.get("inspect")
    try:
        merged = OmegaConf.merge(base, given) if given is not None else base
        out = cast(InspectConfig, OmegaConf.to_object(merged))
    except OmegaConfBaseException as err:
        raise ConfigError(schema_error("inspect.", InspectConfig, err)) from None
    _check(out)
    return out


def _check(icfg: InspectConfig) -> None:
    n = icfg.sample.files_per_dataset
    if n is not None and n <= 0:
        msg = f"inspect.sample.files_per_dataset must be positive or null (all files), got {n}"
        raise ConfigError(msg)
    if icfg.reads.entries <= 0:
        msg = f"inspect.reads.entries must be positive, got {icfg.reads.entries}"
        raise ConfigError(msg)
    bad = [b for b in icfg.reads.bandwidth_gbps if b <= 0]
    if bad:
        msg = f"inspect.reads.bandwidth_gbps must be positive (Gbit/s), got {bad}"
        raise ConfigError(msg)
    if icfg.top_branches <= 0:
        msg = f"inspect.top_branches must be positive, got {icfg.top_branches}"
        raise ConfigError(msg)


def as_dict(icfg: InspectConfig) -> dict[str, Any]:
    """Plain dictionary (enums as strings) for the JSON output."""
    return cast("dict[str, Any]", OmegaConf.to_container(OmegaConf.structured(icfg), enum_to_str=True))

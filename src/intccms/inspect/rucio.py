"""File sizes (and event counts) from a Rucio server, for a dataset's whole listing at once.

Rucio is optional: the ``rucio-clients`` package is imported only when ``inspect.rucio.enabled``
is set, and an absent package or an unreachable server gives :class:`RucioUnavailable` with a
message saying what to do; the inspector then takes sizes from the storage itself.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from intccms.config.inspect import RucioConfig


class RucioUnavailable(RuntimeError):
    """Rucio cannot be used here (package missing, server unreachable, dataset unknown)."""


@dataclass(frozen=True)
class RucioFile:
    """What Rucio records of one file."""

    name: str
    bytes: int
    events: int | None


def make_client(rcfg: RucioConfig) -> Any:
    """A connected :class:`rucio.client.Client`.

    Raises:
        RucioUnavailable: the package is not installed or the server does not answer.
    """
    try:
        from rucio.client import Client
    except ImportError:
        msg = ("inspect.rucio.enabled is set but the optional package 'rucio-clients' is not "
               "installed: `pip install rucio-clients`, or set inspect.rucio.enabled=false to "
               "take file sizes from the storage")
        raise RucioUnavailable(msg) from None
    kwargs = {k: v for k, v in {"rucio_host": rcfg.host, "auth_host": rcfg.auth_host,
                                "account": rcfg.account, "timeout": rcfg.timeout_s}.items()
              if v is not None}
    try:
        # rucio caches the first rucio.cfg it reads for the life of the process; read the one
        # in force now (RUCIO_CONFIG may have changed, e.g. between inspections in a notebook).
        from rucio.common.config import clean_cached_config

        clean_cached_config()
        client = Client(**kwargs)
        client.ping()
    except Exception as err:  # noqa: BLE001 - any client failure means: no Rucio sizes
        where = rcfg.host or "the host of rucio.cfg / RUCIO_HOME"
        msg = (f"Rucio server {where} is unreachable or refused the login "
               f"({type(err).__name__}: {str(err)[:200]}); check inspect.rucio.host, the proxy "
               "(X509_USER_PROXY) and the account, or set inspect.rucio.enabled=false")
        raise RucioUnavailable(msg) from None
    return client


def dataset_files(client: Any, scope: str, did: str) -> dict[str, RucioFile]:
    """Files of one Rucio DID (a CMS dataset name), keyed by name (the LFN for CMS).

    Raises:
        RucioUnavailable: the DID is unknown or the listing fails.
    """
    try:
        rows: Iterable[Mapping[str, Any]] = client.list_files(scope, did)
        out = {}
        for row in rows:
            events = row.get("events")
            out[str(row["name"])] = RucioFile(str(row["name"]), int(row["bytes"]),
                                              int(events) if events is not None else None)
    except Exception as err:  # noqa: BLE001 - reported per dataset, never fatal
        msg = f"Rucio cannot list {scope}:{did}: {type(err).__name__}: {str(err)[:200]}"
        raise RucioUnavailable(msg) from None
    return out


def sizes_for_listing(files: Iterable[str], rucio_files: Mapping[str, RucioFile]) -> dict[str, int]:
    """Sizes of the listed URLs whose path ends with a Rucio file name (LFN)."""
    by_lfn = {name: f.bytes for name, f in rucio_files.items()}
    out: dict[str, int] = {}
    for url in files:
        idx = url.find("/store/")
        key = url[idx:] if idx >= 0 else url
        if key in by_lfn:
            out[url] = by_lfn[key]
    return out

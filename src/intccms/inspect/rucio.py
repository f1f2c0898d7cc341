"""File sizes (and event counts) from a Rucio server, for a dataset's whole listing at once.

Rucio is optional: the ``rucio-clients`` package is imported only when ``inspect.rucio.enabled``
is set, and an absent package, an unusable credential or a server that does not answer or
refuses the login gives :class:`RucioUnavailable` with a message saying which; the inspector
then takes sizes from the storage itself.

The client logs in with the grid credentials the job checks at start-up (the ``credentials``
group: the X509 proxy with its CA directory, or the WLCG bearer token), handed to it
explicitly, so the inspection and the job present the same credential whatever ``rucio.cfg``
or ``X509_USER_PROXY`` would have chosen. Messages name files, subjects, issuers and times,
never a key, a certificate body, a password or a token.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from intccms.config.inspect import RucioAuth, RucioConfig
from intccms.storage.credentials import grid_environ
from intccms.storage.errors import GridCredentialError
from intccms.storage.grid import GridLocations, GridSettings, locate
from intccms.storage.grid_check import Status, proxy_status, read_token, token_status

# The client's own records (connection errors, with their TLS reason) go here, not to stderr.
_CLIENT_LOG = "intccms.inspect.rucio.client"


class RucioUnavailable(RuntimeError):
    """Rucio cannot be used here (package missing, credential unusable, server unreachable or
    refusing the login, dataset unknown)."""


@dataclass(frozen=True)
class RucioFile:
    """What Rucio records of one file."""

    name: str
    bytes: int
    events: int | None


@dataclass(frozen=True)
class RucioLogin:
    """How the client logs in: the kind and where the credential is, never what it holds.

    Attributes:
        auth: ``x509_proxy``, ``token``, ``userpass``, or ``None`` for the login rucio.cfg
            (or ``RUCIO_AUTH_TYPE``) configures.
        status: The checked credential (proxy or token), for messages.
        ca_dir: The CA directory that verifies the server (``None``: rucio's own choice).
        environ: Where a token given as a variable is read.
        why: For ``None``: why no grid credential is used.
    """

    auth: str | None
    status: Status | None = None
    ca_dir: str | None = None
    environ: Mapping[str, str] | None = field(default=None, repr=False, compare=False)
    why: str = ""

    def describe(self) -> str:
        """What the client presents, for people."""
        if self.status is not None:
            return self.status.line()
        if self.auth == "userpass":
            return "the username and password of rucio.cfg"
        return f"rucio.cfg's own credentials ({self.why})"


def choose_login(rcfg: RucioConfig, grid: GridSettings | None = None,
                 locations: GridLocations | None = None,
                 environ: Mapping[str, str] | None = None) -> RucioLogin:
    """The credential the client presents, checked as the job checks it at start-up.

    ``inspect.rucio.auth=auto`` takes the proxy when it is usable, else the bearer token, else
    leaves the login to rucio.cfg; a proxy or token that configuration or a variable names must
    be good (as for the job), one only found at its default place is skipped when it is not.

    Args:
        rcfg: The ``inspect.rucio`` group.
        grid: The ``credentials`` group (``None``: discovered from the environment).
        locations: Where the credentials are (default: found from ``grid`` and ``environ``).
        environ: Variables to look in (default: this process's, plus ``.env``).

    Raises:
        RucioUnavailable: the credential asked for (or a named one) is missing or unusable.
    """
    settings = grid or GridSettings()
    env = grid_environ() if environ is None else environ
    where = locations or locate(settings, env)
    auth = RucioAuth(rcfg.auth)
    if auth == RucioAuth.userpass:
        return RucioLogin("userpass")
    proxy = proxy_status(where.proxy, where.cert_dir, settings.min_lifetime_s)
    token = token_status(where.token, where.token_candidates, settings.token_min_lifetime_s, environ=env)
    no_token = "no bearer token: looked at " + ", ".join(where.token_candidates)
    ca_dir = str(where.cert_dir.path)
    named = [str(s.problem) for s in (proxy, token) if s is not None and s.problem and s.location.explicit]
    if auth == RucioAuth.auto and named:
        raise RucioUnavailable("inspect.rucio.auth=auto: " + "; ".join(named))
    if auth == RucioAuth.x509_proxy or (auth == RucioAuth.auto and proxy.usable):
        if not proxy.usable:
            raise RucioUnavailable(f"inspect.rucio.auth={auth.value}: {proxy.problem}")
        return RucioLogin("x509_proxy", proxy, ca_dir)
    token_dir = ca_dir if os.path.isdir(ca_dir) else None
    if auth == RucioAuth.token:
        if token is None or not token.usable:
            raise RucioUnavailable(f"inspect.rucio.auth=token: {token.problem if token else no_token}")
        return RucioLogin("token", token, token_dir, env)
    if token is not None and token.usable:
        return RucioLogin("token", token, token_dir, env)
    skipped = [str(s.problem) for s in (proxy, token) if s is not None and s.problem]
    return RucioLogin(None, why="no usable grid credential: " + "; ".join(skipped + ([no_token] if token is None else [])))


def _grid_client(base: type[Any]) -> type[Any]:
    """``rucio.client.Client`` presenting exactly the credential it is given.

    The client reads a bearer token only through its WLCG discovery in the environment and,
    when the server refuses one, starts the interactive OIDC login (a browser URL and a prompt);
    it also reuses a Rucio token cached on disk by any earlier login. This subclass hands it the
    checked token, reports a refused one instead of prompting, and makes a proxy login present
    the proxy. It replaces the two private steps of ``BaseClient`` that read and fetch tokens.
    """

    class GridClient(base):  # type: ignore[misc]
        def __init__(self, *, bearer: str | None = None, fresh_login: bool = False, **kwargs: Any) -> None:
            self._intccms_bearer = bearer
            self._intccms_fresh = fresh_login
            super().__init__(**kwargs)

        def _BaseClient__read_token(self) -> bool:  # noqa: N802 - the name BaseClient calls
            if self._intccms_bearer is not None:
                self.auth_token = self._intccms_bearer
                self.headers["X-Rucio-Auth-Token"] = self._intccms_bearer
                return True
            if self._intccms_fresh:
                return False
            return bool(super()._BaseClient__read_token())

        def _BaseClient__get_token(self) -> None:  # noqa: N802 - the name BaseClient calls
            if self._intccms_bearer is not None:
                # rucio-clients is optional: imported only once a Rucio client exists
                from rucio.common.exception import CannotAuthenticate

                raise CannotAuthenticate("the server refused the bearer token")
            super()._BaseClient__get_token()

    return GridClient


class _Collect(logging.Handler):
    """Keeps the client's error records: the TLS reason of a refused connection is only there."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def _reason(err: Exception, records: list[str]) -> str:
    """The failure in a few words: the TLS alert when there is one, else the exception."""
    text = f"{type(err).__name__}: {' '.join(str(err).split())[:200]}"
    for message in reversed(records):
        tls = re.search(r"\[SSL: [A-Z0-9_]+\][^()'\"]*", message)
        if tls:
            return f"{text}; TLS: {tls.group(0).strip()}"
        if "Caused by" in message:
            return f"{text}; {message[message.index('Caused by'):][:200]}"
    return text


def _hint(login: RucioLogin, account: str | None) -> str:
    who = f"account {account}" if account else "the account"
    if login.auth == "x509_proxy":
        return (f"the proxy looks valid here (its CA is in {login.ca_dir}), so the server may not "
                f"trust this CA or map this DN to {who}")
    if login.auth == "token":
        return (f"the token looks valid here, so the server may not accept this token's issuer "
                f"or audience or map its identity to {who}")
    if login.auth == "userpass":
        return f"check username, password and {who} in rucio.cfg"
    return "check the login of rucio.cfg, or give the job's proxy or token (inspect.rucio.auth)"


def make_client(rcfg: RucioConfig, login: RucioLogin | None = None) -> Any:
    """A :class:`rucio.client.Client` logged in with ``login`` (default: :func:`choose_login`
    from the environment), its login checked by an authenticated call.

    Raises:
        RucioUnavailable: the package is not installed, the credential is unusable, or the
            server does not answer or refuses the login.
    """
    try:  # rucio-clients is optional (inspect.rucio.enabled)
        from rucio.client import Client
    except ImportError:
        msg = ("inspect.rucio.enabled is set but the optional package 'rucio-clients' is not "
               "installed: `pip install rucio-clients`, or set inspect.rucio.enabled=false to "
               "take file sizes from the storage")
        raise RucioUnavailable(msg) from None
    login = login or choose_login(rcfg)
    kwargs: dict[str, Any] = {k: v for k, v in {"rucio_host": rcfg.host, "auth_host": rcfg.auth_host,
                                                "account": rcfg.account, "timeout": rcfg.timeout_s}.items()
                              if v is not None}
    bearer: str | None = None
    if login.auth == "x509_proxy" and login.status is not None:
        kwargs.update(auth_type="x509_proxy", creds={"client_proxy": str(login.status.location.path)},
                      ca_cert=login.ca_dir)
    elif login.auth == "token" and login.status is not None:
        try:
            bearer = read_token(login.status.location, login.environ).strip().removeprefix("Bearer ")
        except GridCredentialError as err:
            raise RucioUnavailable(str(err)) from None
        # "oidc" is the client's bearer-token login; the token itself is handed over below.
        kwargs.update(auth_type="oidc", ca_cert=login.ca_dir)
    elif login.auth == "userpass":
        kwargs["auth_type"] = "userpass"
    where = rcfg.host or "the host of rucio.cfg / RUCIO_HOME"
    logger = logging.getLogger(_CLIENT_LOG)
    collect = _Collect()
    logger.addHandler(collect)
    try:
        # rucio caches the first rucio.cfg it reads for the life of the process; read the one
        # in force now (RUCIO_CONFIG may have changed, e.g. between inspections in a notebook).
        from rucio.common.config import clean_cached_config

        clean_cached_config()
        client = _grid_client(Client)(bearer=bearer, fresh_login=login.auth == "x509_proxy",
                                      logger=logger, **kwargs)
        client.ping()
        client.whoami()
    except Exception as err:  # noqa: BLE001 - any client failure means: no Rucio sizes
        raise RucioUnavailable(_failure(err, collect.messages, login, where, rcfg.account)) from None
    finally:
        logger.removeHandler(collect)
    return client


def _failure(err: Exception, records: list[str], login: RucioLogin, where: str, account: str | None) -> str:
    """Why the client could not log in: unreachable, refused (with what), or misconfigured."""
    name = type(err).__name__
    reason = _reason(err, records)
    tls = "TLS: " in reason
    if name in ("CannotAuthenticate", "AccessDenied") or (tls and login.auth == "x509_proxy"):
        return (f"Rucio server {where} refused the login with {login.describe()} ({reason}); "
                f"{_hint(login, account)}; or set inspect.rucio.enabled=false")
    if name in ("MissingClientParameter", "NoAuthInformation", "ConfigNotFound", "ClientProtocolNotFound",
                "ClientProtocolNotSupported"):
        return (f"the Rucio client is not configured for {where} ({reason}); login: {login.describe()}; "
                "set inspect.rucio.host, auth_host and account, or RUCIO_CONFIG, or set "
                "inspect.rucio.enabled=false")
    return (f"Rucio server {where} is unreachable or refused the login ({reason}); login: "
            f"{login.describe()}; check inspect.rucio.host and the account, or set "
            "inspect.rucio.enabled=false")


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

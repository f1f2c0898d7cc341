"""Where the grid credentials are: an X509 proxy, the CA directory and a WLCG bearer token.

Only *locations* live here (file paths and variable names), never what the files hold. The
discovery follows the conventions the XRootD client applies itself, so the file the job checks
at start-up is the file the client later presents:

* X509 proxy: ``credentials.x509_proxy``, ``$X509_USER_PROXY``, ``/tmp/x509up_u<uid>``;
* CA directory: ``credentials.x509_cert_dir``, ``$X509_CERT_DIR``,
  ``/etc/grid-security/certificates``;
* bearer token: ``credentials.bearer_token_file``, ``INTCCMS_XROOTD_TOKEN`` (the project's own
  variable), then the WLCG bearer-token discovery order: ``$BEARER_TOKEN``,
  ``$BEARER_TOKEN_FILE``, ``$XDG_RUNTIME_DIR/bt_u<uid>``, ``/tmp/bt_u<uid>``.

A credential named by configuration or by a variable is *explicit*: a problem with it stops the
job. One found only at its default place is used when it is good and only warned about when not
(a stale ``/tmp/x509up_u<uid>`` must not stop a job that reads an anonymous server).
"""

from __future__ import annotations

import hashlib
import os
import stat
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

ENV_PROXY = "X509_USER_PROXY"
ENV_CERT_DIR = "X509_CERT_DIR"
ENV_TOKEN = "BEARER_TOKEN"
ENV_TOKEN_FILE = "BEARER_TOKEN_FILE"
ENV_INTCCMS_TOKEN = "INTCCMS_XROOTD_TOKEN"
DEFAULT_CERT_DIR = "/etc/grid-security/certificates"
# Variables that hold file or directory paths (never credential contents): safe to ship.
PATH_VARS = (ENV_PROXY, ENV_CERT_DIR, ENV_TOKEN_FILE)
REQUIRE_CHOICES = ("none", "x509", "token", "any")


@dataclass(frozen=True)
class GridSettings:
    """The ``credentials`` group as the storage layer sees it (plain values, no OmegaConf).

    Attributes:
        require: ``none`` (anonymous servers work), ``x509``, ``token`` or ``any`` (one of the
            two must be valid) for jobs that read or write ``root://`` URLs.
        x509_proxy: Proxy file; ``None`` discovers it.
        x509_cert_dir: CA directory; ``None`` discovers it.
        bearer_token_file: Token file; ``None`` discovers the token.
        min_lifetime_s: A proxy expiring sooner than this stops the job.
        token_min_lifetime_s: Likewise for a bearer token (tokens live minutes to hours).
    """

    require: str = "none"
    x509_proxy: str | None = None
    x509_cert_dir: str | None = None
    bearer_token_file: str | None = None
    min_lifetime_s: float = 2 * 3600.0
    token_min_lifetime_s: float = 0.25 * 3600.0

    def __post_init__(self) -> None:
        if self.require not in REQUIRE_CHOICES:
            msg = f"credentials.require must be one of {list(REQUIRE_CHOICES)}, got {self.require!r}"
            raise ValueError(msg)

    @classmethod
    def from_config(cls, section: Mapping[str, Any] | Any | None) -> GridSettings:
        """Build from the composed ``credentials`` section (``None``: the defaults)."""
        if section is None:
            return cls()
        get = section.get
        require = get("require", "none")
        return cls(
            require=str(getattr(require, "value", require)),
            x509_proxy=_opt(get("x509_proxy")),
            x509_cert_dir=_opt(get("x509_cert_dir")),
            bearer_token_file=_opt(get("bearer_token_file")),
            min_lifetime_s=float(get("min_lifetime_h", 2.0)) * 3600.0,
            token_min_lifetime_s=float(get("token_min_lifetime_h", 0.25)) * 3600.0,
        )


def _opt(value: Any) -> str | None:
    return None if value is None or str(value) == "" else os.path.expanduser(str(value))


@dataclass(frozen=True)
class Location:
    """One credential: a file (``path``) or a variable holding the value (``env_var``).

    Attributes:
        path: File or directory; ``None`` for a token given as a variable's value.
        origin: How it was found, for messages (``credentials.x509_proxy``,
            ``X509_USER_PROXY``, ``default``, ...).
        explicit: Named by configuration or a variable (a problem with it stops the job).
        env_var: For a token value: the variable that holds it.
    """

    path: str | None
    origin: str
    explicit: bool
    env_var: str | None = None

    def describe(self) -> str:
        """Where it is, for a message: never the value."""
        if self.path is None:
            return f"variable {self.env_var}"
        return self.path if self.origin == "default" else f"{self.path} ({self.origin})"


@dataclass(frozen=True)
class GridLocations:
    """Where this process finds its grid credentials.

    Attributes:
        proxy: The proxy file (explicit, or the default path whether or not it exists).
        cert_dir: The CA directory.
        token: The token found first, or ``None`` when there is none anywhere.
        token_candidates: Where the token was looked for (for the "none found" message).
    """

    proxy: Location
    cert_dir: Location
    token: Location | None
    token_candidates: tuple[str, ...]


def locate(settings: GridSettings | None = None, environ: Mapping[str, str] | None = None,
           uid: int | None = None) -> GridLocations:
    """Find the proxy, the CA directory and the token (locations only, nothing is read).

    Args:
        settings: The ``credentials`` group; ``None`` discovers everything.
        environ: Variables to look in (default ``os.environ``; the job adds ``.env`` values).
        uid: User id of the default file names (default: this process's effective uid).
    """
    settings = settings or GridSettings()
    env = os.environ if environ is None else environ
    uid = os.geteuid() if uid is None else uid
    return GridLocations(_proxy(settings, env, uid), _cert_dir(settings, env),
                         *_token(settings, env, uid))


def _proxy(settings: GridSettings, env: Mapping[str, str], uid: int) -> Location:
    if settings.x509_proxy:
        return Location(settings.x509_proxy, "credentials.x509_proxy", True)
    if env.get(ENV_PROXY):
        return Location(env[ENV_PROXY], ENV_PROXY, True)
    return Location(f"/tmp/x509up_u{uid}", "default", False)


def _cert_dir(settings: GridSettings, env: Mapping[str, str]) -> Location:
    if settings.x509_cert_dir:
        return Location(settings.x509_cert_dir, "credentials.x509_cert_dir", True)
    if env.get(ENV_CERT_DIR):
        return Location(env[ENV_CERT_DIR], ENV_CERT_DIR, True)
    return Location(DEFAULT_CERT_DIR, "default", False)


def _token(settings: GridSettings, env: Mapping[str, str], uid: int
           ) -> tuple[Location | None, tuple[str, ...]]:
    if settings.bearer_token_file:
        return Location(settings.bearer_token_file, "credentials.bearer_token_file", True), ()
    looked = [ENV_INTCCMS_TOKEN, ENV_TOKEN, ENV_TOKEN_FILE]
    for var in (ENV_INTCCMS_TOKEN, ENV_TOKEN):
        if env.get(var, "").strip():
            return Location(None, var, True, env_var=var), ()
    if env.get(ENV_TOKEN_FILE):
        return Location(env[ENV_TOKEN_FILE], ENV_TOKEN_FILE, True), ()
    runtime = env.get("XDG_RUNTIME_DIR")
    defaults = ([f"{runtime}/bt_u{uid}"] if runtime else []) + [f"/tmp/bt_u{uid}"]
    for path in defaults:
        looked.append(path)
        if os.path.exists(path):
            return Location(path, "default", False), ()
    return None, tuple(looked)


def client_environ(locations: GridLocations) -> tuple[dict[str, str], tuple[str, ...]]:
    """Variables (paths only) that make the XRootD client use exactly these credentials.

    Returns:
        The variables to set and the ones to remove: a token chosen from a file must not be
        shadowed by a ``BEARER_TOKEN`` value, which the client would try first.
    """
    env: dict[str, str] = {}
    unset: tuple[str, ...] = ()
    proxy = locations.proxy
    if proxy.explicit or (proxy.path and os.path.exists(proxy.path)):
        env[ENV_PROXY] = str(proxy.path)
    token = locations.token
    if token is not None and token.path is not None:
        env[ENV_TOKEN_FILE] = token.path
        unset = (ENV_TOKEN,)
    # The CA directory verifies the server (GSI and TLS): relevant once a credential is in use.
    if locations.cert_dir.explicit or env or token is not None:
        env[ENV_CERT_DIR] = str(locations.cert_dir.path)
    return env, unset


# Private copies of token files that group or others can read: copy -> source.
_TOKEN_COPIES: dict[str, str] = {}


def usable_token_file(path: str) -> str:
    """A token file the XRootD client accepts for ``path``.

    The client refuses a token file that group or others can read, and a Kubernetes Secret
    volume under the pods' ``fsGroup`` is always group-readable (0440, whatever its
    ``defaultMode``). Such a file is copied to a private 0600 file in this process's temporary
    folder and the copy is used; :func:`refresh_token_copy` follows a renewed source.
    An owner-only file, one that everyone can read (a leak the check reports) or one that
    cannot be read is used as it is.
    """
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return path
    if not mode & stat.S_IRWXG or mode & stat.S_IRWXO:
        return path  # owner-only: usable; readable by everyone: refused, and reported as such
    folder = os.path.join(tempfile.gettempdir(), f"intccms-bt-{os.geteuid()}")
    os.makedirs(folder, mode=0o700, exist_ok=True)
    os.chmod(folder, 0o700)
    copy = os.path.join(folder, hashlib.sha256(path.encode()).hexdigest()[:16])
    _TOKEN_COPIES[copy] = path
    _copy_if_changed(path, copy)
    return copy


def _copy_if_changed(source: str, copy: str) -> None:
    try:
        with open(source, "rb") as handle:
            data = handle.read()
    except OSError:
        return  # the source went away or became unreadable: keep the last good copy
    try:
        with open(copy, "rb") as handle:
            if handle.read() == data:
                return
    except OSError:
        pass
    partial = f"{copy}.partial"
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.replace(partial, copy)


def refresh_token_copy() -> None:
    """Bring the private copy the client uses up to date with its (renewed) source."""
    current = os.environ.get(ENV_TOKEN_FILE, "")
    if current in _TOKEN_COPIES:
        _copy_if_changed(_TOKEN_COPIES[current], current)


def export_client_environ(env: Mapping[str, str], unset: tuple[str, ...] = (), *,
                          keep_own: bool = False) -> None:
    """Set the grid variables for this process's XRootD client (a group-readable token file is
    replaced by its private copy); ``keep_own`` leaves variables this process already has."""
    for var, value in env.items():
        if keep_own and os.environ.get(var):
            value = os.environ[var]
        os.environ[var] = usable_token_file(value) if var == ENV_TOKEN_FILE else value
    for var in unset:
        os.environ.pop(var, None)


__all__ = [
    "DEFAULT_CERT_DIR",
    "ENV_CERT_DIR",
    "ENV_PROXY",
    "ENV_TOKEN",
    "ENV_TOKEN_FILE",
    "PATH_VARS",
    "REQUIRE_CHOICES",
    "GridLocations",
    "GridSettings",
    "Location",
    "client_environ",
    "export_client_environ",
    "locate",
    "refresh_token_copy",
    "usable_token_file",
]

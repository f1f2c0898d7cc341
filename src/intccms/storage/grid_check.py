"""Is each grid credential usable, and for how long? Checked before any work, and again when a
server refuses one, so the message says *which* problem it is.

The XRootD client answers a missing, expired or untrusted proxy and an expired token alike
("Auth failed: No protocols left to try"); the local files say more. The proxy's certificates
are parsed with ``cryptography`` (the lifetime is the earliest ``notAfter`` in the file, the CA
is looked up in the CA directory and its signature checked); a token's claims are decoded
without verifying the signature (only the issuer can). Messages name files, subjects, issuers,
scopes and times, never a key, a certificate body or a token.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import os
import stat
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature

from intccms.storage.errors import GridCredentialError
from intccms.storage.grid import GridLocations, GridSettings, Location

# Certificate file names in a CA directory (IGTF layout: <hash>.0 and friends; also *.pem).
_CA_SUFFIXES = (*(f".{i}" for i in range(10)), ".pem", ".crt")



@contextlib.contextmanager
def _reading(where: str) -> Iterator[None]:
    """Turn a failed read of a credential file into an error saying which file and why."""
    try:
        yield
    except FileNotFoundError:
        raise GridCredentialError(f"{where} does not exist") from None
    except PermissionError:
        raise GridCredentialError(f"{where} is not readable by this user (uid {os.geteuid()})") from None
    except OSError as err:
        raise GridCredentialError(f"{where} cannot be read: {err.strerror}") from None

def format_duration(seconds: float) -> str:
    """``2 h 05 min`` / ``45 min`` / ``30 s``: how long, for people."""
    seconds = abs(seconds)
    if seconds < 60:
        return f"{seconds:.0f} s"
    minutes = int(seconds // 60)
    hours, minutes = divmod(minutes, 60)
    if hours >= 48:
        return f"{hours // 24} d {hours % 24} h"
    return f"{hours} h {minutes:02d} min" if hours else f"{minutes} min"


def _when(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def _left(not_after: datetime, now: datetime) -> str:
    left = (not_after - now).total_seconds()
    if left <= 0:
        return f"expired {format_duration(left)} ago (at {_when(not_after)})"
    return f"{format_duration(left)} left (until {_when(not_after)})"


def _lifetime(name: str, not_after: datetime, now: datetime, margin_s: float,
              key: str = "min_lifetime_h") -> str | None:
    """The problem with a lifetime (expired, or shorter than the margin ``credentials.<key>``),
    else ``None``."""
    left = (not_after - now).total_seconds()
    if left <= 0:
        return f"{name} expired {format_duration(left)} ago (at {_when(not_after)})"
    if left < margin_s:
        return (f"{name} expires in {format_duration(left)} (at {_when(not_after)}), less than "
                f"credentials.{key}={margin_s / 3600:g} h")
    return None


@dataclass
class Status:
    """What one credential is and whether it can be used.

    Attributes:
        kind: ``x509`` or ``token``.
        location: Where it is.
        present: A file (or variable) exists there.
        problem: Why it cannot be used (``None``: usable).
        detail: What it is, for people: subject or issuer, scope, time left.
    """

    kind: str
    location: Location
    present: bool
    problem: str | None = None
    detail: str = ""

    @property
    def usable(self) -> bool:
        return self.present and self.problem is None

    def line(self) -> str:
        what = "X509 proxy" if self.kind == "x509" else "bearer token"
        if self.problem:
            return self.problem
        return f"{what} {self.location.describe()}: {self.detail}"


# -- X509 proxies -------------------------------------------------------------------------------
@dataclass(frozen=True)
class ProxyInfo:
    """The parts of a proxy file a check needs."""

    subject: str  # the end-entity (user) certificate's DN
    ca_issuer: str  # DN of the CA that signed it
    not_after: datetime  # the earliest notAfter in the file
    top: Any  # the end-entity certificate, to verify against the CA


def _dn(name: Any) -> str:
    """An OpenSSL-style ``/DC=ch/O=.../CN=...`` DN, as grid tools print it."""
    return "/" + "/".join(attr.rfc4514_string() for attr in name)


def read_proxy(path: str, label: str | None = None) -> ProxyInfo:
    """Parse a proxy file: certificates and a private key (the key is only looked for).

    Args:
        path: The proxy file.
        label: How messages name it (default: the path).

    Raises:
        GridCredentialError: missing, unreadable, or not a proxy.
    """

    where = f"X509 proxy {label or path}"
    with _reading(where):
        data = Path(path).read_bytes()
    try:
        certs = x509.load_pem_x509_certificates(data)
    except ValueError:
        raise GridCredentialError(f"{where} holds no PEM certificate; is it a proxy file?") from None
    if b"PRIVATE KEY-----" not in data:
        raise GridCredentialError(f"{where} holds no private key; a proxy file has the proxy's key")
    subjects = {c.subject.rfc4514_string(): c for c in certs}
    top = certs[0]
    seen = {id(top)}
    while (parent := subjects.get(top.issuer.rfc4514_string())) is not None and id(parent) not in seen:
        seen.add(id(parent))
        top = parent  # up the chain: proxy -> (proxies) -> user certificate
    not_after = min(c.not_valid_after_utc for c in certs)
    return ProxyInfo(_dn(top.subject), _dn(top.issuer), not_after, top)


def ca_problem(info: ProxyInfo, cert_dir: Location, proxy: Location) -> str | None:
    """Why the proxy's CA is not trusted by ``cert_dir`` (the server's CA set too), else ``None``."""

    directory = Path(str(cert_dir.path))
    if not directory.is_dir():
        return (f"CA directory {cert_dir.describe()} does not exist; set X509_CERT_DIR or "
                "credentials.x509_cert_dir (the client verifies servers with it)")
    issuer = info.top.issuer
    for entry in sorted(directory.iterdir()):
        if not entry.name.endswith(_CA_SUFFIXES):
            continue
        try:
            ca = x509.load_pem_x509_certificate(entry.read_bytes())
        except (OSError, ValueError):
            continue
        if ca.subject != issuer:
            continue
        try:
            info.top.verify_directly_issued_by(ca)
        except (ValueError, TypeError, InvalidSignature):
            continue
        return None
    return (f"X509 proxy {proxy.describe()} of {info.subject} was issued by CA {info.ca_issuer}, which is not in "
            f"the CA directory {cert_dir.describe()}: servers that trust that directory refuse it")


def proxy_status(location: Location, cert_dir: Location, margin_s: float,
                 now: datetime | None = None) -> Status:
    """Check one proxy file: present, readable, a proxy, lifetime over the margin, trusted CA."""
    now = now or datetime.now(UTC)
    present = location.explicit or os.path.exists(str(location.path))
    if not present:
        return Status("x509", location, False, f"no X509 proxy: X509_USER_PROXY is not set and "
                                                f"{location.path} does not exist")
    try:
        info = read_proxy(str(location.path), location.describe())
    except GridCredentialError as err:
        return Status("x509", location, os.path.exists(str(location.path)), str(err))
    detail = f"{info.subject}, {_left(info.not_after, now)}"
    problem = _lifetime(f"X509 proxy {location.describe()} of {info.subject}", info.not_after,
                        now, margin_s)
    if problem is None:
        problem = ca_problem(info, cert_dir, location)
    return Status("x509", location, True, problem, detail)


# -- bearer tokens ------------------------------------------------------------------------------
def _b64url(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def token_claims(token: str) -> dict[str, Any]:
    """The claims of a JWT, decoded without verifying it (only the issuer's keys can).

    Raises:
        ValueError: not a JWT (three base64url parts with a JSON object in the middle).
    """
    parts = token.strip().removeprefix("Bearer ").split(".")
    if len(parts) != 3:
        raise ValueError("not a JWT (expected three base64url parts separated by dots)")
    try:
        claims = json.loads(_b64url(parts[1]))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise ValueError("not a JWT (its claims are not base64url JSON)") from None
    if not isinstance(claims, dict):
        raise ValueError("not a JWT (its claims are not a JSON object)")
    return claims


def read_token(location: Location, environ: Mapping[str, str] | None = None) -> str:
    """The token text (for the caller's client only: never shown).

    Args:
        location: The token file, or the variable holding the token.
        environ: Where a variable is read (default ``os.environ``).

    Raises:
        GridCredentialError: the file is missing, unreadable or accessible to others.
    """
    if location.path is None:
        return (os.environ if environ is None else environ).get(str(location.env_var), "")
    where = f"bearer token file {location.describe()}"
    path = Path(location.path)
    with _reading(where):
        mode = path.stat().st_mode
        text = path.read_text(encoding="utf-8", errors="replace")
    if mode & stat.S_IRWXO:
        # Group access is what a Kubernetes Secret volume has under fsGroup: the job hands the
        # client a private copy (grid.usable_token_file). Access for everyone is a leak.
        msg = (f"{where} is accessible to others (mode {stat.S_IMODE(mode):04o}); the XRootD "
               "client refuses such token files: chmod 600 it")
        raise GridCredentialError(msg)
    return text


def token_status(location: Location | None, candidates: tuple[str, ...], margin_s: float,
                 now: datetime | None = None, environ: Mapping[str, str] | None = None) -> Status | None:
    """Check the bearer token: readable, a JWT, ``exp`` beyond the margin; ``None``: no token
    (``environ``: where a token given as a variable is read, default ``os.environ``)."""
    if location is None:
        return None
    now = now or datetime.now(UTC)
    where = f"bearer token {location.describe()}"
    try:
        claims = token_claims(read_token(location, environ))
    except GridCredentialError as err:
        return Status("token", location, location.path is None or os.path.exists(location.path),
                      str(err))
    except ValueError as err:
        return Status("token", location, True, f"{where} is {err}")
    scope = claims.get("scope")
    parts = [f"issuer {claims.get('iss', '?')}"]
    if scope:
        parts.append(f"scope '{scope}'")
    exp = claims.get("exp")
    if not isinstance(exp, int | float):
        return Status("token", location, True, f"{where} has no expiry (exp claim); servers "
                                               "require one", ", ".join(parts))
    not_after = datetime.fromtimestamp(float(exp), UTC)
    parts.append(_left(not_after, now))
    problem = _lifetime(where, not_after, now, margin_s, "token_min_lifetime_h")
    return Status("token", location, True, problem, ", ".join(parts))


def token_scope(location: Location | None) -> str | None:
    """The token's ``scope`` claim (for refusal messages), or ``None``."""
    if location is None:
        return None
    try:
        scope = token_claims(read_token(location)).get("scope")
    except (GridCredentialError, ValueError):
        return None
    return str(scope) if scope else None


# -- the whole check ----------------------------------------------------------------------------
@dataclass
class GridReport:
    """The check's outcome: what was found, what stops the job, what is only worth a warning."""

    statuses: list[Status] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        """One line per usable credential, for the start-up summary."""
        return [s.line() for s in self.statuses if s.usable]

    def raise_for_problems(self) -> None:
        """Stop with every problem in one message."""
        if self.problems:
            raise GridCredentialError("grid credentials: " + "; ".join(self.problems))


def check_grid(locations: GridLocations, settings: GridSettings,
               now: datetime | None = None) -> GridReport:
    """Check the proxy and the token against ``settings`` (``require``, lifetime margin).

    A problem with a credential that configuration or a variable names, or with the kind that
    ``require`` asks for, goes to ``problems``; one with a credential only found at its
    default place goes to ``warnings``.
    """
    now = now or datetime.now(UTC)
    report = GridReport()
    proxy = proxy_status(locations.proxy, locations.cert_dir, settings.min_lifetime_s, now)
    token = token_status(locations.token, locations.token_candidates,
                         settings.token_min_lifetime_s, now)
    report.statuses = [proxy] + ([token] if token else [])
    no_token = ("no bearer token: looked at " + ", ".join(locations.token_candidates)
                if token is None else None)
    need = settings.require
    for status in report.statuses:
        if status.problem and (status.location.explicit or need == status.kind):
            report.problems.append(status.problem)
        elif status.problem and status.present:
            report.warnings.append(status.problem)
    if need == "token" and token is None:
        report.problems.append(str(no_token))
    if need == "any" and not (proxy.usable or (token is not None and token.usable)):
        why = [str(s.problem) for s in report.statuses if s.problem]
        why += [str(no_token)] if token is None else []
        report.problems.append(f"neither a usable X509 proxy nor a usable bearer token ({'; '.join(why)})")
    if token is not None and token.usable and not Path(str(locations.cert_dir.path)).is_dir():
        report.warnings.append(f"CA directory {locations.cert_dir.describe()} does not exist: the "
                               "XRootD client cannot verify a server's TLS certificate")
    return report


def diagnose(locations: GridLocations) -> str:
    """Why a server may have refused this process's credentials: the local problem when there
    is one, else what was presented (for the error message of a refused request)."""
    report = check_grid(locations, GridSettings(min_lifetime_s=0.0, token_min_lifetime_s=0.0))
    proxy, *rest = report.statuses
    token = rest[0] if rest else None
    found = [s for s in report.statuses if s.present]
    if not found:
        return (f"no grid credential here: {proxy.problem}; no bearer token (looked at "
                f"{', '.join(locations.token_candidates)})")
    bad = [s.problem for s in found if s.problem]
    if bad:
        return "; ".join(str(b) for b in bad)
    shown = [s.line() for s in found]
    if proxy.present:
        shown.append(f"its CA is in {locations.cert_dir.describe()}")
    if token is None:
        shown.append("no bearer token")
    return ("the credentials look valid here (" + "; ".join(shown) + "); the server may not "
            "trust this CA, map this DN, or accept this token's issuer, audience or scope")


__all__ = [
    "GridReport",
    "ProxyInfo",
    "Status",
    "ca_problem",
    "check_grid",
    "diagnose",
    "format_duration",
    "proxy_status",
    "read_proxy",
    "read_token",
    "token_claims",
    "token_scope",
    "token_status",
]

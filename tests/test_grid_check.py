"""Grid credentials checked at start-up: real proxies (voms-proxy-fake from a test CA) and
tokens (signed by the test issuer); each problem gets a message naming the file and the time
left, and a job or an inspection that reads root:// stops before any work."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fixtures.grid import GridPKI, TokenIssuer
from rich.console import Console

from intccms.config import compose_config
from intccms.execute.preflight import check_grid_credentials, xrootd_urls
from intccms.storage import GridCredentialError
from intccms.storage.grid import GridLocations, GridSettings, Location
from intccms.storage.grid_check import check_grid, diagnose, proxy_status, token_status

SRC = Path(__file__).resolve().parents[1] / "src"
GRID_VARS = ("X509_USER_PROXY", "X509_CERT_DIR", "BEARER_TOKEN", "BEARER_TOKEN_FILE",
             "INTCCMS_XROOTD_TOKEN", "XDG_RUNTIME_DIR")
HOUR = 3600.0


@pytest.fixture
def no_grid_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    for var in GRID_VARS:
        monkeypatch.delenv(var, raising=False)
    yield monkeypatch


@pytest.fixture(scope="module")
def proxies(grid_pki: GridPKI) -> dict[str, Path]:
    """A valid, a short-lived (1 h), an expired and an untrusted proxy."""
    return {"good": grid_pki.proxy("check-good"),
            "short": grid_pki.proxy("check-short", hours=1),
            "expired": grid_pki.proxy("check-expired", hours=1, past_s=7200),
            "untrusted": grid_pki.proxy("check-untrusted", rogue=True)}


def where(path: Path | str, explicit: bool = True) -> Location:
    return Location(str(path), "X509_USER_PROXY" if explicit else "default", explicit)


def ca(pki: GridPKI) -> Location:
    return Location(str(pki.ca.certdir), "X509_CERT_DIR", True)


def locations(pki: GridPKI, proxy: Location, token: Location | None = None) -> GridLocations:
    return GridLocations(proxy, ca(pki), token, () if token else ("BEARER_TOKEN", "/tmp/bt_u0"))


def test_valid_proxy_is_described_without_its_contents(grid_pki: GridPKI, proxies: dict[str, Path]) -> None:
    status = proxy_status(where(proxies["good"]), ca(grid_pki), 2 * HOUR)
    assert status.usable, status.problem
    assert "CN=Test User" in status.detail and " left (until " in status.detail
    pem = proxies["good"].read_text()
    body = "".join(pem.splitlines()[1:4])
    assert body not in status.line()


@pytest.mark.parametrize(("name", "expected"), [
    ("expired", r"expired (\d+ h )?\d+ min ago \(at 20\d\d-"),
    ("short", r"expires in \d+ min \(at .*\), less than credentials.min_lifetime_h=2 h"),
    ("untrusted", r"issued by CA /DC=org/DC=elsewhere/CN=Untrusted Test CA, which is not in the CA directory"),
])
def test_proxy_problems_name_the_file_and_the_time(grid_pki: GridPKI, proxies: dict[str, Path],
                                                   name: str, expected: str) -> None:
    status = proxy_status(where(proxies[name]), ca(grid_pki), 2 * HOUR)
    assert not status.usable
    assert str(proxies[name]) in str(status.problem)
    assert re.search(expected, str(status.problem)), status.problem


def test_margin_is_configurable(grid_pki: GridPKI, proxies: dict[str, Path]) -> None:
    assert proxy_status(where(proxies["short"]), ca(grid_pki), 0.5 * HOUR).usable


def test_missing_unreadable_and_not_a_proxy(grid_pki: GridPKI, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    missing = tmp_path / "no-such-proxy"
    assert "does not exist" in str(proxy_status(where(missing), ca(grid_pki), 0).problem)
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate")
    assert "holds no PEM certificate" in str(proxy_status(where(junk), ca(grid_pki), 0).problem)
    cert_only = tmp_path / "cert-only.pem"
    cert_only.write_bytes(grid_pki.user.cert.read_bytes())
    assert "no private key" in str(proxy_status(where(cert_only), ca(grid_pki), 0).problem)
    # root reads any file: make this one unreadable the way a foreign 0600 file is.
    locked = tmp_path / "locked.pem"
    locked.write_text("x")
    real = Path.read_bytes

    def deny(self: Path) -> bytes:
        if self == locked:
            raise PermissionError(13, "Permission denied")
        return real(self)

    monkeypatch.setattr(Path, "read_bytes", deny)
    assert "is not readable by this user" in str(proxy_status(where(locked), ca(grid_pki), 0).problem)


def test_missing_ca_directory(proxies: dict[str, Path], tmp_path: Path) -> None:
    status = proxy_status(where(proxies["good"]), Location(str(tmp_path / "none"), "X509_CERT_DIR", True), 0)
    assert "CA directory" in str(status.problem) and "does not exist" in str(status.problem)


def test_policy_explicit_required_and_default_places(grid_pki: GridPKI, proxies: dict[str, Path]) -> None:
    none = GridSettings()
    # Named by a variable: its problem stops the job even when nothing is required.
    assert check_grid(locations(grid_pki, where(proxies["expired"])), none).problems
    # Only found at the default place: a warning, unless x509 is required.
    stale = locations(grid_pki, where(proxies["expired"], explicit=False))
    report = check_grid(stale, none)
    assert not report.problems and report.warnings
    assert check_grid(stale, GridSettings(require="x509")).problems
    absent = locations(grid_pki, where("/nonexistent/x509up_u0", explicit=False))
    assert not check_grid(absent, none).problems and not check_grid(absent, none).warnings
    report = check_grid(absent, GridSettings(require="x509"))
    assert report.problems == ["no X509 proxy: X509_USER_PROXY is not set and /nonexistent/x509up_u0 does not exist"]
    report = check_grid(absent, GridSettings(require="any"))
    assert "neither a usable X509 proxy nor a usable bearer token" in report.problems[0]
    assert "no bearer token: looked at BEARER_TOKEN, /tmp/bt_u0" in report.problems[0]
    good = check_grid(locations(grid_pki, where(proxies["good"])), GridSettings(require="x509"))
    assert not good.problems and good.lines()[0].startswith("X509 proxy ")


def test_tokens(grid_pki: GridPKI, token_issuer: TokenIssuer, tmp_path: Path) -> None:
    def status(path: Path, margin: float = 2 * HOUR) -> str | None:
        return token_status(Location(str(path), "BEARER_TOKEN_FILE", True), (), margin).problem

    ok = token_issuer.token_file(tmp_path / "ok", "storage.read:/", lifetime_s=int(6 * HOUR))
    assert status(ok) is None
    line = token_status(Location(str(ok), "BEARER_TOKEN_FILE", True), (), 0)
    assert line is not None and "scope 'storage.read:/'" in line.line() and token_issuer.url in line.line()
    assert ok.read_text().strip() not in line.line()
    expired = token_issuer.token_file(tmp_path / "expired", "storage.read:/", lifetime_s=-600)
    assert "expired 10 min ago" in str(status(expired)) and str(expired) in str(status(expired))
    short = token_issuer.token_file(tmp_path / "short", "storage.read:/", lifetime_s=1200)
    assert "expires in 19 min" in str(status(short)) or "expires in 20 min" in str(status(short))
    assert "credentials.token_min_lifetime_h=2 h" in str(status(short))
    default = GridSettings().token_min_lifetime_s  # tokens live minutes to hours
    assert token_status(Location(str(short), "BEARER_TOKEN_FILE", True), (), default).usable
    forever = token_issuer.token_file(tmp_path / "forever", "storage.read:/", expires=False)
    assert "has no expiry" in str(status(forever))
    opaque = tmp_path / "opaque"
    opaque.write_text("not-a-jwt")
    opaque.chmod(0o600)
    assert "is not a JWT" in str(status(opaque))
    wide = token_issuer.token_file(tmp_path / "wide", "storage.read:/")
    wide.chmod(0o644)
    assert "chmod 600" in str(status(wide)) and "0644" in str(status(wide))
    assert "does not exist" in str(status(tmp_path / "absent"))


def test_token_required_or_any(grid_pki: GridPKI, token_issuer: TokenIssuer, tmp_path: Path) -> None:
    absent = where("/nonexistent/x509up_u0", explicit=False)
    report = check_grid(locations(grid_pki, absent), GridSettings(require="token"))
    assert report.problems and report.problems[0].startswith("no bearer token: looked at")
    token = token_issuer.token_file(tmp_path / "t", "storage.read:/")
    with_token = locations(grid_pki, absent, Location(str(token), "BEARER_TOKEN_FILE", True))
    assert not check_grid(with_token, GridSettings(require="any", min_lifetime_s=0)).problems
    assert not check_grid(with_token, GridSettings(require="token", min_lifetime_s=0)).problems


def test_diagnosis_says_which(grid_pki: GridPKI, proxies: dict[str, Path]) -> None:
    assert "expired" in diagnose(locations(grid_pki, where(proxies["expired"])))
    assert "Untrusted Test CA" in diagnose(locations(grid_pki, where(proxies["untrusted"])))
    text = diagnose(locations(grid_pki, where("/nonexistent/x509up_u0", explicit=False)))
    assert text.startswith("no grid credential here") and "no bearer token" in text
    looks_fine = diagnose(locations(grid_pki, where(proxies["good"])))
    assert "look valid here" in looks_fine and "may not trust this CA" in looks_fine


# -- the job and the inspection ------------------------------------------------------------------
def job_overrides(tmp_path: Path, *extra: str) -> list[str]:
    return [f"output_dir={tmp_path / 'out'}", f"paths.generated_data={tmp_path / 'gen'}",
            "dataset_selection=[SingleMuon_2017]", "workflow=skim",
            "workflow.skim_dir=root://localhost:1//nowhere/skims", *extra]


def test_only_root_urls_trigger_the_check(tmp_path: Path, no_grid_env: pytest.MonkeyPatch) -> None:
    local = compose_config("demo", [f"output_dir={tmp_path}", "credentials.require=x509"])
    assert xrootd_urls(local) == []
    assert check_grid_credentials(local, Console(quiet=True)) is None  # required, but not needed
    remote = compose_config("demo", job_overrides(tmp_path))
    assert xrootd_urls(remote) == ["root://localhost:1//nowhere/skims"]
    run2 = compose_config("run2_skim", ["dataset_selection=[TTToSemiLeptonic_2017]"])
    assert "root://cmsxrootd.fnal.gov/" in xrootd_urls(run2)


@pytest.mark.parametrize(("case", "expected"), [
    ("expired", r"X509 proxy \S+check-expired \(credentials.x509_proxy\) of .*CN=Test User expired .* ago \(at "),
    ("untrusted", (r"X509 proxy \S+check-untrusted \(X509_USER_PROXY\) of .*CN=Rogue User was issued by CA "
                   r"/DC=org/DC=elsewhere/CN=Untrusted Test CA, which is not in the CA directory")),
    ("none", r"no X509 proxy: X509_USER_PROXY is not set and /tmp/x509up_u\d+ does not exist"),
])
def test_job_stops_before_any_work(tmp_path: Path, grid_pki: GridPKI, proxies: dict[str, Path],
                                   no_grid_env: pytest.MonkeyPatch, case: str, expected: str) -> None:
    from intccms.execute.job import run_job

    extra = ["credentials.require=x509", f"credentials.x509_cert_dir={grid_pki.ca.certdir}"]
    if case == "expired":
        extra.append(f"credentials.x509_proxy={proxies['expired']}")
    elif case == "untrusted":
        no_grid_env.setenv("X509_USER_PROXY", str(proxies["untrusted"]))
    elif Path(f"/tmp/x509up_u{os.geteuid()}").exists():
        pytest.skip("this machine has a proxy at the default place")
    cfg = compose_config("demo", job_overrides(tmp_path, *extra))
    start = time.monotonic()
    with pytest.raises(GridCredentialError) as info:
        run_job(cfg, console=Console(quiet=True))  # no client: it would start a cluster
    assert time.monotonic() - start < 5
    text = str(info.value)
    assert re.search(expected, text), text
    assert "needed for root://localhost:1 (credentials.require=x509)" in text
    assert not (tmp_path / "out").exists() and not (tmp_path / "gen").exists()  # nothing done


def test_inspect_uses_the_same_check(tmp_path: Path, no_grid_env: pytest.MonkeyPatch) -> None:
    from intccms.inspect import compose_inspect, run_inspect

    remote = ("+datasets.remote={era: '2017', process: data, is_data: true, "
              "files: ['root://localhost:1//data/a.root']}")
    cfg, icfg = compose_inspect("demo", [*job_overrides(tmp_path), "credentials.require=token", remote,
                                         "dataset_selection=[remote]",
                                         f"inspect.output_dir={tmp_path / 'inspect'}"])
    with pytest.raises(GridCredentialError, match="no bearer token: looked at INTCCMS_XROOTD_TOKEN"):
        run_inspect(cfg, icfg, console=Console(quiet=True))


def test_cli_message_names_the_problem(tmp_path: Path, grid_pki: GridPKI, proxies: dict[str, Path]) -> None:
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(SRC), "HOME": str(tmp_path),
           "X509_USER_PROXY": str(proxies["untrusted"]), "X509_CERT_DIR": str(grid_pki.ca.certdir)}
    out = subprocess.run([sys.executable, "-m", "intccms.cli", "run", "demo", *job_overrides(tmp_path)],
                         capture_output=True, text=True, timeout=120, env=env, check=False)
    assert out.returncode == 1, out.stderr[-2000:]
    text = " ".join(out.stderr.split())
    assert "GridCredentialError" in text and "Untrusted Test CA" in text
    assert proxies["untrusted"].read_text().splitlines()[1] not in out.stderr + out.stdout


def test_durations_read_like_people_write_them() -> None:
    from intccms.storage.grid_check import format_duration

    assert [format_duration(s) for s in (30, 600, 7500, 3 * 86400)] == ["30 s", "10 min", "2 h 05 min", "3 d 0 h"]

"""Build (or reuse) the facility's images with podman.

Three images, each cached by a content hash so a rerun with unchanged inputs builds nothing:

- the **base**: Debian bookworm from Debian's own packages (debootstrap minbase with python3,
  python3-venv, ca-certificates), imported into podman; stands in for ``python:3.11-slim``
  where no registry can be pulled from;
- the **project image** (``images/Dockerfile``), keyed on pyproject.toml, README.md, src/,
  conf/ and images/ (Dockerfile, entry point);
- the **S3 test server** (moto at the pin of the project's ``test`` extra) for the facility
  test only; never part of the project image.

Run ``python images/facility/image_build.py`` (what ``make image`` does); it prints the project
image's reference, size and build time as JSON.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from podman_cli import LABEL, image_exists, image_label, podman, podman_env

REPO = Path(__file__).resolve().parents[2]
STATE = Path(os.environ.get("INTCCMS_FACILITY_DIR", REPO / ".facility"))
SUITE = "bookworm"
BASE_PACKAGES = ("python3", "python3-venv", "ca-certificates")
BASE_REPO = "localhost/intccms-base"
IMAGE_REPO = "localhost/intccms"
S3_REPO = "localhost/intccms-facility-s3"
HASH_LABEL = "io.intccms.content-hash"
HOST_CA = Path("/etc/ssl/certs/ca-certificates.crt")
# What goes into the project image's build context (and its cache key).
CONTEXT_PATHS = ("pyproject.toml", "images/constraints.txt", "README.md", "src", "conf", "examples",
                 "images/Dockerfile", "images/entrypoint.sh")


class BuildError(RuntimeError):
    """An image could not be built; the message says which step and how to retry."""


@dataclass
class BuiltImage:
    """A local image and what building it cost (0 s when reused from the cache)."""

    ref: str
    size_bytes: int
    build_seconds: float
    cached: bool


def _files(root: Path, rel: str) -> list[Path]:
    path = root / rel
    if path.is_file():
        return [path]
    return sorted(p for p in path.rglob("*") if p.is_file() and "__pycache__" not in p.parts
                  and not p.name.endswith((".pyc", ".egg-info")) and ".egg-info" not in str(p))


def content_hash(paths: tuple[str, ...] = CONTEXT_PATHS, extra: str = "") -> str:
    """Hash of the files under ``paths`` (names and bytes), 16 hex characters."""
    digest = hashlib.sha256(extra.encode())
    for rel in paths:
        for path in _files(REPO, rel):
            digest.update(str(path.relative_to(REPO)).encode() + b"\0")
            digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def _size(ref: str) -> int:
    out = podman("image", "inspect", ref, "--format", "{{.Size}}")
    return int(out.stdout.strip())


def _build_args() -> list[str]:
    """podman build options shared by every build: host network and the host's CA bundle."""
    args = ["--network", "host", "--label", f"{LABEL}=image"]
    if HOST_CA.exists():
        args += ["-v", f"{HOST_CA}:/etc/ssl/certs/ca-certificates.crt:ro",
                 "--env", "PIP_CERT=/etc/ssl/certs/ca-certificates.crt"]
    return args


@contextlib.contextmanager
def _build_lock(repo: str) -> Iterator[None]:
    """One build of ``repo`` at a time per checkout: a second process (the test suite runs two)
    waits, then finds the image built."""
    STATE.mkdir(parents=True, exist_ok=True)
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", repo)
    with open(STATE / f"{name}.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def ensure_base() -> BuiltImage:
    """The Debian base image, made with debootstrap on first use."""
    with _build_lock(BASE_REPO):
        return _ensure_base()


def _ensure_base() -> BuiltImage:
    key = hashlib.sha256(f"{SUITE}:{','.join(BASE_PACKAGES)}".encode()).hexdigest()[:16]
    ref = f"{BASE_REPO}:{SUITE}-{key}"
    if image_exists(ref):
        return BuiltImage(ref, _size(ref), 0.0, True)
    if shutil.which("debootstrap") is None:
        msg = "debootstrap is not installed; run tests/setup/install_podman.sh as root"
        raise BuildError(msg)
    started = time.monotonic()
    STATE.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=STATE, prefix="rootfs-") as tmp:
        rootfs = Path(tmp) / "rootfs"
        cmd = ["debootstrap", "--variant=minbase", f"--include={','.join(BASE_PACKAGES)}",
               SUITE, str(rootfs)]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            msg = (f"debootstrap {SUITE} failed ({proc.returncode}); is the Debian mirror"
                   f" reachable? {proc.stderr.strip()[-800:] or proc.stdout.strip()[-800:]}")
            raise BuildError(msg)
        # Apt caches and docs are not needed to run Python.
        for junk in ("var/cache/apt/archives", "var/lib/apt/lists", "usr/share/doc",
                     "usr/share/man", "usr/share/locale"):
            shutil.rmtree(rootfs / junk, ignore_errors=True)
        tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
        imp = subprocess.run(["podman", "import", "--change", f"LABEL {LABEL}=base", "-", ref],
                             stdin=tar.stdout, capture_output=True, text=True, env=podman_env(),
                             check=False)
        tar.wait()
        if imp.returncode != 0:
            msg = f"podman import of the debootstrap root failed: {imp.stderr.strip()[-800:]}"
            raise BuildError(msg)
    return BuiltImage(ref, _size(ref), time.monotonic() - started, False)


def _stage_context(dest: Path) -> None:
    for rel in CONTEXT_PATHS:
        for path in _files(REPO, rel):
            target = dest / path.relative_to(REPO)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, target)


def _build(ref: str, dockerfile: Path, context: Path, base: str, key: str) -> None:
    args = ["build", *_build_args(), "--build-arg", f"BASE_IMAGE={base}",
            "--label", f"{HASH_LABEL}={key}", "-f", str(dockerfile), "-t", ref, str(context)]
    proc = subprocess.run(["podman", *args], capture_output=True, text=True,
                          env=podman_env(), check=False, timeout=1800)
    if proc.returncode != 0:
        msg = (f"podman build of {ref} from {dockerfile} failed ({proc.returncode}); PyPI must be"
               f" reachable from the host: {(proc.stderr or proc.stdout).strip()[-2000:]}")
        raise BuildError(msg)


def _prune(repo: str, keep: str) -> None:
    """Remove older tags of ``repo`` (earlier content hashes) and dangling layers; an image a
    container still uses stays."""
    out = podman("images", "--format", "{{.Repository}}:{{.Tag}}", "--filter",
                 f"reference={repo}", check=False)
    stale = [ref for ref in out.stdout.split() if ref != keep and ref.startswith(f"{repo}:")]
    if stale:
        podman("rmi", *stale, check=False)
    podman("image", "prune", "--force", check=False)


def ensure_image(base: BuiltImage | None = None) -> BuiltImage:
    """The project image from ``images/Dockerfile``, rebuilt only when its inputs changed."""
    base = base or ensure_base()
    with _build_lock(IMAGE_REPO):
        return _ensure_image(base)


def _ensure_image(base: BuiltImage) -> BuiltImage:
    key = content_hash(extra=base.ref)
    ref = f"{IMAGE_REPO}:{key}"
    if image_exists(ref) and image_label(ref, HASH_LABEL) == key:
        return BuiltImage(ref, _size(ref), 0.0, True)
    started = time.monotonic()
    STATE.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=STATE, prefix="context-") as tmp:
        _stage_context(Path(tmp))
        _build(ref, Path(tmp) / "images/Dockerfile", Path(tmp), base.ref, key)
    built = BuiltImage(ref, _size(ref), time.monotonic() - started, False)
    _prune(IMAGE_REPO, ref)
    return built


def moto_pin() -> str:
    """The ``moto[server]==X`` requirement of the project's ``test`` extra."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    for req in project["optional-dependencies"]["test"]:
        if re.match(r"^moto(\[.*\])?==", req):
            return req
    msg = "pyproject.toml's test extra has no pinned moto[server]==X; add one"
    raise BuildError(msg)


def ensure_s3_image(base: BuiltImage | None = None) -> BuiltImage:
    """The S3 test server image (moto), a test-only companion of the project image."""
    base = base or ensure_base()
    with _build_lock(S3_REPO):
        return _ensure_s3_image(base)


def _ensure_s3_image(base: BuiltImage) -> BuiltImage:
    pin = moto_pin()
    dockerfile = Path(__file__).resolve().parent / "s3.Dockerfile"
    server = Path(__file__).resolve().parent / "s3_server.py"
    key = hashlib.sha256(base.ref.encode() + pin.encode() + dockerfile.read_bytes()
                         + server.read_bytes()).hexdigest()[:16]
    ref = f"{S3_REPO}:{key}"
    if image_exists(ref):
        return BuiltImage(ref, _size(ref), 0.0, True)
    started = time.monotonic()
    STATE.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=STATE, prefix="s3-context-") as tmp:
        shutil.copy2(server, Path(tmp) / "s3_server.py")
        args = ["build", *_build_args(), "--build-arg", f"BASE_IMAGE={base.ref}",
                "--build-arg", f"MOTO={pin}", "-f", str(dockerfile), "-t", ref, tmp]
        proc = subprocess.run(["podman", *args], capture_output=True, text=True,
                              env=podman_env(), check=False, timeout=1200)
        if proc.returncode != 0:
            msg = f"podman build of the S3 test server failed: {proc.stderr.strip()[-1500:]}"
            raise BuildError(msg)
    built = BuiltImage(ref, _size(ref), time.monotonic() - started, False)
    _prune(S3_REPO, ref)
    return built


def main() -> int:
    """Build the base and the project image; print reference, size and build time."""
    started = time.monotonic()
    base = ensure_base()
    image = ensure_image(base)
    report = {"image": asdict(image), "base": asdict(base),
              "size_mb": round(image.size_bytes / 1e6, 1),
              "total_seconds": round(time.monotonic() - started, 1)}
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""URL helpers that treat local paths, ``s3://bucket/key`` and ``root://host:port//path`` alike."""

from __future__ import annotations

import os
import posixpath
from urllib.parse import urlsplit

SCHEMES = ("file", "s3", "root")


def scheme_of(url: str) -> str:
    """Return the storage scheme of a URL.

    Args:
        url (str): A local path, ``file://`` URL, ``s3://`` URL or ``root://``/``xroot://`` URL.

    Returns:
        str: ``"file"``, ``"s3"`` or ``"root"``.
    """
    if "://" not in url:
        return "file"
    scheme = url.split("://", 1)[0].lower()
    if scheme in ("file", "local"):
        return "file"
    if scheme in ("s3", "s3a"):
        return "s3"
    if scheme in ("root", "xroot", "roots"):
        return "root"
    msg = f"unsupported storage scheme {scheme!r} in {url!r}; use a local path, s3:// or root://"
    raise ValueError(msg)


def local_path(url: str) -> str:
    """Strip ``file://`` from a local URL and return an OS path."""
    return url[len("file://") :] if url.startswith("file://") else url


def join(base: str, *parts: str) -> str:
    """Join path segments onto a base URL without breaking its scheme or host.

    Args:
        base (str): Base location (local path, ``s3://b/p`` or ``root://host:port//path``).
        *parts (str): Segments to append; leading/trailing slashes are normalised.

    Returns:
        str: The joined URL.
    """
    segments = [p.strip("/") for p in parts if p and p.strip("/")]
    if scheme_of(base) == "file":
        return os.path.join(local_path(base), *segments) if segments else local_path(base)
    if not segments:
        return base
    return base.rstrip("/") + "/" + "/".join(segments)


def split_name(url: str) -> tuple[str, str]:
    """Split a URL into (parent URL, basename)."""
    if scheme_of(url) == "file":
        path = local_path(url)
        return os.path.dirname(path) or ".", os.path.basename(path)
    head, _, name = url.rstrip("/").rpartition("/")
    return head, name


def root_endpoint(url: str) -> str:
    """Return ``root://host:port`` of an XRootD URL (used in error messages)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def root_path(url: str) -> str:
    """Return the absolute server path of an XRootD URL (``root://h:p//a/b`` -> ``/a/b``)."""
    path = urlsplit(url).path
    return "/" + path.lstrip("/")


def extension_of(url: str) -> str:
    """Return the lower-case file extension of a URL without the dot."""
    name = split_name(url)[1]
    return posixpath.splitext(name)[1].lstrip(".").lower()


__all__ = ["SCHEMES", "extension_of", "join", "local_path", "root_endpoint", "root_path",
           "scheme_of", "split_name"]

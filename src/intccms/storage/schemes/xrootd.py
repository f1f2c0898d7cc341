"""XRootD through fsspec-xrootd."""

from __future__ import annotations

import contextlib
import math
import os

import fsspec

from intccms.storage.credentials import XROOTD_CLIENT_TOKEN_VAR
from intccms.storage.errors import GridCredentialError, StorageAuthError, StorageError
from intccms.storage.grid import export_client_environ, locate, refresh_token_copy
from intccms.storage.grid_check import diagnose, token_scope
from intccms.storage.options import StorageOptions
from intccms.storage.schemes.base import COPY_CHUNK, Backend, temporary_name
from intccms.storage.urls import root_endpoint, root_path


def configure_xrootd_client(options: StorageOptions) -> None:
    """Bound how long the XRootD client tries to connect (its defaults allow minutes).

    XrdCl settings are process-wide and a server's channel keeps the values in force when it
    was first contacted, so use one StorageOptions per process (as the stages do).
    """
    # the XRootD bindings: only jobs that reach root:// URLs load them
    from XRootD.client import EnvPutInt

    window = max(1, math.ceil(options.timeout_s))
    EnvPutInt("ConnectionWindow", window)
    EnvPutInt("ConnectionRetry", max(1, options.retries + 1))
    EnvPutInt("RequestTimeout", window * max(1, options.retries + 1))
    EnvPutInt("StreamErrorWindow", window)


_NOT_ALLOWED = ("[3010]", "permission denied", "not authorized", "unable to create",
                "unable to remove", "unable to rename")


def refusal_message(where: str, url: str, text: str) -> str:
    """Why an XRootD server refused ``url``, from this process's own grid credentials.

    A login refused ("Auth failed") is the credential itself: missing, expired, untrusted, or
    not accepted by the server; a request refused after login is authorisation: for a token,
    its scope.
    """

    server = " ".join(text.split())[:300]
    locations = locate()
    lowered = text.lower()
    if "auth failed" not in lowered and any(t in lowered for t in _NOT_ALLOWED):
        scope = token_scope(locations.token)
        hint = (f"the bearer token ({locations.token.describe()}) has scope '{scope}'; reading "
                "needs storage.read, writing storage.create or storage.modify on the path"
                if scope and locations.token is not None else
                "the server does not authorise these credentials for this operation")
        return f"XRootD server {where} refused {url} ({server}): {hint}"
    return f"XRootD server {where} rejected the login for {url} ({server}): {diagnose(locations)}"


class XRootDBackend(Backend):
    """XRootD via fsspec-xrootd; commits by uploading to a temporary name then ``mv``."""

    scheme = "root"

    def _make_filesystem(self, url: str) -> fsspec.AbstractFileSystem:
        configure_xrootd_client(self.options)
        creds = self.options.resolved_credentials()
        token = creds.xrootd_token
        if token is not None and token.is_set():
            # The XRootD client's token plugin reads the bearer token from the environment.
            os.environ[XROOTD_CLIENT_TOKEN_VAR] = token.reveal()
        # Proxy, CA directory and token file: the client reads the files where it runs. A
        # worker's own deployment (or the driver's start-up check) has set them already.
        export_client_environ(creds.grid_environ(), keep_own=True)
        refresh_token_copy()
        kwargs = self.options.fsspec_kwargs("root")
        host = root_endpoint(url).split("://", 1)[1]
        # The listings cache goes stale after writes (see ENVIRONMENT.md).
        return fsspec.filesystem("root", hostid=host, use_listings_cache=False, **kwargs)

    def path(self, url: str) -> str:
        """Return the absolute path on the server."""
        return root_path(url)

    def endpoint(self, url: str) -> str:
        """Return ``root://host:port``."""
        return root_endpoint(url)

    def commit(self, local: str, url: str) -> None:
        """Stream to a hidden temporary name beside the target, then rename on the server."""
        fs = self.filesystem(url)
        final = self.path(url)
        tmp = temporary_name(final)
        with self.errors(url):
            fs.makedirs(os.path.dirname(final), exist_ok=True)
            try:
                with open(local, "rb") as src, fs.open(tmp, "wb") as dst:
                    while chunk := src.read(COPY_CHUNK):
                        dst.write(chunk)
                if fs.exists(final):
                    fs.rm(final)  # XRootD mv refuses to overwrite
                fs.mv(tmp, final)
            except BaseException:
                with contextlib.suppress(Exception):
                    fs.rm(tmp)
                raise
            finally:
                self._forget(fs, final)

    def translate(self, exc: BaseException, url: str) -> StorageError | None:
        """A refused login or request says which grid credential was at fault (the client
        itself only says "Auth failed: No protocols left to try")."""
        translated = super().translate(exc, url)
        if isinstance(translated, StorageAuthError):
            return GridCredentialError(refusal_message(self.endpoint(url), url, str(exc)))
        return translated

    def read_bytes(self, url: str, start: int | None = None, end: int | None = None) -> bytes:
        """Read through a freshly opened handle (manifests are replaced in place)."""
        self._forget(self.filesystem(url), self.path(url))
        return super().read_bytes(url, start, end)

    def remove(self, url: str) -> None:
        """Delete ``url`` and drop any cached read handle on it."""
        super().remove(url)
        self._forget(self.filesystem(url), self.path(url))

    @staticmethod
    def _forget(fs: fsspec.AbstractFileSystem, path: str) -> None:
        # fsspec-xrootd keeps read handles open for 30 s per path; after a replace such a
        # handle still reads the old file, so a manifest read right after a rerun's save
        # would list only the parts of the previous run.
        with contextlib.suppress(Exception):
            fs.invalidate_cache(path)

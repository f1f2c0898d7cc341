"""A job's output folder on local disk, S3 or XRootD.

Histograms, plots, the report, provenance and the metadata cache are written by code that
knows only local paths (pickle, uproot, matplotlib, json). For an ``s3://`` or ``root://``
``output_dir`` they are written into a local staging folder and each finished file is then
published to the URL with the backend's atomic commit (the path skim parts take), so a reader
of the store sees every output whole or not at all. For a local ``output_dir`` the staging
folder *is* the output folder and nothing is copied.

The staging folder is private to the run: created fresh under a random name with mode 0700
(``tempfile.mkdtemp``, which never reuses or follows what is already there), so another local
user can neither predict it nor plant a link that redirects the outputs, and it is removed when
the run ends. A rerun starts from what the store holds (the metadata cache is read back).
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path
from types import TracebackType

from intccms.storage.errors import StorageError, StorageNotFoundError
from intccms.storage.options import StorageOptions
from intccms.storage.schemes import backend_for, is_temporary_name
from intccms.storage.urls import join, local_path, scheme_of

log = logging.getLogger(__name__)

STAGING_ENV = "INTCCMS_STAGING_DIR"
STAGING_PREFIX = "intccms-outputs-"
# Outputs a rerun reads back from the store (the metadata cache, so counts are reused).
RESTORED = ("metadata.json",)


def staging_root() -> Path:
    """Where private staging folders are created: ``$INTCCMS_STAGING_DIR`` or the temp folder."""
    return Path(os.environ.get(STAGING_ENV) or tempfile.gettempdir())


def private_folder(parent: Path) -> Path:
    """A new folder only this user can enter: random name, mode 0700, made with ``mkdir`` so a
    file or link already at a name is never reused (``mkdtemp`` tries another name)."""
    parent.mkdir(parents=True, exist_ok=True)  # the configured parent; the temp folder exists
    return Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=parent))


class OutputLocation:
    """The output folder of one run: a local folder to write to, and where it is published.

    Used as a context manager: on exit a remote output's staging folder is removed.

    Args:
        url (str): ``output_dir``: a local path, ``s3://bucket/prefix`` or
            ``root://host:port//path``.
        options (StorageOptions): How to reach the store.

    Attributes:
        url: The configured output location.
        local: The folder outputs are written to (the output folder itself when local, a
            private staging folder otherwise).
        remote: Whether files are published to a store.
    """

    def __init__(self, url: str, options: StorageOptions) -> None:
        self.url = url
        self.options = options
        self.remote = scheme_of(url) != "file"
        self._backend = backend_for(url, options)
        self._published: dict[Path, tuple[int, int]] = {}
        if not self.remote:
            self.local = Path(local_path(url))
            self.local.mkdir(parents=True, exist_ok=True)
            return
        # Fresh each run: it starts from what the store holds, never from leftovers here.
        self.local = private_folder(staging_root())
        try:
            for name in RESTORED:
                self.restore(name)
        except BaseException:
            self.remove(best_effort=True)
            raise

    def __enter__(self) -> OutputLocation:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.remove(best_effort=exc_type is not None)

    def remove(self, *, best_effort: bool = False) -> None:
        """Remove the staging folder of a remote output (a local output folder is kept).

        Args:
            best_effort (bool): Log a failure instead of raising (a failed run is unwinding and
                its own error is what is seen); never silent, a folder that cannot be removed
                may have been tampered with.
        """
        if not self.remote or not os.path.lexists(self.local):
            return
        try:
            shutil.rmtree(self.local)  # removes links, never what they point to
        except OSError as err:
            if not best_effort:
                raise
            log.warning("could not remove the staging folder %s: %s", self.local, err)

    def url_of(self, path: Path) -> str:
        """Return the URL a file under :attr:`local` is published to."""
        rel = path.resolve().relative_to(self.local.resolve())
        return join(self.url, *rel.parts)

    def restore(self, name: str) -> bool:
        """Copy ``name`` (relative to the output folder) from the store into the staging folder.

        Returns:
            bool: Whether the store had it.
        """
        if not self.remote:
            return (self.local / name).exists()
        url = join(self.url, name)
        try:
            data = self._backend.read_bytes(url)
        except StorageNotFoundError:
            return False
        target = self.local / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        self._published[target] = self._stamp(target)
        log.info("restored %s from %s", name, url)
        return True

    def publish(self, *paths: Path, best_effort: bool = False) -> list[str]:
        """Publish files (folders: every file below them) to the store, each atomically.

        Files unchanged since they were last published or restored are skipped.

        Args:
            *paths (Path): Files or folders under :attr:`local`; none means all of it.
            best_effort (bool): Log and stop at the first storage error instead of raising
                (used while a failed run is unwinding, so its own error is what is seen).

        Returns:
            list[str]: URLs written.
        """
        if not self.remote:
            return []
        written: list[str] = []
        for path in self._files(paths or (self.local,)):
            stamp = self._stamp(path)
            if self._published.get(path) == stamp:
                continue
            url = self.url_of(path)
            try:
                self._backend.commit(str(path), url)
            except StorageError as err:
                if not best_effort:
                    raise
                log.warning("could not publish %s to %s: %s", path, url, err)
                break
            self._published[path] = stamp
            written.append(url)
        return written

    @staticmethod
    def _files(paths: tuple[Path, ...]) -> list[Path]:
        files: list[Path] = []
        for path in paths:
            if path.is_dir():
                files += sorted(p for p in path.rglob("*") if p.is_file())
            elif path.is_file():
                files.append(path)
        return [f for f in files if not is_temporary_name(str(f))]

    @staticmethod
    def _stamp(path: Path) -> tuple[int, int]:
        st = path.stat()
        return st.st_size, st.st_mtime_ns


__all__ = ["STAGING_ENV", "OutputLocation", "private_folder", "staging_root"]

"""Storage: read NanoAOD inputs and write skims on local disk, S3 and XRootD.

Contract: callers name data by URL (local path, ``s3://bucket/key``,
``root://host:port//path``) and by flat NanoAOD column names. Scheme backends
(:mod:`.schemes`) move bytes and commit files atomically; formats (:mod:`.formats`) turn
columns into parquet, TTree or RNTuple files and back. ``bytes_read`` counts bytes as they
arrive from storage. Secrets travel only as environment-variable names (:mod:`.credentials`).

Atomic commits: a part is written to a local file first, then published with
``os.replace`` beside the target (local), one PUT or one completed multipart upload to the
final key (S3 shows an object only once it is complete), or an upload to a hidden temporary
name followed by a server-side ``mv`` (XRootD). Readers never see a partial part at its URL;
temporary names contain ``.intccms-tmp-`` and are never complete nor listed in manifests.

Errors: wrong credentials raise :class:`StorageAuthError` naming the endpoint (auth failures
are not retried), an S3 bucket that does not exist :class:`BucketNotFoundError`; a server that does not answer raises :class:`StorageUnreachableError`
after about ``(retries + 1) * timeout_s`` seconds; a file whose bytes cannot be decoded (not
ROOT, damaged compressed data, inconsistent records) raises :class:`CorruptFileError`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from intccms.storage.credentials import Credentials, Secret, load_credentials
from intccms.storage.errors import (
    FATAL_STORAGE_ERRORS,
    BucketNotFoundError,
    CorruptFileError,
    GridCredentialError,
    IncompletePartError,
    MissingColumnError,
    StorageAuthError,
    StorageError,
    StorageNotFoundError,
    StorageUnreachableError,
)
from intccms.storage.manifest import Manifest
from intccms.storage.options import StorageOptions
from intccms.storage.parts import WrittenPart, exists_complete, remove, write_part
from intccms.storage.plugin import CredentialsPlugin
from intccms.storage.runs import read_runs_sums
from intccms.storage.source import ColumnSource, open_source
from intccms.storage.urls import join, scheme_of

if TYPE_CHECKING:
    from intccms.storage.plugin import CredentialsPlugin


def __getattr__(name: str) -> object:
    # The Dask plugin imports distributed; load it only when asked for.
    if name == "CredentialsPlugin":
        return CredentialsPlugin
    msg = f"module {__name__!r} has no attribute {name!r}"
    raise AttributeError(msg)


__all__ = [
    "FATAL_STORAGE_ERRORS",
    "BucketNotFoundError",
    "ColumnSource",
    "CorruptFileError",
    "Credentials",
    "CredentialsPlugin",
    "GridCredentialError",
    "IncompletePartError",
    "Manifest",
    "MissingColumnError",
    "Secret",
    "StorageAuthError",
    "StorageError",
    "StorageNotFoundError",
    "StorageOptions",
    "StorageUnreachableError",
    "WrittenPart",
    "exists_complete",
    "join",
    "load_credentials",
    "open_source",
    "read_runs_sums",
    "remove",
    "scheme_of",
    "write_part",
]

"""S3 through s3fs."""

from __future__ import annotations

import logging
import os

import fsspec
from fsspec.asyn import sync
from fsspec.exceptions import FSTimeoutError

from intccms.storage.errors import BucketNotFoundError, StorageError, StorageUnreachableError
from intccms.storage.schemes.base import Backend

log = logging.getLogger(__name__)


class S3Backend(Backend):
    """S3 via s3fs.

    Commit uploads the finished file straight to the final key: a single PUT, or a multipart
    upload for large files, and S3 only makes an object visible once the PUT or the
    CompleteMultipartUpload has succeeded, so readers never see a partial part.
    """

    scheme = "s3"

    def _make_filesystem(self, url: str) -> fsspec.AbstractFileSystem:
        # fsspec reuses one instance per distinct kwargs (credentials included), so sessions
        # and connection pools are shared between the parts one worker reads.
        fs = fsspec.filesystem("s3", **self.options.fsspec_kwargs("s3"))
        # s3fs retries transient errors itself (class default 5) on top of botocore's own
        # retries; one s3fs attempt keeps the total bounded by StorageOptions.retries.
        fs.retries = 1
        return fs

    def path(self, url: str) -> str:
        """Return ``bucket/key``."""
        return url.split("://", 1)[1]

    def endpoint(self, url: str) -> str:
        """Return the S3 endpoint URL."""
        return self.options.endpoint() or "the default AWS S3 endpoint"

    def translate(self, exc: BaseException, url: str) -> StorageError | None:
        """A missing bucket is named as such: "the object does not exist, check the path"
        would send the user looking for a file when the whole bucket is absent."""
        if _missing_bucket(exc):
            bucket = self.path(url).split("/", 1)[0]
            msg = (f"bucket {bucket!r} does not exist on {self.endpoint(url)} (for {url}); create "
                   "it or correct the URL")
            return BucketNotFoundError(msg)
        return super().translate(exc, url)

    def commit(self, local: str, url: str) -> None:
        """Upload in one PUT (or one completed multipart upload) to the final key.

        Each attempt has a wall-clock deadline (:meth:`StorageOptions.upload_deadline`): a
        server that accepts the connection but never answers would otherwise hold the upload
        forever, since the client's read timeout does not cover a request with a body. An
        abandoned attempt leaves nothing at the key (S3 publishes only complete objects).
        """
        fs = self.filesystem(url)
        deadline = self.options.upload_deadline(os.path.getsize(local))
        attempts = self.options.retries + 1
        with self.errors(url):
            for attempt in range(1, attempts + 1):
                try:
                    sync(fs.loop, fs._put_file, local, self.path(url), timeout=deadline)
                    return
                except FSTimeoutError:
                    log.warning("upload of %s to %s got no answer within %.0fs (attempt %d of %d)",
                                url, self.endpoint(url), deadline, attempt, attempts)
            msg = (f"storage at {self.endpoint(url)} is unreachable for {url}: {attempts} upload "
                   f"attempt(s) got no answer within {deadline:.0f}s each (storage.timeout_s="
                   f"{self.options.timeout_s:g}, storage.retries={self.options.retries}); check "
                   "that the server runs and answers")
            raise StorageUnreachableError(msg)


def _missing_bucket(exc: BaseException) -> bool:
    """Whether boto's ``NoSuchBucket`` is the error or its cause (s3fs re-raises it as a plain
    ``FileNotFoundError``)."""
    seen: BaseException | None = exc
    while seen is not None:
        if type(seen).__name__ == "NoSuchBucket" or "specified bucket does not exist" in str(seen).lower():
            return True
        seen = seen.__cause__ or seen.__context__
    return False

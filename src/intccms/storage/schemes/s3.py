"""S3 through s3fs."""

from __future__ import annotations

import fsspec

from intccms.storage.schemes.base import Backend


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

    def commit(self, local: str, url: str) -> None:
        """Upload in one PUT (or one completed multipart upload) to the final key."""
        with self.errors(url):
            self.filesystem(url).put_file(local, self.path(url))

"""What every chunk task on a worker shares: which errors are the input's, and peak memory."""

from __future__ import annotations

import resource
import sys

from intccms.storage import FATAL_STORAGE_ERRORS, MissingColumnError

# Storage names a file whose bytes cannot be decoded (CorruptFileError), a missing one and an
# outage as OSErrors; raise_if_not_input sorts the outages (and programming errors) back out.
INPUT_ERRORS: tuple[type[BaseException], ...] = (OSError, ValueError, KeyError, EOFError)


def peak_rss() -> int:
    """Peak resident memory of this worker process so far, in bytes (not the RSS right now:
    a chunk's arrays are freed before it returns). ``ru_maxrss`` is KiB on Linux, bytes on macOS."""

    peak = int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
    return peak if sys.platform == "darwin" else peak * 1024


def raise_if_not_input(err: BaseException) -> None:
    """Programming errors and storage outages that look like input errors are not hidden as
    bad files: wrong credentials, an unreachable server or a missing bucket would otherwise be
    skipped with ``skip_bad_files`` and silently drop data from the histograms."""
    if isinstance(err, KeyError) and not isinstance(err, MissingColumnError):
        raise err
    if isinstance(err, FATAL_STORAGE_ERRORS):
        raise err

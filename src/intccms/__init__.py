"""intccms: a Kubernetes-native analysis facility for CMS Run-2 NanoAOD.

The package is organised in rooms: ``config`` (schemas), ``plan`` (datasets, files,
metadata, work items), ``storage`` (scheme x format readers and writers), ``physics``
(pure functions on awkward arrays), ``execute`` (cluster backends and stages),
``outputs`` (histograms, plots, provenance, summaries), ``metrics``, ``stats``,
``inspect`` and ``datagen``.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("intccms")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0"

__all__ = ["__version__"]

"""Shared pytest configuration.

The tests folder is importable, and the fixtures of ``tests/fixtures/`` are registered once, as
plugins, for the whole session: a session fixture (the two-worker cluster, the generated demo
data, the S3 and XRootD servers) then exists once, not once per test module that names it.
Test modules import only plain helpers from ``fixtures``, never a fixture function (that would
register a second, module-local copy of it).
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

TESTS_DIR = Path(__file__).resolve().parent
if str(TESTS_DIR) not in sys.path:
    sys.path.insert(0, str(TESTS_DIR))

pytest_plugins = [
    "fixtures.demo",
    "fixtures.corrections",
    "fixtures.s3",
    "fixtures.xrootd",
    "fixtures.grid",
    "fixtures.prometheus",
    "fixtures.k8s",
    "fixtures.facility",
    "fixtures.tiers",
]


# XrdCl sets up its TLS context once per process, at its first connection, from the CA
# directory in force then: a process that has talked to the plain XRootD server cannot later
# verify the TLS servers signed by the test CA. The modules that log in to those servers run
# first in their process (under pytest-xdist, `make test` hands modules out in this order).
TLS_XROOTD_MODULES = ("test_facility_grid.py", "test_grid_check.py", "test_grid_jobs.py",
                      "test_grid_workers.py", "test_grid_xrootd.py")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Modules that use the TLS XRootD servers first, every module's tests in their order."""
    items.sort(key=lambda item: item.path.name not in TLS_XROOTD_MODULES)


def pytest_configure(config: pytest.Config) -> None:
    """Each test process (and the workers it starts) keeps derived correction tables in its own
    fresh cache folder, never in the user's."""
    folder = tempfile.mkdtemp(prefix="intccms-correction-cache-")
    config.stash[_CACHE_FOLDER] = folder
    os.environ["INTCCMS_CACHE_DIR"] = folder


def pytest_unconfigure(config: pytest.Config) -> None:
    folder = config.stash.get(_CACHE_FOLDER, None)
    if folder:
        shutil.rmtree(folder, ignore_errors=True)


_CACHE_FOLDER = pytest.StashKey[str]()

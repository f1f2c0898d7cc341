"""Shared pytest configuration.

The tests folder is importable, and the fixtures of ``tests/fixtures/`` are registered once, as
plugins, for the whole session: a session fixture (the two-worker cluster, the generated demo
data, the S3 and XRootD servers) then exists once, not once per test module that names it.
Test modules import only plain helpers from ``fixtures``, never a fixture function (that would
register a second, module-local copy of it).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

TESTS_DIR = Path(__file__).resolve().parent
if str(TESTS_DIR) not in sys.path:
    sys.path.insert(0, str(TESTS_DIR))

pytest_plugins = [
    "fixtures.demo",
    "fixtures.s3",
    "fixtures.xrootd",
    "fixtures.grid",
    "fixtures.prometheus",
    "fixtures.k8s",
    "fixtures.facility",
]

# The container facility modules build one image and bring up one facility at a time.
SHARED_PROCESS_GROUPS = {"test_facility.py": "facility", "test_facility_grid.py": "facility"}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under pytest-xdist (``make test`` runs two processes, ``--dist loadgroup``) the tests of a
    module stay in one process, so that its module fixtures are built once and its tests run in
    their written order; the facility modules share one process."""
    if not config.pluginmanager.hasplugin("xdist"):
        return
    for item in items:
        module = item.path.name
        item.add_marker(pytest.mark.xdist_group(SHARED_PROCESS_GROUPS.get(module, module)))

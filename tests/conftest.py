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


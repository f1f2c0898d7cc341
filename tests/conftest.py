"""Shared pytest configuration: the tests folder is importable so that server fixtures in
``tests/fixtures/`` can be shared between test modules."""

from __future__ import annotations

import sys
from pathlib import Path

TESTS_DIR = Path(__file__).resolve().parent
if str(TESTS_DIR) not in sys.path:
    sys.path.insert(0, str(TESTS_DIR))

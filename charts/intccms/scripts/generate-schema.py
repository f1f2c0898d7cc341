#!/usr/bin/env python3
"""Generate values.schema.json from values.schema.yaml (YAML is easier to review and comment).

Usage: python charts/intccms/scripts/generate-schema.py [--check]
With --check, exit 1 when values.schema.json is out of date instead of writing it.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import yaml

CHART = Path(__file__).resolve().parents[1]


def render() -> str:
    """The JSON text generated from values.schema.yaml."""
    schema = yaml.safe_load((CHART / "values.schema.yaml").read_text())
    return json.dumps(schema, indent=2, sort_keys=False) + "\n"


def main(argv: list[str]) -> int:
    target = CHART / "values.schema.json"
    text = render()
    if "--check" in argv:
        if not target.exists() or target.read_text() != text:
            sys.stderr.write(f"{target} is out of date: run {Path(__file__).name}\n")
            return 1
        return 0
    target.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""A correction decoded from its own span of the file is the one the whole file's decode gives."""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path
from typing import Any

import pytest
from fixtures.corrections import like_a_new_process

from intccms.physics.corrections import CorrectionFileError, loading

SHARED = Path(os.environ.get("INTCCMS_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
JSONPOG = Path(os.environ.get("INTCCMS_JSONPOG", SHARED / "jsonpog-integration"))


def _correction(name: str, value: float, *, first: str = "name") -> dict[str, Any]:
    body = {"description": f"{name} {{\"name\": \"{name}\"}}", "version": 1,
            "inputs": [{"name": "pt", "type": "real"}], "output": {"name": "weight", "type": "real"},
            "data": {"nodetype": "binning", "input": "pt", "edges": [0.0, 1.0, "inf"], "content": [value, 2.0],
                     "flow": "clamp"}}
    named = {"name": name}
    return {**named, **body} if first == "name" else {**body, **named}


def _write(tmp_path: Path, document: dict[str, Any] | str, name: str = "c.json.gz") -> str:
    path = tmp_path / name
    text = document if isinstance(document, str) else json.dumps(document, indent=1)
    with gzip.open(path, "wt") as handle:
        handle.write(text)
    return str(path)


def _whole(path: str, key: str) -> dict[str, Any] | None:
    return {str(c["name"]): c for c in loading._load_json(path)["corrections"]}.get(key)


def test_spans_give_the_whole_decodes_corrections_and_decoys_are_passed_over(tmp_path: Path) -> None:
    # An input variable named like a correction, a description quoting one (escaped), a
    # duplicate (the last wins) and a correction whose name is not its first key.
    document = {"schema_version": 2, "corrections": [
        _correction("pt", 0.5), _correction("mu_sf", 0.7), _correction("mu_sf", 0.9),
        _correction("late_name", 1.5, first="data"),
    ]}
    path = _write(tmp_path, document)
    like_a_new_process()
    assert loading._decoded_alone(path, "pt") == _whole(path, "pt")
    assert loading.correction_json(path, "mu_sf") == _whole(path, "mu_sf")
    assert loading.correction_json(path, "mu_sf")["data"]["content"][0] == 0.9  # type: ignore[index]
    assert loading._decoded_alone(path, "late_name") is None  # not found this way ...
    assert loading.correction_json(path, "late_name") == _whole(path, "late_name")  # ... the whole decode is asked
    assert loading.correction_json(path, "weight") is None  # an output variable is no correction
    loading.get_correction_checks(path, "mu_sf", era="2017")
    with pytest.raises(CorrectionFileError, match="'weight' not found"):
        loading.get_correction_checks(path, "weight", era="2017")
    assert loading.get_correction(path, "mu_sf", era="2017").evaluate(0.5) == 0.9


def test_a_broken_span_is_an_error_naming_the_file(tmp_path: Path) -> None:
    text = json.dumps({"schema_version": 2, "corrections": [_correction("mu_sf", 0.7)]})
    path = _write(tmp_path, text[: len(text) // 2])
    like_a_new_process()
    with pytest.raises(CorrectionFileError, match=r"c\.json\.gz is unreadable.*mu_sf.*2017"):
        loading.get_correction_checks(path, "mu_sf", era="2017")


def test_the_schema_version_is_read_where_it_is_written(tmp_path: Path) -> None:
    first = _write(tmp_path, {"schema_version": 2, "corrections": [_correction("a", 1.0)]}, "first.json.gz")
    last = _write(tmp_path, {"corrections": [_correction("a", 1.0)], "schema_version": 2}, "last.json.gz")
    like_a_new_process()
    assert loading._schema_version(first) == loading._schema_version(last) == 2


@pytest.mark.skipif(not (JSONPOG / "POG").is_dir(), reason=f"real correction files absent under {JSONPOG}")
@pytest.mark.parametrize("pog", ["JME", "BTV", "MUO", "LUM"])
def test_every_real_correction_is_found_alone_and_equal(pog: str) -> None:
    like_a_new_process()
    for path in sorted(str(p) for p in (JSONPOG / "POG" / pog).glob("*/*.json.gz")):
        names = [str(c["name"]) for c in loading._load_json(path)["corrections"]]
        for name in names:
            assert loading._decoded_alone(path, name) == _whole(path, name), (path, name)

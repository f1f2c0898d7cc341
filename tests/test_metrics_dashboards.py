"""The chart's Grafana dashboards, checked statically.

Typed model: each dashboard is parsed with grafana-foundation-sdk's ``Dashboard.from_json`` and
encoded back; the round trip must keep every key and value of the file (the SDK drops keys it
does not know, so a misspelt field fails here), targets must decode to the Prometheus query
model and panel types must be known plugins. Queries: every expression parses with
promql-parser and only uses series that intccms or Dask export.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import promql_parser
import pytest
import yaml
from fixtures.prometheus import dashboards, panel_expressions, substitute
from grafana_foundation_sdk.cog import runtime as cogruntime
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.cog.plugins import register_default_plugins
from grafana_foundation_sdk.models import prometheus as prom_model
from grafana_foundation_sdk.models.dashboard import Dashboard

from intccms.metrics import names

DASHBOARDS = dashboards()
register_default_plugins()

KNOWN_SERIES = {
    *(f"{n}_total" for n in (names.EVENTS_READ, names.EVENTS_SELECTED, names.BYTES_READ, names.BYTES_WRITTEN,
                             names.CHUNKS_PROCESSED, names.CHUNKS_FAILED, names.RUN_CHUNKS_COMPLETED)),
    *(f"{names.CHUNK_DURATION}_{s}" for s in ("bucket", "sum", "count")),
    names.CHUNKS_IN_FLIGHT, names.WORKER_INFO, names.RUN_CHUNKS_PLANNED, names.RUN_WORKERS_WANTED,
    names.RUN_WORKERS_PRESENT, names.RUN_INFO, names.RUN_LAST_PROGRESS,
    "dask_worker_memory_bytes", "process_resident_memory_bytes",
}


def lost_keys(original: Any, copy: Any, path: str = "") -> list[str]:
    """Paths where ``copy`` lacks or changes something ``original`` has."""
    if isinstance(original, dict):
        if not isinstance(copy, dict):
            return [f"{path}: became {type(copy).__name__}"]
        out = []
        for key, value in original.items():
            out += [f"{path}.{key}: dropped"] if key not in copy else lost_keys(value, copy[key], f"{path}.{key}")
        return out
    if isinstance(original, list):
        if not isinstance(copy, list) or len(copy) != len(original):
            return [f"{path}: list changed"]
        return [p for i, (a, b) in enumerate(zip(original, copy, strict=True)) for p in lost_keys(a, b, f"{path}[{i}]")]
    return [] if original == copy else [f"{path}: {original!r} -> {copy!r}"]


def test_there_is_an_overview_dashboard() -> None:
    assert "intccms-run-overview.json" in DASHBOARDS


@pytest.mark.parametrize("name", sorted(DASHBOARDS))
def test_dashboard_round_trips_through_typed_model(name: str) -> None:
    data = DASHBOARDS[name]
    model = Dashboard.from_json(data)
    assert lost_keys(data, json.loads(json.dumps(model, cls=JSONEncoder))) == []
    assert model.uid and model.title
    ids = [panel.id_val for panel in model.panels or []]
    assert len(ids) == len(set(ids)), f"{name}: duplicate panel ids {ids}"
    for panel in model.panels or []:
        assert cogruntime.panelcfg_config(panel.type_val) is not None, f"{name}: unknown panel type {panel.type_val}"
        assert panel.datasource.uid == "${datasource}", f"{name}: panel {panel.title!r} ignores the datasource variable"
        for target in panel.targets or []:
            assert isinstance(target, prom_model.Dataquery), f"{name}: {panel.title!r} target is not a Prometheus query"
            assert target.expr
        ref_ids = [t.ref_id for t in panel.targets or []]
        assert len(ref_ids) == len(set(ref_ids)), f"{name}: panel {panel.title!r} repeats refIds"


@pytest.mark.parametrize("name", sorted(DASHBOARDS))
def test_dashboard_variables(name: str) -> None:
    variables = {v["name"]: v for v in DASHBOARDS[name]["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    run = variables["run"]
    assert run["type"] == "query"
    assert run["query"]["query"] == f"label_values({names.RUN_INFO}, run)"
    assert run["datasource"]["uid"] == "${datasource}"


EXPRESSIONS = [(name, *e) for name, dash in sorted(DASHBOARDS.items()) for e in panel_expressions(dash)]


@pytest.mark.parametrize(("name", "title", "ref", "expr"), EXPRESSIONS, ids=[f"{e[1]}-{e[2]}" for e in EXPRESSIONS])
def test_panel_expression_parses_and_uses_known_series(name: str, title: str, ref: str, expr: str) -> None:
    ast = promql_parser.parse(substitute(expr, run="r1", rate_interval="1m"))
    selectors: list[promql_parser.VectorSelector] = []
    promql_parser.walk(ast, lambda node: selectors.append(node) if isinstance(node, promql_parser.VectorSelector) else None)
    assert selectors, f"{name} / {title} / {ref}: no series selected"
    for sel in selectors:
        assert sel.name in KNOWN_SERIES, f"{name} / {title} / {ref}: unknown series {sel.name!r}"
        if sel.name.startswith("intccms_"):
            labels = {m.name for m in sel.matchers.matchers}
            assert "run" in labels, f"{name} / {title} / {ref}: {sel.name} is not filtered by $run"


def test_expression_check_catches_a_typo() -> None:
    with pytest.raises(ValueError, match="parenthes"):
        promql_parser.parse("sum(rate(intccms_events_read_total[1m])")


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed (tests/setup/install_prometheus.sh)")
def test_memory_panel_counts_memory_not_bytes_spilled_to_disk(tmp_path: Path) -> None:
    """Evaluate the panel's query with promtool on Dask's memory series: managed + unmanaged is
    the process's memory; the ``spilled`` type is on disk and must not be added to it."""
    expr = next(e for t, _, e in panel_expressions(DASHBOARDS["intccms-run-overview.json"]) if t == "Memory per worker")
    rules = {"groups": [{"name": "panel", "rules": [{"record": "panel:memory", "expr": substitute(expr, "r1")}]}]}
    series = [('dask_worker_memory_bytes{instance="a:1",type="managed"}', "100x10"),
              ('dask_worker_memory_bytes{instance="a:1",type="unmanaged"}', "50x10"),
              ('dask_worker_memory_bytes{instance="a:1",type="spilled"}', "1000x10"),
              ('intccms_worker_info{instance="a:1",run="r1",worker="w1"}', "1x10"),
              ('intccms_worker_info{instance="b:1",run="r0",worker="w0"}', "1x10")]
    tests = {"rule_files": ["rules.yaml"], "evaluation_interval": "15s", "tests": [{
        "interval": "15s",
        "input_series": [{"series": s, "values": v} for s, v in series],
        "promql_expr_test": [{"expr": "panel:memory", "eval_time": "1m", "exp_samples": [
            {"labels": 'panel:memory{instance="a:1",worker="w1"}', "value": 150}]}],
    }]}
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(rules))
    (tmp_path / "test.yaml").write_text(yaml.safe_dump(tests))
    proc = subprocess.run(["promtool", "test", "rules", "test.yaml"], cwd=tmp_path, capture_output=True, text=True,
                          timeout=120, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr

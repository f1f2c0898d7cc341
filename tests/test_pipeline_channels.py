"""Channels that select different events in a fill: each fills what it fills alone.

The members of a fill's selected events are taken once, for the weights and for every channel
that selects exactly those events; a channel selecting fewer takes its own. A looser channel (no
b-tag cut) beside the reference one makes both cases happen in every JES fill.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import Any

import pytest

from intccms.physics.pipeline import ChunkAnalysis
from intccms.storage import open_source

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import bench_variations
import hard_input

EVENTS = 8_000


@pytest.fixture(scope="module")
def chunk(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    work = tmp_path_factory.mktemp("channels")
    jsonpog, _ = bench_variations.correction_files(None, work)  # the real files where present
    setup = bench_variations.Setup(jsonpog, "numpy")
    analysis = setup.analysis("2017", ["*"])
    path = hard_input.write_hard_input(work / "hard.root", EVENTS, 9, setup.thresholds("2017"))
    with open_source(str(path)) as source:
        columns = source.read(analysis.branches(), 0, EVENTS)
    return {"analysis": analysis, "columns": columns}


def _with_channels(analysis: ChunkAnalysis, **channels: Any) -> ChunkAnalysis:
    plan = dataclasses.replace(analysis.plan, channels=channels)
    return ChunkAnalysis(plan, analysis.ctx, analysis.corrections)


def test_each_channel_fills_what_it_fills_alone(chunk: dict[str, Any]) -> None:
    analysis, columns = chunk["analysis"], chunk["columns"]
    tight = analysis.plan.channels["CMS_WORKSHOP"]
    loose = dataclasses.replace(tight, cuts={k: v for k, v in tight.cuts.items() if k != "btag"})
    both = _with_channels(analysis, tight=tight, loose=loose).run(columns)
    alone = {"tight": _with_channels(analysis, tight=tight).run(columns),
             "loose": _with_channels(analysis, loose=loose).run(columns)}
    assert both.cutflow["channel:loose"] > both.cutflow["channel:tight"] > 0
    for name, result in alone.items():
        assert result.cutflow[f"channel:{name}"] == both.cutflow[f"channel:{name}"]
        for (channel, observable), hist in result.hists.items():
            assert both.hists[(channel, observable)].tobytes() == hist.tobytes(), (channel, observable)

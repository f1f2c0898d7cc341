"""Bad input: every kind of unreadable file is named with its problem, or skipped whole.

Without ``skip_bad_files`` each bad file stops the job with an error naming the file and the
problem. With it, the run completes, the summary lists the file and its cost in events, and
the histograms equal a run without the file: the file's chunks that did succeed are left out
and its Σ genWeight is taken out of the normalisation.
"""

from __future__ import annotations

import pickle
import re
import struct
from pathlib import Path

import cramjam
import numpy as np
import pytest
import uproot
from fixtures.badfiles import rewrite_in_baskets, truncate_last_basket
from fixtures.demo import small_overrides

from intccms.config import compose_config
from intccms.execute.job import run_job
from intccms.outputs.histograms import AxisSpec, FileGroupedAccumulator
from intccms.outputs.summary import summarise
from intccms.plan.metadata import DatasetMetadata, FileMetadata
from intccms.runner.stage import BadInputError

DATASET = "ZPrimeToTT_M2000_W200_2017"  # 4000 events in one file (fixtures.demo.SIZES)
ENTRIES = 4000
CHUNK = 1000  # four chunks per file, one basket per chunk in the rewritten copies
DROPPED_BRANCH = "Jet_btagDeepFlavB"  # read by the analysis, not by the skim


def _overrides(data: Path, out: Path, files: list[Path], *extra: str) -> list[str]:
    listed = ",".join(str(f) for f in files)
    return small_overrides(data, out, [DATASET], f"datasets.{DATASET}.files=[{listed}]",
                           f"workflow.chunksize={CHUNK}", "workflow.run_plots=false", *extra)


def _run(client, data: Path, out: Path, files: list[Path], *extra: str):
    return run_job(compose_config("demo", _overrides(data, out, files, *extra)), client=client)


def _mtt(result):
    with open(result.histograms_path, "rb") as handle:
        return pickle.load(handle)["histograms"]["CMS_WORKSHOP"]["mtt"]


def _rewrite(src: Path, dst: Path, *, drop: tuple[str, ...] = (), stop: int | None = None) -> None:
    """Copy a generated file's ``Events`` (one basket per ``CHUNK`` entries) and ``Runs``."""
    rewrite_in_baskets(src, dst, CHUNK, drop=drop, stop=stop)


def _overwrite_compressed_data(path: Path, size: int = 64 * 1024, seed: int = 19) -> str:
    """Overwrite ``size`` random bytes from the start of the compressed data of the basket at
    the file's middle (past its key and 9-byte compression header); returns that branch."""
    with uproot.open(path) as f:
        seeks = sorted((int(b.member("fBasketSeek")[i]), b.name)
                       for b in f["Events"].values() for i in range(b.num_baskets))
    raw = bytearray(path.read_bytes())
    seek, branch = max(s for s in seeks if s[0] <= len(raw) // 2)
    start = seek + struct.unpack(">h", raw[seek + 14:seek + 16])[0] + 9  # TKey fKeylen + header
    assert bytes(raw[start - 9:start - 7]) in (b"XZ", b"ZL", b"L4", b"ZS"), "not compressed"
    raw[start:start + size] = np.random.default_rng(seed).bytes(size)
    path.write_bytes(bytes(raw))
    return branch


@pytest.fixture(scope="module")
def inputs(demo_data: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The generated good file and one bad file of each kind."""
    from rich.console import Console

    from intccms.execute.prepare import ensure_inputs
    from intccms.plan.run import with_generated_files

    folder = tmp_path_factory.mktemp("bad_input")
    cfg = compose_config("demo", _overrides(demo_data, folder / "unused", []))
    cfg = with_generated_files(cfg)
    ensure_inputs(cfg, console=Console(quiet=True))
    good = demo_data / "2017" / DATASET / "nano_0.root"
    with uproot.open(good) as f:
        assert f["Events"].num_entries == ENTRIES
    files = {"good": good, "missing": folder / "missing.root"}
    files["truncated"] = folder / "truncated.root"
    data = good.read_bytes()
    files["truncated"].write_bytes(data[: len(data) // 2])
    files["empty"] = folder / "empty.root"
    files["empty"].write_bytes(b"")
    files["no_events"] = folder / "no_events.root"
    with uproot.recreate(files["no_events"]) as out:
        out["Runs"] = {"genEventSumw": np.array([1.0e4]), "genEventCount": np.array([ENTRIES])}
    files["zero_entries"] = folder / "zero_entries.root"
    _rewrite(good, files["zero_entries"], stop=0)
    files["no_branch"] = folder / "no_branch.root"
    _rewrite(good, files["no_branch"], drop=(DROPPED_BRANCH,))
    files["bad_basket"] = folder / "bad_basket.root"
    _rewrite(good, files["bad_basket"])
    truncate_last_basket(files["bad_basket"], "Jet_pt")
    files["corrupt"] = folder / "corrupt.root"
    files["corrupt"].write_bytes(data)
    branch = _overwrite_compressed_data(files["corrupt"])
    with uproot.open(files["corrupt"]) as f, pytest.raises(cramjam.DecompressionError):
        f["Events"][branch].array()  # the damage hits compressed basket data
    files["not_root"] = folder / "not_root.root"
    files["not_root"].write_text("run,luminosityBlock,event\n1,1,1\n")
    return files


@pytest.fixture(scope="module")
def reference(dask_client, demo_data: Path, inputs, tmp_path_factory):
    """The dataset of the one good file."""
    return _run(dask_client, demo_data, tmp_path_factory.mktemp("reference"), [inputs["good"]])


# kind -> what the error must say about the file
PROBLEMS = {
    "missing": "does not exist",
    "truncated": "truncated",
    "empty": "empty \\(0 bytes\\)",
    "no_events": "no tree 'Events'",
    "zero_entries": "'Events' tree has 0 entries",
    "no_branch": DROPPED_BRANCH,
    "bad_basket": "ValueError",
    "corrupt": "is corrupt: its data cannot be decoded",
    "not_root": "is not a ROOT file: it begins with b'run,'",
}
# kind -> what the error must not say about the file
MISLEADING = {"not_root": "truncated"}


@pytest.mark.e2e
@pytest.mark.parametrize("kind", sorted(PROBLEMS))
def test_bad_file_stops_the_run_with_file_and_problem(dask_client, demo_data, inputs, tmp_path, kind) -> None:
    bad = inputs[kind]
    with pytest.raises(BadInputError) as info:
        _run(dask_client, demo_data, tmp_path, [inputs["good"], bad])
    message = str(info.value)
    assert str(bad) in message
    assert re.search(PROBLEMS[kind], message), message
    assert kind not in MISLEADING or MISLEADING[kind] not in message, message
    assert "skip_bad_files" in message


@pytest.mark.e2e
def test_skipped_files_cost_their_events_and_leave_the_histograms_untouched(
    dask_client, demo_data, inputs, reference, tmp_path,
) -> None:
    bad = sorted(PROBLEMS)
    res = _run(dask_client, demo_data, tmp_path, [inputs["good"], *(inputs[k] for k in bad)],
               "workflow.skip_bad_files=true")
    skipped = res.summary["skipped_files"]
    assert set(skipped) == {str(inputs[k]) for k in bad}
    # Files that opened cost all their entries; those that did not are of unknown size.
    counted = {"no_branch": ENTRIES, "bad_basket": ENTRIES, "corrupt": ENTRIES, "zero_entries": 0}
    for kind in bad:
        assert skipped[str(inputs[kind])]["entries"] == counted.get(kind, "unknown"), kind
        assert skipped[str(inputs[kind])]["dataset"] == DATASET
    assert res.summary["skipped_events"] == 3 * ENTRIES
    assert res.summary["skipped_files_unknown_entries"] == 5
    # The bad basket's first three chunks analysed fine, yet none of them is filled; the copies'
    # Σw (equal to the good file's) is out of the normalisation, else every bin would halve.
    analysed = [r for r in res.records if r.stage == "analysis" and r.file == str(inputs["bad_basket"])]
    assert sorted(r.failed for r in analysed) == [False, False, False, True]
    a, b = _mtt(reference), _mtt(res)
    assert a.view(flow=True).value.sum() > 0
    np.testing.assert_array_equal(b.view(flow=True).value, a.view(flow=True).value)
    np.testing.assert_array_equal(b.view(flow=True).variance, a.view(flow=True).variance)


@pytest.mark.e2e
def test_files_skipped_at_skim_or_at_the_analysis_of_skims_are_left_out_whole(
    dask_client, demo_data, inputs, reference, tmp_path,
) -> None:
    # The skim fails on the bad basket (its other parts are written); the analysis of the skims
    # fails on the parts of the file without the b-tag branch (the skim does not need it).
    copy, no_branch = inputs["bad_basket"], inputs["no_branch"]
    res = _run(dask_client, demo_data, tmp_path, [inputs["good"], copy, no_branch],
               "workflow=skim_and_analysis", f"workflow.skim_dir={tmp_path / 'skims'}",
               "workflow.skip_bad_files=true")
    skim = [r for r in res.records if r.stage == "skim" and r.file == str(copy)]
    assert sorted(r.failed for r in skim) == [False, False, False, True]
    failed_parts = {r.file for r in res.records if r.stage == "analysis" and r.failed}
    assert failed_parts and all(f"{DATASET}/file_" in f for f in failed_parts)
    assert set(res.summary["skipped_files"]) == {str(copy), str(no_branch)}
    assert {c["entries"] for c in res.summary["skipped_files"].values()} == {ENTRIES}
    assert res.summary["skipped_events"] == 2 * ENTRIES
    a, b = _mtt(reference), _mtt(res)
    np.testing.assert_allclose(b.view(flow=True).value, a.view(flow=True).value, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(b.view(flow=True).variance, a.view(flow=True).variance, rtol=1e-9, atol=1e-12)


# --- the accumulator and the summary on their own (no cluster) ---

AXES = {"x": AxisSpec("x", 2, 0.0, 2.0)}


def _chunk(w: float) -> dict[tuple[str, str], np.ndarray]:
    values = np.zeros((1, 4, 2))
    values[0, 1] = (w, w * w)
    return {("ch", "x"): values}


@pytest.mark.parametrize("fail_first", [True, False])
def test_a_failed_chunk_drops_its_file_whichever_arrives_first(fail_first: bool) -> None:
    acc = FileGroupedAccumulator()
    acc.expect("ds", "good", 2)
    acc.expect("ds", "bad", 3)
    if fail_first:
        acc.drop("ds", "bad")
    acc.add("ds", "bad", _chunk(100.0))
    acc.add("ds", "good", _chunk(1.0))
    assert acc.in_progress == (1 if fail_first else 2)
    acc.add("ds", "bad", _chunk(100.0))
    if not fail_first:
        acc.drop("ds", "bad")
    acc.add("ds", "good", _chunk(2.0))
    assert acc.in_progress == 0  # complete files are merged and freed
    assert acc.dropped == {("ds", "bad")}
    out = acc.normalised({"ds": 0.5}, {"ds": "proc"}, ("nominal",), AXES).contents[("ch", "x")]["proc"]
    # Σw scales by the norm, Σw² by its square: (1 + 2)·0.5 and (1 + 4)·0.25.
    np.testing.assert_allclose(out[0, 1], [1.5, 1.25])
    assert out[0, [0, 2, 3]].sum() == 0


def test_outstanding_chunks_are_an_error_not_a_short_histogram() -> None:
    acc = FileGroupedAccumulator()
    acc.expect("ds", "f", 2)
    acc.add("ds", "f", _chunk(1.0))
    with pytest.raises(RuntimeError, match="1 of f"):
        acc.normalised({"ds": 1.0}, {"ds": "proc"}, ("nominal",), AXES)
    acc.add("ds", "f", _chunk(1.0))
    with pytest.raises(RuntimeError, match="more chunks"):
        acc.add("ds", "f", _chunk(1.0))


def test_summary_costs_each_skipped_file_its_entries_or_unknown() -> None:
    files = {"a.root": FileMetadata("a.root", num_entries=700, sum_genweight=7.0),
             "b.root": FileMetadata("b.root", error="OSError: b.root: gone", counted=False),
             "c.root": FileMetadata("c.root", num_entries=300, sum_genweight=3.0)}
    meta = {"ds": DatasetMetadata("ds", "2017", False, 1.0, files)}
    summary = summarise([], {}, 1.0, {"a.root": "ValueError: a.root: bad basket", "b.root": "OSError: gone"}, meta)
    assert summary["skipped_files"]["a.root"] == {"dataset": "ds", "error": "ValueError: a.root: bad basket",
                                                  "entries": 700}
    assert summary["skipped_files"]["b.root"]["entries"] == "unknown"
    assert summary["skipped_events"] == 700 and summary["skipped_files_unknown_entries"] == 1


@pytest.mark.e2e  # needs the generated file
def test_a_bug_while_counting_is_raised_not_skipped_as_a_bad_file(inputs, monkeypatch) -> None:
    from intccms.plan import metadata

    def broken(*args, **kwargs):
        raise AttributeError("'StorageOptions' object has no attribute 'x'")

    monkeypatch.setattr(metadata, "read_runs_sums", broken)
    with pytest.raises(AttributeError):
        metadata.file_metadata(str(inputs["good"]), False)
    monkeypatch.undo()
    # a real input error still comes back as the file's error, naming it
    assert str(inputs["truncated"]) in (metadata.file_metadata(str(inputs["truncated"]), False).error or "")


@pytest.mark.parametrize("err", [TimeoutError("read timed out"), ConnectionResetError("reset")])
def test_a_network_error_while_decoding_is_not_called_corrupt(err: OSError) -> None:
    """Only errors of the bytes themselves are corrupt input; an outage stays an outage."""
    from intccms.storage.formats.root import decoding

    with pytest.raises(type(err)), decoding("root://eos.example//store/f.root"):
        raise err


def test_merged_sums_do_not_depend_on_the_order_chunks_finish() -> None:
    """Chunks of several files arriving in any order give bit-identical totals (floating-point
    addition is not associative, so a merge in arrival order would differ in the last bits)."""
    rng = np.random.default_rng(5)
    plan = [(f"f{i // 3}", i) for i in range(12)]  # four files of three chunks, in plan order
    chunks = {i: {("ch", "x"): rng.lognormal(0.0, 3.0, size=(1, 4, 2))} for _, i in plan}

    def merged(arrival: list[int]) -> np.ndarray:
        acc = FileGroupedAccumulator()
        for file, _ in plan:
            acc.expect("ds", file)
        for i in arrival:
            acc.add("ds", plan[i][0], chunks[i], order=i)
        assert acc.in_progress == 0
        return acc.totals["ds"][("ch", "x")]

    reference = merged(list(range(12)))
    for seed in range(5):
        shuffled = np.random.default_rng(seed).permutation(12).tolist()
        assert np.array_equal(merged(shuffled), reference), shuffled
    naive = sum((chunks[i][("ch", "x")] for i in np.random.default_rng(1).permutation(12)), np.zeros((1, 4, 2)))
    np.testing.assert_allclose(naive, reference, rtol=1e-12)  # the same sum, up to rounding

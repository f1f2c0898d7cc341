"""A worker reads the tables an earlier worker derived from the same files, and only those."""

from __future__ import annotations

import gzip
import json
import os
import pickle
import stat
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fixtures.corrections import demo_spec, like_a_new_process

from intccms import datagen
from intccms.physics.corrections import EraCorrections, file_memo, jes_table, loading
from intccms.physics.corrections.spec import CorrectionsSpec

SHARED = Path(os.environ.get("INTCCMS_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
REAL_JSONPOG = Path(os.environ.get("INTCCMS_JSONPOG", SHARED / "jsonpog-integration"))


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """An empty cache folder of this test's own, and a process that has derived nothing yet."""
    folder = tmp_path / "cache"
    monkeypatch.setenv(file_memo.CACHE_ENV, str(folder))
    like_a_new_process()
    yield folder / "corrections"
    like_a_new_process()


def _warm(corrections_spec: CorrectionsSpec) -> EraCorrections:
    like_a_new_process()
    return corrections_spec.warm()


def _tables(corrections: EraCorrections) -> list[bytes]:
    """Every number of every derived table: the JES source table, the b-tag leaves of each selector."""
    out = []
    for obj in corrections.objects:
        table = obj._source_table()
        assert table is not None
        out += [table.params.tobytes(), table.eta_edges.tobytes(), table.pt_edges.tobytes()]
    for wc in corrections.weights:
        if wc._staged is not None:
            for selector in wc.selectors():
                cells = wc._staged.cells(selector)
                out += [b"-"] if cells is None else [cells.constant.tobytes(), *(p.tobytes() for p in cells.params),
                                                     cells.layout.guards.tobytes()]
    return out


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("jsonpog")
    datagen.write_correction_files(str(folder), ["2017"])
    return folder


@pytest.mark.parametrize("files", ["generated", "real UL"])
def test_a_second_worker_reads_every_table_and_derives_none(cache: Path, generated: Path, files: str,
                                                          parsed_corrections: list[list[str]]) -> None:
    if files == "real UL" and not (REAL_JSONPOG / "POG" / "BTV" / "2017_UL").is_dir():
        pytest.skip(f"real UL correction files not found under {REAL_JSONPOG} (set INTCCMS_SHARED_DATA)")
    corrections_spec = demo_spec(generated if files == "generated" else REAL_JSONPOG)
    first = _tables(_warm(corrections_spec))
    if files == "real UL":
        assert first.count(b"-") == 0  # the b-tag shape's leaves of every selector are among them
    written = sorted(cache.glob("*.pickle"))
    assert written and stat.S_IMODE(cache.stat().st_mode) == 0o700
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in written)
    first_parsed = [n for names in parsed_corrections for n in names]
    parsed_corrections.clear()
    misses = jes_table._compiled_sources.cache_info().misses
    second = _tables(_warm(corrections_spec))
    assert second == first
    assert jes_table._compiled_sources.cache_info().misses == misses
    second_parsed = [n for names in parsed_corrections for n in names]
    assert second_parsed and len(second_parsed) < len(first_parsed)  # what a chunk evaluates, from kept texts

    def probes(names: list[str]) -> list[str]:
        return [n for n in names if n.endswith(("[0]", "[1]", "[2]", "[3]", "[4]"))]

    assert not probes(second_parsed)  # no table is read back from correctionlib again
    if files == "real UL":
        assert len(probes(first_parsed)) > 100
    assert sorted(cache.glob("*.pickle")) == written


def test_an_edited_file_is_derived_again(cache: Path, generated: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    for source in generated.rglob("*.json*"):
        target = copy / source.relative_to(generated)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(source.read_bytes())
    corrections_spec = demo_spec(copy)
    jec = _warm(corrections_spec).objects[0]
    before = _tables(_warm(corrections_spec))
    path = Path(jec.path)
    document = json.loads(gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes())
    source = next(c for c in document["corrections"] if c["name"] == jec.sources[0].key)
    node = source["data"]
    while isinstance(node["content"][0], dict) and node["content"][0].get("nodetype") == "binning":
        node = node["content"][0]
    leaf = node["content"][0]  # one cell: a constant, or a formula's first parameter
    if isinstance(leaf, dict):
        leaf["parameters"][0] = float(leaf["parameters"][0]) * 1.5 + 0.25
    else:
        node["content"][0] = float(leaf) * 1.5 + 0.25
    text = json.dumps(document).encode()
    path.write_bytes(gzip.compress(text) if path.suffix == ".gz" else text)
    misses = jes_table._compiled_sources.cache_info().misses
    after = _tables(_warm(corrections_spec))
    assert jes_table._compiled_sources.cache_info().misses == misses + 1  # not the old file's table
    assert after[0] != before[0] and after[1:] == before[1:]


def test_a_corrupt_or_foreign_entry_is_ignored_and_written_again(cache: Path, generated: Path) -> None:
    corrections_spec = demo_spec(generated)
    first = _tables(_warm(corrections_spec))
    entries = sorted(cache.glob("*.pickle"))
    biggest = max(entries, key=lambda p: p.stat().st_size)
    biggest.write_bytes(biggest.read_bytes()[: biggest.stat().st_size // 2])  # truncated
    others = [p for p in entries if p != biggest]
    target = max(others, key=lambda p: p.stat().st_size)
    decoy = cache.parent / "decoy.pickle"  # every result None: followed, the tables would be gone
    kept = pickle.loads(target.read_bytes())  # noqa: S301 - the test's own file
    decoy.write_bytes(pickle.dumps({**kept, "values": dict.fromkeys(kept["values"])}))
    target.unlink()
    target.symlink_to(decoy)  # a link is never followed
    assert _tables(_warm(corrections_spec)) == first
    assert not target.is_symlink() and target.stat().st_size > 0  # replaced by a file of its own
    assert _entries(biggest) and _entries(target)  # both written again, whole


def _entries(path: Path) -> int:
    loaded = pickle.loads(path.read_bytes())  # noqa: S301 - the test's own file
    return len(loaded["values"])


def test_a_folder_open_to_others_is_closed_and_one_of_another_user_is_not_used(
        cache: Path, generated: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache.mkdir(parents=True)
    cache.chmod(0o777)
    corrections_spec = demo_spec(generated)
    _warm(corrections_spec)
    assert stat.S_IMODE(cache.stat().st_mode) == 0o700 and list(cache.glob("*.pickle"))
    if os.geteuid() != 0:
        pytest.skip("changing a folder's owner needs root")
    foreign = cache.parent / "foreign"
    (foreign / "corrections").mkdir(parents=True)
    os.chown(foreign / "corrections", 4321, 4321)
    monkeypatch.setenv(file_memo.CACHE_ENV, str(foreign))
    _warm(corrections_spec)
    assert not list((foreign / "corrections").iterdir())


def test_off_writes_nothing_and_gives_the_same_tables(cache: Path, generated: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    corrections_spec = demo_spec(generated)
    monkeypatch.setenv(file_memo.CACHE_ENV, "off")
    assert file_memo.cache_root() is None
    without = _tables(_warm(corrections_spec))
    assert not cache.parent.exists()
    monkeypatch.setenv(file_memo.CACHE_ENV, str(cache.parent))
    _warm(corrections_spec)
    assert _tables(_warm(corrections_spec)) == without  # the second one read from the cache
    assert list(cache.glob("*.pickle"))


def test_entries_unused_for_two_weeks_are_removed_and_used_ones_kept(cache: Path, generated: Path) -> None:
    corrections_spec = demo_spec(generated)
    jet_file = _warm(corrections_spec).objects[0].path
    entries = sorted(cache.glob("*.pickle"))
    old = time.time() - file_memo.UNUSED_FOR_S - 3600
    stale = cache / ("0" * 64 + ".pickle")  # an older version's entry
    stale.write_bytes(b"never read")
    leftover = cache / ".abc.1.2.tmp"  # a killed writer's
    leftover.write_bytes(b"")
    for path in (*entries, stale, leftover):
        os.utime(path, (old, old))
    _warm(corrections_spec)  # a new worker reads the entries it uses ...
    assert all(p.stat().st_mtime > old for p in entries)
    assert stale.exists()  # ... and, with nothing new to write, writes nothing
    loading.is_identity(jet_file, "a key the file does not hold")  # something new to keep
    file_memo.save()
    assert not stale.exists() and not leftover.exists()
    assert all(p.exists() for p in entries)

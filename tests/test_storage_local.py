"""Storage on local disk: round trips per format, atomic commits, manifests, errors."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import awkward as ak
import numpy as np
import pytest

from intccms.storage import (
    Manifest,
    MissingColumnError,
    StorageNotFoundError,
    StorageOptions,
    exists_complete,
    join,
    open_source,
    read_runs_sums,
    remove,
    scheme_of,
    write_part,
)
from intccms.storage.schemes import TEMP_MARKER, FileBackend

FORMATS = [("parquet", "parquet"), ("ttree", "root"), ("rntuple", "root")]
SHARED = Path(os.environ.get("INTCCMS_SHARED_DATA",
                             Path(__file__).resolve().parents[1].parent / "shared" / "data"))


def nano_columns(n: int = 500, seed: int = 1) -> dict[str, ak.Array]:
    """A small NanoAOD-like skim with two collections, a lone jagged column and flat ones."""
    rng = np.random.default_rng(seed)
    njet = rng.integers(0, 6, n).astype(np.int32)
    nmu = rng.integers(0, 3, n).astype(np.int32)
    jet_pt = ak.unflatten(rng.exponential(40, njet.sum()).astype(np.float32), njet)
    return {
        "run": np.full(n, 1, np.uint32),
        "event": np.arange(n, dtype=np.uint64),
        "HLT_IsoMu24": rng.random(n) < 0.5,
        "nJet": njet,
        "Jet_pt": jet_pt,
        "Jet_eta": ak.unflatten(rng.normal(0, 2, njet.sum()).astype(np.float32), njet),
        "Jet_jetId": ak.unflatten(rng.integers(0, 7, njet.sum()).astype(np.int32), njet),
        "Muon_pt": ak.unflatten(rng.exponential(30, nmu.sum()).astype(np.float32), nmu),
        "nMuon": nmu,
        "MET_pt": rng.exponential(50, n).astype(np.float32),
    }


def assert_same(read: dict[str, ak.Array], expected: dict[str, ak.Array]) -> None:
    """Same names and values (types may widen, values may not change)."""
    assert sorted(read) == sorted(expected)
    for name, arr in expected.items():
        assert ak.to_list(read[name]) == ak.to_list(arr), name


def compressed_column_bytes(source: Any, column: str, *, parquet: bool | None = None) -> int:
    """Compressed on-disk bytes of one column, from the file's own metadata.

    Args:
        source: Local path or open binary file.
        column: Column name.
        parquet: Format; ``None`` guesses from a path's extension.
    """
    import pyarrow.parquet as pq
    import uproot

    if parquet is None:
        parquet = str(source).endswith(".parquet")
    if parquet:
        meta = pq.read_metadata(source)
        idx = meta.schema.to_arrow_schema().get_field_index(column)
        return sum(meta.row_group(i).column(idx).total_compressed_size
                   for i in range(meta.num_row_groups))
    with uproot.open(source) as f:
        obj = f["Events"]
        if hasattr(obj, "compressed_bytes"):
            return int(obj[column].compressed_bytes)
        # RNTuple: sum the on-disk sizes of the pages of the field's columns.
        fid = next(i for i, rec in enumerate(obj.field_records) if rec.field_name == column)
        cols = [i for i, rec in enumerate(obj.column_records) if rec.field_id == fid]
        return sum(page.locator.num_bytes for cluster in obj.page_link_list
                   for i in cols for page in cluster[i].pages)


@pytest.mark.parametrize(("fmt", "ext"), FORMATS)
def test_round_trip_names_and_values(tmp_path: Path, fmt: str, ext: str) -> None:
    data = nano_columns()
    url = str(tmp_path / f"part.{ext}")
    part = write_part(data, url, fmt)
    assert part.entries == 500
    assert part.bytes == os.path.getsize(url)
    assert exists_complete(url)
    with open_source(url) as src:
        assert src.num_entries == 500
        assert sorted(src.columns()) == sorted(data)
        assert_same(src.read(list(data)), data)
        window = src.read(["Jet_pt", "nJet"], 100, 150)
        assert ak.to_list(window["Jet_pt"]) == ak.to_list(data["Jet_pt"][100:150])
        assert window["Jet_pt"].ndim == 2
        assert window["nJet"].ndim == 1


@pytest.mark.parametrize(("fmt", "ext"), FORMATS)
def test_counters_are_added_for_coffea(tmp_path: Path, fmt: str, ext: str) -> None:
    data = {"Jet_pt": ak.Array([[1.0, 2.0], [], [3.0]]), "run": np.arange(3, dtype=np.uint32)}
    url = str(tmp_path / f"c.{ext}")
    write_part(data, url, fmt)
    with open_source(url) as src:
        assert sorted(src.columns()) == ["Jet_pt", "nJet", "run"]
        assert src.read(["nJet"])["nJet"].tolist() == [2, 0, 1]


def test_ttree_shares_counter_like_nanoaod(tmp_path: Path) -> None:
    import uproot

    url = str(tmp_path / "t.root")
    write_part(nano_columns(50), url, "ttree")
    with uproot.open(url) as f:
        tree = f["Events"]
        assert tree["Jet_pt"].count_branch.name == "nJet"
        assert tree["Jet_eta"].count_branch.name == "nJet"
        assert tree["Muon_pt"].count_branch.name == "nMuon"


def test_missing_column_names_url_and_suggestions(tmp_path: Path) -> None:
    url = str(tmp_path / "p.parquet")
    write_part(nano_columns(10), url, "parquet")
    with open_source(url) as src, pytest.raises(MissingColumnError) as info:
        src.read(["Jet_ptt"])
    assert isinstance(info.value, KeyError)
    assert url in str(info.value)
    assert "Jet_pt" in str(info.value)


def test_interrupted_write_leaves_nothing(tmp_path: Path) -> None:
    url = str(tmp_path / "p.root")

    class Boom(RuntimeError):
        pass

    def exploding() -> ak.Array:
        raise Boom

    backend = FileBackend(StorageOptions())
    with pytest.raises(Boom), backend.staging(url) as tmp:
        Path(tmp).write_bytes(b"root" + b"\0" * 1000)
        exploding()
    assert not os.path.exists(url)
    assert os.listdir(tmp_path) == []


def test_failed_format_write_leaves_nothing(tmp_path: Path) -> None:
    url = str(tmp_path / "bad.root")
    with pytest.raises(ValueError, match="differ in length"):
        write_part({"a": np.arange(3), "b": np.arange(4)}, url, "ttree")
    with pytest.raises(TypeError):
        write_part({"a": np.array([object()], dtype=object)}, url, "ttree")
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize(("fmt", "ext"), FORMATS)
def test_truncated_and_temp_files_are_not_complete(tmp_path: Path, fmt: str, ext: str) -> None:
    good = str(tmp_path / f"good.{ext}")
    write_part(nano_columns(200), good, fmt)
    blob = Path(good).read_bytes()
    truncated = tmp_path / f"trunc.{ext}"
    truncated.write_bytes(blob[: len(blob) // 2])
    empty = tmp_path / f"empty.{ext}"
    empty.write_bytes(b"")
    leftover = tmp_path / f".x.{ext}{TEMP_MARKER}abc"
    leftover.write_bytes(blob)
    assert exists_complete(good)
    assert not exists_complete(str(truncated))
    assert not exists_complete(str(empty))
    assert not exists_complete(str(leftover))
    assert not exists_complete(str(tmp_path / f"absent.{ext}"))


def test_overwrite_replaces_atomically(tmp_path: Path) -> None:
    url = str(tmp_path / "p.parquet")
    write_part({"x": np.arange(5)}, url, "parquet")
    write_part({"x": np.arange(7)}, url, "parquet")
    with open_source(url) as src:
        assert src.num_entries == 7
    remove(url)
    assert not os.path.exists(url)
    remove(url)  # idempotent


def test_manifest_round_trip_ignores_temp_parts(tmp_path: Path) -> None:
    murl = str(tmp_path / "ds" / "manifest.json")
    m = Manifest.load(murl, dataset="DY")
    assert m.parts == []
    part = {"url": str(tmp_path / "ds" / "p0.parquet"), "entries": 5, "bytes": 10,
            "source_file": "in.root", "entry_start": 0, "entry_stop": 5, "fmt": "parquet"}
    m.add(part)
    m.add({**part, "entries": 6})  # a retried part replaces the first record
    m.add({**part, "url": str(tmp_path / "ds" / f".p1.parquet{TEMP_MARKER}zz")})
    m.save()
    again = Manifest.load(murl)
    assert again.dataset == "DY"
    assert again.urls() == [part["url"]]
    assert again.parts[0]["entries"] == 6
    assert [p.name for p in (tmp_path / "ds").iterdir()] == ["manifest.json"]


@pytest.mark.parametrize(("fmt", "ext"), FORMATS)
def test_bytes_read_partial_columns_local(tmp_path: Path, fmt: str, ext: str) -> None:
    url = str(tmp_path / f"big.{ext}")
    write_part(nano_columns(200_000), url, fmt)
    size = os.path.getsize(url)
    compressed = compressed_column_bytes(url, "MET_pt")
    with open_source(url) as src:
        src.read(["MET_pt"])
        assert compressed < src.bytes_read < size / 3


def test_join_and_scheme() -> None:
    assert join("s3://b/p/", "ds", "x.root") == "s3://b/p/ds/x.root"
    assert join("root://h:1094//data", "x.root") == "root://h:1094//data/x.root"
    assert join("/a", "b", "c") == "/a/b/c"
    assert scheme_of("/a/b") == "file"
    assert scheme_of("s3://b/k") == "s3"
    assert scheme_of("root://h//p") == "root"
    with pytest.raises(ValueError, match="unsupported"):
        scheme_of("gopher://x")


def test_missing_file_is_not_found(tmp_path: Path) -> None:
    with pytest.raises(StorageNotFoundError, match=r"absent\.root"):
        open_source(str(tmp_path / "absent.root"))


@pytest.mark.realdata
def test_real_nanoaod_runs_sums_and_columns() -> None:
    path = SHARED / "nanoaod" / "nano_dy.root"
    if not path.exists():
        pytest.skip(f"CMS reference inputs absent at {path}; set INTCCMS_SHARED_DATA")
    sums = read_runs_sums(str(path))
    assert sums is not None
    count, sumw = sums
    assert count > 0
    assert sumw != 0.0
    with open_source(str(path)) as src:
        assert src.kind == "ttree"
        assert src.num_entries == 40
        muons = src.read(["Muon_pt", "nMuon"])
        assert ak.to_list(ak.num(muons["Muon_pt"])) == muons["nMuon"].tolist()


@pytest.mark.parametrize(("fmt", "ext"), FORMATS)
def test_empty_part_round_trips(tmp_path: Path, fmt: str, ext: str) -> None:
    data = {k: v[:0] for k, v in nano_columns(10).items()}
    url = str(tmp_path / f"empty.{ext}")
    assert write_part(data, url, fmt).entries == 0
    assert exists_complete(url)
    with open_source(url) as src:
        assert src.num_entries == 0
        assert sorted(src.columns()) == sorted(data)
        assert str(src.read(["Jet_pt"])["Jet_pt"].type) == "0 * var * float32"


# coffea warns about cross-references to collections a skim does not contain.
@pytest.mark.filterwarnings("ignore:Missing cross-reference index:RuntimeWarning")
@pytest.mark.parametrize(("fmt", "ext"), FORMATS)
def test_coffea_reads_written_skims(tmp_path: Path, fmt: str, ext: str) -> None:
    from coffea.nanoevents import NanoAODSchema, NanoEventsFactory

    data = nano_columns(40)
    data["luminosityBlock"] = np.ones(40, np.uint32)
    data["Jet_phi"] = data["Jet_eta"] * 0.5
    data["Jet_mass"] = data["Jet_pt"] * 0.1
    data["MET_phi"] = np.zeros(40, np.float32)
    url = str(tmp_path / f"skim.{ext}")
    write_part(data, url, fmt)
    if fmt == "parquet":
        factory = NanoEventsFactory.from_parquet(url, schemaclass=NanoAODSchema, mode="eager")
    else:
        factory = NanoEventsFactory.from_root({url: "Events"}, schemaclass=NanoAODSchema,
                                              mode="eager")
    events = factory.events()
    assert ak.to_list(events.Jet.pt) == ak.to_list(data["Jet_pt"])
    assert ak.to_list(events.Jet.mass) == ak.to_list(data["Jet_mass"])
    assert ak.to_list(events.MET.pt) == ak.to_list(data["MET_pt"])


@pytest.mark.parametrize("fmt", ["ttree", "rntuple"])
def test_root_reader_kwargs_reach_uproot(tmp_path: Path, fmt: str) -> None:
    # uproot reads begin_chunk_size bytes at open: the byte counter sees the option applied.
    url = str(tmp_path / f"big.{fmt}.root")
    write_part(nano_columns(200_000), url, fmt)
    with open_source(url) as src:
        default = src.bytes_read
    options = StorageOptions(reader_kwargs={"root": {"begin_chunk_size": 1 << 21}})
    with open_source(url, options=options) as src:
        assert default < 1 << 16 and src.bytes_read >= 1 << 21
        assert_same(src.read(["MET_pt"], 0, 10), {"MET_pt": nano_columns(200_000)["MET_pt"][:10]})


def test_parquet_reader_kwargs_reach_pyarrow(tmp_path: Path) -> None:
    url = str(tmp_path / "part.parquet")
    write_part(nano_columns(100), url, "parquet")
    with open_source(url, options=StorageOptions(reader_kwargs={"root": {"begin_chunk_size": 1}})) as src:
        assert src.num_entries == 100  # the ROOT options do not touch parquet
    tiny = StorageOptions(reader_kwargs={"parquet": {"thrift_container_size_limit": 1}})
    with pytest.raises(OSError, match="thrift"):
        open_source(url, options=tiny)


def test_reader_kwargs_from_the_storage_group(tmp_path: Path) -> None:
    from intccms.config import compose_config
    from intccms.plan.run import storage_options

    cfg = compose_config("demo", ["+storage.reader_kwargs.root.begin_chunk_size=2097152"])
    options = storage_options(cfg)
    assert options.reader_kwargs_for("root") == {"begin_chunk_size": 2097152}
    assert options.reader_kwargs_for("parquet") == {}
    url = str(tmp_path / "big.root")
    write_part(nano_columns(200_000), url, "ttree")
    with open_source(url, options=options) as src:
        assert src.bytes_read >= 2097152
    with pytest.raises(ValueError, match=r"unknown format\(s\) \['ttree'\].*'root' covers TTree"):
        StorageOptions(reader_kwargs={"ttree": {}})

"""The processor workflow's parts without a cluster: configuration, loading, merge order, outputs."""

from __future__ import annotations

import itertools
import textwrap
import uuid
from pathlib import Path

import awkward as ak
import hist
import numpy as np
import pytest
import uproot
from coffea import processor
from coffea.util import load

from intccms.config import ConfigError, compose_config
from intccms.config.processor import ProcessorConfig, ProcessorConfigError, parse_processor_config
from intccms.config.processor_loader import ProcessorLoadError, load_processor
from intccms.processor.accumulators import NotAnAccumulatorError, check_accumulator
from intccms.processor.merge import MergeError, OrderedTree, merge_outputs
from intccms.processor.outputs import save_coffea, save_root

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"

PROCESSORS = '''
    from coffea import processor

    class Good(processor.ProcessorABC):
        def __init__(self, scale=1.0):
            self.scale = scale
        def process(self, events):
            return {"n": len(events)}
        def postprocess(self, accumulator):
            return accumulator

    class NotAProcessor:
        def process(self, events):
            return {}

    def a_function(events):
        return {}
'''


@pytest.fixture
def user_module(tmp_path: Path) -> str:
    """A module of processors in a folder of its own (a unique name: modules are cached)."""
    name = f"user_procs_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(PROCESSORS))
    return name


def _config(tmp_path: Path, class_path: str, **extra: object) -> ProcessorConfig:
    return ProcessorConfig(class_path=class_path, python_path=[str(tmp_path)], **extra)  # type: ignore[arg-type]


def _compose(*overrides: str):
    return compose_config("processor", [f"processor.python_path=[{EXAMPLES}]", *overrides])


# --- configuration -------------------------------------------------------------------------------

def test_processor_yaml_composes_with_the_dimuon_example_and_typed_defaults() -> None:
    cfg = _compose()
    parsed = parse_processor_config(cfg.processor)
    assert parsed.class_path == "dimuon.DimuonProcessor"
    assert (parsed.schema, parsed.treename, parsed.kwargs) == ("NanoAODSchema", "Events", {})
    assert not cfg.analysis.channels  # no analysis group: its checks do not apply


def test_an_unknown_processor_key_fails_at_startup_naming_it() -> None:
    with pytest.raises(ConfigError, match=r"processor\.kwargz is not a known key; did you mean 'kwargs'"):
        _compose("+processor.kwargz={scale: 2}")
    with pytest.raises(ConfigError, match=r"processor\.clas"):
        _compose("processor.clas=dimuon.DimuonProcessor")


def test_wrong_types_and_a_missing_class_name_the_key() -> None:
    with pytest.raises(ProcessorConfigError, match=r"processor\.kwargs"):
        parse_processor_config({"class": "a.B", "kwargs": 3})
    with pytest.raises(ProcessorConfigError, match=r"processor\.class: missing"):
        parse_processor_config({"kwargs": {}})
    with pytest.raises(ProcessorConfigError, match=r"processor\.class_path is not a known key"):
        parse_processor_config({"class_path": "a.B"})  # the YAML key is 'class', nothing else


# --- loading the class ---------------------------------------------------------------------------

def test_a_class_path_that_does_not_import_names_the_module_and_the_attribute(tmp_path, user_module) -> None:
    with pytest.raises(ProcessorLoadError, match=r"cannot import module 'nopkg\.mod' \(for attribute 'Proc'\): "
                                                 r"no module named 'nopkg'"):
        load_processor(_config(tmp_path, "nopkg.mod.Proc"))
    with pytest.raises(ProcessorLoadError, match=rf"module '{user_module}' \(.*{user_module}\.py\) has no "
                                                 r"attribute 'Godo'; did you mean 'Good'"):
        load_processor(_config(tmp_path, f"{user_module}.Godo"))
    with pytest.raises(ProcessorLoadError, match="not an import path"):
        load_processor(_config(tmp_path, "Good"))


def test_a_class_that_is_not_a_processor_is_refused_at_startup(tmp_path, user_module) -> None:
    for name, what in (("NotAProcessor", "the class"), ("a_function", "a function")):
        with pytest.raises(ConfigError, match=rf"processor\.class: '{user_module}\.{name}' is {what}.*not a "
                                              r"subclass of coffea\.processor\.ProcessorABC"):
            _compose(f"processor.class={user_module}.{name}", f"processor.python_path=[{tmp_path}]")


def test_constructor_arguments_and_schema_are_checked_when_loading(tmp_path, user_module) -> None:
    loaded = load_processor(_config(tmp_path, f"{user_module}.Good", kwargs={"scale": 2.0}))
    assert loaded.instance.scale == 2.0 and loaded.schema.__name__ == "NanoAODSchema"
    with pytest.raises(ProcessorLoadError, match=r"processor\.kwargs: .*Good\(\*\*\{'sclae': 2\}\) raised TypeError"):
        load_processor(_config(tmp_path, f"{user_module}.Good", kwargs={"sclae": 2}))
    with pytest.raises(ProcessorLoadError, match=r"processor\.schema: 'NanoSchema' is not a schema"):
        load_processor(_config(tmp_path, f"{user_module}.Good", schema="NanoSchema"))
    with pytest.raises(ProcessorLoadError, match=r"processor\.python_path: .* is not a directory"):
        load_processor(ProcessorConfig(class_path="a.B", python_path=[str(tmp_path / "missing")]))


# --- merge order ---------------------------------------------------------------------------------

def _tree_of(order: list[int], values: dict[int, str | None]) -> str | None:
    tree: OrderedTree[str] = OrderedTree(lambda a, b: f"({a}+{b})")
    for position in order:
        tree.put(position, values[position])
    return tree.result(len(values))


def test_the_merge_tree_depends_on_the_kept_values_not_on_arrival_order() -> None:
    values: dict[int, str | None] = {i: f"c{i}" for i in range(7)}
    shapes = {_tree_of(list(order), values) for order in itertools.permutations(range(7))}
    assert shapes == {"(((c0+c1)+(c2+c3))+((c4+c5)+c6))"}
    # Dropping a value gives exactly the tree of the sequence that never had it.
    dropped = {**values, 2: None}
    without = {i: v for i, v in enumerate(v for v in dropped.values() if v is not None)}
    renamed = _tree_of(list(range(6)), without)
    for order in ([6, 5, 4, 3, 2, 1, 0], [2, 0, 1, 3, 4, 6, 5]):
        assert _tree_of(order, dropped) == renamed
    assert _tree_of([1, 0], {0: None, 1: None}) is None


def test_the_tree_is_balanced_and_holds_few_partial_sums() -> None:
    tree: OrderedTree[int] = OrderedTree(lambda a, b: max(a, b) + 1)  # value = depth
    for i in range(1024):
        tree.put(i, 0)
        assert tree.held <= 11
    assert tree.result(1024) == 10


def test_an_incomplete_or_doubly_settled_merge_is_an_error() -> None:
    tree: OrderedTree[str] = OrderedTree(lambda a, b: a + b)
    tree.put(1, "b")
    with pytest.raises(RuntimeError, match="2 of 2 positions are not settled"):
        tree.result(2)
    with pytest.raises(ValueError, match="settled twice"):
        tree.put(1, "b")


def test_merge_outputs_adds_without_touching_its_inputs_and_names_both_sides() -> None:
    a = {"n": processor.defaultdict_accumulator(int, {"x": 1}), "h": hist.Hist.new.Reg(2, 0, 2).Double()}
    b = {"n": processor.defaultdict_accumulator(int, {"x": 2, "y": 1}), "h": hist.Hist.new.Reg(2, 0, 2).Double()}
    a["h"].fill([0.5])
    merged = merge_outputs(a, b, "A", "B")
    assert merged["n"] == {"x": 3, "y": 1} and a["n"] == {"x": 1} and merged["h"].sum() == 1
    with pytest.raises(MergeError, match="cannot merge the outputs of left chunk and of right chunk"):
        merge_outputs({"n": {"a": 1}}, {"n": 3}, "left chunk", "right chunk")


# --- outputs -------------------------------------------------------------------------------------

def test_outputs_that_cannot_be_accumulated_are_named_by_key_and_type() -> None:
    check_accumulator({"h": hist.Hist.new.Reg(1, 0, 1).Double(), "cut": processor.defaultdict_accumulator(int),
                       "cols": processor.column_accumulator(np.zeros(3)), "s": {1}, "n": 3})
    with pytest.raises(NotAnAccumulatorError, match=r"out\['a'\]\['b'\] is a builtins.object"):
        check_accumulator({"a": {"b": object()}}, "out")
    with pytest.raises(NotAnAccumulatorError, match=r"out\['pt'\] is an awkward Array.*column_accumulator"):
        check_accumulator({"pt": ak.Array([1.0, 2.0])}, "out")
    with pytest.raises(NotAnAccumulatorError, match="out is None"):
        check_accumulator(None, "out")


def test_histograms_are_written_to_root_under_their_keys_one_per_category(tmp_path: Path) -> None:
    mass = hist.Hist.new.StrCat(["DY 2017", "TT"], name="dataset").Reg(4, 0, 200, name="mass").Weight()
    mass.fill(dataset="DY 2017", mass=[91.0, 95.0], weight=[1.0, 2.0])
    pt = hist.Hist.new.Reg(3, 0, 3, name="pt").Double().fill([0.5, 2.5])
    output = {"dimuon": {"mass": mass}, "pt": pt, "cutflow": processor.defaultdict_accumulator(int, {"a": 1})}
    path, keys = save_root(tmp_path / "h.root", output)
    assert keys == ["dimuon/mass__DY_2017", "dimuon/mass__TT", "pt"]
    with uproot.open(path) as f:
        got = f["dimuon/mass__DY_2017"]
        np.testing.assert_array_equal(got.values(), [0, 3, 0, 0])
        np.testing.assert_array_equal(got.variances(), [0, 5, 0, 0])
        np.testing.assert_array_equal(f["pt"].values(), [1, 0, 1])
    assert save_root(tmp_path / "none.root", {"n": 1}) == (None, [])
    coffea_path = save_coffea(tmp_path / "out.coffea", output)
    assert load(str(coffea_path))["dimuon"]["mass"] == mass
    assert sorted(p.name for p in tmp_path.iterdir()) == ["h.root", "out.coffea"]  # no temporary left

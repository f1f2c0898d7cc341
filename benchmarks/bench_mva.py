"""Cost of the classifier score as a second observable, and the training time, on one core.

Runs, in this process, on generated LZMA NanoAOD (2018):
  (t) building the training set (Z' signal vs. semileptonic tt, CMS_WORKSHOP channel) and
      training the configured network and the boosted trees on it (the demo's mva settings);
  (a) the analysis with all variations (138 names over three eras) filling mtt only;
  (b) the same filling mtt and the network's score (recomputed in every JES fill).
Prints the times, the extra cost (b)/(a) - 1 (target < 30 %), and each model's test AUC.

Usage: python benchmarks/bench_mva.py [--events 200000] [--train-events 20000]

``bench_variations.py --with-mva`` runs the same (t) and (b) after its own cases, so the
systematics benchmark also reports the score's extra cost over its 138-variation run.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_variations import _best_of, _peak_rss_mb

from intccms import datagen
from intccms.config import compose_config
from intccms.config.mva import ModelKind, load_mva_config
from intccms.mva.dataset import assemble, select_channel
from intccms.mva.features import feature_matrix, specs_from_config
from intccms.mva.train import train
from intccms.physics.events import branch_names
from intccms.physics.normalisation import normalisation_factor
from intccms.physics.pipeline import ChunkAnalysis, ChunkContext
from intccms.plan.analysis import build_plan, corrections_specs, era_constants
from intccms.plan.workitems import WorkItem, chunk_file
from intccms.storage import open_source

ERA = "2018"
ERAS = ["2016preVFP", "2017", "2018"]
XSEC = {"zprime": 0.01895, "ttbar_semilep": 364.31}


def configure(work: Path, jsonpog: Path, variations: str, with_score: bool, era: str = ERA):
    """The demo_mva configuration, its corrections, plan and ``era``'s constants; without the
    score, the CMS_WORKSHOP channel fills mtt alone (exactly the demo's analysis)."""
    over = [f"paths.jsonpog={jsonpog}", "paths.generate_corrections=false", f"workflow.variations=[{variations}]",
            f"output_dir={work}", "workflow.run_mva_training=false"]
    if not with_score:
        over.append("analysis.channels.CMS_WORKSHOP.observables=[mtt]")
    cfg = compose_config("demo_mva", over, validate=False)
    specs = corrections_specs(cfg, ERAS)
    return cfg, specs, build_plan(cfg, specs), era_constants(cfg, [era])[era]


def train_models(work: Path, jsonpog: Path, train_events: int) -> dict[str, Any]:
    """(t): build the training set (Z' vs. semileptonic tt) and train both kinds; the network is
    saved where the demo_mva score observable reads it (``{work}/mva/model``).

    Returns:
        ``events`` and ``signal`` (selected), ``set_seconds``, and per kind ``(seconds, result)``
        under ``fits``.
    """
    cfg, specs, plan, consts = configure(work, jsonpog, "", with_score=False)
    mva = load_mva_config(cfg.mva)
    features = specs_from_config(mva.features)
    corr = specs[ERA].build()
    branches = branch_names(plan.collections_for(consts), plan.event_columns)
    parts, labels = {}, {}
    t_set = 0.0
    for label, kind, params in ((1, "zprime", {"mass": 2000, "width": 200}), (0, "ttbar_semilep", {})):
        path = work / "train" / f"{kind}_{train_events}.root"
        made = datagen.ensure_generated(path, kind, ERA, train_events, 777 + label, compression="lzma",
                                        params=params)
        t0 = time.perf_counter()
        norm = normalisation_factor(XSEC[kind], 59830.0, made.sum_genweight)
        ctx = ChunkContext(process=kind, era=ERA, is_data=False, norm=norm, constants=consts)
        with open_source(str(path)) as src:
            columns = src.read(branches, 0, src.num_entries)
        selected, weight = select_channel(plan, ctx, corr, mva.channel, columns)
        parts[WorkItem(kind, str(path), 0, 0, 0, train_events)] = {
            "x": feature_matrix(features, selected, len(weight)), "weight": weight}
        labels[kind] = label
        t_set += time.perf_counter() - t0
    data = assemble(parts, labels, len(features))
    fits = {}
    for kind in ("mlp", "bdt"):
        cfg_kind = dataclasses.replace(mva, model=dataclasses.replace(mva.model, kind=ModelKind(kind)))
        if kind == "bdt":
            cfg_kind = dataclasses.replace(cfg_kind, training=dataclasses.replace(mva.training, learning_rate=0.1))
        t1 = time.perf_counter()
        result = train(data, features, cfg_kind)
        fits[kind] = (time.perf_counter() - t1, result)
    fits["mlp"][1].model.save(str(work / "mva" / "model"))
    return {"events": len(data.y), "signal": int(data.y.sum()), "set_seconds": t_set, "fits": fits}


def analysis(work: Path, jsonpog: Path, with_score: bool, variations: str = "*", era: str = ERA) -> ChunkAnalysis:
    """The tt analysis of ``era`` (the model is trained on 2018) with all variations, filling mtt
    alone or mtt and the score (``bench_variations.py`` also scores its 2017 input)."""
    _, specs, plan, consts = configure(work, jsonpog, variations, with_score, era)
    ctx = ChunkContext(process="bench", era=era, is_data=False, norm=1.0, constants=consts)
    return ChunkAnalysis(plan, ctx, specs[era].build())


def timed_runs(ana: ChunkAnalysis, path: Path, chunksize: int, repeat: int) -> tuple[float, float, float]:
    """Best wall and CPU time of analysing every chunk of ``path``, and the peak RSS after."""
    read = ana.branches()
    with open_source(str(path)) as src:
        items = chunk_file("bench", str(path), 0, src.num_entries, chunksize)

    def run() -> None:
        with open_source(str(path)) as src:
            for item in items:
                ana.run(src.read(read, item.entry_start, item.entry_stop))

    wall, cpu = _best_of(run, repeat)
    return wall, cpu, _peak_rss_mb()


def print_training(trained: dict[str, Any], train_events: int) -> None:
    print(f"training set: {trained['events']:,} selected events ({trained['signal']:,} signal) from "
          f"2 x {train_events:,} generated, built in {trained['set_seconds']:.2f} s")
    for kind, (seconds, result) in trained["fits"].items():
        m = result.model.meta["metrics"]
        print(f"train {kind}: {seconds:6.2f} s, {m['epochs_run']} epochs, test AUC {m['auc_test']:.3f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=200_000, help="tt events analysed in (a) and (b)")
    parser.add_argument("--train-events", type=int, default=20_000, help="generated events per training sample")
    parser.add_argument("--chunksize", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--workdir", default=None)
    args = parser.parse_args(argv)

    work = Path(args.workdir or tempfile.mkdtemp(prefix="intccms-bench-"))
    jsonpog = work / "jsonpog-integration"
    datagen.write_correction_files(jsonpog, ERAS)
    trained = train_models(work, jsonpog, args.train_events)

    # (a) and (b): all variations, mtt alone and mtt + score
    path = work / "bench" / f"ttbar_semilep_{args.events}.root"
    datagen.ensure_generated(path, "ttbar_semilep", ERA, args.events, 12345, compression="lzma")
    plain, scored = analysis(work, jsonpog, False), analysis(work, jsonpog, True)
    timed_runs(scored, path, args.chunksize, 1)  # load the model once, as a worker does on its first chunk
    t_a, c_a, rss_a = timed_runs(plain, path, args.chunksize, args.repeat)
    t_b, c_b, rss_b = timed_runs(scored, path, args.chunksize, args.repeat)

    n_var = len(scored.plan.variations) - 1
    print_training(trained, args.train_events)
    print(f"analysis: {args.events:,} tt events (LZMA), {n_var} variations, one core")
    print(f"{'case':<36}{'wall [s]':>10}{'CPU [s]':>10}{'events/s':>14}{'peak RSS [MB]':>16}")
    print(f"{'(a) mtt only':<36}{t_a:>10.2f}{c_a:>10.2f}{args.events / t_a:>14,.0f}{rss_a:>16.0f}")
    print(f"{'(b) mtt + classifier score':<36}{t_b:>10.2f}{c_b:>10.2f}{args.events / t_b:>14,.0f}{rss_b:>16.0f}")
    print(f"extra cost of the score (b)/(a) - 1: wall {t_b / t_a - 1:+.1%}, CPU {c_b / c_a - 1:+.1%}"
          "   (target < +30%)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

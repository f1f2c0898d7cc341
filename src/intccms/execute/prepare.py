"""Make sure generated inputs exist before planning: demo NanoAOD, golden JSONs, corrections.

Only datasets with a ``generate`` block and eras whose golden JSON lives under
``paths.generated_data`` are generated; real inputs are never touched. Generation is
idempotent: complete files are kept, so a rerun starts at once; a file whose generation spec
(stored beside it as ``<file>.spec.json``) or generator version differs is generated again.
"""

from __future__ import annotations

import json
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any, cast

from omegaconf import DictConfig, OmegaConf
from rich.console import Console
from rich.progress import Progress

from intccms import datagen
from intccms.datagen import GENERATOR_VERSION
from intccms.plan.datasets import generated_file_paths, select_datasets


def _under(path: str, root: str) -> bool:
    return os.path.abspath(path).startswith(os.path.abspath(root) + os.sep)


def _generated_datasets(cfg: DictConfig) -> dict[str, Any]:
    datasets = cast("dict[str, Any]", OmegaConf.to_container(cfg.datasets, resolve=True))
    chosen = select_datasets(datasets, list(cfg.dataset_selection))
    return {n: d for n, d in chosen.items() if d.get("generate")}


def ensure_inputs(cfg: DictConfig, *, console: Console) -> None:
    """Generate the missing demo inputs the configuration asks for."""
    root = str(cfg.paths.generated_data)
    generated = _generated_datasets(cfg)
    if not generated and not cfg.paths.generate_corrections:
        return

    eras = sorted({d["era"] for d in generated.values()})
    if cfg.paths.generate_corrections:
        datagen.write_correction_files(str(cfg.paths.jsonpog), sorted(set(eras) | set(cfg.corrections.by_era)))
    for era in eras:
        golden = cfg.eras[era].golden_json
        if golden and _under(str(golden), root) and not Path(str(golden)).is_file():
            datagen.write_golden_json(str(golden), era)
    wf = cfg.workflow
    if wf.use_skimmed_input and not wf.save_skimmed_output:
        return  # the run reads only skims, which carry their sources' counts and weights
    jobs = []
    for name, ds in generated.items():
        gen, era = dict(ds["generate"]), ds["era"]
        if gen["kind"] == "data" and int(gen["events_per_file"]) <= 0:
            # Sized from the era's luminosity: a changed luminosity changes the stamp, so the
            # file is redone (the size itself takes a pilot run to compute; only then is it).
            gen["luminosity"] = float(cfg.eras[era].luminosity)
        for i, path in enumerate(generated_file_paths(root, name, era, int(gen["n_files"]))):
            jobs.append((path, gen, era, i))
    missing = [j for j in jobs if not Path(j[0]).is_file() or _spec_changed(j[0], j[1], j[2])]
    if not missing:
        return
    # Largest first, so the pool ends evenly loaded; data (sized in the pool: the size takes a
    # pilot run of every background) are the largest.
    missing.sort(key=lambda j: ("luminosity" not in j[1], -int(j[1]["events_per_file"])))
    _generate_in_parallel(missing, console)


def _generate_one(path: str, gen: dict[str, Any], era: str, i: int) -> str:
    """Generate one file and its spec stamp (in a pool process)."""

    n_events = int(gen["events_per_file"])
    if "luminosity" in gen:  # as many data events as the simulation predicts at this luminosity
        n_events = datagen.expected_data_events(
            era, gen["luminosity"], (gen.get("params") or {}).get("processes")) // int(gen["n_files"])
    datagen.generate_file(
        path, gen["kind"], era, n_events, int(gen["seed"]) * 1000 + i,
        params=gen.get("params") or {}, compression=gen.get("compression", "lzma"),
        compression_level=gen.get("compression_level"), first_event=1 + i * n_events,
    )
    Path(path + ".spec.json").write_text(_spec(gen, era))
    return path


def _generate_in_parallel(tasks: list[tuple[str, dict[str, Any], str, int]], console: Console) -> None:
    """One process per core: files are independent and seeded per file, so the output does not
    depend on the number of processes (a single-core machine generates them in turn)."""

    n_proc = min(len(tasks), len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)
    with Progress(console=console, transient=False) as progress:
        bar = progress.add_task(f"[bold]generating demo NanoAOD[/bold] ({n_proc} processes)", total=len(tasks))
        if n_proc <= 1:
            for task in tasks:
                _generate_one(*task)
                progress.advance(bar)
            return
        with ProcessPoolExecutor(n_proc, mp_context=multiprocessing.get_context("spawn")) as pool:
            futures = [pool.submit(_generate_one, *task) for task in tasks]
            try:
                for future in as_completed(futures):
                    future.result()
                    progress.advance(bar)
            except BaseException:
                for future in futures:
                    future.cancel()
                raise


def _spec(gen: dict[str, Any], era: str) -> str:

    return json.dumps({"era": era, "generator": GENERATOR_VERSION, **gen}, sort_keys=True)


def _spec_changed(path: str, gen: dict[str, Any], era: str) -> bool:
    stamp = Path(path + ".spec.json")
    return not stamp.is_file() or stamp.read_text() != _spec(gen, era)

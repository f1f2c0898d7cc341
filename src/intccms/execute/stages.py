"""Stage planning on the driver: metadata, skim work items, analysis work items, the plan."""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

from distributed import Client, as_completed
from omegaconf import DictConfig, OmegaConf
from rich.console import Console
from rich.progress import Progress

from intccms.core.records import ChunkRecord
from intccms.execute.runner import BadInputError, StageOutcome, run_stage
from intccms.execute.tasks import CorrectionsSpec, metadata_task, skim_task
from intccms.physics.corrections.era import era_values
from intccms.physics.corrections.loading import get_correction
from intccms.physics.functors import Functor
from intccms.physics.pipeline import AnalysisPlan, Channel, Observable
from intccms.plan.datasets import Dataset
from intccms.plan.metadata import (
    DatasetMetadata,
    FileMetadata,
    file_fingerprint,
    load_cache,
    save_cache,
)
from intccms.plan.workitems import WorkItem, chunk_file
from intccms.storage import Manifest, StorageError, StorageOptions, exists_complete, join

SKIM_EXTENSIONS = {"parquet": "parquet", "ttree": "root", "rntuple": "root"}


def _container(node: Any) -> Any:
    return OmegaConf.to_container(node, resolve=True, enum_to_str=True) if node is not None else None


def era_constants(cfg: DictConfig, eras: list[str]) -> dict[str, dict[str, Any]]:
    """Per-era values available to functors as ``@name`` (triggers, b-tag WP, era, year)."""
    out: dict[str, dict[str, Any]] = {}
    root = str(cfg.paths.jsonpog)
    for era in eras:
        era_cfg = _container(cfg.eras[era])
        values = era_values(era, era_cfg)
        consts: dict[str, Any] = {"era": era, "year": values["year"], "triggers": list(era_cfg["triggers"])}
        for name, const in cfg.corrections.constants.items():
            path = f"{root.rstrip('/')}/{str(const.file).format(**values)}"
            corr = get_correction(path, str(const.key).format(**values), era=era)
            consts[name] = float(corr.evaluate(*[str(a).format(**values) for a in const.args]))
        out[era] = consts
    return out


def corrections_specs(cfg: DictConfig, eras: list[str]) -> dict[str, CorrectionsSpec]:
    """One :class:`CorrectionsSpec` per era with corrections; built here once to validate."""
    definitions = _container(cfg.corrections.definitions) or {}
    specs: dict[str, CorrectionsSpec] = {}
    for era in eras:
        names = list(cfg.corrections.by_era.get(era, []) or [])
        if not names:
            continue
        spec = CorrectionsSpec.create(era, _container(cfg.eras[era]), definitions, names, str(cfg.paths.jsonpog))
        spec.build()
        specs[era] = spec
    return specs


def variation_names(cfg: DictConfig, specs: Mapping[str, CorrectionsSpec]) -> tuple[str, ...]:
    """``nominal`` then every variation any era produces (filtered by ``workflow.variations``)."""
    names: list[str] = []
    for spec in specs.values():
        for name in spec.build().variation_names():
            if name not in names:
                names.append(name)
    patterns = list(cfg.workflow.variations)
    unmatched = [p for p in patterns if p != "*" and not any(fnmatch.fnmatchcase(n, p) for n in names)]
    if unmatched and names:
        # A typo here would silently drop systematics from every histogram and fit.
        msg = (f"workflow.variations: {unmatched} match no variation of the configured corrections "
               f"(e.g. {', '.join(names[:4])}, ... {len(names)} in all; patterns are globs such as 'jes*')")
        raise ValueError(msg)
    names = [n for n in names if any(fnmatch.fnmatchcase(n, p) for p in patterns)]
    return ("nominal", *names)


def build_plan(cfg: DictConfig, specs: Mapping[str, CorrectionsSpec]) -> AnalysisPlan:
    """The worker-side plan from the ``analysis`` group (picklable, secret-free)."""
    a = cfg.analysis
    observables = {
        name: Observable(
            functor=Functor.from_config(_container(o)),
            bins=int(o.binning.bins), start=float(o.binning.start), stop=float(o.binning.stop),
        )
        for name, o in a.observables.items()
    }
    channels = {}
    for name, ch in a.channels.items():
        for obs in ch.observables:
            if obs not in observables:
                msg = f"analysis.channels.{name}.observables: '{obs}' is not defined (known: {sorted(observables)})"
                raise ValueError(msg)
        channels[name] = Channel(
            cuts={k: Functor.from_config(_container(v)) for k, v in ch.cuts.items()},
            observables=tuple(ch.observables), use_baseline=bool(ch.use_baseline),
        )
    return AnalysisPlan(
        collections={k: tuple(v) for k, v in a.collections.items()},
        event_columns=tuple(a.event_columns),
        mc_only=frozenset(a.mc_only),
        skim=Functor.from_config(_container(a.skim)),
        objects={k: Functor.from_config(_container(v)) for k, v in a.objects.items()},
        baseline={k: Functor.from_config(_container(v)) for k, v in a.baseline.items()},
        channels=channels,
        observables=observables,
        variations=variation_names(cfg, specs),
    )


def run_metadata(
    cfg: DictConfig, client: Client, datasets: Mapping[str, Dataset], options: StorageOptions,
    out: Path, *, console: Console, run_metrics: Any = None,
) -> tuple[dict[str, DatasetMetadata], list[ChunkRecord]]:
    """Events and sums of weights per file; cached in ``{output_dir}/metadata.json``."""
    cache_path = out / "metadata.json"
    existing = load_cache(cache_path)
    cache = {} if cfg.workflow.regenerate_metadata else existing
    result: dict[str, DatasetMetadata] = {}
    todo: list[tuple[str, str, bool]] = []
    for name, ds in datasets.items():
        cached = cache.get(name)
        files = {}
        for f in ds.files:
            hit = cached.files.get(f) if cached else None
            if hit is not None and hit.error is None and hit.fingerprint == file_fingerprint(f):
                files[f] = hit
            else:
                todo.append((name, f, ds.is_data))
        result[name] = DatasetMetadata(name=name, era=ds.era, is_data=ds.is_data, xsec=ds.xsec, files=files)
    wf = cfg.workflow
    if todo and wf.use_skimmed_input and not wf.save_skimmed_output:
        todo = _from_skim_manifests(todo, result, str(wf.skim_dir), options)
    records: list[ChunkRecord] = []
    if todo and run_metrics is not None:
        run_metrics.planned(len(todo), "metadata")
    if todo:
        futures = {client.submit(metadata_task, name, f, is_data, options, pure=False): (name, f)
                   for name, f, is_data in todo}
        with Progress(console=console, transient=False) as progress:
            bar = progress.add_task("[bold]metadata[/bold]", total=len(futures))
            for fut in as_completed(list(futures)):
                name, f = futures[fut]
                try:
                    meta, record = fut.result()
                except StorageError:
                    raise  # outages and bad credentials name the URL and the fix already
                except Exception as err:
                    msg = f"metadata of {f} (dataset {name}) failed: {type(err).__name__}: {err}"
                    raise RuntimeError(msg) from err
                result[name].files[f] = meta
                records.append(record)
                progress.advance(bar)
                if run_metrics is not None:
                    run_metrics.completed(1, "metadata")
    bad = {f: m.error for d in result.values() for f, m in d.files.items() if m.error}
    if bad and not cfg.workflow.skip_bad_files:
        shown = "; ".join(bad[f] for f in sorted(bad)[:3])  # each error names its file
        more = f"; and {len(bad) - 3} more" if len(bad) > 3 else ""
        msg = (f"{len(bad)} input file(s) cannot be read: {shown}{more} "
               "(set workflow.skip_bad_files=true to skip them)")
        raise BadInputError(msg)
    for name, meta in result.items():
        if not meta.is_data and not meta.sum_genweight > 0:
            msg = f"dataset {name}: sum of generator weights is {meta.sum_genweight}; cannot normalise"
            raise ValueError(msg)
    # Keep entries of other datasets already in the cache so partial runs do not drop them.
    merged = dict(existing)
    merged.update({n: DatasetMetadata(m.name, m.era, m.is_data, m.xsec,
                                      {f: fm for f, fm in m.files.items() if fm.error is None})
                   for n, m in result.items()})
    save_cache(cache_path, merged)
    return result, records


def _from_skim_manifests(
    todo: list[tuple[str, str, bool]], result: dict[str, DatasetMetadata], skim_dir: str,
    options: StorageOptions,
) -> list[tuple[str, str, bool]]:
    """Take the counts the skim recorded for its source files; return the files it did not.

    Analysis on skimmed input then needs neither the original files nor a metadata cache.
    """
    manifests = {name: Manifest.load(join(skim_dir, name, "manifest.json"), options)
                 for name in {name for name, _, _ in todo}}
    left = []
    for name, f, is_data in todo:
        recorded = manifests[name].sources.get(f)
        if recorded is None:
            left.append((name, f, is_data))
            continue
        known = {k: v for k, v in recorded.items() if k in FileMetadata.__dataclass_fields__}
        result[name].files[f] = FileMetadata(**known)
    return left


def _good_files(meta: DatasetMetadata) -> list[tuple[int, FileMetadata]]:
    files = sorted(meta.files.items())
    return [(i, fm) for i, (f, fm) in enumerate(files) if fm.error is None and fm.num_entries > 0]


def skim_signature(analysis: Any, fmt: str, constants: Mapping[str, Any], drop: frozenset[str]) -> str:
    """A short hash of what decides a skim part's content: skim function, kept branches,
    dropped branches, format and the era constants the skim sees."""
    import hashlib
    import json

    doc = {"skim": _container(analysis.skim), "keep": list(analysis.skim_keep),
           "collections": _container(analysis.collections), "drop": sorted(drop), "fmt": fmt,
           "constants": {k: constants[k] for k in sorted(constants)}}
    return hashlib.sha1(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _part_matches(part: Mapping[str, Any], item: WorkItem, fmt: str, signature: str) -> bool:
    """A committed part may be reused only for the same source range, format and skim."""
    return (part.get("source_file") == item.file and int(part.get("entry_start", -1)) == item.entry_start
            and int(part.get("entry_stop", -1)) == item.entry_stop and part.get("fmt") == fmt
            and part.get("skim_signature") == signature)


def skim_stage(
    cfg: DictConfig, client: Client, datasets: Mapping[str, Dataset],
    metadata: Mapping[str, DatasetMetadata], constants: Mapping[str, Mapping[str, Any]],
    options: StorageOptions, skim_dir: str, *, console: Console, run_metrics: Any = None,
) -> StageOutcome:
    """Skim every chunk not already committed; the manifest lists only complete parts."""
    wf = cfg.workflow
    fmt = str(wf.skim_format.value if hasattr(wf.skim_format, "value") else wf.skim_format)
    ext = SKIM_EXTENSIONS[fmt]
    a = cfg.analysis
    skim = Functor.from_config(_container(a.skim))
    collections = {k: tuple(v) for k, v in a.collections.items()}
    keep = tuple(a.skim_keep)
    writer_kwargs = _container(cfg.storage.writer_kwargs).get(fmt, {})
    drop_data = frozenset(a.mc_only)
    manifests: dict[str, Manifest] = {}
    unsaved: set[str] = set()  # manifests whose recorded sources changed
    items: list[WorkItem] = []
    targets: dict[WorkItem, str] = {}
    replaced = 0
    signatures = {name: skim_signature(a, fmt, constants[ds.era], drop_data if ds.is_data else frozenset())
                  for name, ds in datasets.items()}
    for name in datasets:
        manifest = Manifest.load(join(skim_dir, name, "manifest.json"), options)
        manifests[name] = manifest
        signature = signatures[name]
        # Every part this configuration defines (whatever max_chunks_per_file limits this run to).
        expected: dict[str, WorkItem] = {}
        good = _good_files(metadata[name])
        for index, fm in good:
            for item in chunk_file(name, fm.file, index, fm.num_entries, int(wf.chunksize)):
                expected[join(skim_dir, name, f"file_{index}", f"part_{item.chunk_index}.{ext}")] = item
        valid = {p["url"] for p in manifest.parts
                 if p["url"] in expected and _part_matches(p, expected[p["url"]], fmt, signature)}
        stale = [p for p in manifest.parts if p["url"] not in valid]
        if stale:
            # Parts of another chunking, skim or format must not be analysed beside new ones.
            manifest.parts = [p for p in manifest.parts if p["url"] in valid]
            manifest.save()
            replaced += len(stale)
        sources = {fm.file: asdict(fm) for _, fm in good}
        if any(manifest.sources.get(f) != v for f, v in sources.items()):
            # What the parts normalise to (no original needed); saved with the next part.
            manifest.sources.update(sources)
            unsaved.add(name)
        for index, fm in good:
            for item in chunk_file(name, fm.file, index, fm.num_entries, int(wf.chunksize), wf.max_chunks_per_file):
                target = join(skim_dir, name, f"file_{index}", f"part_{item.chunk_index}.{ext}")
                if target in valid and exists_complete(target, options):
                    continue
                items.append(item)
                targets[item] = target
    if replaced:
        console.print(f"[yellow]skim: {replaced} part(s) written by another chunking, skim or format "
                      "are no longer listed and will be rewritten[/yellow]")

    def args_for(item: WorkItem) -> tuple[Any, ...]:
        ds = datasets[item.dataset]
        return (targets[item], fmt, keep, drop_data if ds.is_data else frozenset(), skim, collections,
                constants[ds.era], options, writer_kwargs)

    def on_result(item: WorkItem, part: dict[str, Any]) -> None:
        manifests[item.dataset].add({**part, "skim_signature": signatures[item.dataset]})
        manifests[item.dataset].save()
        unsaved.discard(item.dataset)

    if not items:
        console.print("[green]skim: every part is already written; nothing to do[/green]")
    outcome = run_stage(client, "skim", items, skim_task, args_for, on_result, retries=int(wf.retries),
                        skip_bad_files=bool(wf.skip_bad_files), console=console, run_metrics=run_metrics)
    for name in sorted(unsaved):  # no new part of these: their sources were not saved yet
        manifests[name].save()
    write_skim_provenance(cfg, skim_dir, options)
    return outcome


def write_skim_provenance(cfg: DictConfig, skim_dir: str, options: StorageOptions) -> list[str]:
    """The resolved configuration and package versions next to the skims (local, S3, XRootD).

    Skims outlive the job that wrote them and are read by later jobs, so they carry their own
    provenance under ``{skim_dir}/provenance/``.
    """
    from intccms.config.compose import to_yaml
    from intccms.outputs.provenance import provenance_files
    from intccms.storage.schemes import backend_for

    written = []
    for name, payload in provenance_files(to_yaml(cfg)).items():
        url = join(skim_dir, "provenance", name)
        with backend_for(url, options).staging(url) as local, open(local, "wb") as handle:
            handle.write(payload)
        written.append(url)
    return written


class IncompleteSkimError(ValueError):
    """The committed skim parts do not cover the input files exactly once."""


def _covering_parts(
    dataset: str, parts: list[dict[str, Any]], meta: DatasetMetadata, where: str, *, partial_ok: bool,
) -> list[dict[str, Any]]:
    """The parts of the dataset's readable files, checked to cover each file exactly once.

    The normalisation uses the sum of weights of the whole files, so a skim that covers only
    part of a file (an interrupted skim) or covers entries twice would bias every histogram.
    """
    good = {fm.file: fm for _, fm in _good_files(meta)}
    skipped = {f for f, fm in meta.files.items() if fm.error is not None}  # bad input, left out whole
    parts = [p for p in parts if str(p.get("source_file")) not in skipped]
    by_file: dict[str, list[dict[str, Any]]] = {}
    for part in parts:
        by_file.setdefault(str(part.get("source_file")), []).append(part)
    foreign = sorted(set(by_file) - set(good))
    if foreign:
        msg = (f"dataset {dataset}: skim parts under {where} come from {len(foreign)} file(s) that are "
               f"not (or no longer readable) in the dataset, e.g. {foreign[0]}; rerun the skim stage")
        raise IncompleteSkimError(msg)
    for file, fm in sorted(good.items()):
        ranges = sorted((int(p["entry_start"]), int(p["entry_stop"])) for p in by_file.get(file, []))
        covered, overlap = 0, False
        for start, stop in ranges:
            overlap |= start < covered
            covered = max(covered, stop) if start <= covered else covered
        if overlap:
            msg = (f"dataset {dataset}: skim parts under {where} cover entries of {file} twice; "
                   "rerun the skim stage (workflow=skim) to rewrite them")
            raise IncompleteSkimError(msg)
        if covered < fm.num_entries and not partial_ok:
            msg = (f"dataset {dataset}: the skim under {where} covers {covered} of {fm.num_entries} "
                   f"entries of {file}; finish it with workflow=skim (a rerun writes only the missing parts)")
            raise IncompleteSkimError(msg)
    return parts


def load_manifests(datasets: Mapping[str, Dataset], skim_dir: str, options: StorageOptions) -> dict[str, Manifest]:
    """Every dataset's skim manifest (empty where none was written), read once for a stage."""
    return {name: Manifest.load(join(skim_dir, name, "manifest.json"), options) for name in datasets}


def analysis_items(
    cfg: DictConfig, datasets: Mapping[str, Dataset], metadata: Mapping[str, DatasetMetadata],
    skim_dir: str, options: StorageOptions, manifests: Mapping[str, Manifest] | None = None,
) -> list[WorkItem]:
    """Chunks of the original files, or the committed skim parts with ``use_skimmed_input``
    (from ``manifests`` when the caller has read them already)."""
    wf = cfg.workflow
    items: list[WorkItem] = []
    for name in datasets:
        if wf.use_skimmed_input:
            manifest = (manifests[name] if manifests is not None and name in manifests
                        else Manifest.load(join(skim_dir, name, "manifest.json"), options))
            parts = sorted(manifest.parts, key=lambda p: (p.get("file_index", 0), p.get("chunk", 0)))
            if not parts:
                msg = (f"dataset {name}: no skimmed parts under {join(skim_dir, name)}; "
                       "run with workflow.save_skimmed_output=true first")
                raise FileNotFoundError(msg)
            parts = _covering_parts(name, parts, metadata[name], join(skim_dir, name),
                                    partial_ok=wf.max_chunks_per_file is not None)
            for i, part in enumerate(parts):
                if int(part["entries"]) > 0:
                    items.extend(chunk_file(name, part["url"], i, int(part["entries"]), int(wf.chunksize)))
        else:
            for index, fm in _good_files(metadata[name]):
                items.extend(chunk_file(name, fm.file, index, fm.num_entries, int(wf.chunksize),
                                        wf.max_chunks_per_file))
    return items

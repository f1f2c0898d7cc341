"""The metadata and skim stages: what they do on the cluster, from the run plan."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

from distributed import Client, as_completed
from rich.console import Console
from rich.progress import Progress

from intccms.core.records import ChunkRecord
from intccms.execute.tasks import metadata_task, skim_task
from intccms.outputs.provenance import provenance_files
from intccms.plan.items import good_files
from intccms.plan.metadata import (
    DatasetMetadata,
    FileMetadata,
    file_fingerprint,
    load_cache,
    save_cache,
)
from intccms.plan.run import RunPlan, SkimPlan
from intccms.plan.workitems import WorkItem, chunk_file
from intccms.runner.stage import BadInputError, StageOutcome, run_stage
from intccms.runner.watch import NoWorkersWatch
from intccms.storage import Manifest, StorageError, StorageOptions, exists_complete, join
from intccms.storage.schemes import backend_for


def run_metadata(
    plan: RunPlan, client: Client, out: Path, *, console: Console, run_metrics: Any = None,
) -> tuple[dict[str, DatasetMetadata], list[ChunkRecord]]:
    """Events and sums of weights per file; cached in ``{output_dir}/metadata.json``."""
    datasets, options, wf = plan.datasets, plan.storage, plan.workflow
    cache_path = out / "metadata.json"
    existing = load_cache(cache_path)
    cache = {} if wf.regenerate_metadata else existing
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
    if todo and wf.use_skimmed_input and not wf.save_skimmed_output:
        todo = _from_skim_manifests(todo, result, str(wf.skim_dir), options)
    records: list[ChunkRecord] = []
    if todo and run_metrics is not None:
        run_metrics.planned(len(todo), "metadata")
    if todo:
        futures = {client.submit(metadata_task, name, f, is_data, options, pure=False): (name, f)
                   for name, f, is_data in todo}
        with (Progress(console=console, transient=False) as progress,
              NoWorkersWatch(client, float(plan.cluster.no_workers_timeout_s), list(futures)) as watch):
            bar = progress.add_task("[bold]metadata[/bold]", total=len(futures))
            for fut in as_completed(list(futures)):
                name, f = futures[fut]
                try:
                    meta, record = fut.result()
                except StorageError:
                    raise  # outages and bad credentials name the URL and the fix already
                except Exception as err:
                    if watch.fired_after is not None:
                        raise watch.error("metadata", len(futures) - len(records), len(futures)) from None
                    msg = f"metadata of {f} (dataset {name}) failed: {type(err).__name__}: {err}"
                    raise RuntimeError(msg) from err
                result[name].files[f] = meta
                records.append(record)
                progress.advance(bar)
                if run_metrics is not None:
                    run_metrics.completed(1, "metadata")
    bad = {f: m.error for d in result.values() for f, m in d.files.items() if m.error}
    if bad and not wf.skip_bad_files:
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


def skim_signature(skim: SkimPlan, constants: Mapping[str, Any], drop: frozenset[str]) -> str:
    """A short hash of what decides a skim part's content: skim function, kept branches,
    dropped branches, format and the era constants the skim sees."""
    doc = {"skim": dict(skim.definition), "keep": list(skim.keep),
           "collections": {k: list(v) for k, v in skim.collections.items()}, "drop": sorted(drop),
           "fmt": skim.fmt, "constants": {k: constants[k] for k in sorted(constants)}}
    return hashlib.sha1(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _part_matches(part: Mapping[str, Any], item: WorkItem, fmt: str, signature: str) -> bool:
    """A committed part may be reused only for the same source range, format and skim."""
    return (part.get("source_file") == item.file and int(part.get("entry_start", -1)) == item.entry_start
            and int(part.get("entry_stop", -1)) == item.entry_stop and part.get("fmt") == fmt
            and part.get("skim_signature") == signature)


def skim_stage(
    plan: RunPlan, client: Client, metadata: Mapping[str, DatasetMetadata], *, console: Console,
    run_metrics: Any = None,
) -> StageOutcome:
    """Skim every chunk not already committed; the manifest lists only complete parts."""
    assert plan.skim is not None, "a processor run has no skim"
    sp, wf, datasets, options = plan.skim, plan.workflow, plan.datasets, plan.storage
    fmt, ext, skim_dir = sp.fmt, sp.extension, sp.directory
    drop_data = sp.mc_only
    manifests: dict[str, Manifest] = {}
    unsaved: set[str] = set()  # manifests whose recorded sources changed
    items: list[WorkItem] = []
    targets: dict[WorkItem, str] = {}
    replaced = 0
    signatures = {name: skim_signature(sp, plan.eras[ds.era].constants, drop_data if ds.is_data else frozenset())
                  for name, ds in datasets.items()}
    for name in datasets:
        manifest = Manifest.load(join(skim_dir, name, "manifest.json"), options)
        manifests[name] = manifest
        signature = signatures[name]
        # Every part this configuration defines (whatever max_chunks_per_file limits this run to).
        expected: dict[str, WorkItem] = {}
        good = good_files(metadata[name])
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
        return (targets[item], fmt, sp.keep, drop_data if ds.is_data else frozenset(), sp.skim,
                sp.collections, plan.eras[ds.era].constants, options, sp.writer_kwargs)

    def on_result(item: WorkItem, part: dict[str, Any]) -> None:
        manifests[item.dataset].add({**part, "skim_signature": signatures[item.dataset]})
        manifests[item.dataset].save()
        unsaved.discard(item.dataset)

    if not items:
        console.print("[green]skim: every part is already written; nothing to do[/green]")
    outcome = run_stage(client, "skim", items, skim_task, args_for, on_result, retries=int(wf.retries),
                        skip_bad_files=bool(wf.skip_bad_files), console=console, run_metrics=run_metrics,
                        no_workers_timeout_s=float(plan.cluster.no_workers_timeout_s))
    for name in sorted(unsaved):  # no new part of these: their sources were not saved yet
        manifests[name].save()
    write_skim_provenance(plan)
    return outcome


def write_skim_provenance(plan: RunPlan) -> list[str]:
    """The run's configuration, plan and package versions next to the skims (local, S3, XRootD).

    Skims outlive the job that wrote them and are read by later jobs, so they carry their own
    provenance under ``{skim_dir}/provenance/``.
    """
    assert plan.skim is not None
    written = []
    for name, payload in provenance_files(plan.config_yaml, plan=plan.summary()).items():
        url = join(plan.skim.directory, "provenance", name)
        with backend_for(url, plan.storage).staging(url) as local, open(local, "wb") as handle:
            handle.write(payload)
        written.append(url)
    return written

"""Work items of the analysis and training stages: chunks of the original files, or the
committed skim parts that cover them exactly once."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from intccms.config.schema import WorkflowConfig
from intccms.plan.datasets import Dataset
from intccms.plan.metadata import DatasetMetadata, FileMetadata
from intccms.plan.workitems import WorkItem, chunk_file
from intccms.storage import Manifest, StorageOptions, join


def good_files(meta: DatasetMetadata) -> list[tuple[int, FileMetadata]]:
    """Readable, non-empty files of a dataset with their index in the sorted file list (the
    index names skim folders, so it must not shift when a file is skipped)."""
    files = sorted(meta.files.items())
    return [(i, fm) for i, (f, fm) in enumerate(files) if fm.error is None and fm.num_entries > 0]


class IncompleteSkimError(ValueError):
    """The committed skim parts do not cover the input files exactly once."""


def covering_parts(
    dataset: str, parts: list[dict[str, Any]], meta: DatasetMetadata, where: str, *, partial_ok: bool,
) -> list[dict[str, Any]]:
    """The parts of the dataset's readable files, checked to cover each file exactly once.

    The normalisation uses the sum of weights of the whole files, so a skim that covers only
    part of a file (an interrupted skim) or covers entries twice would bias every histogram.
    """
    good = {fm.file: fm for _, fm in good_files(meta)}
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
    workflow: WorkflowConfig, datasets: Mapping[str, Dataset], metadata: Mapping[str, DatasetMetadata],
    options: StorageOptions, manifests: Mapping[str, Manifest] | None = None,
) -> list[WorkItem]:
    """Chunks of the original files, or the committed skim parts with ``use_skimmed_input``
    (from ``manifests`` when the caller has read them already)."""
    wf = workflow
    skim_dir = wf.skim_dir
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
            parts = covering_parts(name, parts, metadata[name], join(skim_dir, name),
                                    partial_ok=wf.max_chunks_per_file is not None)
            for i, part in enumerate(parts):
                if int(part["entries"]) > 0:
                    items.extend(chunk_file(name, part["url"], i, int(part["entries"]), int(wf.chunksize)))
        else:
            for index, fm in good_files(metadata[name]):
                items.extend(chunk_file(name, fm.file, index, fm.num_entries, int(wf.chunksize),
                                        wf.max_chunks_per_file))
    return items

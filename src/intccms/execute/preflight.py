"""Grid credentials checked before any work, when the run reads or writes ``root://`` URLs.

A proxy or token that is missing, unreadable, expired or about to expire would otherwise show
up as the XRootD client's "Auth failed: No protocols left to try" on the first worker, after
the cluster started and the inputs were planned. The check reads only local files; the job
then points the XRootD client of the driver (and, through the credentials plugin, of every
worker) at exactly the files it checked.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from typing import Any

from omegaconf import DictConfig, OmegaConf
from rich.console import Console
from rich.markup import escape

from intccms.plan.datasets import DatasetError, _read_json_listing, select_datasets
from intccms.storage.credentials import grid_locations
from intccms.storage.grid import GridLocations, GridSettings, client_environ, export_client_environ
from intccms.storage.grid_check import GridReport, check_grid
from intccms.storage.urls import root_endpoint, scheme_of


def _is_root(url: str) -> bool:
    try:
        return scheme_of(url) == "root"
    except ValueError:
        return False


def xrootd_urls(cfg: DictConfig) -> list[str]:
    """The ``root://`` URLs the configuration names, read without touching any store: outputs,
    skims (when written or read), the selected datasets' files, redirectors and JSON listings."""

    wf = cfg.workflow
    urls = [str(cfg.output_dir)]
    if wf.save_skimmed_output or wf.use_skimmed_input:
        urls.append(str(wf.skim_dir))
    datasets: dict[str, Any] = OmegaConf.to_container(cfg.datasets, resolve=True) or {}  # type: ignore[assignment]
    reads_inputs = not (wf.use_skimmed_input and not wf.save_skimmed_output)
    chosen = select_datasets(datasets, list(cfg.dataset_selection)) if reads_inputs else {}
    for name, ds in chosen.items():
        urls.extend(str(f) for f in ds.get("files") or [])
        listings = [str(item) for item in ds.get("listings") or []]
        if listings and ds.get("redirector"):
            urls.append(str(ds["redirector"]))
        for listing in listings:
            path, sep, key = listing.rpartition(".json:")
            if sep:
                # a bad listing is reported with its reason when the dataset is resolved
                with contextlib.suppress(DatasetError):
                    urls.extend(_read_json_listing(path + ".json", key, name=name))
    return [u for u in urls if _is_root(u)]


def activate(locations: GridLocations) -> None:
    """Point this process's XRootD client at the checked files (paths only, no contents)."""
    export_client_environ(*client_environ(locations))


def check_grid_credentials(cfg: DictConfig, console: Console, urls: Iterable[str] | None = None
                           ) -> GridReport | None:
    """Check the grid credentials when ``urls`` (default: :func:`xrootd_urls`) reach XRootD.

    Returns:
        The report, or ``None`` when no ``root://`` URL is involved (nothing was checked).

    Raises:
        GridCredentialError: a required or named credential is missing, unreadable, expired,
            expires within ``credentials.min_lifetime_h`` (tokens: ``token_min_lifetime_h``)
            or comes from an untrusted CA.
    """
    targets = [u for u in (xrootd_urls(cfg) if urls is None else urls) if _is_root(u)]
    if not targets:
        return None
    settings = GridSettings.from_config(cfg.get("credentials"))
    locations = grid_locations(grid=settings)
    report = check_grid(locations, settings)
    for warning in report.warnings:
        console.print(f"[yellow]warning: {escape(warning)}[/yellow]")
    servers = sorted({root_endpoint(u) for u in targets})
    if report.problems:
        shown = ", ".join(servers[:3]) + (f" and {len(servers) - 3} more" if len(servers) > 3 else "")
        report.problems.append(f"needed for {shown} (credentials.require={settings.require})")
        report.raise_for_problems()
    for line in report.lines():
        console.print(f"grid credentials: {escape(line)}")
    activate(locations)
    return report


def resolved_xrootd_urls(datasets: Any) -> list[str]:
    """``root://`` files of resolved datasets (plain-text listings may hold full URLs)."""
    return [f for ds in datasets.values() for f in ds.files if _is_root(f)]


__all__ = ["activate", "check_grid_credentials", "resolved_xrootd_urls", "xrootd_urls"]

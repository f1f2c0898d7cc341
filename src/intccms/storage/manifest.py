"""Per-dataset JSON manifest of committed parts, saved atomically next to them."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from intccms.storage.errors import StorageNotFoundError
from intccms.storage.options import StorageOptions
from intccms.storage.schemes import backend_for, is_temporary_name

PART_KEYS = ("url", "entries", "bytes", "source_file", "entry_start", "entry_stop", "fmt")


@dataclass
class Manifest:
    """Committed parts of one dataset: ``{"dataset": ..., "parts": [...], "sources": {...}}``.

    Only parts added after a successful :func:`write_part` belong here, so temporary files
    from interrupted writes are never listed. ``sources`` holds the metadata (events, sum of
    generator weights) of the files the parts were cut from, keyed by their URL: the skims
    then normalise without the original files.
    """

    url: str
    dataset: str | None = None
    parts: list[dict[str, Any]] = field(default_factory=list)
    sources: dict[str, dict[str, Any]] = field(default_factory=dict)
    options: StorageOptions | None = field(default=None, repr=False)

    @classmethod
    def load(cls, url: str, options: StorageOptions | None = None,
             dataset: str | None = None) -> Manifest:
        """Load the manifest at ``url``; an absent manifest is empty."""
        backend = backend_for(url, options)
        try:
            raw = backend.read_bytes(url) if backend.exists(url) else None
        except StorageNotFoundError:
            raw = None
        if raw is None:
            return cls(url=url, dataset=dataset, options=options)
        try:
            doc = json.loads(raw)
        except json.JSONDecodeError as exc:
            msg = f"manifest {url} is not valid JSON ({exc}); remove it to rebuild from parts"
            raise ValueError(msg) from exc
        parts = [p for p in doc.get("parts", []) if not is_temporary_name(p.get("url", ""))]
        return cls(url=url, dataset=doc.get("dataset", dataset), parts=parts,
                   sources=dict(doc.get("sources") or {}), options=options)

    def add(self, part: dict[str, Any]) -> None:
        """Record a committed part; a part with the same URL is replaced (idempotent retry)."""
        missing = [k for k in ("url", "entries") if k not in part]
        if missing:
            msg = f"manifest part for {self.url} lacks {missing}; expected keys {PART_KEYS}"
            raise ValueError(msg)
        self.parts = [p for p in self.parts if p["url"] != part["url"]] + [dict(part)]

    def urls(self) -> list[str]:
        """Return the URLs of the committed parts."""
        return [p["url"] for p in self.parts]

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON document."""
        return {"dataset": self.dataset, "parts": list(self.parts), "sources": dict(self.sources)}

    def save(self) -> None:
        """Write the manifest atomically (same commit path as parts)."""
        backend = backend_for(self.url, self.options)
        payload = json.dumps(self.to_dict(), indent=1, sort_keys=True).encode()
        with backend.staging(self.url) as local, open(local, "wb") as handle:
            handle.write(payload)

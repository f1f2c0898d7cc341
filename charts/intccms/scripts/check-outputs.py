"""Check a finished run's outputs from inside the cluster (run by e2e-real-cluster.sh).

Runs in a pod made from the Job's own pod template (same image, facility ConfigMap, shared
volume, storage Secret), so it composes the configuration exactly as the Job did and reads
``<output_dir>/report/report.json`` and ``<output_dir>/histograms/histograms.pkl`` from the
shared volume or from an ``s3://`` output_dir. Prints one JSON line; exits 1 on any failure.
"""

from __future__ import annotations

import json
import os
import pickle
import sys
from typing import Any

import fsspec

from intccms.config import compose_config


def _total(hist: Any) -> float:
    total = hist.sum()
    return float(getattr(total, "value", total))


def main() -> int:
    cfg = compose_config("facility", validate=False)
    out = str(cfg.output_dir).rstrip("/")
    options: dict = {}
    if out.startswith("s3://"):
        options = {"key": os.environ.get("INTCCMS_S3_ACCESS_KEY_ID"),
                   "secret": os.environ.get("INTCCMS_S3_SECRET_ACCESS_KEY")}
        if os.environ.get("INTCCMS_S3_ENDPOINT"):
            options["client_kwargs"] = {"endpoint_url": os.environ["INTCCMS_S3_ENDPOINT"]}
    problems: list[str] = []
    with fsspec.open(f"{out}/report/report.json", "r", **options) as handle:
        report = json.load(handle)
    if report.get("chunks", 0) < 1 or report.get("events_read", 0) < 1:
        problems.append(f"report.json counts no work: chunks={report.get('chunks')} events_read={report.get('events_read')}")
    if report.get("failed_chunks", 0):
        problems.append(f"report.json has {report['failed_chunks']} failed chunks: {report.get('failures')}")
    with fsspec.open(f"{out}/histograms/histograms.pkl", "rb", **options) as handle:
        hists = pickle.load(handle)["histograms"]
    filled = {name: sum(_total(h) for h in group.values()) for name, group in hists.items()}
    if not filled or not any(v > 0 for v in filled.values()):
        problems.append(f"histograms.pkl holds no filled histogram: {filled}")
    print(json.dumps({"output_dir": out, "chunks": report.get("chunks"),
                      "events_read": report.get("events_read"), "histograms": sorted(filled),
                      "problems": problems}))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())

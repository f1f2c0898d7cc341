"""Command line: ``python -m intccms.datagen {nanoaod,corrections,golden-json} ...``.

Examples::

    python -m intccms.datagen nanoaod ttbar_semilep 2018 --events 200000 --seed 1 \\
        --output data/ttbar_2018 --files 4
    python -m intccms.datagen nanoaod data 2018 --luminosity 59830 --seed 7 --output data/mu_2018
    python -m intccms.datagen corrections data/jsonpog --eras 2017 2018
    python -m intccms.datagen golden-json 2018 data/golden_2018.json
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from intccms.datagen.corrections import write_correction_files
from intccms.datagen.eras import ERAS
from intccms.datagen.lumi import write_golden_json
from intccms.datagen.nanoaod import PROCESS_KINDS, ensure_generated
from intccms.datagen.normalisation import expected_data_events


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m intccms.datagen", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    nano = sub.add_parser("nanoaod", help="generate NanoAOD files of one process")
    nano.add_argument("kind", choices=PROCESS_KINDS)
    nano.add_argument("era", choices=list(ERAS))
    nano.add_argument("--events", type=int, help="events in total (default for data: --luminosity)")
    nano.add_argument("--luminosity", type=float, help="data only: match the MC at this luminosity (pb^-1)")
    nano.add_argument("--seed", type=int, default=1)
    nano.add_argument("--output", required=True, help="a .root file, or a folder when --files > 1")
    nano.add_argument("--files", type=int, default=1, help="split the events over this many files")
    nano.add_argument("--compression", choices=["lzma", "zstd"], default="lzma")
    nano.add_argument("--compression-level", type=int, help="codec level (default: UL production's, LZMA 9)")
    nano.add_argument("--params", default="{}", help='JSON process parameters, e.g. \'{"mass": 3000}\'')
    corr = sub.add_parser("corrections", help="write the synthetic jsonpog correction files")
    corr.add_argument("root")
    corr.add_argument("--eras", nargs="+", default=list(ERAS), choices=list(ERAS))
    golden = sub.add_parser("golden-json", help="write the synthetic golden JSON of an era")
    golden.add_argument("era", choices=list(ERAS))
    golden.add_argument("output")
    return parser


def _nanoaod(args: argparse.Namespace, console: Console) -> int:
    params = json.loads(args.params)
    total = args.events
    if total is None:
        if args.kind != "data" or args.luminosity is None:
            console.print("[red]--events is required (or --luminosity for data)[/red]")
            return 2
        total = expected_data_events(args.era, args.luminosity, params.get("processes"))
        console.print(f"{total} data events match {args.luminosity:g} pb^-1 in {args.era}")
    n_files = max(1, min(args.files, total))
    out = Path(args.output)
    paths = [out] if n_files == 1 and out.suffix == ".root" else [
        out / f"{args.kind}_{args.era}_{i}.root" for i in range(n_files)]
    sizes = [total // n_files + (1 if i < total % n_files else 0) for i in range(n_files)]
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    first = 1
    with Progress(*columns, console=console) as progress:
        task = progress.add_task(f"{args.kind} {args.era}", total=total)
        for i, (path, size) in enumerate(zip(paths, sizes, strict=True)):
            result = ensure_generated(
                path, args.kind, args.era, size, args.seed * 1000 + i, params=params,
                compression=args.compression, compression_level=args.compression_level, first_event=first,
                progress=lambda k: progress.advance(task, k),
            )
            progress.update(task, completed=sum(sizes[: i + 1]))
            first += size
            console.print(f"{result.path}: {result.n_events} events, sum of weights {result.sum_genweight:.6g}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the process exit code."""
    args = _parser().parse_args(argv)
    console = Console(stderr=True)
    if args.command == "nanoaod":
        return _nanoaod(args, console)
    if args.command == "corrections":
        root = write_correction_files(args.root, args.eras)
        console.print(f"correction files for {', '.join(args.eras)} under {root / 'POG'}")
        return 0
    path = write_golden_json(args.output, args.era)
    console.print(f"golden JSON of {args.era} written to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Command line: ``intccms run [CONFIG] [key=value ...]`` and friends.

Subcommands:
  run        compose a top-level configuration (default ``demo``) with Hydra overrides and run it
  config     print the composed configuration without running
  inspect    inspect the inputs of a configuration: sizes, branches, compression, analysis reads
  generate   generate demo NanoAOD / correction files (``python -m intccms.datagen``)
  scheduler  start a Dask scheduler with the project's metrics (container role)
  worker     start a Dask worker with the project's metrics (container role)
"""

from __future__ import annotations

import argparse
import logging
import os
import subprocess
import sys
from collections.abc import Callable, Sequence
from typing import Any

from rich.console import Console
from rich.markup import escape

from intccms.config import ConfigError, compose_config
from intccms.config.compose import to_yaml


def _split(args: Sequence[str]) -> tuple[str, list[str]]:
    name = "demo"
    rest = list(args)
    if rest and "=" not in rest[0] and not rest[0].startswith("-"):
        name = rest.pop(0)
    return name, rest


class _OwnInfoOnly(logging.Filter):
    """Passes intccms records and every warning or error; drops other libraries' INFO lines."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING or record.name.split(".")[0] == "intccms"


def _configure_logging(level: str) -> None:
    """Log at ``level``; above DEBUG only intccms speaks at INFO: pyhf logs ~80 "adding
    modifier" lines per model and distributed its join/leave lines, which drown the progress
    bars. At DEBUG the other libraries' lines are shown (distributed's own handlers stay at
    WARNING). Only the handler made here is filtered: a caller that configured logging itself
    (a notebook, a test runner calling ``main``) keeps its handlers as they are."""
    import distributed  # noqa: F401 - its loggers must exist before they are quietened

    root = logging.getLogger()
    before = list(root.handlers)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    if root.getEffectiveLevel() > logging.DEBUG:
        for handler in root.handlers:  # libraries imported later log through these too
            if handler not in before:
                handler.addFilter(_OwnInfoOnly())
    quiet = max(logging.WARNING, root.level)
    for logger_name in list(logging.root.manager.loggerDict):
        if logger_name.split(".")[0] == "distributed":
            logging.getLogger(logger_name).setLevel(quiet)


def _cmd_run(args: argparse.Namespace) -> int:

    console = Console(stderr=True)
    name, overrides = _split(args.overrides)
    try:
        cfg = compose_config(name, overrides)
    except ConfigError as err:
        console.print(f"[red]configuration error:[/red] {escape(str(err))}")
        return 2
    _configure_logging(cfg.log_level.value)
    # dask, uproot, awkward: only commands that run load them
    from intccms.execute.job import run_job

    result, code = _guarded(console, lambda: run_job(cfg, console=console),
                            "interrupted; finished parts are kept and a rerun resumes")
    if result is None:
        return code
    where = result.output_url if result.remote else result.output_dir
    console.print(f"[green]done[/green] in {result.wall_time_s:.1f} s; outputs in {escape(str(where))}")
    return 0


def _guarded(console: Console, work: Callable[[], Any], interrupted: str) -> tuple[Any, int]:
    """Run a command's work; Ctrl-C and errors become one clear line and an exit code.

    ``INTCCMS_DEBUG=1`` re-raises with the traceback.
    """
    try:
        return work(), 0
    except KeyboardInterrupt:
        console.print(f"[yellow]{escape(interrupted)}[/yellow]")
        return None, 130
    except Exception as err:
        if os.environ.get("INTCCMS_DEBUG"):
            raise
        console.print(f"[red]error:[/red] {type(err).__name__}: {escape(str(err))}")
        return None, 1


def _cmd_config(args: argparse.Namespace) -> int:

    name, overrides = _split(args.overrides)
    try:
        cfg = compose_config(name, overrides)
    except ConfigError as err:
        Console(stderr=True).print(f"[red]configuration error:[/red] {escape(str(err))}")
        return 2
    sys.stdout.write(to_yaml(cfg))
    return 0


def _cmd_inspect(args: argparse.Namespace) -> int:
    """Inspect the inputs of a configuration (``inspect`` group, see docs/inspect.md)."""
    # dask and uproot: only this command
    from intccms.inspect import compose_inspect, run_inspect

    console = Console(stderr=True)
    name, overrides = _split(args.overrides)
    try:
        cfg, icfg = compose_inspect(name, overrides)
    except ConfigError as err:
        console.print(f"[red]configuration error:[/red] {escape(str(err))}")
        return 2
    _configure_logging(cfg.log_level.value)
    result, code = _guarded(console, lambda: run_inspect(cfg, icfg, console=console), "interrupted")
    if result is None:
        return code
    console.print(f"[green]done[/green] in {result.wall_time_s:.1f} s; {len(result.files)} files, "
                  f"{len(result.bad_files)} bad; outputs in {icfg.output_dir}")
    return 0


def _cmd_role(role: str, extra: Sequence[str]) -> int:
    """Start a Dask scheduler or worker that preloads the project's metrics."""
    cmd = [sys.executable, "-m", "distributed.cli.dask_" + role, "--preload", "intccms.metrics.preload", *extra]
    return subprocess.call(cmd)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``intccms`` command."""
    parser = argparse.ArgumentParser(prog="intccms", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p_run = sub.add_parser("run", help="run a configuration")
    p_run.add_argument("overrides", nargs="*", help="[CONFIG] key=value ...")
    p_cfg = sub.add_parser("config", help="print the composed configuration")
    p_cfg.add_argument("overrides", nargs="*")
    p_ins = sub.add_parser("inspect", help="inspect the inputs of a configuration")
    p_ins.add_argument("overrides", nargs="*", help="[CONFIG] key=value ... (inspect.* keys)")
    sub.add_parser("generate", help="generate demo inputs", add_help=False)
    for role in ("scheduler", "worker"):
        sub.add_parser(role, help=f"start a Dask {role} with metrics", add_help=False)
    args, extra = parser.parse_known_args(argv)
    if args.command == "run":
        return _cmd_run(args)
    if args.command == "config":
        return _cmd_config(args)
    if args.command == "inspect":
        return _cmd_inspect(args)
    if args.command == "generate":
        # the generator's stack: only this command
        from intccms.datagen.__main__ import main as gen_main

        return int(gen_main(extra) or 0)
    return _cmd_role(args.command, extra)


if __name__ == "__main__":
    raise SystemExit(main())

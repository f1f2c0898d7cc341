#!/bin/sh
# One entry point for the three roles of the intccms image:
#   job [CONFIG] [overrides...]   intccms run CONFIG with Hydra overrides (the analysis job)
#   scheduler [dask args...]      a Dask scheduler (dashboard and /metrics on 8787)
#   worker [dask args...]         a Dask worker (scheduler from DASK_SCHEDULER_ADDRESS)
# Anything else runs as a command, e.g. `intccms config demo` or `sh`.
set -eu

role="${1:-job}"
[ "$#" -gt 0 ] && shift

case "${role}" in
    job)
        exec intccms run "$@"
        ;;
    scheduler)
        exec dask scheduler "$@"
        ;;
    worker)
        exec dask worker "$@"
        ;;
    *)
        exec "${role}" "$@"
        ;;
esac

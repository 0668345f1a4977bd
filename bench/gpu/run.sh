#!/usr/bin/env bash
# The one command for the GPU machine (bench/gpu/README.md has the device call): installs the carried wheels
# (.gpu/whl, made by bench/gpu/prepare.sh) into /tmp/site, puts /tmp/site and the checkout first on PYTHONPATH, then
# runs every part of the GPU check under its own time cap and writes summary.json + run.log to $OUT (bench/gpu/run.py).
# The shared files come from .gpu/shared there, from $COMPRESSA_SHARED or ../shared here.
#
#   bash bench/gpu/run.sh                      # GPU machine ($OUT set by the device tool)
#   bash bench/gpu/run.sh --dry-run --out DIR  # here, on CPU: the same parts at tiny sizes, no wheels installed
set -u
cd "$(dirname "$0")/../.."
exec "${PYTHON:-python3}" bench/gpu/run.py "$@"

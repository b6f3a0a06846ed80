#!/usr/bin/env bash
# Run every test: the course_lib unit tests, then every notebook under nbval (quick profile).
# Creates the environment first if needed. Exits non-zero on any failure.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
scripts/setup_env.sh
export COURSE_PROFILE=quick MPLBACKEND=Agg PYTHONHASHSEED=0
py="$root/.venv/bin/python"
start=$(date +%s)
echo "== unit tests"
"$py" -m pytest -q tests
echo "== notebooks (nbval, quick profile)"
"$py" -m pytest -q --nbval-lax --sanitize-with tests/nbval_sanitize.cfg \
    --nbval-cell-timeout=600 -p no:warnings notebooks
echo "== course data against data/reference_summaries.json (tolerance: data/README.md)"
"$py" -m course_lib.data verify
echo "test.sh: all tests passed in $(( $(date +%s) - start )) s"

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
echo "== JupyterLab in a browser: lesson 00 run and its viewers moved, lesson 08 reopened (tests/browser)"
if ! command -v chromium >/dev/null 2>&1; then
    if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
        (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
            || { echo "test.sh: the browser test needs Chromium and 'apt-get install chromium' failed"; exit 1; }
    else
        echo "test.sh: the browser test needs Chromium: install it (Debian: sudo apt-get install chromium)"; exit 1
    fi
fi
"$py" -c "import playwright" 2>/dev/null || "$py" -m pip install -q "playwright==1.65.2" \
    || { echo "test.sh: the browser test needs the playwright package and 'pip install playwright' failed"; exit 1; }
COURSE_BROWSER_TEST=1 "$py" -m pytest -q -p no:warnings tests/browser
echo "== course data against data/reference_summaries.json (tolerance: data/README.md)"
"$py" -m course_lib.data verify
echo "test.sh: all tests passed in $(( $(date +%s) - start )) s"

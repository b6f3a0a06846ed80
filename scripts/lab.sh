#!/usr/bin/env bash
# Open JupyterLab on the course notebooks, creating the environment first if needed.
# Extra arguments go to `jupyter lab` (e.g. --no-browser --port 8899).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
"$root/scripts/setup_env.sh"
exec "$root/.venv/bin/jupyter" lab --ServerApp.root_dir="$root/notebooks" "$@"

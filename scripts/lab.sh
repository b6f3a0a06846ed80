#!/usr/bin/env bash
# Open JupyterLab on the course notebooks, creating the environment first if needed.
# Extra arguments go to `jupyter lab` (e.g. --no-browser --port 8899).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
"$root/scripts/setup_env.sh"
extra=()
# Containers and lab machines often run as root; JupyterLab refuses that without this flag.
[ "$(id -u)" -eq 0 ] && extra+=(--allow-root)
exec "$root/.venv/bin/jupyter" lab --ServerApp.root_dir="$root/notebooks" "${extra[@]}" "$@"

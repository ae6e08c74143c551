#!/usr/bin/env bash
# The GPU run in one command (docs/benchmarks.md, "The GPU run").
#
#   benchmarks/gpu/run.sh             on the GPU machine: install the carried wheels (.gpu/, made by
#                                     benchmarks/gpu/carry.py), then every part, figures to $OUT
#   benchmarks/gpu/run.sh --dry-run   on a CPU: every part at tiny sizes, CUDA replaced by the CPU, with
#                                     this checkout's Python (make test runs it)
#
# From the device tool: run(command="benchmarks/gpu/run.sh", carry=[".gpu"], timeout_s=600).
# Then, here: python -m benchmarks.gpu.merge <the files_at folder>   (updates docs/)
set -euo pipefail
cd "$(dirname "$0")/../.."
dry_run=""
if [[ "${1:-}" == "--dry-run" ]]; then dry_run="--dry-run"; shift; fi
out="${OUT:-results/gpu-run}"
python="${PYTHON:-$([[ -n "$dry_run" && -x .venv/bin/python ]] && echo .venv/bin/python || echo python3)}"
if [[ -z "$dry_run" ]]; then
    version=$("$python" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
    wheels=".gpu/wheels-py$version"
    if [[ ! -d "$wheels" ]]; then
        echo "protkit: error: $wheels is absent: run 'python benchmarks/gpu/carry.py --python $version' before the device run, and carry .gpu" >&2
        exit 2
    fi
    env_dir="${TMPDIR:-/tmp}/protkit-gpu-env"
    start=$(date +%s)
    if "$python" -m venv --system-site-packages "$env_dir" 2>/dev/null; then
        python="$env_dir/bin/python"
        "$python" -m pip install --quiet --no-index --no-deps "$wheels"/*.whl
        export PATH="$env_dir/bin:$PATH"
    else  # no venv module on the image: a target folder on the path instead
        "$python" -m pip install --quiet --no-index --no-deps --target "$env_dir" "$wheels"/*.whl
        export PYTHONPATH="$env_dir${PYTHONPATH:+:$PYTHONPATH}" PATH="$env_dir/bin:$PATH"
    fi
    echo "gpu-run: installed $(ls "$wheels"/*.whl | wc -l) carried wheels in $(( $(date +%s) - start )) s"
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
exec "$python" -m benchmarks.gpu.run --out "$out" $dry_run "$@"

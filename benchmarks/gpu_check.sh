#!/usr/bin/env bash
# The GPU check (issue 24) in one command:  bash benchmarks/gpu_check.sh OUTDIR [--smoke] [--parts ...]
#
# Runs the core on the interpreter's own torch with PYTHONPATH=<repo>, no `pip install -e .`: the GPU
# machine has torch 2.11 / torchvision 0.26 and no network. Wheels of packages that interpreter lacks
# (pydantic & co., torchattacks; see benchmarks/fetch_gpu_wheels.sh) are taken from .gpu_wheels/ when
# it was carried along: only those missing here (or older here than the wheel) are installed, with --no-deps
# --no-index, into a private folder put first on PYTHONPATH. PYTHON picks the interpreter (python3).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-python3}"
WHEELS="$ROOT/.gpu_wheels"
if [ $# -lt 1 ]; then
    echo "usage: bash benchmarks/gpu_check.sh OUTDIR [--smoke] [--parts NAME...]" >&2
    exit 2
fi
SITE=""
if compgen -G "$WHEELS/*.whl" > /dev/null; then
    # the wheels whose distribution is missing here or older than the wheel (typing-extensions: pydantic
    # needs >= 4.16, the machine's may be older); the others are left to the interpreter's own copy
    mapfile -t missing < <("$PYTHON" - "$WHEELS"/*.whl <<'PY'
import importlib.metadata as md
import sys
from pathlib import Path

for wheel in sys.argv[1:]:
    dist, version = Path(wheel).name.split("-")[:2]
    try:
        have = md.version(dist)
    except md.PackageNotFoundError:
        print(wheel)
        continue
    try:
        from packaging.version import Version

        if Version(have) < Version(version):
            print(wheel)
    except Exception:  # no packaging, or an odd version: keep the interpreter's copy
        pass
PY
)
    if [ ${#missing[@]} -gt 0 ]; then
        SITE="$(mktemp -d "${TMPDIR:-/tmp}/dnr-gpu-site.XXXXXX")"
        "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$SITE" "${missing[@]}"
        names=()
        for whl in "${missing[@]}"; do names+=("$(basename "$whl")"); done
        export DNR_GPU_WHEELS="${names[*]}"
        echo "gpu_check.sh: installed ${#missing[@]} carried wheels into $SITE: ${names[*]}" >&2
    fi
fi
export PYTHONPATH="${SITE:+$SITE:}$ROOT${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
cd "$ROOT"
exec "$PYTHON" benchmarks/gpu_check.py "$@"

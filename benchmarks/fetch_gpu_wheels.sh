#!/usr/bin/env bash
# Download, here, the wheels the GPU machine lacks, for its Python 3.12 on manylinux x86_64, into
# .gpu_wheels/ (git-ignored; carry it with the device call). The machine has torch 2.11, numpy,
# pandas, pyarrow, pyyaml, matplotlib, scikit-learn, scipy, psutil, requests, tqdm, but no pydantic:
# the core's config needs pydantic and what it depends on, and the numerics part compares against
# torchattacks (pure Python; its own needs are on the machine, so --no-deps). The versions are the
# ones installed in this environment (what the tests ran against), so the GPU runs the same code.
#
#     bash benchmarks/fetch_gpu_wheels.sh          # PYTHON=... to read the versions from another env
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-$ROOT/.venv/bin/python}"
DEST="$ROOT/.gpu_wheels"
DISTS=(pydantic pydantic-core annotated-types typing-inspection typing-extensions torchattacks)
pins=()
for dist in "${DISTS[@]}"; do
    version="$("$PYTHON" -c "import importlib.metadata as m, sys; print(m.version(sys.argv[1]))" "$dist")" || {
        echo "fetch_gpu_wheels: $dist is not installed in $PYTHON; run 'make test' first (it installs the test extras)" >&2
        exit 2
    }
    pins+=("$dist==$version")
done
mkdir -p "$DEST"
rm -f "$DEST"/*.whl   # one version of each: two would stop the install there
"$PYTHON" -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 --platform manylinux1_x86_64 --platform any \
    -d "$DEST" "${pins[@]}"
echo "wheels in $DEST (for cp312 manylinux x86_64):"
( cd "$DEST" && ls -l --block-size=1 ./*.whl | awk '{printf "  %10d  %s\n", $5, $9; t += $5} END {printf "  %10d  total (%.2f MiB)\n", t, t / 1048576}' )

#!/usr/bin/env bash
# The lower end of the supported torch range, in the GPU machine's environment: the core's tests on
# Python 3.12 (when this machine has it; else the default python3, said so) with torch 2.11.0 /
# torchvision 0.26.0, and no Ray, no Optuna, no `pip install` of this project (PYTHONPATH=., as
# benchmarks/gpu_check.sh runs there). `make test` runs it after the main suite.
#
# The environment lives in .venv-torch-min/ (git-ignored; about 5 GB, a CUDA build of torch that runs on
# the CPU here), rebuilt when this script changes. Installing it needs the package index: when that
# fails, the run says loudly that the lower end was NOT tested and does not fail the build (an
# unreachable index is no bug of dnr-sweep); a failing test fails it.
set -uo pipefail
cd "$(dirname "$0")/.."

VENV=.venv-torch-min
STAMP="$VENV/.install-stamp-$(sha256sum tests/torch_min.sh | cut -c1-16)"
# what the GPU machine has (torch 2.11, numpy, pandas, pyarrow, pyyaml, matplotlib, scikit-learn, scipy,
# psutil, requests, tqdm), what benchmarks/fetch_gpu_wheels.sh carries there (pydantic, torchattacks),
# and what the tests need (pytest, hypothesis, filelock; pyautoattack, torch-pruning: the oracles)
PACKAGES=(torch==2.11.0 torchvision==0.26.0 numpy pandas pyarrow pyyaml matplotlib scikit-learn scipy psutil
          requests tqdm "pydantic>=2" filelock pytest hypothesis pyautoattack==0.2.0)
NO_DEPS=(torchattacks==3.5.1 torch-pruning==1.6.1)
# the core's tests: everything below dnr_sweep/sweep (no Ray), the reports, the GPU check's smoke run;
# tests in them that need Ray Tune or Optuna carry the needs_tune mark (tests/conftest.py adds it to
# every test using the ray_session fixture)
CORE_TESTS=(tests/test_attack_names.py tests/test_attacks.py tests/test_benchmarks.py tests/test_checkpoint_lean.py
            tests/test_config.py tests/test_data.py tests/test_data_fetch.py tests/test_dataset_facts.py
            tests/test_engine.py tests/test_evaluation.py tests/test_export.py tests/test_gpu_check.py
            tests/test_gpu_data.py tests/test_layering.py tests/test_methods_*.py tests/test_models.py
            tests/test_outside_world.py tests/test_reports_build.py tests/test_reports_figures.py
            tests/test_reports_load.py tests/test_reports_pareto.py tests/test_search_spaces.py tests/test_sparsity_*.py)

find_python312() {
    local candidate
    for candidate in python3.12 "${PYENV_ROOT:-$HOME/.pyenv}"/versions/3.12*/bin/python3.12; do
        if "$candidate" -c "" >/dev/null 2>&1; then
            echo "$candidate"
            return
        fi
    done
}

if [[ ! -f "$STAMP" ]]; then
    PYTHON312="$(find_python312)"
    BASE_PYTHON="${PYTHON312:-python3}"
    [[ -n "$PYTHON312" ]] || echo "torch-min: no Python 3.12 here (the GPU machine's); using $(python3 --version)"
    echo "torch-min: installing torch 2.11.0 / torchvision 0.26.0 on $("$BASE_PYTHON" --version) into $VENV"
    rm -rf "$VENV"
    if ! { "$BASE_PYTHON" -m venv "$VENV" &&
           "$VENV/bin/pip" install --quiet --disable-pip-version-check "${PACKAGES[@]}" &&
           "$VENV/bin/pip" install --quiet --disable-pip-version-check --no-deps "${NO_DEPS[@]}"; }; then
        echo "" >&2
        echo "WARNING: torch-min: could not install torch 2.11 (is the package index reachable?);" >&2
        echo "WARNING: the lower end of the supported torch range was NOT tested in this run." >&2
        exit 0
    fi
    touch "$STAMP"
fi

"$VENV/bin/python" -c "
import importlib.util, sys, torch, torchvision
present = [m for m in ('ray', 'optuna') if importlib.util.find_spec(m)]
assert not present, f'torch-min: {present} installed, but the GPU machine has neither'
print(f'torch-min: Python {sys.version.split()[0]}, torch {torch.__version__}, torchvision {torchvision.__version__}, '
      'no Ray, no Optuna')" || exit 1
PYTHONPATH=. exec "$VENV/bin/python" -m pytest -q -p no:cacheprovider -m "not slow and not needs_tune" "${CORE_TESTS[@]}"

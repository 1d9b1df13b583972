"""The house rules hold for the whole tree: ruff clean, ruff formatted (``make lint``)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_ruff_is_clean():
    ruff = shutil.which("ruff", path=str(Path(sys.executable).parent)) or shutil.which("ruff")
    assert ruff is not None, "ruff is not installed (it comes with the test extra: pip install -e '.[test]')"
    done = subprocess.run([ruff, "check", "--quiet", str(REPO)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    formatted = subprocess.run([ruff, "format", "--check", str(REPO)], capture_output=True, text=True, cwd=REPO)
    assert formatted.returncode == 0, "run `ruff format .`:\n" + formatted.stdout + formatted.stderr

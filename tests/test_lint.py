"""The house rule "ruff clean" holds for the whole tree."""

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

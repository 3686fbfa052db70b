"""The code passes the linter configured in pyproject.toml ([tool.ruff]: pyflakes, pycodestyle errors,
import order): `ruff check lit_alpha tests scripts benchmarks examples` (`--fix` sorts imports)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def test_ruff_check_passes() -> None:
    ruff = shutil.which("ruff") or shutil.which("ruff", path=str(Path(sys.executable).parent))
    if ruff is None:
        pytest.skip("ruff is not installed (pip install -e '.[dev]')")
    out = subprocess.run([ruff, "check", "lit_alpha", "tests", "scripts", "benchmarks", "examples"],
                         cwd=REPO, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-1000:]

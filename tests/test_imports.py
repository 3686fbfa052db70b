"""No import cycles: every lit_alpha module can be the first lit_alpha module a process imports.

A cycle shows up only in some import orders (whichever module of the cycle is imported first finds the
other half-initialised), so each module is imported in its own child process with nothing of lit_alpha
loaded yet. The children are forked from one interpreter that has the third-party libraries loaded,
which keeps this to a few seconds.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODULES = sorted(".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
                 for p in (ROOT / "lit_alpha").rglob("*.py"))

CHILDREN = r"""
import importlib, os, sys
import numpy, torch, lightning, transformers  # third-party: outside any lit_alpha cycle
assert not [m for m in sys.modules if m.startswith("lit_alpha")]
failed = []
for name in sys.argv[1:]:
    pid = os.fork()
    if pid == 0:
        try:
            importlib.import_module(name)
        except BaseException as exc:
            print(f"{name}: {type(exc).__name__}: {exc}", flush=True)
            os._exit(1)
        os._exit(0)
    if os.waitpid(pid, 0)[1] != 0:
        failed.append(name)
print("failed:", failed)
sys.exit(1 if failed else 0)
"""


def test_every_module_imports_first_in_a_fresh_process() -> None:
    assert "lit_alpha.data.rollout" in MODULES and "lit_alpha.data.offline" in MODULES and len(MODULES) > 40
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    out = subprocess.run([sys.executable, "-c", CHILDREN, *MODULES], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=600)
    assert out.returncode == 0, out.stdout + out.stderr[-2000:]

#!/usr/bin/env bash
# Build the TRL comparison environment used by benchmarks/bench_trl.py (a separate venv, so that
# TRL and its dependencies never touch the project's own environment).
#
#   bash benchmarks/setup_trl.sh [VENV_DIR]      # default /work/venv-trl
#
# torch is installed first and pinned to the CPU wheel (an unpinned torch pulls the CUDA build);
# everything after it sees torch==2.13.0 already satisfied and installs no other torch.
# TRL 1.16.0 requires transformers>=4.56.2 (no upper bound), accelerate>=1.10.1, datasets>=4.7.0;
# transformers is pinned to the project's version so both sides run the same model code.
set -euo pipefail
VENV="${1:-/work/venv-trl}"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
python3 -m venv "$VENV"
"$VENV/bin/pip" install -q torch==2.13.0
"$VENV/bin/pip" install -q -e "$HERE" "transformers==5.19.0"
"$VENV/bin/pip" install -q "trl==1.16.0" "accelerate>=1.10.1" "datasets>=4.7.0" "torch==2.13.0" "transformers==5.19.0"
"$VENV/bin/python" - <<'PY'
import torch, transformers, trl, accelerate, datasets
assert "+cpu" in torch.__version__ or not torch.cuda.is_available(), torch.__version__
print("torch", torch.__version__, "transformers", transformers.__version__, "trl", trl.__version__,
      "accelerate", accelerate.__version__, "datasets", datasets.__version__)
PY

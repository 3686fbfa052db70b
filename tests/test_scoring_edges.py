"""Edges of the scoring functions that the chunked/prefix tests do not reach (surviving mutants of
``scripts/mutate.py``): the smallest chunk of the entropy computation, and its range check."""

from __future__ import annotations

import pytest
import torch
from torch.testing import assert_close

from lit_alpha.scoring.logprobs import entropy_from_logits


def direct_entropy(logits: torch.Tensor) -> torch.Tensor:
    return -(logits.softmax(-1) * logits.log_softmax(-1)).sum(-1)


def test_entropy_in_chunks_of_one_row() -> None:
    logits = torch.randn(2, 3, 7, generator=torch.Generator().manual_seed(0))  # [B, T, V]
    assert_close(entropy_from_logits(logits, chunk_tokens=1), direct_entropy(logits), atol=1e-6, rtol=1e-6)
    assert_close(entropy_from_logits(logits), direct_entropy(logits), atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("chunk", [0, -1])
def test_entropy_chunk_must_be_positive(chunk) -> None:
    with pytest.raises(ValueError, match="chunk_tokens"):
        entropy_from_logits(torch.zeros(1, 3), chunk_tokens=chunk)


def test_prompt_tuning_takes_the_model_s_own_forward(random_model_dir) -> None:
    """A peft prompt-tuning model prepends virtual tokens: the backbone/head shortcut is never taken
    (nor for a peft model without an active config); a LoRA model is unwrapped to its base."""
    peft = pytest.importorskip("peft")
    from lit_alpha.models import load_policy
    from lit_alpha.scoring.logprobs import _backbone_and_head

    ids = torch.tensor([[1, 5, 6, 7]])
    mask = torch.ones_like(ids)
    model, _ = load_policy(str(random_model_dir))
    tuned = peft.get_peft_model(model, peft.PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=2))
    assert _backbone_and_head(tuned, ids, mask) is None
    model, _ = load_policy(str(random_model_dir))
    lora = peft.get_peft_model(model, peft.LoraConfig(r=2, target_modules=["q_proj"], task_type="CAUSAL_LM"))
    assert _backbone_and_head(lora, ids, mask) is not None

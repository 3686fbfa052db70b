"""Per-token log-probs of given tokens under a causal LM, aligned with ``input_ids``."""

from __future__ import annotations

import torch
from torch import Tensor


def position_ids_from_mask(attention_mask: Tensor) -> Tensor:
    """Positions that ignore left padding, so a padded row sees the positions it would alone."""
    return (attention_mask.long().cumsum(-1) - 1).clamp_min(0)  # [N, T]


def token_logprobs(
    model: torch.nn.Module, input_ids: Tensor, attention_mask: Tensor, prompt_len: int
) -> Tensor:
    """``out[i, t] = log π(input_ids[i, t] | input_ids[i, :t])`` for t ≥ prompt_len, else 0.

    Only the completion positions' logits are materialised (``logits_to_keep``), which matters for
    large vocabularies. Returns ``[N, T]`` in float32, differentiable when grad is enabled.
    """
    n, t = input_ids.shape
    keep = t - prompt_len + 1  # logits at positions P-1 .. T-1 (the last one predicts nothing)
    out = model(
        input_ids=input_ids,
        attention_mask=attention_mask,
        position_ids=position_ids_from_mask(attention_mask),
        logits_to_keep=keep,
        use_cache=False,
    )
    logits = out.logits[:, :-1].float()  # [N, L, V] predicting tokens P .. T-1
    targets = input_ids[:, prompt_len:]  # [N, L]
    picked = logits.gather(-1, targets.unsqueeze(-1)).squeeze(-1)  # [N, L]
    lp = picked - torch.logsumexp(logits, dim=-1)  # [N, L]
    return torch.cat([lp.new_zeros(n, prompt_len), lp], dim=1)  # [N, T]

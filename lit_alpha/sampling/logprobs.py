"""Per-token log-probs of given tokens under a causal LM, aligned with ``input_ids``."""

from __future__ import annotations

import torch
from torch import Tensor


def position_ids_from_mask(attention_mask: Tensor) -> Tensor:
    """Positions that ignore left padding, so a padded row sees the positions it would alone."""
    return (attention_mask.long().cumsum(-1) - 1).clamp_min(0)  # [N, T]


def entropy_from_logits(logits: Tensor, chunk_tokens: int = 1024) -> Tensor:
    """Full-vocabulary entropy ``H = −Σ_v p_v log p_v`` of each row of ``logits [..., V]``, detached.

    Computed as ``H = logsumexp(z) − Σ_v softmax(z)_v · z_v`` over chunks of ``chunk_tokens`` rows, so
    for contiguous float32 logits at most one ``[chunk_tokens, V]`` float tensor (the chunk's softmax)
    exists at a time beyond the logits themselves; the dot product is a batched matmul, which allocates
    no second ``[chunk, V]``. (Other dtypes add the chunk's float32 upcast; non-contiguous logits are
    copied once by ``reshape``.) Logits must be finite. Returns ``[...]`` in float32.
    """
    if chunk_tokens < 1:
        raise ValueError(f"chunk_tokens must be >= 1, got {chunk_tokens}")
    with torch.no_grad():
        flat = logits.detach().reshape(-1, logits.shape[-1])  # [M, V], a view
        out = torch.empty(flat.shape[0], dtype=torch.float32, device=logits.device)  # [M]
        for start in range(0, flat.shape[0], chunk_tokens):
            z = flat[start : start + chunk_tokens].float()  # [c, V] (a view when already float32)
            lse = torch.logsumexp(z, dim=-1)  # [c]
            p = (z - lse[:, None]).exp_()  # [c, V]: the one chunk-sized temporary
            dot = torch.bmm(p.unsqueeze(1), z.unsqueeze(2)).reshape(-1)  # [c] Σ_v p_v z_v
            out[start : start + chunk_tokens] = lse - dot
            del p
    return out.reshape(logits.shape[:-1])


def token_logprobs(
    model: torch.nn.Module,
    input_ids: Tensor,
    attention_mask: Tensor,
    prompt_len: int,
    with_entropy: bool = False,
    entropy_chunk_tokens: int = 1024,
) -> Tensor | tuple[Tensor, Tensor]:
    """``out[i, t] = log π(input_ids[i, t] | input_ids[i, :t])`` for t ≥ prompt_len, else 0.

    Only the completion positions' logits are materialised (``logits_to_keep``), which matters for
    large vocabularies. Returns ``[N, T]`` in float32, differentiable when grad is enabled.
    With ``with_entropy`` it returns ``(logprobs, entropy)``, ``entropy[i, t]`` the full-vocabulary
    entropy of ``π(·|input_ids[i, :t])`` (detached, ``[N, T]``, 0 before ``prompt_len``), computed from
    the same logits in chunks of ``entropy_chunk_tokens`` positions (:func:`entropy_from_logits`).
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
    lp = torch.cat([lp.new_zeros(n, prompt_len), lp], dim=1)  # [N, T]
    if not with_entropy:
        return lp
    ent = entropy_from_logits(out.logits, entropy_chunk_tokens)[:, :-1]  # [N, L] (contiguous: no copy)
    return lp, torch.cat([ent.new_zeros(n, prompt_len), ent], dim=1)  # [N, T], [N, T]

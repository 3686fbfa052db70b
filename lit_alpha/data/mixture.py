"""The data side of a mixture proposal: one group of G π_θ rows and K π_base rows per prompt.

An objective that asks for π_base samples (``Objective.base_samples`` K > 0: lit_alpha's
:class:`~lit_alpha.objectives.mixture.MixtureAlphaDPG`) gets, from :meth:`Rollout.train_batch
<lit_alpha.data.rollout.Rollout.train_batch>`, groups whose first G rows are the policy's samples and
whose last K rows are π_base's (drawn with their own seed stream, verified like the others);
:func:`join_groups` builds that layout and marks the π_base rows in ``RolloutBatch.from_base`` (the
module leaves them out of ``perf/logprob_mismatch``, which compares the sampler's log-probs with the
policy's).
"""

from __future__ import annotations

from dataclasses import replace

import torch
from torch import Tensor

from lit_alpha.batch import RolloutBatch


def _pad_right(x: Tensor, width: int, value: float = 0) -> Tensor:
    """``x [N, T]`` right-padded to ``[N, width]``."""
    if x.shape[1] == width:
        return x
    pad = torch.full((x.shape[0], width - x.shape[1]), value, dtype=x.dtype, device=x.device)
    return torch.cat([x, pad], dim=1)


def join_groups(policy: RolloutBatch, base: RolloutBatch, g: int, k: int, pad_id: int) -> RolloutBatch:
    """Merge ``policy`` (G rows per prompt) and ``base`` (K rows per prompt, same prompts in the same order)
    into one batch whose groups are ``[G policy rows | K base rows]``; ``from_base`` marks the latter."""
    if policy.prompt_len != base.prompt_len:
        raise ValueError(f"prompt layouts differ ({policy.prompt_len} vs {base.prompt_len} prompt columns)")
    b = policy.rewards.numel() // g
    if base.rewards.numel() != b * k:
        raise ValueError(f"base batch has {base.rewards.numel()} rows, expected {b} prompts x {k}")
    device = policy.input_ids.device
    # row r of the joined batch: group r // (G+K), position r % (G+K); policy rows first
    pos = torch.arange(g + k, device=device)
    grp = torch.arange(b, device=device)[:, None]
    src = torch.where(pos < g, grp * g + pos, b * g + grp * k + (pos - g)).reshape(-1)  # [B*(G+K)] into cat
    width = max(policy.input_ids.shape[1], base.input_ids.shape[1])

    def cat(a: Tensor | None, c: Tensor | None, value: float = 0) -> Tensor | None:
        if a is None or c is None:
            return None
        if a.dim() == 2:
            a, c = _pad_right(a, width, value), _pad_right(c, width, value)
        return torch.cat([a, c])[src]

    def cat_list(a: list, c: list) -> list:
        both = list(a) + list(c)
        return [both[i] for i in src.tolist()] if both else []

    from_base = torch.cat([torch.zeros(b * g, dtype=torch.bool, device=device),
                           torch.ones(b * k, dtype=torch.bool, device=device)])[src]
    stats = dict(policy.stats)
    for key in ("perf/sample_s", "perf/verify_s", "perf/completion_tokens"):
        if key in base.stats:
            stats[key.replace("perf/", "perf/base_proposal_")] = base.stats[key]
    return replace(
        policy,
        input_ids=cat(policy.input_ids, base.input_ids, pad_id),
        attention_mask=cat(policy.attention_mask, base.attention_mask),
        completion_mask=cat(policy.completion_mask, base.completion_mask),
        old_logprobs=cat(policy.old_logprobs, base.old_logprobs),
        rewards=cat(policy.rewards, base.rewards),
        group_ids=torch.arange(b, device=device).repeat_interleave(g + k),
        base_logprobs=cat(policy.base_logprobs, base.base_logprobs),
        completions=cat_list(policy.completions, base.completions),
        problem_ids=cat_list(policy.problem_ids, base.problem_ids),
        reasons=cat_list(policy.reasons, base.reasons),
        answers=cat_list(policy.answers, base.answers),
        old_entropy=cat(policy.old_entropy, base.old_entropy),
        stats=stats,
        from_base=from_base,
    )

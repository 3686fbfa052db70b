"""Typed batches that flow from the sampler to the objective.

Shapes: N = prompts × samples per prompt (B*G), T = padded prompt+completion length.
Per-token tensors are aligned with ``input_ids``: entry ``[i, t]`` is about token ``input_ids[i, t]``
(its log-prob given the tokens before it). Only positions where ``completion_mask`` is 1 matter.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import Any

import torch
from torch import Tensor


@dataclass
class RolloutBatch:
    """n sampled completions for each of B prompts, verified, with the log-probs the loss needs."""

    input_ids: Tensor  # [N, T] long, prompt left-padded, completion right-padded
    attention_mask: Tensor  # [N, T] long, 1 on real tokens
    completion_mask: Tensor  # [N, T] float, 1 on completion tokens (EOS included)
    old_logprobs: Tensor  # [N, T] float, per-token log π_sampler(y_t | ...) at sampling time
    rewards: Tensor  # [N] float in [0, 1] (the verifier's v)
    group_ids: Tensor  # [N] long, samples of one prompt share an id; groups are contiguous
    base_logprobs: Tensor | None = None  # [N, T] float, per-token log π_base; None in evaluation
    completions: list[str] = field(default_factory=list)  # N decoded completions
    problem_ids: list[str] = field(default_factory=list)  # N ids of the problem each sample answers
    reasons: list[str] = field(default_factory=list)  # N verdict reasons ("ok", "wrong", "parse", ...)
    answers: list[str | None] = field(default_factory=list)  # N canonical answers (None: unparsed)
    prompt_len: int = 0  # P: completion tokens start at column P
    stats: dict[str, float] = field(default_factory=dict)  # timings and counters to log
    old_entropy: Tensor | None = None  # [N, T] float, per-token entropy of π_sampler (None: not computed)
    from_base: Tensor | None = None  # [N] bool, rows drawn from π_base (the objective's base_samples); None: none

    def to(self, device: torch.device | str) -> "RolloutBatch":
        moved: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            moved[f.name] = value.to(device) if isinstance(value, Tensor) else value
        return replace(self, **moved)

    @property
    def num_groups(self) -> int:
        return int(self.group_ids.max().item()) + 1 if self.group_ids.numel() else 0


def masked_seq_sum(x: Tensor, mask: Tensor) -> Tensor:
    """``Σ_t x[:, t]·mask[:, t]`` with masked positions contributing exactly 0, even where ``x`` is
    ±∞ or NaN there (``−∞ · 0`` would be NaN).  ``[N, T], [N, T] -> [N]``"""
    return (x.masked_fill(mask == 0, 0.0) * mask).sum(-1)


@dataclass
class ObjectiveInputs:
    """What an :class:`~lit_alpha.objectives.Objective` sees.

    ``logprobs`` carries the gradient (current policy, this step); everything else is data.
    """

    logprobs: Tensor  # [N, T] per-token log π_θ, requires grad
    old_logprobs: Tensor  # [N, T] per-token log π_old (the sampling policy), detached
    base_logprobs: Tensor | None  # [N, T] per-token log π_base (frozen initial policy), detached; None
    # when neither the objective (``needs_base``) nor the module (``score_base``) asked for them
    mask: Tensor  # [N, T] float, 1 on completion tokens
    rewards: Tensor  # [N] verifier scores in [0, 1]
    group_ids: Tensor  # [N] long, contiguous groups of equal size
    entropy: Tensor | None = None  # [N, T] per-token entropy of π_θ, detached (objectives with needs_entropy)
    old_entropy: Tensor | None = None  # [N, T] per-token entropy of π_old at sampling time, detached
    step: int = 0  # the optimizer step this batch trains (for schedules)
    max_steps: int = 0  # the run's total steps (0: unknown)

    @property
    def seq_logprobs(self) -> Tensor:
        """Σ_t log π_θ(y_t|…) over completion tokens, with gradient.  # [N]"""
        return masked_seq_sum(self.logprobs, self.mask)

    @property
    def seq_old_logprobs(self) -> Tensor:  # [N]
        return masked_seq_sum(self.old_logprobs, self.mask)

    @property
    def seq_base_logprobs(self) -> Tensor:  # [N]
        if self.base_logprobs is None:
            raise ValueError("this objective reads base_logprobs but its needs_base is False")
        return masked_seq_sum(self.base_logprobs, self.mask)

    @property
    def lengths(self) -> Tensor:  # [N]
        return self.mask.sum(-1)


@dataclass
class ObjectiveOutput:
    """A scalar loss to minimise and detached scalar metrics (names without prefix)."""

    loss: Tensor
    metrics: dict[str, Tensor]

"""GRPO with the unlikeliness reward (He, Fried & Welleck, "Rewarding the Unlikely: Lifting GRPO Beyond
Distribution Sharpening", arXiv 2506.02355, EMNLP 2025).

GRPO reinforces the correct samples the policy already likes most ("rank bias"). The unlikeliness
reward lowers the reward of the *likely* correct samples. Within a group of G samples::

    ℓ_i    = log π_old(y_i|x) / |y_i|      (per-token mean of the sampling policy's log-probs)
    rank_i = position of ℓ_i in ascending order among the group's correct samples
             (0 = the least likely correct sample; ties broken by sample order)
    r̃_i    = r_i · (1 − λ · rank_i / G)
    A_i    = (r̃_i − mean_g r̃) / (std_g r̃ + 1e-4)   (GRPO's normalisation; ``std_normalize``)

so the least likely correct sample keeps its full reward and the most likely one of c correct samples
gets ``1 − λ(c−1)/G``. Incorrect samples keep ``r = 0``. Samples are ranked by likelihood under the
sampling policy, never by reward. λ = 0.25 is the paper's (and the α-DPG paper's) rank penalty.

Details we took from the authors' released code (github.com/AndreHe02/rewarding-unlikely-release,
``RayLeanTrainer._compute_advantages``): the likelihood is the per-token *mean* log-prob
(``logprob_norm="mean"``; "sum" ranks by the full sequence log-prob), and the std normalisation.
The released code ranks all G samples (correct or not); ``rank_over="all"`` reproduces that, the
default ``"correct"`` ranks among correct samples only, so the least likely correct sample is never
penalised whatever the wrong samples' likelihoods. Correct: :func:`~lit_alpha.verifiers.base.is_correct`.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from lit_alpha.batch import ObjectiveInputs, masked_seq_sum
from lit_alpha.objectives.base import group_view, masked_mean
from lit_alpha.objectives.grpo import GRPO
from lit_alpha.verifiers.base import is_correct

RANK_OVER = ("correct", "all")
LOGPROB_NORMS = ("mean", "sum")


def sequence_logprob(logprobs: Tensor, mask: Tensor, norm: str) -> Tensor:
    """``Σ_t log π`` ("sum") or its per-token mean ("mean") over completion tokens.  # [N]"""
    mask = mask.to(logprobs.dtype)
    total = masked_seq_sum(logprobs, mask)  # [N] (padding counts 0 even where it holds −∞)
    return total if norm == "sum" else total / mask.sum(-1).clamp_min(1.0)


class GRPOUnlikely(GRPO):
    """GRPO on rewards scaled by ``1 − λ·rank/G``, rank 0 for the least likely correct sample.

    Args:
        rank_penalty: λ, the reward of the c-th most unlikely correct sample is ``1 − λ·(c−1)/G``.
        rank_over: "correct" (rank among correct samples) or "all" (among all G, the released code).
        logprob_norm: rank by the per-token "mean" log-prob (released code) or the "sum".
        std_normalize: divide advantages by the group's (unbiased) std of the shaped rewards; on by
            default here (the released code).
        **grpo: GRPO's other arguments (``beta``, ``clip_eps``, ``clip_eps_high``, ``aggregation``,
            ``normalizer``), forwarded by keyword.
    """

    def __init__(self, rank_penalty: float = 0.25, rank_over: str = "correct", logprob_norm: str = "mean",
                 std_normalize: bool = True, **grpo: Any) -> None:
        super().__init__(std_normalize=std_normalize, **grpo)
        if not 0.0 <= rank_penalty <= 1.0:
            raise ValueError(f"rank_penalty must be in [0, 1], got {rank_penalty}")
        if rank_over not in RANK_OVER:
            raise ValueError(f"rank_over must be one of {RANK_OVER}, got {rank_over!r}")
        if logprob_norm not in LOGPROB_NORMS:
            raise ValueError(f"logprob_norm must be one of {LOGPROB_NORMS}, got {logprob_norm!r}")
        self.rank_penalty, self.rank_over, self.logprob_norm = float(rank_penalty), rank_over, logprob_norm

    def ranks(self, inputs: ObjectiveInputs) -> Tensor:
        """Likelihood rank of each sample within its group, 0 = least likely.  # [N] long"""
        lp = sequence_logprob(inputs.old_logprobs.detach().double(), inputs.mask, self.logprob_norm)  # [N]
        lp = torch.nan_to_num(lp, nan=0.0)
        if self.rank_over == "correct":  # wrong samples sort after every correct one
            lp = torch.where(is_correct(inputs.rewards.detach()), lp, torch.inf)
        key = group_view(lp, inputs.group_ids)  # [B, G]
        order = key.argsort(dim=1, stable=True)  # [B, G] ascending likelihood
        return order.argsort(dim=1, stable=True).reshape(-1)  # [N] rank of each sample

    def shaped_rewards(self, inputs: ObjectiveInputs) -> tuple[Tensor, dict[str, Tensor]]:
        dtype = inputs.logprobs.dtype
        size = group_view(inputs.rewards, inputs.group_ids).shape[1]
        r = inputs.rewards.detach().to(dtype)  # [N]
        scale = 1.0 - self.rank_penalty * self.ranks(inputs).to(dtype) / size  # [N] in (1−λ, 1]
        shaped = r * scale  # [N]
        correct = is_correct(r)
        metrics = {
            "shaped_reward_mean": shaped.mean(),
            # mean scale on correct samples: how much of the reward the rank penalty removed
            "unlikely_scale_mean": masked_mean(scale, correct) if bool(correct.any()) else torch.ones(()),
        }
        return shaped, metrics

"""GRPO-Pass@k: advantages that optimise the best of k samples instead of each sample.

Two modes, both plugged into GRPO's clipped surrogate (``clip_eps``, ``beta``, ``aggregation``):

* ``mode="best"`` — the baseline of the α-DPG paper (arXiv 2512.05962, "GRPO-Pass@k: only the best
  sample of a group gets an advantage"): the max-reward leave-one-out gradient of the group's best
  reward. With the group's rewards sorted ``r_(1) ≥ r_(2) ≥ …``::

      A_best = (r_(1) − r_(2)) / (std_g(r) + 1e-4),   A_i = 0 for every other sample

  (``std_g`` the unbiased group std as in GRPO; without ``std_normalize`` no division). Ties at the top
  give ``A = 0`` to everyone; a group of one gets 0. For binary rewards only a group with exactly one
  correct sample moves. The normalisation by the group std is our reading of "normalised".
* ``mode="analytic"`` — the analytic pass@k advantage of Chen et al., "Pass@k Training for Adaptively
  Balancing Exploration and Exploitation of Large Reasoning Models" (arXiv 2508.10751, §3): with N
  samples of which N_neg are wrong (correct: :func:`~lit_alpha.verifiers.base.is_correct`)::

      R̄   = 1 − C(N_neg, k) / C(N, k)                      (expected pass@k of a random k-subset)
      σ   = sqrt(R̄ (1 − R̄))
      A⁺  = (1 − R̄) / σ                                   (correct samples)
      A⁻  = (1 − R̄ − C(N_neg − 1, k − 1) / C(N − 1, k − 1)) / σ   (wrong samples)

  ``σ = 0`` (every k-subset passes, or none does) gives ``A = 0``; without ``std_normalize`` the ``/σ``
  is dropped. k = 1 recovers GRPO with the population std. Requires ``k ≤ G``.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from lit_alpha.batch import ObjectiveInputs
from lit_alpha.objectives.base import group_view
from lit_alpha.objectives.grpo import GRPO
from lit_alpha.verifiers.base import is_correct

MODES = ("best", "analytic")


def passk_advantage_table(n: int, k: int, normalize: bool = True) -> tuple[list[float], list[float], list[float]]:
    """``(R̄, A⁺, A⁻)`` indexed by ``N_neg = 0 … n`` (exact integer binomials, then floats)."""
    total = math.comb(n, k)
    mean, pos, neg = [], [], []
    for n_neg in range(n + 1):
        r_bar = 1.0 - math.comb(n_neg, k) / total
        sigma = math.sqrt(max(0.0, r_bar * (1.0 - r_bar)))
        drop = math.comb(n_neg - 1, k - 1) / math.comb(n - 1, k - 1) if n_neg >= 1 else 0.0
        a_pos, a_neg = 1.0 - r_bar, 1.0 - r_bar - drop
        if normalize:
            a_pos, a_neg = (a_pos / sigma, a_neg / sigma) if sigma > 0 else (0.0, 0.0)
        mean.append(r_bar)
        pos.append(a_pos)
        neg.append(a_neg)
    return mean, pos, neg


class GRPOPassAtK(GRPO):
    """GRPO whose advantages target pass@k (see the module docstring for both modes).

    Args:
        k: the k of pass@k (``mode="analytic"``; must not exceed the group size).
        mode: "best" (only the group's best sample gets ``r_(1) − r_(2)``) or "analytic" (Chen et al.).
        std_normalize: divide by the group std ("best") or by σ ("analytic"); on by default here.
        **grpo: GRPO's other arguments (``beta``, ``clip_eps``, ``clip_eps_high``, ``aggregation``,
            ``normalizer``), forwarded by keyword.
    """

    def __init__(self, k: int = 4, mode: str = "best", std_normalize: bool = True, **grpo: Any) -> None:
        super().__init__(std_normalize=std_normalize, **grpo)
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        self.k, self.mode = int(k), mode

    def advantages(self, inputs: ObjectiveInputs) -> tuple[Tensor, dict[str, Tensor]]:
        dtype = inputs.logprobs.dtype
        r = group_view(inputs.rewards.detach().to(dtype), inputs.group_ids)  # [B, G]
        metrics: dict[str, Tensor] = {}
        if self.mode == "best":
            adv = self._best(r)
            metrics["passk_active_frac"] = (adv != 0).any(1).to(dtype).mean()
        else:
            adv, r_bar = self._analytic(r)
            metrics["passk_expected"] = r_bar.mean()  # mean over groups of R̄ = unbiased pass@k
        return adv.reshape(-1), metrics

    def _best(self, r: Tensor) -> Tensor:
        """``A = r_(1) − r_(2)`` on the first argmax of each group, 0 elsewhere.  # [B, G]"""
        size = r.shape[1]
        adv = torch.zeros_like(r)  # [B, G]
        if size < 2:
            return adv
        top2 = r.topk(2, dim=1).values  # [B, 2]
        gap = top2[:, 0] - top2[:, 1]  # [B] ≥ 0
        if self.std_normalize:
            gap = gap / (r.std(1) + 1e-4)
        best = r.argmax(1, keepdim=True)  # [B, 1]
        return adv.scatter(1, best, gap[:, None])

    def _analytic(self, r: Tensor) -> tuple[Tensor, Tensor]:
        """Chen et al.'s closed form; returns advantages ``[B, G]`` and ``R̄`` per group ``[B]``."""
        size = r.shape[1]
        if self.k > size:
            raise ValueError(f"GRPOPassAtK: k={self.k} exceeds the group size {size} (data.n_samples)")
        mean, pos, neg = (torch.tensor(t, dtype=r.dtype, device=r.device)
                          for t in passk_advantage_table(size, self.k, self.std_normalize))  # [G+1] each
        correct = is_correct(r)  # [B, G]
        n_neg = (~correct).sum(1)  # [B]
        adv = torch.where(correct, pos[n_neg][:, None], neg[n_neg][:, None])  # [B, G]
        return adv, mean[n_neg]

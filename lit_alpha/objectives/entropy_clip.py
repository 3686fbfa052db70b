"""GRPO with entropy-ratio clipping (ERC; Su et al., "Entropy Ratio Clipping as a Soft Global Constraint
for Stable Reinforcement Learning", arXiv 2512.05591).

PPO's ratio clip bounds the change of the *sampled* token's probability only; ERC also bounds the
change of the whole next-token distribution through its entropy. Per completion token t::

    H_θ(t)   = −Σ_v π_θ(v|s_t) log π_θ(v|s_t)          (full vocabulary, current policy)
    H_old(t) = the same under the sampling policy π_old (recorded by the sampler)
    ρ^H_t    = (H_θ(t) + δ) / (H_old(t) + δ),   δ = 1e-6
    I_t      = 1[1 − ε_low < ρ^H_t < 1 + ε_high]
    ℓ_t      = −I_t · min(ρ_t A, clip(ρ_t, 1−ε, 1+ε_high^PPO) A) + β·k3_t

i.e. tokens whose entropy ratio leaves the band get no policy gradient (the token still counts in
the aggregation's denominator, like a PPO-clipped token); GRPO's ratio clip and KL term are kept.
Defaults ε_low = ε_high = 0.05 (band (0.95, 1.05)). δ is ours: it makes a token that is (nearly)
deterministic under both policies have ratio ≈ 1 instead of 0/0.

With one optimizer step per fresh batch π_θ = π_old at the step, so ρ^H ≈ 1 up to numerics and ERC
gates nothing; it bites with stale samples or several updates per batch (the paper's setting).
The new entropy is computed in the training forward in chunks (``needs_entropy``), the old one by
the sampler, both without gradient.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from lit_alpha.batch import ObjectiveInputs
from lit_alpha.objectives.base import masked_mean
from lit_alpha.objectives.grpo import GRPO

_DELTA = 1e-6


class GRPOEntropyRatioClip(GRPO):
    """GRPO whose tokens get no policy gradient when ``H_θ/H_old`` leaves ``(1 − ε_low, 1 + ε_high)``.

    Args:
        erc_low: ε_low of the entropy-ratio band.
        erc_high: ε_high of the entropy-ratio band.
        **grpo: GRPO's arguments (``beta``, ``std_normalize``, ``clip_eps`` and ``clip_eps_high`` of the
            probability-ratio clip, ``aggregation``, ``normalizer``), forwarded by keyword.
    """

    needs_entropy = True

    def __init__(self, erc_low: float = 0.05, erc_high: float = 0.05, **grpo: Any) -> None:
        super().__init__(**grpo)
        if not (0 < erc_low < 1 and erc_high > 0):
            raise ValueError(f"need 0 < erc_low < 1 and erc_high > 0, got {erc_low}, {erc_high}")
        self.erc_low, self.erc_high = float(erc_low), float(erc_high)

    def entropy_ratio(self, inputs: ObjectiveInputs) -> Tensor:
        """``(H_θ + δ)/(H_old + δ)`` per token.  # [N, T]"""
        if inputs.entropy is None or inputs.old_entropy is None:
            raise ValueError(
                "GRPOEntropyRatioClip needs inputs.entropy (the trainer computes it because "
                "needs_entropy is True) and inputs.old_entropy (from a sampler that records entropies, "
                "e.g. HFSampler)"
            )
        new = inputs.entropy.detach().double().clamp_min(0.0)  # [N, T]
        old = inputs.old_entropy.detach().double().clamp_min(0.0)  # [N, T]
        return torch.nan_to_num((new + _DELTA) / (old + _DELTA), nan=1.0)

    def token_gate(self, inputs: ObjectiveInputs) -> tuple[Tensor | None, dict[str, Tensor]]:
        ratio = self.entropy_ratio(inputs)  # [N, T]
        keep = (ratio > 1.0 - self.erc_low) & (ratio < 1.0 + self.erc_high)  # [N, T] bool
        mask = inputs.mask > 0
        metrics = {
            "entropy_ratio_clip_frac": masked_mean((~keep).double(), mask),
            "entropy_ratio_mean": masked_mean(ratio, mask),
            "entropy_old": masked_mean(inputs.old_entropy.detach().double(), mask),
        }
        return keep, metrics

"""GRPO with differential smoothing (Gai, Zeng, Zhang & Raghunathan, "Differential Smoothing Mitigates
Sharpening and Improves LLM Reasoning", arXiv 2511.19942).

The paper's observation: a diversity fix only needs to act on *correct* trajectories; it smooths the
policy on correct samples (an entropy-like bonus) and keeps sharpening on incorrect ones. After GRPO's
group-normalised advantage ``A_i``, with ``ℓ_i`` the sampling policy's log-likelihood of ``y_i``::

    A'_i = A_i − γ_p · ℓ_i    if y_i is correct   (ℓ ≤ 0: the less likely, the larger the bonus)
    A'_i = A_i + γ_n · ℓ_i    if y_i is incorrect (the less likely, the larger the penalty)

with ``γ_p, γ_n ≥ 0`` and correct as :func:`~lit_alpha.verifiers.base.is_correct`. The result enters
GRPO's clipped surrogate unchanged. ``−ℓ`` is a one-sample estimate of the entropy, so ``γ_p`` acts like
an entropy bonus restricted to correct samples.

Normalisation of ℓ (our choice, ``logprob_norm``): the per-token mean ``ℓ = Σ_t log π_old / |y|`` by
default. With the sum, ``−γ_p·ℓ`` grows linearly with length and would pay correct answers for being
long (a length bias absent from the verifier's reward), and γ would need retuning whenever the
completion budget changes; the mean keeps the term on the scale of a per-token entropy, comparable
to the O(1) advantages whatever the length. "sum" (the sequence log-likelihood of the paper's
analysis) stays available. The defaults γ_p = 0.1, γ_n = 0.05 are ours.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from lit_alpha.batch import ObjectiveInputs
from lit_alpha.objectives.grpo import GRPO
from lit_alpha.objectives.unlikeliness import LOGPROB_NORMS, sequence_logprob
from lit_alpha.verifiers.base import is_correct

MIN_TOKEN_LOGPROB = -1e3
"""Floor of each token's log π_old in ℓ: a sampled token below e^{−1000} is no real sample (float32
cannot even represent its probability), and without a floor ℓ = −∞ (or −1e30) would make the
advantage infinite; with it the term stays within γ·1e3 per token."""


class GRPODifferentialSmoothing(GRPO):
    """GRPO whose advantages get ``−γ_p·ℓ`` on correct and ``+γ_n·ℓ`` on incorrect samples.

    Args:
        gamma_p: γ_p ≥ 0, the smoothing weight on correct samples.
        gamma_n: γ_n ≥ 0, the sharpening weight on incorrect samples.
        logprob_norm: ℓ as the per-token "mean" log-prob (default) or the "sum" over the sequence.
        **grpo: GRPO's arguments (``beta``, ``std_normalize``, applied before the smoothing term,
            ``clip_eps``, ``clip_eps_high``, ``aggregation``, ``normalizer``), forwarded by keyword.
    """

    def __init__(self, gamma_p: float = 0.1, gamma_n: float = 0.05, logprob_norm: str = "mean",
                 **grpo: Any) -> None:
        super().__init__(**grpo)
        if not (gamma_p >= 0 and gamma_n >= 0):
            raise ValueError(f"gamma_p and gamma_n must be >= 0, got {gamma_p}, {gamma_n}")
        if logprob_norm not in LOGPROB_NORMS:
            raise ValueError(f"logprob_norm must be one of {LOGPROB_NORMS}, got {logprob_norm!r}")
        self.gamma_p, self.gamma_n, self.logprob_norm = float(gamma_p), float(gamma_n), logprob_norm

    def advantages(self, inputs: ObjectiveInputs) -> tuple[Tensor, dict[str, Tensor]]:
        adv, metrics = super().advantages(inputs)  # [N] GRPO advantage
        dtype = adv.dtype
        old = inputs.old_logprobs.detach().to(dtype).clamp_min(MIN_TOKEN_LOGPROB)  # [N, T]
        ell = sequence_logprob(old, inputs.mask, self.logprob_norm)  # [N]
        correct = is_correct(inputs.rewards.detach())  # [N]
        term = torch.where(correct, -self.gamma_p * ell, self.gamma_n * ell)  # [N]
        metrics["smoothing_term_mean"] = term.mean()
        metrics["grpo_advantage_mean"] = adv.mean()
        return adv + term, metrics

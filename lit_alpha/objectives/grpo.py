"""GRPO with a PPO-clipped token-level surrogate and an optional k3 KL penalty to the base model.

Advantage (group of one prompt): ``A_i = r_i − mean_g(r)``, optionally ``/ (std_g(r) + 1e-4)``
(``std_normalize``; the unbiased std, as in TRL; 0 for groups of one). Per completion token::

    ρ_t  = exp(log π_θ(y_t) − log π_old(y_t))
    k3_t = exp(log π_base − log π_θ) − (log π_base − log π_θ) − 1      (Schulman's KL(π_θ‖π_base))
    ℓ_t  = −min(ρ_t·A, clip(ρ_t, 1−ε, 1+ε_high)·A) + β·k3_t

``bias_correction_kl`` (off by default) multiplies the KL term by the same ratio, ``β·ρ_t·k3_t``, as TRL's
``GRPOConfig.use_bias_correction_kl`` (``trl/trainer/grpo_trainer.py``, ``_compute_loss``:
``per_token_kl = per_token_kl * coef_1`` with ``coef_1 = exp(per_token_logps − old_per_token_logps)``,
token-level, *not* detached; off by default in TRL too, citing DeepSeek-V3.2, arXiv 2512.02556). k3 is
an estimate of KL(π_θ‖π_base) from samples of π_old; the ratio makes it an importance-sampled one, so its
gradient also counts how π_θ moves the sampling distribution. With one optimizer step per fresh batch
ρ = 1 in value, so the loss and the logged ``kl`` are unchanged and only the gradient differs: per token,
``β·(∂k3 + k3·∂log π_θ)`` instead of ``β·∂k3``. The logged ``kl`` is the term the loss uses (corrected when
the option is on), as TRL logs it. With the option off the KL term is exactly TRL's with the option off.

Aggregation: "constant" ``Σ_{i,t} ℓ / (N·C)`` (Dr. GRPO, default), "token" the mean over all completion
tokens of the batch (DAPO), "sequence" the mean over sequences of per-sequence token means (GRPO).
Both log-ratios are clamped to ±20 before ``exp`` so that broken inputs give a large finite value, not
inf (as verl does). Two hooks let variants reuse all of this: :meth:`GRPO.shaped_rewards` (the rewards
the group normalisation sees, e.g. the unlikeliness reward) and :meth:`GRPO.token_gate` (a per-token
0/1 gate on the surrogate, e.g. entropy-ratio clipping); subclasses may also post-process
:meth:`GRPO.advantages` (differential smoothing) or replace it (Pass@k). A variant's constructor names
only its own arguments and forwards GRPO's as ``**grpo`` (``super().__init__(**grpo)``): jsonargparse
follows the forwarding, so ``--model.objective.help`` and ``--print_config`` still list (and document)
every GRPO field. With one optimizer step
per fresh batch ρ = 1 and, with β=0 and "constant", the gradient is REINFORCE's with a group-mean
baseline: ``∂L/∂log π_θ(y_{i,t}) = −A_i / (N·C)``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from lit_alpha.batch import ObjectiveInputs
from lit_alpha.objectives.base import Objective, group_view

AGGREGATIONS = ("constant", "token", "sequence")
_MAX_LOG_RATIO = 20.0


class GRPO(Objective):
    """Group-relative policy optimisation (Dr. GRPO by default: no std, constant normaliser).

    Args:
        beta: weight of the per-token k3 KL(π_θ‖π_base) penalty.
        bias_correction_kl: multiply each token's k3 by its ratio ρ_t = π_θ/π_old (gradient through
            both), TRL's ``use_bias_correction_kl``; off: plain k3 (see the module docstring).
        std_normalize: divide advantages by the group's reward std (original GRPO).
        clip_eps: ε, the lower clip ``1 − ε`` of the ratio (and the upper one unless ``clip_eps_high``).
        clip_eps_high: ε_high for the upper clip ``1 + ε_high`` (DAPO's clip-higher); None: ε.
        aggregation: "constant", "token" or "sequence" (see the module docstring).
        normalizer: the constant C of the "constant" aggregation.
    """

    def __init__(
        self,
        beta: float = 0.0,
        std_normalize: bool = False,
        clip_eps: float = 0.2,
        clip_eps_high: float | None = None,
        aggregation: str = "constant",
        normalizer: float = 1024.0,
        bias_correction_kl: bool = False,
    ) -> None:
        super().__init__(normalizer)
        if not beta >= 0:
            raise ValueError(f"beta must be >= 0, got {beta}")
        if not 0 < clip_eps < 1:
            raise ValueError(f"clip_eps must be in (0, 1), got {clip_eps}")
        if clip_eps_high is not None and not clip_eps_high > 0:
            raise ValueError(f"clip_eps_high must be > 0, got {clip_eps_high}")
        if aggregation not in AGGREGATIONS:
            raise ValueError(f"aggregation must be one of {AGGREGATIONS}, got {aggregation!r}")
        self.beta = float(beta)
        self.std_normalize = bool(std_normalize)
        self.clip_eps = float(clip_eps)
        self.clip_eps_high = float(clip_eps if clip_eps_high is None else clip_eps_high)
        self.aggregation = aggregation
        self.bias_correction_kl = bool(bias_correction_kl)

    @property
    def needs_base(self) -> bool:
        """π_base enters the loss only through the KL penalty: β = 0 skips the base forward."""
        return self.beta > 0

    def shaped_rewards(self, inputs: ObjectiveInputs) -> tuple[Tensor, dict[str, Tensor]]:
        """The per-sample rewards ``[N]`` that the group normalisation sees (the verifier's, here)."""
        return inputs.rewards.detach().to(inputs.logprobs.dtype), {}

    def advantages(self, inputs: ObjectiveInputs) -> tuple[Tensor, dict[str, Tensor]]:
        shaped, metrics = self.shaped_rewards(inputs)  # [N]
        r = group_view(shaped, inputs.group_ids)  # [B, G]
        adv = r - r.mean(1, keepdim=True)  # [B, G]
        if self.std_normalize:
            std = r.std(1, keepdim=True) if r.shape[1] > 1 else torch.zeros_like(adv)  # [B, 1]
            adv = adv / (std + 1e-4)
        return adv.reshape(-1), metrics

    def token_gate(self, inputs: ObjectiveInputs) -> tuple[Tensor | None, dict[str, Tensor]]:
        """An optional 0/1 gate ``[N, T]`` on each token's surrogate (0: no policy gradient there)."""
        return None, {}

    def loss(self, inputs: ObjectiveInputs, advantages: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        mask = inputs.mask.to(inputs.logprobs.dtype)  # [N, T]
        pad = mask <= 0  # [N, T]; zero padded positions so that garbage there cannot make NaN
        logp = inputs.logprobs.masked_fill(pad, 0.0)  # [N, T] with grad
        old = inputs.old_logprobs.detach().to(logp.dtype).masked_fill(pad, 0.0)  # [N, T]
        a = advantages.detach().to(logp.dtype)[:, None]  # [N, 1]

        ratio = (logp - old).clamp(-_MAX_LOG_RATIO, _MAX_LOG_RATIO).exp()  # [N, T]
        lo, hi = 1.0 - self.clip_eps, 1.0 + self.clip_eps_high
        surrogate = torch.minimum(ratio * a, ratio.clamp(lo, hi) * a)  # [N, T]
        gate, gate_metrics = self.token_gate(inputs)  # [N, T] 0/1 or None
        if gate is not None:
            surrogate = surrogate * gate.detach().to(surrogate.dtype)
        per_token = -surrogate  # [N, T]
        k3 = None
        if inputs.base_logprobs is not None:  # always there when β > 0 (needs_base)
            base = inputs.base_logprobs.detach().to(logp.dtype).masked_fill(pad, 0.0)  # [N, T]
            delta = (base - logp).clamp(-_MAX_LOG_RATIO, _MAX_LOG_RATIO)  # [N, T] log π_base/π_θ
            k3 = delta.exp() - delta - 1.0  # [N, T] ≥ 0
            if self.bias_correction_kl:  # TRL's use_bias_correction_kl: ρ_t·k3_t, gradient through both
                k3 = ratio * k3  # [N, T] ≥ 0, finite (both factors come from clamped log-ratios)
            per_token = per_token + self.beta * k3
        elif self.beta > 0:
            raise ValueError("GRPO with beta > 0 needs base_logprobs")

        n_tokens = mask.sum().clamp_min(1.0)
        if self.aggregation == "constant":
            loss = (per_token * mask).sum() / (mask.shape[0] * self.normalizer)
        elif self.aggregation == "token":
            loss = (per_token * mask).sum() / n_tokens
        else:
            loss = ((per_token * mask).sum(-1) / mask.sum(-1).clamp_min(1.0)).mean()

        with torch.no_grad():
            clipped = ((ratio > hi) & (a > 0)) | ((ratio < lo) & (a < 0))  # [N, T] clip active
            metrics = {"clip_frac": (clipped.to(mask.dtype) * mask).sum() / n_tokens, **gate_metrics}
            if k3 is not None:
                metrics["kl"] = (k3 * mask).sum() / n_tokens
        return loss, metrics

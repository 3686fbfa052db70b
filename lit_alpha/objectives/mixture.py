"""A mixture proposal for α-DPG: lit_alpha's extension, not in the paper.

The paper's estimator (:class:`~lit_alpha.objectives.alpha_dpg.AlphaDPG`) weights samples of π_θ only.
Once π_θ has stopped visiting some correct answers, no sample of it carries them, although the target
``p ∝ π_base·v`` still puts mass there. π_base's verified samples are exact samples of that target, so
:class:`MixtureAlphaDPG` asks the rollout for ``base_samples`` K of them per prompt: each training group
then holds G samples of π_θ followed by K samples of π_base (the layout of
:func:`lit_alpha.data.mixture.join_groups`), i.e. N = G+K stratified draws of

    q = λ·π_θ + (1−λ)·π_base,   λ = G/N      (balance-heuristic weights).

Every expectation over π_θ in α-DPG becomes one over q with the weight ``ρ = π_θ/q`` (≤ 1/λ):

* ``ẑ = min(1, mean_i[v_i·π_base/q])`` (the paper's step 2 with q for π_θ);
* ``log(p/π_θ)`` as in step 3 (so the pseudo-reward R of step 4 is unchanged);
* the weighted pseudo-reward ``S_i = ρ_i·R_i``, clipped above at M (for K = 0, ρ = 1 and this is the
  paper's clip); computed in log space: ``S = exp(min(log ρ + (1−α)·log(p/π), log(M + ρ))) − ρ``;
  at α = 1, ``S = ρ·(1[v>0] − 1)``;
* the advantage ``A_i = S_i − ρ_i·mean_{j≠i} S_j``, a leave-one-out baseline of ``E_π[R] = E_q[ρR]``,
  which keeps the estimator of the on-policy gradient unbiased;
* the same REINFORCE loss over all N rows.

The π_base rows carry the correct answers the policy has stopped visiting; their weight
``ρ·(p/π)^{1−α} = π^α p^{1−α}/q`` is bounded. Only ``scale="released"`` is supported. The diagnostics are
α-DPG's, over all N rows (``ess_frac``: the ESS of ``v·π_base/q``); training metrics of the module
(``train/reward_mean`` ...) are also over all N rows.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from lit_alpha.batch import ObjectiveInputs
from lit_alpha.objectives.alpha_dpg import AlphaDPG
from lit_alpha.objectives.base import group_view, leave_one_out_baseline


class MixtureAlphaDPG(AlphaDPG):
    """α-DPG on groups of G π_θ samples and K π_base samples, weighted against ``q = λπ_θ + (1−λ)π_base``.

    lit_alpha's extension of the paper's estimator (see the module docstring). The rollout draws the K
    π_base samples because this objective asks for them (:attr:`base_samples`); they need the HF sampler.

    Args:
        base_samples: K ≥ 1, the π_base samples added to each training group after its G policy samples.
        **alpha_dpg: AlphaDPG's arguments (``alpha``, ``clip``, ``z_default``, ``normalizer``; ``scale``
            must be "released"), forwarded by keyword.
    """

    def __init__(self, base_samples: int = 8, **alpha_dpg: Any) -> None:
        super().__init__(**alpha_dpg)
        if not base_samples >= 1:
            raise ValueError(f"base_samples must be >= 1, got {base_samples}")
        if self.scale != "released":
            raise ValueError(f"scale: MixtureAlphaDPG supports scale released only, got {self.scale!r}")
        self.base_samples = int(base_samples)

    def log_proposal(self, inputs: ObjectiveInputs) -> Tensor:
        """``log q(y) = log(λπ_θ(y) + (1−λ)π_base(y))`` per sample ``[N]``, float64, ``λ = G/(G+K)``."""
        size = group_view(inputs.rewards, inputs.group_ids).shape[1]  # G + K
        if size <= self.base_samples:
            raise ValueError(f"base_samples: groups of {size} rows cannot hold {self.base_samples} π_base "
                             f"samples after at least one policy sample")
        lam = (size - self.base_samples) / size
        lp = inputs.seq_logprobs.detach().double()  # [N]
        lp_base = inputs.seq_base_logprobs.detach().double()  # [N]
        return torch.logaddexp(lp + math.log(lam), lp_base + math.log1p(-lam))

    def log_rho(self, inputs: ObjectiveInputs) -> Tensor:
        """``log ρ = log π_θ − log q`` per sample ``[N]`` (≤ −log λ)."""
        return inputs.seq_logprobs.detach().double() - self.log_proposal(inputs)

    def log_weights(self, inputs: ObjectiveInputs) -> Tensor:
        """``log(v·π_base/q)`` per sample ``[N]``; −∞ unless usable."""
        lp_base = inputs.seq_base_logprobs.detach().double()  # [N]
        log_v = inputs.rewards.detach().double().clamp(0.0, 1.0).clamp_min(1e-300).log()  # [N]
        return torch.where(self.usable(inputs), lp_base + log_v - self.log_proposal(inputs), -math.inf)

    def log_ratio(self, inputs: ObjectiveInputs) -> tuple[Tensor, Tensor]:
        """``log(p/π_θ)`` ``[N]`` (the weights are against q: add ``log q − log π_θ``) and ``log ẑ`` ``[B]``."""
        log_w = self.log_weights(inputs)  # [N] log v·π_base/q
        log_z = self.log_z(inputs, log_w)  # [B]
        log_w = log_w + self.log_proposal(inputs) - inputs.seq_logprobs.detach().double()  # [N] log v·π_base/π_θ
        return log_w - log_z.repeat_interleave(log_w.numel() // log_z.numel()), log_z  # [N], [B]

    def pseudo_rewards(self, inputs: ObjectiveInputs) -> tuple[Tensor, Tensor, Tensor]:
        """Weighted pseudo-rewards ``S = ρ·R`` ``[N]`` (clipped above at M), clip hits ``[N]``, ``log ẑ`` ``[B]``."""
        x, log_z = self.log_ratio(inputs)  # [N] log(p/π), [B]
        log_rho = self.log_rho(inputs)  # [N]
        rho = log_rho.exp()
        one_minus_a = 1.0 - self.alpha_at(inputs)
        if one_minus_a > 0:  # S = ρ(p/π)^{1−α} − ρ ≤ M  ⇔  log ρ + (1−α)x ≤ log(M + ρ)
            cap = torch.log(self.clip + rho)
            t = torch.minimum(log_rho + one_minus_a * x, cap)  # [N], −∞ stays −∞
            return t.exp() - rho, t >= cap, log_z
        s = rho * ((x > -math.inf).double() - 1.0)  # α = 1: ρ·(1[v>0] − 1)
        return s, torch.zeros_like(s, dtype=torch.bool), log_z

    def advantages(self, inputs: ObjectiveInputs) -> tuple[Tensor, dict[str, Tensor]]:
        """``A_i = S_i − ρ_i·mean_{j≠i} S_j`` ``[N]`` and α-DPG's diagnostics."""
        s, hit, log_z = self.pseudo_rewards(inputs)  # [N] S = ρR, [N], [B]
        rho = self.log_rho(inputs).exp()  # [N]
        adv = s - rho * leave_one_out_baseline(s, inputs.group_ids)  # [N]
        return adv.to(inputs.logprobs.dtype), self.diagnostics(inputs, s, hit, log_z)

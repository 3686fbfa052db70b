"""α-DPG: fit π_θ to the verifier-filtered base model with Amari's α-divergence.

Target per prompt x: ``p_x(y) = π_base(y|x) · v(y,x) / Z_x`` (``v ∈ [0, 1]``; fractional rewards give
``p ∝ π_base · r``). With n on-policy samples ``y_i ~ π_θ`` of a group (DESIGN §2):

* ``ẑ_x = min(1, mean_i[v_i · π_base(y_i) / π_θ(y_i)])``, or ``z_default`` if no ``v_i > 0``
  (computed as a logsumexp of log-weights: nothing large is ever exponentiated);
* ``log(p/π)(y_i) = lp_base + log v_i − log ẑ_x − lp_θ`` (−∞ when ``v_i = 0``), ``lp_θ`` detached;
* pseudo-reward, ``scale="released"`` (the authors' code, ``−(1−α)·f′_α(t)`` with ``t = π/p``)::

      R = (p/π)^{1−α} − 1 = expm1((1−α)·log(p/π)),   clipped above at M;

  incorrect samples get exactly ``R = −1`` for α < 1. At α = 1 the closed-form limit is used:
  ``R = 1[v > 0] − 1`` (= ``v − 1``, plain REINFORCE, for binary verifiers);
* ``scale="amari"`` (the exact Amari ``−f′_α``, larger by ``1/(1−α)``)::

      R = ((p/π)^{1−α} − 1) / (1−α),   α = 1:  R = log(p/π),   then clipped to [−M, M].

  The lower clip is our choice: incorrect samples have ``R = −1/(1−α)``, which → −∞ as α → 1
  (reverse KL is infinite where π covers p's zeros). Clipping at ``−M`` keeps every value finite,
  equals the exact value for α ≤ 1 − 1/M, and is continuous in α up to and including α = 1
  (incorrect samples sit at −M on [1 − 1/M, 1]). The upper clip also applies to the final R.
* leave-one-out advantage ``A_i = R_i − mean_{j≠i} R_j`` (no std normalisation) and the base class's
  REINFORCE loss ``mean_i[−A_i · Σ_t log π_θ(y_{i,t})] / C``.

α may be a :class:`~lit_alpha.objectives.schedule.Schedule` of the step (an α curriculum, future work
in the paper): ``α_t = schedule(inputs.step, inputs.max_steps)``; every step logs ``alpha``.
Non-binary rewards ``v ∈ [0, 1]`` need nothing special: the target is ``p ∝ π_base · v``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from lit_alpha.batch import ObjectiveInputs
from lit_alpha.objectives.base import Objective, group_view, leave_one_out_baseline, success_fracs
from lit_alpha.objectives.schedule import Schedule
from lit_alpha.verifiers.base import is_correct

SCALES = ("released", "amari")


class AlphaDPG(Objective):
    """α-DPG (Kruszewski et al., arXiv 2512.05962): α=0 forward KL, 0.5 Hellinger, α→1 reverse KL.

    Args:
        alpha: the α of the α-divergence, in [0, 1]; 0 covers (forward KL), 1 seeks modes. A number,
            or a schedule of the step (``class_path: lit_alpha.objectives.schedule.Linear`` ...).
        clip: M, the upper clip of the pseudo-reward (also the lower clip in the "amari" scale).
        z_default: ẑ used for a group with no correct sample.
        scale: "released" (``(p/π)^{1−α} − 1``, the authors' code) or "amari" (that divided by 1−α).
        normalizer: the constant C dividing the summed token log-likelihood.
    """

    def __init__(
        self,
        alpha: float | Schedule = 0.5,
        clip: float = 10.0,
        z_default: float = 1e-4,
        scale: str = "released",
        normalizer: float = 1024.0,
    ) -> None:
        super().__init__(normalizer)
        lo, hi = alpha.bounds() if isinstance(alpha, Schedule) else (float(alpha), float(alpha))
        if not (0.0 <= lo <= 1.0 and 0.0 <= hi <= 1.0):  # also rejects NaN
            raise ValueError(f"alpha must be in [0, 1], got {alpha}")
        if not clip > 0:
            raise ValueError(f"clip must be > 0, got {clip}")
        if not 0.0 < z_default <= 1.0:
            raise ValueError(f"z_default must be in (0, 1], got {z_default}")
        if scale not in SCALES:
            raise ValueError(f"scale must be one of {SCALES}, got {scale!r}")
        self.alpha: float | Schedule = alpha if isinstance(alpha, Schedule) else float(alpha)
        self.clip = float(clip)
        self.z_default = float(z_default)
        self.scale = scale

    def alpha_at(self, inputs: ObjectiveInputs) -> float:
        """α for this batch: the constant, or the schedule at ``inputs.step``."""
        if isinstance(self.alpha, Schedule):
            return min(1.0, max(0.0, self.alpha(inputs.step, inputs.max_steps)))
        return self.alpha

    def log_ratio(self, inputs: ObjectiveInputs) -> tuple[Tensor, Tensor]:
        """``log(p/π_θ)`` per sample ``[N]`` (−∞ when v=0) and ``log ẑ`` per group ``[B]``, float64."""
        lp = inputs.seq_logprobs.detach().double()  # [N] log π_θ(y), no gradient through the reward
        lp_base = inputs.seq_base_logprobs.detach().double()  # [N]
        v = inputs.rewards.detach().double().clamp(0.0, 1.0)  # [N]
        correct = is_correct(v)  # [N] (v > 0: the support of p)
        log_v = torch.where(correct, v.clamp_min(1e-300).log(), -math.inf)  # [N]
        log_w = lp_base + log_v - lp  # [N] log of the importance weight v·π_base/π_θ
        log_w_g = group_view(log_w, inputs.group_ids)  # [B, G]
        size = log_w_g.shape[1]
        log_z = torch.logsumexp(log_w_g, dim=1) - math.log(size)  # [B] log mean_i w_i (−∞ if none)
        any_correct = group_view(correct, inputs.group_ids).any(1)  # [B]
        log_z = torch.where(any_correct, log_z.clamp_max(0.0), math.log(self.z_default))  # [B]
        return log_w - log_z.repeat_interleave(size), log_z  # [N], [B]

    def pseudo_rewards(self, inputs: ObjectiveInputs) -> tuple[Tensor, Tensor, Tensor]:
        """Pseudo-rewards ``R`` ``[N]``, whether each hit the upper clip ``[N]``, ``log ẑ`` ``[B]``."""
        x, log_z = self.log_ratio(inputs)  # [N] log(p/π), [B]
        m = self.clip
        one_minus_a = 1.0 - self.alpha_at(inputs)
        if one_minus_a > 0:
            cap = math.log1p(m)  # expm1(cap) = M: clamp the exponent, never exponentiate a big number
            y = (one_minus_a * x).clamp_max(cap)  # [N], −∞ stays −∞
            r = torch.expm1(y)  # [N] (p/π)^{1−α} − 1 ∈ [−1, M]
            if self.scale == "released":
                return r, y >= cap, log_z
            r = r / one_minus_a  # [N] exact Amari −f′_α
            return r.clamp(-m, m), r >= m, log_z
        if self.scale == "released":  # α = 1: lim (p/π)^{1−α} − 1 = 1[v>0] − 1
            r = (x > -math.inf).double() - 1.0
            return r, torch.zeros_like(r, dtype=torch.bool), log_z
        return x.clamp(-m, m), x >= m, log_z  # α = 1, Amari: log(p/π), −∞ → −M

    def advantages(self, inputs: ObjectiveInputs) -> tuple[Tensor, dict[str, Tensor]]:
        r, hit, log_z = self.pseudo_rewards(inputs)  # [N], [N], [B]
        adv = r - leave_one_out_baseline(r, inputs.group_ids)  # [N]
        metrics = {
            "alpha": torch.tensor(self.alpha_at(inputs)),
            "z_mean": log_z.exp().mean(),
            "pseudo_reward_mean": r.mean(),
            "pseudo_reward_clip_frac": hit.double().mean(),
            **success_fracs(inputs.rewards, inputs.group_ids),
        }
        return adv.to(inputs.logprobs.dtype), metrics

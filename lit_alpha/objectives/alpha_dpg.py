"""α-DPG (Kruszewski et al., arXiv 2512.05962): the paper's estimator, as its released code computes it.

Target per prompt x: ``p_x(y) = π_base(y|x) · v(y,x) / Z_x`` (``v ∈ [0, 1]``; fractional rewards give
``p ∝ π_base · v``). For one group of n on-policy samples ``y_i ~ π_θ(·|x)``, the steps of the design
note (docs/design.md §2), each with the method that computes it:

1. sequence log-probs ``lp_θ(y) = Σ_t log π_θ(y_t|…)`` (``inputs.seq_logprobs``, detached wherever it
   enters a reward) and ``lp_base(y)`` under the frozen initial policy (``inputs.seq_base_logprobs``);
2. :meth:`AlphaDPG.log_z`: ``ẑ_x = min(1, mean_i[v_i · π_base(y_i) / π_θ(y_i)])``, or ``z_default`` if
   no sample is usable (``v_i > 0`` and ``π_base(y_i) > 0``; a group whose correct samples all have
   ``π_base = 0`` is counted in ``unusable_group_frac``), a logsumexp of the log-weights of
   :meth:`AlphaDPG.log_weights`: nothing large is ever exponentiated;
3. :meth:`AlphaDPG.log_ratio`: ``log(p/π)(y_i) = lp_base + log v_i − log ẑ_x − lp_θ`` (−∞ when the
   sample is not usable);
4. :meth:`AlphaDPG.pseudo_rewards`, ``scale="released"`` (the authors' code, ``−(1−α)·f′_α(t)`` with
   ``t = π/p``)::

      R = (p/π)^{1−α} − 1 = expm1((1−α)·log(p/π)),   clipped above at M;

   incorrect samples get exactly ``R = −1`` for α < 1. At α = 1 the closed-form limit is used:
   ``R = 1[v > 0] − 1`` (= ``v − 1``, plain REINFORCE, for binary verifiers).
   ``scale="amari"`` (the exact Amari ``−f′_α``, larger by ``1/(1−α)``)::

      R = ((p/π)^{1−α} − 1) / (1−α),   α = 1:  R = log(p/π),   then clipped to [−M, M].

   The lower clip is our choice: incorrect samples have ``R = −1/(1−α)``, which → −∞ as α → 1
   (reverse KL is infinite where π covers p's zeros). Clipping at ``−M`` keeps every value finite,
   equals the exact value for α ≤ 1 − 1/M, and is continuous in α up to and including α = 1
   (incorrect samples sit at −M on [1 − 1/M, 1]). The upper clip also applies to the final R;
5. :meth:`AlphaDPG.advantages`: the leave-one-out advantage ``A_i = R_i − mean_{j≠i} R_j`` (no std
   normalisation);
6. the base class's REINFORCE loss ``mean_i[−A_i · Σ_t log π_θ(y_{i,t})] / C`` (:meth:`Objective.loss`).

α may be a :class:`~lit_alpha.objectives.schedule.Schedule` of the step (an α curriculum, future work
in the paper): ``α_t = schedule(inputs.step, inputs.max_steps)``; every step logs ``alpha``.

Diagnostics logged with the loss: ``z_mean`` (mean ẑ over groups), ``pseudo_reward_mean``,
``pseudo_reward_clip_frac`` (samples at the upper clip), ``unusable_group_frac`` and ``ess_frac``: per
group with a usable correct sample, the effective sample size of ẑ's importance weights
``w_i = v_i·π_base/π_θ`` over the group size, ``(Σw)²/(n·Σw²)`` ∈ [1/n, 1], averaged (low values mean ẑ
and the pseudo-rewards rest on one or two samples; a step with no such group logs 0, so that resumed and
straight runs log the same series).

lit_alpha's own extension, a mixture proposal whose groups also hold π_base samples, is the subclass
:class:`~lit_alpha.objectives.mixture.MixtureAlphaDPG`; nothing of it is here.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from lit_alpha.batch import ObjectiveInputs
from lit_alpha.objectives.base import Objective, group_view, leave_one_out_baseline
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

    @staticmethod
    def usable(inputs: ObjectiveInputs) -> Tensor:
        """Samples that enter ẑ: correct (``v > 0``) and possible under the base (``π_base(y) > 0``).  # [N]

        A correct sample with ``log π_base = −∞`` (top-k/top-p or masked tokens in the base, fp16
        underflow) has target mass ``p(y) = 0``: it weighs like a wrong sample, and a group whose
        correct samples are all such is a group with no usable correct sample (ẑ = ``z_default``,
        counted in ``unusable_group_frac``)."""
        lp_base = inputs.seq_base_logprobs.detach().double()  # [N]
        return is_correct(inputs.rewards.detach()) & (lp_base > -math.inf)  # NaN compares False

    def log_weights(self, inputs: ObjectiveInputs) -> Tensor:
        """Step 2's summands: ``log(v·π_base/π_θ)`` per sample ``[N]``, float64; −∞ (weight 0, p(y) = 0)
        unless usable, which also avoids −∞ − (−∞) when π_θ(y) underflows too."""
        lp = inputs.seq_logprobs.detach().double()  # [N] log π_θ(y), no gradient through the reward
        lp_base = inputs.seq_base_logprobs.detach().double()  # [N]
        log_v = inputs.rewards.detach().double().clamp(0.0, 1.0).clamp_min(1e-300).log()  # [N]
        return torch.where(self.usable(inputs), lp_base + log_v - lp, -math.inf)

    def log_z(self, inputs: ObjectiveInputs, log_w: Tensor) -> Tensor:
        """Step 2: ``log ẑ`` per group ``[B]`` from the log-weights ``log_w`` ``[N]``: the log of their
        group mean, clamped at 0 (ẑ ≤ 1); ``log z_default`` for a group with no usable sample."""
        log_w_g = group_view(log_w, inputs.group_ids)  # [B, G]
        log_z = torch.logsumexp(log_w_g, dim=1) - math.log(log_w_g.shape[1])  # [B] log mean_i w_i (−∞ if none)
        any_usable = group_view(self.usable(inputs), inputs.group_ids).any(1)  # [B]
        return torch.where(any_usable, log_z.clamp_max(0.0), math.log(self.z_default))  # [B]

    def log_ratio(self, inputs: ObjectiveInputs) -> tuple[Tensor, Tensor]:
        """Step 3: ``log(p/π_θ)`` per sample ``[N]`` (−∞ unless usable) and ``log ẑ`` per group ``[B]``, float64."""
        log_w = self.log_weights(inputs)  # [N] log v·π_base/π_θ
        log_z = self.log_z(inputs, log_w)  # [B]
        return log_w - log_z.repeat_interleave(log_w.numel() // log_z.numel()), log_z  # [N], [B]

    def pseudo_rewards(self, inputs: ObjectiveInputs) -> tuple[Tensor, Tensor, Tensor]:
        """Step 4: pseudo-rewards ``R`` ``[N]``, whether each hit the upper clip ``[N]``, ``log ẑ`` ``[B]``."""
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
        """Step 5: ``A_i = R_i − mean_{j≠i} R_j`` ``[N]`` and the diagnostics."""
        r, hit, log_z = self.pseudo_rewards(inputs)  # [N], [N], [B]
        adv = r - leave_one_out_baseline(r, inputs.group_ids)  # [N]
        return adv.to(inputs.logprobs.dtype), self.diagnostics(inputs, r, hit, log_z)

    # -- diagnostics ---------------------------------------------------------------------------
    def diagnostics(self, inputs: ObjectiveInputs, r: Tensor, hit: Tensor, log_z: Tensor) -> dict[str, Tensor]:
        """The metrics of a step from its pseudo-rewards ``r`` ``[N]``, clip hits ``hit`` ``[N]`` and ``log_z`` ``[B]``."""
        return {
            "alpha": torch.tensor(self.alpha_at(inputs)),
            "z_mean": log_z.exp().mean(),
            "pseudo_reward_mean": r.mean(),
            "pseudo_reward_clip_frac": hit.double().mean(),
            **self.ess(inputs),
            # groups with a correct sample but none the base can produce (ẑ = z_default there)
            "unusable_group_frac": self.unusable_groups(inputs).double().mean(),
        }

    def unusable_groups(self, inputs: ObjectiveInputs) -> Tensor:
        """Groups with a correct sample (``v > 0``) but no usable one (all have ``π_base = 0``).  # [B]"""
        correct = group_view(is_correct(inputs.rewards.detach()), inputs.group_ids).any(1)  # [B]
        return correct & ~group_view(self.usable(inputs), inputs.group_ids).any(1)

    def ess(self, inputs: ObjectiveInputs) -> dict[str, Tensor]:
        """``ess_frac``: mean over groups with a usable correct sample of ``(Σw)²/(n·Σw²)`` (0 if none)."""
        log_w = group_view(self.log_weights(inputs), inputs.group_ids)  # [B, n]
        lse = torch.logsumexp(log_w, dim=1)  # [B]
        usable = torch.isfinite(lse)  # a correct sample with π_base > 0
        if not bool(usable.any()):
            return {"ess_frac": torch.zeros((), dtype=log_w.dtype)}
        log_ess = 2 * lse[usable] - torch.logsumexp(2 * log_w[usable], dim=1)  # [B'] log ESS
        return {"ess_frac": (log_ess.exp() / log_w.shape[1]).mean()}

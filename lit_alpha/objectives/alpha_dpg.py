"""α-DPG: fit π_θ to the verifier-filtered base model with Amari's α-divergence.

Target per prompt x: ``p_x(y) = π_base(y|x) · v(y,x) / Z_x`` (``v ∈ [0, 1]``; fractional rewards give
``p ∝ π_base · r``). With n on-policy samples ``y_i ~ π_θ`` of a group (docs/design.md §2):

* ``ẑ_x = min(1, mean_i[v_i · π_base(y_i) / π_θ(y_i)])``, or ``z_default`` if no sample is usable
  (``v_i > 0`` and ``π_base(y_i) > 0``; a group whose correct samples all have ``π_base = 0`` is
  counted in ``unusable_group_frac``), computed as a logsumexp of log-weights: nothing large is ever
  exponentiated;
* ``log(p/π)(y_i) = lp_base + log v_i − log ẑ_x − lp_θ`` (−∞ when the sample is not usable),
  ``lp_θ`` detached;
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

**Mixture proposal** (``data.base_samples K``, ours, not in the paper): a group then holds G samples of π_θ
and K of π_base (``inputs.from_base``), i.e. N = G+K draws of ``q = λ·π_θ + (1−λ)·π_base``, ``λ = G/N``
(stratified, balance-heuristic weights). Every expectation over π_θ becomes one over q with the weight
``ρ = π_θ/q``: ``ẑ = mean_i[v_i·π_base/q]``, the weighted pseudo-reward ``S_i = ρ_i·R_i`` (clipped above at
M: for K = 0, ρ = 1 and this is the clip above), the advantage ``A_i = S_i − ρ_i·mean_{j≠i} S_j`` (a
leave-one-out baseline of ``E_π[R] = E_q[ρR]``, which keeps the estimator unbiased), and the same
REINFORCE loss over all N rows. The π_base rows are exact target samples, so they carry the correct
answers the policy has stopped visiting; their weight is ``ρ·(p/π)^{1−α} = π^α p^{1−α}/q``, bounded.

``ess_frac``: per group with a usable correct sample, the effective sample size of the target's importance
weights ``w_i = v_i·π_base/q`` over the group size, ``(Σw)²/(N·Σw²)`` ∈ [1/N, 1], averaged; low values mean
ẑ and the pseudo-rewards rest on one or two samples. A step with no such group logs 0 (every step logs
the metric, so that resumed and straight runs log the same series).

α may be a :class:`~lit_alpha.objectives.schedule.Schedule` of the step (an α curriculum, future work
in the paper): ``α_t = schedule(inputs.step, inputs.max_steps)``; every step logs ``alpha``.
Non-binary rewards ``v ∈ [0, 1]`` need nothing special: the target is ``p ∝ π_base · v``.
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

    supports_base_samples = True

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
        log_w = self.log_weights(inputs)  # [N] log v·π_base/q (q = π_θ on-policy), −∞ unless usable
        log_w_g = group_view(log_w, inputs.group_ids)  # [B, G]
        size = log_w_g.shape[1]
        log_z = torch.logsumexp(log_w_g, dim=1) - math.log(size)  # [B] log mean_i w_i (−∞ if none)
        any_usable = group_view(self.usable(inputs), inputs.group_ids).any(1)  # [B]
        log_z = torch.where(any_usable, log_z.clamp_max(0.0), math.log(self.z_default))  # [B]
        if inputs.from_base is not None:  # log_w is against q: log(p/π) = log_w + log q − log π
            lp = inputs.seq_logprobs.detach().double()
            log_w = log_w + self._log_proposal(inputs, lp, inputs.seq_base_logprobs.detach().double()) - lp
        return log_w - log_z.repeat_interleave(size), log_z  # [N], [B]

    @staticmethod
    def usable(inputs: ObjectiveInputs) -> Tensor:
        """Samples that enter ẑ: correct (``v > 0``) and possible under the base (``π_base(y) > 0``).  # [N]

        A correct sample with ``log π_base = −∞`` (top-k/top-p or masked tokens in the base, fp16
        underflow) has target mass ``p(y) = 0``: it weighs like a wrong sample, and a group whose
        correct samples are all such is a group with no usable correct sample (ẑ = ``z_default``,
        counted in ``unusable_group_frac``)."""
        lp_base = inputs.seq_base_logprobs.detach().double()  # [N]
        return is_correct(inputs.rewards.detach()) & (lp_base > -math.inf)  # NaN compares False

    @staticmethod
    def _log_proposal(inputs: ObjectiveInputs, lp: Tensor, lp_base: Tensor) -> Tensor:
        """log q per sample ``[N]``: log π_θ on-policy, ``log(λπ_θ + (1−λ)π_base)`` for a mixture group."""
        if inputs.from_base is None:
            return lp
        g = group_view(inputs.from_base, inputs.group_ids)  # [B, N/B]
        lam = (~g[0]).double().mean().item()  # λ = G/(G+K), the same in every group
        if lam <= 0.0 or lam >= 1.0:
            return lp if lam >= 1.0 else lp_base
        return torch.logaddexp(lp + math.log(lam), lp_base + math.log1p(-lam))

    def log_weights(self, inputs: ObjectiveInputs) -> Tensor:
        """log of the target's importance weight ``v·π_base/q`` per sample ``[N]``; −∞ (weight 0,
        p(y) = 0) unless usable, which also avoids −∞ − (−∞) when π_θ(y) underflows too."""
        lp = inputs.seq_logprobs.detach().double()  # [N] log π_θ(y), no gradient through the reward
        lp_base = inputs.seq_base_logprobs.detach().double()  # [N]
        log_v = inputs.rewards.detach().double().clamp(0.0, 1.0).clamp_min(1e-300).log()  # [N]
        return torch.where(self.usable(inputs), lp_base + log_v - self._log_proposal(inputs, lp, lp_base), -math.inf)

    def mixture_pseudo_rewards(self, inputs: ObjectiveInputs) -> tuple[Tensor, Tensor, Tensor]:
        """Weighted pseudo-rewards ``S = ρ·R`` ``[N]`` (clipped above at M), clip hits ``[N]``, log ẑ ``[B]``."""
        x, log_z = self.log_ratio(inputs)  # [N] log(p/π), [B]
        lp = inputs.seq_logprobs.detach().double()
        log_rho = lp - self._log_proposal(inputs, lp, inputs.seq_base_logprobs.detach().double())  # [N] ≤ −log λ
        rho = log_rho.exp()
        m = self.clip
        one_minus_a = 1.0 - self.alpha_at(inputs)
        if one_minus_a > 0:
            if self.scale == "released":  # S = ρ(p/π)^{1−α} − ρ ≤ M  ⇔  log ρ + (1−α)x ≤ log(M + ρ)
                cap = torch.log(m + rho)
                t = torch.minimum(log_rho + one_minus_a * x, cap)  # [N], −∞ stays −∞
                return t.exp() - rho, t >= cap, log_z
            raise ValueError("objective.scale amari: the mixture proposal (data.base_samples) supports scale released only")
        if self.scale != "released":
            raise ValueError("objective.scale amari: the mixture proposal (data.base_samples) supports scale released only")
        s = rho * ((x > -math.inf).double() - 1.0)  # α = 1: ρ·(1[v>0] − 1)
        return s, torch.zeros_like(s, dtype=torch.bool), log_z

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

    def unusable_groups(self, inputs: ObjectiveInputs) -> Tensor:
        """Groups with a correct sample (``v > 0``) but no usable one (all have ``π_base = 0``).  # [B]"""
        correct = group_view(is_correct(inputs.rewards.detach()), inputs.group_ids).any(1)  # [B]
        return correct & ~group_view(self.usable(inputs), inputs.group_ids).any(1)

    def advantages(self, inputs: ObjectiveInputs) -> tuple[Tensor, dict[str, Tensor]]:
        if inputs.from_base is None:
            r, hit, log_z = self.pseudo_rewards(inputs)  # [N], [N], [B]
            adv = r - leave_one_out_baseline(r, inputs.group_ids)  # [N]
        else:
            r, hit, log_z = self.mixture_pseudo_rewards(inputs)  # [N] S = ρR, [N], [B]
            lp = inputs.seq_logprobs.detach().double()
            rho = (lp - self._log_proposal(inputs, lp, inputs.seq_base_logprobs.detach().double())).exp()
            adv = r - rho * leave_one_out_baseline(r, inputs.group_ids)  # [N]
        metrics = {
            "alpha": torch.tensor(self.alpha_at(inputs)),
            "z_mean": log_z.exp().mean(),
            "pseudo_reward_mean": r.mean(),
            "pseudo_reward_clip_frac": hit.double().mean(),
            **self.ess(inputs),
            # groups with a correct sample but none the base can produce (ẑ = z_default there)
            "unusable_group_frac": self.unusable_groups(inputs).double().mean(),
        }
        return adv.to(inputs.logprobs.dtype), metrics

    def ess(self, inputs: ObjectiveInputs) -> dict[str, Tensor]:
        """``ess_frac``: mean over groups with a usable correct sample of ``(Σw)²/(N·Σw²)`` (0 if none)."""
        log_w = group_view(self.log_weights(inputs), inputs.group_ids)  # [B, N/B]
        lse = torch.logsumexp(log_w, dim=1)  # [B]
        usable = torch.isfinite(lse)  # a correct sample with π_base > 0
        if not bool(usable.any()):
            return {"ess_frac": torch.zeros((), dtype=log_w.dtype)}
        log_ess = 2 * lse[usable] - torch.logsumexp(2 * log_w[usable], dim=1)  # [B'] log ESS
        return {"ess_frac": (log_ess.exp() / log_w.shape[1]).mean()}

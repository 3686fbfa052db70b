"""The Objective contract: typed inputs in, ``(loss, detached metrics)`` out.

Most objectives are REINFORCE-shaped: a per-sequence advantage ``A_i`` (no gradient) times the
sequence log-prob, ``L = mean_i[-A_i · Σ_t log π_θ(y_{i,t})] / C`` with a constant normaliser C
(Dr.GRPO / α-DPG: a constant, not the sequence length, so long and short answers are not reweighted).
A subclass overrides :meth:`advantages` (the pseudo-reward, like f′ in f-DPG), or :meth:`loss`
when it needs token-level terms (ratios, clipping, KL).
"""

from __future__ import annotations

import torch
from torch import Tensor

from lit_alpha.batch import ObjectiveInputs, ObjectiveOutput
from lit_alpha.verifiers.base import is_correct


def group_view(x: Tensor, group_ids: Tensor) -> Tensor:
    """Reshape a per-sample tensor ``[N]`` to ``[num_groups, G]`` (groups contiguous, equal size)."""
    n = x.shape[0]
    num_groups = int(group_ids.max().item()) + 1 if n else 0
    if num_groups == 0 or n % num_groups:
        raise ValueError(f"group_ids: {n} samples do not split into {num_groups} equal groups")
    return x.view(num_groups, n // num_groups)


def leave_one_out_baseline(values: Tensor, group_ids: Tensor) -> Tensor:
    """``b_i = mean_{j≠i} values_j`` within each group (0 for groups of one).  # [N]"""
    g = group_view(values, group_ids)  # [B, G]
    size = g.shape[1]
    if size == 1:
        return torch.zeros_like(values)
    return ((g.sum(1, keepdim=True) - g) / (size - 1)).reshape(-1)


def success_fracs(rewards: Tensor, group_ids: Tensor) -> dict[str, Tensor]:
    """Degenerate-group diagnostics; a sample "succeeds" when it :func:`~lit_alpha.verifiers.base.is_correct`.

    ``zero_success_frac``: fraction of groups with no successful sample (α-DPG falls back to
    ``z_default`` there; GRPO/RLOO get zero advantage). ``all_success_frac``: fraction of groups where
    every sample succeeds. ``multi_success_frac``: fraction of groups with two or more successful
    samples, the only groups where α acts (with one correct sample α-DPG's pseudo-rewards are
    ``G^{1−α} − 1`` and ``−1`` whatever the models say: α only rescales the update).
    """
    ok = group_view(is_correct(rewards.detach()), group_ids)  # [B, G] bool
    return {
        "zero_success_frac": (~ok.any(1)).float().mean(),
        "all_success_frac": ok.all(1).float().mean(),
        "multi_success_frac": (ok.sum(1) >= 2).float().mean(),
    }


def masked_mean(x: Tensor, mask: Tensor) -> Tensor:
    """Mean of ``x`` over positions where ``mask`` is 1 (0 if there are none).  # scalar"""
    mask = mask.to(x.dtype)
    return (x.masked_fill(mask == 0, 0.0) * mask).sum() / mask.sum().clamp_min(1.0)


class Objective:
    """Base class. Subclasses override :meth:`advantages` and, if needed, :meth:`loss`.

    Class attribute ``needs_entropy``: when True the trainer also computes π_θ's per-token
    full-vocabulary entropy in the training forward and passes it as ``inputs.entropy`` (it costs a
    chunked pass over the logits, so only objectives that use it ask for it).

    Args:
        normalizer: the constant C dividing the summed token log-likelihood (1024 in the released
            α-DPG code; set it near the maximum completion length for short tasks).
    """

    needs_entropy: bool = False
    base_samples: int = 0
    """π_base samples per prompt that the rollout adds to each training group, after the policy's
    (K; only :class:`~lit_alpha.objectives.mixture.MixtureAlphaDPG` asks for any)."""
    needs_base: bool = True
    """Does the loss read π_base's log-probs (``inputs.base_logprobs``)? When False the trainer skips
    scoring the samples under the frozen base, a no-grad forward over the whole batch (about a fifth of
    a step), and ``train/kl_to_base`` is not logged. A class attribute, or a property (GRPO: β > 0)."""

    def __init__(self, normalizer: float = 1024.0) -> None:
        if normalizer <= 0:
            raise ValueError(f"normalizer must be > 0, got {normalizer}")
        self.normalizer = float(normalizer)

    def advantages(self, inputs: ObjectiveInputs) -> tuple[Tensor, dict[str, Tensor]]:
        """Per-sequence advantages ``[N]`` (detached) and diagnostics."""
        raise NotImplementedError

    def loss(self, inputs: ObjectiveInputs, advantages: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """REINFORCE with a constant normaliser: ``mean_i[-A_i · Σ_t log π_θ] / C``."""
        loss = -(advantages.detach() * inputs.seq_logprobs).mean() / self.normalizer
        return loss, {}

    def __call__(self, inputs: ObjectiveInputs) -> ObjectiveOutput:
        adv, metrics = self.advantages(inputs)
        adv = adv.detach()
        loss, loss_metrics = self.loss(inputs, adv)
        metrics = {**metrics, **loss_metrics}
        for key, value in success_fracs(inputs.rewards, inputs.group_ids).items():
            metrics.setdefault(key, value)  # degenerate groups are counted here, for every objective
        metrics["loss"] = loss
        metrics["advantage_mean"] = adv.mean()
        metrics["advantage_std"] = adv.std(unbiased=False)
        metrics["reward_mean"] = inputs.rewards.float().mean()
        metrics["logprob_mean"] = (inputs.seq_logprobs / inputs.lengths.clamp_min(1)).mean()
        if inputs.base_logprobs is not None:  # over samples the base can produce (π_base(y) > 0)
            gap = (inputs.seq_logprobs - inputs.seq_base_logprobs).detach()  # [N], +∞ where π_base = 0
            metrics["kl_to_base"] = masked_mean(gap, torch.isfinite(gap))
        entropy = inputs.entropy if inputs.entropy is not None else inputs.old_entropy
        if entropy is not None:  # mean per-token entropy of the policy over completion tokens
            metrics["entropy"] = masked_mean(entropy.detach().float(), inputs.mask)
        return ObjectiveOutput(loss=loss, metrics={k: v.detach().float() for k, v in metrics.items()})

"""RLOO: REINFORCE with a leave-one-out baseline on the raw reward.

Per group of G samples of one prompt, with verifier rewards ``r_i``::

    A_i = r_i − (1/(G−1)) Σ_{j≠i} r_j          (0 for groups of one)
    L   = mean_i[−A_i · Σ_t log π_θ(y_{i,t})] / C   (the base class's REINFORCE loss)

Sources: Kool, van Hoof & Welling, "Buy 4 REINFORCE samples, get a baseline for free!" (ICLR DeepRL
workshop 2019); Ahmadian et al., "Back to Basics: Revisiting REINFORCE-style optimization for learning
from human feedback" (arXiv 2402.14740), the RLOO baseline of the α-DPG paper (arXiv 2512.05962).

It is the α→1 limit of α-DPG for binary verifiers: the released-scale pseudo-reward tends to
``R = v − 1`` and the leave-one-out baseline is shift invariant, so ``A_i`` is identical (tested).
"""

from __future__ import annotations

from torch import Tensor

from lit_alpha.batch import ObjectiveInputs
from lit_alpha.objectives.base import Objective, leave_one_out_baseline


class RLOO(Objective):
    """REINFORCE with the leave-one-out mean reward of the other samples of the prompt as baseline.

    Args:
        normalizer: the constant C dividing the summed token log-likelihood.
    """

    needs_base = False  # the loss reads rewards and π_θ only

    def advantages(self, inputs: ObjectiveInputs) -> tuple[Tensor, dict[str, Tensor]]:
        r = inputs.rewards.detach().to(inputs.logprobs.dtype)  # [N]
        adv = r - leave_one_out_baseline(r, inputs.group_ids)  # [N]
        return adv, {}

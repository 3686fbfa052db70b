"""Online rejection-sampling fine-tuning: NLL on the verified samples of the current policy.

``A_i = 1[v_i ≥ threshold]`` with the base class's REINFORCE loss, so
``L = −Σ_{i: v_i ≥ threshold} Σ_t log π_θ(y_{i,t}) / (N·C)``: forward KL(p‖π_θ) with the policy's own
samples as proposal (unweighted; the offline variant samples the base model instead).
"""

from __future__ import annotations

from torch import Tensor

from lit_alpha.batch import ObjectiveInputs
from lit_alpha.objectives.base import Objective


class RFT(Objective):
    """Rejection-sampling fine-tuning (keep the samples whose reward reaches ``threshold``).

    Args:
        threshold: a sample is kept when its reward is ``>= threshold``.
        normalizer: the constant C dividing the summed token log-likelihood.
    """

    def __init__(self, threshold: float = 1.0, normalizer: float = 1024.0) -> None:
        super().__init__(normalizer)
        self.threshold = float(threshold)

    needs_base = False  # the loss reads rewards and π_θ only

    def advantages(self, inputs: ObjectiveInputs) -> tuple[Tensor, dict[str, Tensor]]:
        keep = (inputs.rewards.detach() >= self.threshold).to(inputs.logprobs.dtype)  # [N] 0/1
        return keep, {"kept_frac": keep.mean()}

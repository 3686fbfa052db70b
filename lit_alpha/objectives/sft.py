"""Supervised fine-tuning: plain NLL on every sequence of the batch (fixed data, no verifier).

``A_i = 1``, so ``L = −Σ_i Σ_t log π_θ(y_{i,t}) / (N·C)`` (the base class's REINFORCE loss).
"""

from __future__ import annotations

import torch
from torch import Tensor

from lit_alpha.batch import ObjectiveInputs
from lit_alpha.objectives.base import Objective


class SFT(Objective):
    """Negative log-likelihood of the given sequences, normalised by the constant C.

    Args:
        normalizer: the constant C dividing the summed token log-likelihood.
    """

    needs_base = False  # the loss reads rewards and π_θ only

    def advantages(self, inputs: ObjectiveInputs) -> tuple[Tensor, dict[str, Tensor]]:
        n = inputs.logprobs.shape[0]
        return torch.ones(n, dtype=inputs.logprobs.dtype, device=inputs.logprobs.device), {}

"""Samplers: n completions per prompt from the *current* policy, with per-token log-probs.
(Scoring given completions under a model, the trainer's forward, is :mod:`lit_alpha.scoring`.)"""

from lit_alpha.sampling.base import Sampler, Samples, SamplingParams
from lit_alpha.sampling.hf import HFSampler

__all__ = ["Sampler", "Samples", "SamplingParams", "HFSampler"]

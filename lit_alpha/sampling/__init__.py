"""Samplers: n completions per prompt from the *current* policy, with per-token log-probs."""

from lit_alpha.sampling.base import Sampler, Samples, SamplingParams
from lit_alpha.sampling.hf import HFSampler
from lit_alpha.sampling.logprobs import token_logprobs

__all__ = ["Sampler", "Samples", "SamplingParams", "HFSampler", "token_logprobs"]

"""Scoring completions under a model: the trainer's (and π_base's) per-token log-prob forward, with
shared prompts run once and padding bucketed away (:mod:`~lit_alpha.scoring.layout`)."""

from lit_alpha.scoring.logprobs import entropy_from_logits, token_logprobs

__all__ = ["token_logprobs", "entropy_from_logits"]

"""A sampler for the Lean end-to-end test: no model here can write Lean, so the real HF sampler runs
(tokens, log-probs, shapes) and its text is replaced by a known mix of answers."""

from __future__ import annotations

from typing import Any, Sequence

import torch

from lit_alpha.sampling import HFSampler, Samples, SamplingParams

ANSWERS = ["  omega\n```", "  sorry\n```", "  omega\n```", "no proof here"]  # ok, cheat, ok, parse


class ScriptedLeanSampler(HFSampler):
    """Row i's completion text becomes ``ANSWERS[i % 4]``: half honest, a quarter ``sorry``, a quarter junk."""

    def sample(self, model: torch.nn.Module, tokenizer: Any, prompts: Sequence[str], n: int,
               params: SamplingParams, generator: torch.Generator | None = None) -> Samples:
        out = super().sample(model, tokenizer, prompts, n, params, generator)
        out.completions = [ANSWERS[i % len(ANSWERS)] for i in range(len(out.completions))]
        return out

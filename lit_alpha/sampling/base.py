"""The Sampler contract.

``sample(model, tokenizer, prompts, n, params, generator)`` returns, for each prompt, n completions
(contiguous: rows ``i*n .. i*n+n-1`` answer prompt i) laid out as ``[left-padded prompt |
right-padded completion]``, with the per-token log-probs of the policy that generated them
(temperature 1, i.e. of π_θ itself, so the trainer's forward pass reproduces them). The model is
passed on every call, so the weights used are always the current ones.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, Sequence

import torch
from torch import Tensor


@dataclass(frozen=True)
class SamplingParams:
    """Generation settings.

    Args:
        temperature: softmax temperature used to draw tokens (log-probs are still those of π_θ).
        top_p: nucleus sampling mass (1.0 = off).
        max_new_tokens: completion budget; a completion without EOS by then is ``truncated``.
    """

    temperature: float = 1.0
    top_p: float = 1.0
    max_new_tokens: int = 32

    def __post_init__(self) -> None:
        if self.temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")


@dataclass
class Samples:
    """n completions per prompt, in the layout the trainer consumes."""

    input_ids: Tensor  # [N, T] long: left-padded prompt (P) then completion (L), T = P + L
    attention_mask: Tensor  # [N, T] long
    completion_mask: Tensor  # [N, T] float: generated tokens up to and including EOS
    logprobs: Tensor  # [N, T] float: log π_θ of each generated token (0 elsewhere)
    completions: list[str]  # N decoded completions (special tokens dropped)
    truncated: Tensor  # [N] bool: no EOS within max_new_tokens
    prompt_len: int  # P
    entropy: Tensor | None = None  # [N, T] float: full-vocabulary entropy of π_θ at each generated token
    stats: dict[str, float] = field(default_factory=dict)  # the sampler's own timings (e.g. perf/weight_sync_s), logged per step


class Sampler(Protocol):
    def sample(
        self,
        model: torch.nn.Module,
        tokenizer,
        prompts: Sequence[str],
        n: int,
        params: SamplingParams,
        generator: torch.Generator | None = None,
    ) -> Samples: ...

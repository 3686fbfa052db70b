"""Edges of the scoring functions that the chunked/prefix tests do not reach (surviving mutants of
``scripts/mutate.py``): the smallest chunk of the entropy computation, and its range check."""

from __future__ import annotations

import pytest
import torch
from torch.testing import assert_close

from lit_alpha.scoring.logprobs import entropy_from_logits


def direct_entropy(logits: torch.Tensor) -> torch.Tensor:
    return -(logits.softmax(-1) * logits.log_softmax(-1)).sum(-1)


def test_entropy_in_chunks_of_one_row() -> None:
    logits = torch.randn(2, 3, 7, generator=torch.Generator().manual_seed(0))  # [B, T, V]
    assert_close(entropy_from_logits(logits, chunk_tokens=1), direct_entropy(logits), atol=1e-6, rtol=1e-6)
    assert_close(entropy_from_logits(logits), direct_entropy(logits), atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("chunk", [0, -1])
def test_entropy_chunk_must_be_positive(chunk) -> None:
    with pytest.raises(ValueError, match="chunk_tokens"):
        entropy_from_logits(torch.zeros(1, 3), chunk_tokens=chunk)

"""Chunked log-probs (``token_logprobs(..., chunk_tokens=k)``) against the full-logits path (``chunk_tokens=0``).

The model is a random tiny Llama whose vocabulary (V=257) is large next to its width (H=16) so that the
``[N, L, V]`` logits are, as in real LLMs, the largest tensor of a step: the memory tests can then tell
"some tensor holds all logits" from "none does".
"""

from __future__ import annotations

import logging

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from lit_alpha.scoring import logprobs as lp_mod
from lit_alpha.scoring.logprobs import token_logprobs

N, T, P, V = 4, 14, 6, 257  # rows, padded length, prompt length (completion L = T - P = 8), vocabulary
L = T - P


def _config(cls, **extra):
    return cls(vocab_size=V, hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2,
               num_key_value_heads=2, head_dim=8, max_position_embeddings=64, tie_word_embeddings=True,
               pad_token_id=0, **extra)


@pytest.fixture(scope="module")
def model():
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    return LlamaForCausalLM(_config(LlamaConfig)).float()


@pytest.fixture(scope="module")
def batch() -> tuple[torch.Tensor, torch.Tensor]:
    """Left-padded prompts of different lengths, completions right-padded after their EOS (as sampled)."""
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(1, V, (N, T), generator=g)  # [N, T]
    mask = torch.ones(N, T, dtype=torch.long)
    for row, (pad_left, end) in enumerate([(0, T), (2, T), (5, T - 3), (3, P + 1)]):
        mask[row, :pad_left] = 0
        mask[row, end:] = 0
    return ids.masked_fill(mask == 0, 0), mask


def _run(model, batch, chunk_tokens, weights):
    """Log-probs, entropies and the gradient of a weighted sum of the log-probs w.r.t. every parameter."""
    model.zero_grad(set_to_none=True)
    lp, ent = token_logprobs(model, *batch, P, with_entropy=True, chunk_tokens=chunk_tokens)
    (lp * weights).sum().backward()
    grads = {name: p.grad.clone() for name, p in model.named_parameters()}
    return lp.detach(), ent, grads


@pytest.mark.parametrize("chunk_tokens", [1, 3, L, N * L - 1, N * L, 10 * N * L, None])
def test_chunked_equals_full_logits(model, batch, chunk_tokens):
    weights = torch.randn(N, T, generator=torch.Generator().manual_seed(2))  # [N, T] a generic loss
    want_lp, want_ent, want_grads = _run(model, batch, 0, weights)
    got_lp, got_ent, got_grads = _run(model, batch, chunk_tokens, weights)

    assert got_lp.shape == got_ent.shape == (N, T) and got_lp.dtype == torch.float32
    assert (got_lp[:, :P] == 0).all() and (got_ent[:, :P] == 0).all()  # prompt positions are 0
    comp = batch[1][:, P:].bool()  # [N, L] completion tokens; padding after them scores 0
    assert (got_lp[:, P:][comp] < 0).all() and (got_ent[:, P:][comp] > 0).all()
    assert (got_lp[:, P:][~comp] == 0).all() and (got_ent[:, P:][~comp] == 0).all() and (~comp).any()
    torch.testing.assert_close(got_lp, want_lp, rtol=0, atol=1e-6)
    torch.testing.assert_close(got_ent, want_ent, rtol=0, atol=1e-6)
    assert not got_ent.requires_grad
    assert set(got_grads) == set(want_grads)
    for name, grad in want_grads.items():
        assert grad.abs().sum() > 0, name  # every parameter (embedding, layers, norm) gets a gradient
        torch.testing.assert_close(got_grads[name], grad, rtol=1e-5, atol=1e-6, msg=name)


def test_full_path_is_the_plain_log_softmax(model, batch):
    """The reference itself: chunk_tokens=0 is log_softmax of the model's own logits, gathered."""
    ids, mask = batch
    with torch.no_grad():
        logits = model(input_ids=ids, attention_mask=mask, position_ids=lp_mod.position_ids_from_mask(mask)).logits
        want = logits[:, P - 1 : -1].log_softmax(-1).gather(-1, ids[:, P:, None]).squeeze(-1)  # [N, L]
        for chunk_tokens in (0, 5):
            got = token_logprobs(model, ids, mask, P, chunk_tokens=chunk_tokens)
            torch.testing.assert_close(got[:, P:], want * mask[:, P:], rtol=0, atol=1e-5)


def test_no_grad_path_and_default_signature(model, batch):
    ids, mask = batch
    with torch.no_grad():  # how π_base is scored: no checkpointing, same numbers
        chunked = token_logprobs(model, ids, mask, P, chunk_tokens=3)
        full = token_logprobs(model, ids, mask, P, chunk_tokens=0)
    assert not chunked.requires_grad
    torch.testing.assert_close(chunked, full, rtol=0, atol=1e-6)
    default = token_logprobs(model, ids, mask, P)  # the old positional signature still works
    assert isinstance(default, torch.Tensor) and default.requires_grad
    with pytest.raises(ValueError, match="chunk_tokens"):
        token_logprobs(model, ids, mask, P, chunk_tokens=-1)
    with pytest.raises(ValueError, match="prompt_len"):
        token_logprobs(model, ids, mask, 0)
    lp, ent = token_logprobs(model, ids[:, :P], mask[:, :P], P, with_entropy=True)  # nothing to score
    assert lp.shape == ent.shape == (N, P) and not lp.any() and not ent.any()


# -- memory: no [N, L, V] tensor in chunked mode, in the forward or the backward -------------------------
def _saved(model, batch, chunk_tokens) -> tuple[int, int]:
    """What autograd keeps for the backward (checkpointed regions keep nothing): the element count of
    the largest saved tensor, and the total elements of saved logit-shaped (``[..., V]``) tensors."""
    sizes: list[int] = []
    logit_elements = 0

    def pack(t: torch.Tensor) -> torch.Tensor:
        nonlocal logit_elements
        sizes.append(t.numel())
        logit_elements += t.numel() if t.dim() and t.shape[-1] == V else 0
        return t

    model.zero_grad(set_to_none=True)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        lp = token_logprobs(model, *batch, P, with_entropy=True, chunk_tokens=chunk_tokens)[0]
    lp.sum().backward()
    return max(sizes), logit_elements


class _LargestOutput(TorchDispatchMode):
    """Records the element count of every tensor any aten op produces (forward and backward)."""

    def __init__(self) -> None:
        super().__init__()
        self.largest = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else [out]:
            if isinstance(t, torch.Tensor):
                self.largest = max(self.largest, t.numel())
        return out


def _largest_created(model, batch, chunk_tokens) -> int:
    model.zero_grad(set_to_none=True)
    with _LargestOutput() as mode:
        lp = token_logprobs(model, *batch, P, with_entropy=True, chunk_tokens=chunk_tokens)[0]
        lp.sum().backward()
    return mode.largest


@pytest.mark.parametrize("chunk_tokens", [1, 5, L])
def test_chunked_never_holds_all_logits(model, batch, chunk_tokens):
    all_logits = N * L * V
    # the full path keeps the [N, L, V] logits for the backward and creates them: the test can fail
    largest, logit_elements = _saved(model, batch, 0)
    assert largest >= all_logits and logit_elements >= all_logits
    assert _largest_created(model, batch, 0) >= all_logits
    # chunked: no logits at all are kept for the backward (each chunk's are recomputed there) ...
    largest, logit_elements = _saved(model, batch, chunk_tokens)
    assert logit_elements == 0 and largest < all_logits
    # ... and no [N, L, V] tensor is ever created, in the forward, the backward or the entropy; the
    # largest are one chunk's logits, the [V, H] embedding gradient and the [N, T, 32] MLP activations
    assert _largest_created(model, batch, chunk_tokens) <= max(chunk_tokens * V, V * 16, N * T * 32) < all_logits


# -- fall-backs: logits that are not output_embeddings(hidden) -------------------------------------------
def test_softcapped_model_falls_back_to_full_logits(batch):
    from transformers import Gemma2Config, Gemma2ForCausalLM

    torch.manual_seed(0)
    gemma = Gemma2ForCausalLM(_config(Gemma2Config, final_logit_softcapping=0.5)).float()
    assert lp_mod._backbone_and_head(gemma, *batch) is None  # excluded by its config
    torch.testing.assert_close(token_logprobs(gemma, *batch, P, chunk_tokens=3),
                               token_logprobs(gemma, *batch, P, chunk_tokens=0), rtol=0, atol=0)


def test_unlisted_logit_transform_is_caught_numerically(batch, monkeypatch, caplog):
    """A logit scaling the config list does not know about is found by the one-time numeric check."""
    from transformers import GraniteConfig, GraniteForCausalLM

    monkeypatch.setattr(lp_mod, "_LOGIT_TRANSFORMS", ())
    torch.manual_seed(0)
    granite = GraniteForCausalLM(_config(GraniteConfig, logits_scaling=4.0)).float()
    with caplog.at_level(logging.WARNING, logger=lp_mod.__name__):
        got = token_logprobs(granite, *batch, P, chunk_tokens=3)
    assert "full-logits path" in caplog.text
    torch.testing.assert_close(got, token_logprobs(granite, *batch, P, chunk_tokens=0), rtol=0, atol=0)
    granite.config.logits_scaling = 1.0  # a fresh model with the same shape but exact logits passes
    plain = GraniteForCausalLM(granite.config).float()
    assert lp_mod._backbone_and_head(plain, *batch) is not None

"""Prompt sharing in ``token_logprobs``: rows that share a prompt run it once.

The sampler lays out a prompt's n samples as contiguous rows; ``token_logprobs`` then runs each distinct
prompt once with a KV cache, gathers the cache to the rows and runs only the completions on top. These
tests hold it to the plain one-forward-per-row path (``chunk_tokens=0``, which never shares) for values,
entropies and every parameter's gradient, and check that the sharing really happens (the embedding sees
``[B, P]`` then ``[N, L]`` tokens, not ``[N, T]``).
"""

from __future__ import annotations

import pytest
import torch

from lit_alpha.sampling.logprobs import prompt_groups, token_logprobs

P, L, V = 6, 5, 97
T = P + L


@pytest.fixture(scope="module")
def model():
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=V, hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2,
                      num_key_value_heads=1, head_dim=8, max_position_embeddings=64, tie_word_embeddings=False,
                      pad_token_id=0)
    return LlamaForCausalLM(cfg).float()


def _grouped_batch(n_per_prompt=(3, 1, 2), pads=(0, 2, 4)) -> tuple[torch.Tensor, torch.Tensor]:
    """Prompts left-padded by ``pads``, each repeated ``n`` times; completions right-padded after a
    random end (one row ends at its first token), as the sampler returns them."""
    g = torch.Generator().manual_seed(3)
    rows, masks = [], []
    for n, pad in zip(n_per_prompt, pads):
        prompt = torch.randint(1, V, (P,), generator=g)
        prompt[:pad] = 0
        for _ in range(n):
            end = int(torch.randint(1, L + 1, (1,), generator=g))
            comp = torch.randint(1, V, (L,), generator=g)
            comp[end:] = 0
            rows.append(torch.cat([prompt, comp]))
            masks.append(torch.cat([torch.arange(P) >= pad, torch.arange(L) < end]).long())
    masks[0][P + 1:] = 0  # a row whose completion is one token
    rows[0][P + 1:] = 0
    return torch.stack(rows), torch.stack(masks)  # [N, T], [N, T]


def _run(model, ids, mask, chunk_tokens):
    model.zero_grad(set_to_none=True)
    weights = torch.randn(ids.shape, generator=torch.Generator().manual_seed(4))  # [N, T]
    lp, ent = token_logprobs(model, ids, mask, P, with_entropy=True, chunk_tokens=chunk_tokens)
    (lp * weights * mask).sum().backward()
    return lp.detach(), ent, {k: p.grad.clone() for k, p in model.named_parameters()}


def test_prompt_groups_marks_contiguous_shared_prompts():
    ids, mask = _grouped_batch()
    assert prompt_groups(ids, mask, P).tolist() == [0, 0, 0, 1, 2, 2]
    # the same prompt again after another one is a new group (rows are not sorted)
    ids2, mask2 = torch.cat([ids, ids[:1]]), torch.cat([mask, mask[:1]])
    assert prompt_groups(ids2, mask2, P).tolist() == [0, 0, 0, 1, 2, 2, 3]
    # distinct prompts everywhere: nothing to share
    assert prompt_groups(ids[[0, 3, 4]], mask[[0, 3, 4]], P) is None
    # the same visible tokens under a different padding are different prompts
    mask3 = mask.clone()
    mask3[1, 0] = 0
    ids3 = ids.clone()
    ids3[1, 0] = 0
    assert prompt_groups(ids3, mask3, P).tolist()[:3] == [0, 1, 2]


@pytest.mark.parametrize("chunk_tokens", [None, 4])
def test_shared_prompt_equals_one_forward_per_row(model, chunk_tokens):
    ids, mask = _grouped_batch()
    want_lp, want_ent, want_grads = _run(model, ids, mask, chunk_tokens=0)
    got_lp, got_ent, got_grads = _run(model, ids, mask, chunk_tokens=chunk_tokens)
    assert torch.isfinite(got_lp).all()
    torch.testing.assert_close(got_lp * mask, want_lp * mask, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(got_ent * mask, want_ent * mask, rtol=1e-5, atol=1e-5)
    for name, want in want_grads.items():
        torch.testing.assert_close(got_grads[name], want, rtol=1e-5, atol=1e-6, msg=name)


def _embedded_shapes(model, fn) -> list[tuple[int, ...]]:
    shapes: list[tuple[int, ...]] = []
    handle = model.get_input_embeddings().register_forward_hook(lambda m, i, o: shapes.append(tuple(i[0].shape)))
    try:
        fn()
    finally:
        handle.remove()
    return shapes


def test_each_prompt_runs_once(model):
    ids, mask = _grouped_batch()  # 6 rows, 3 distinct prompts
    model(input_ids=ids[:1], attention_mask=mask[:1])  # warm the exactness check (one row, full length)
    shapes = _embedded_shapes(model, lambda: token_logprobs(model, ids, mask, P))
    assert shapes == [(3, P), (6, L)]
    distinct = ids[[0, 3, 4]], mask[[0, 3, 4]]
    assert _embedded_shapes(model, lambda: token_logprobs(model, *distinct, P)) == [(3, T)]


def test_gradient_checkpointing_takes_the_plain_path(model):
    ids, mask = _grouped_batch()
    want, _, want_grads = _run(model, ids, mask, chunk_tokens=0)
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.train()
    try:
        shapes = _embedded_shapes(model, lambda: _run(model, ids, mask, chunk_tokens=None))
        got, _, got_grads = _run(model, ids, mask, chunk_tokens=None)
    finally:
        model.gradient_checkpointing_disable()
        model.eval()
    assert (6, T) in shapes and (3, P) not in shapes
    torch.testing.assert_close(got * mask, want * mask, rtol=1e-5, atol=1e-5)
    for name, g in want_grads.items():
        torch.testing.assert_close(got_grads[name], g, rtol=1e-5, atol=1e-6, msg=name)

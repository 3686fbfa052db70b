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

from lit_alpha.scoring.layout import prompt_groups
from lit_alpha.scoring.logprobs import token_logprobs

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
    assert shapes[0] == (3, P)  # the 3 prompts once, then only completions, each row once
    assert sum(rows for rows, _ in shapes[1:]) == 6 and all(width <= L for _, width in shapes[1:])
    distinct = ids[[0, 3, 4]], mask[[0, 3, 4]]
    shapes = _embedded_shapes(model, lambda: token_logprobs(model, *distinct, P))
    assert sum(rows for rows, _ in shapes) == 3 and all(P < width <= T for _, width in shapes)


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
    assert sum(rows for rows, _ in shapes) == 6 and all(width > P for _, width in shapes)  # whole rows
    torch.testing.assert_close(got * mask, want * mask, rtol=1e-5, atol=1e-5)
    for name, g in want_grads.items():
        torch.testing.assert_close(got_grads[name], g, rtol=1e-5, atol=1e-6, msg=name)


# ---------------------------------------------------------------- length buckets
def test_length_buckets_cover_every_row_at_its_width():
    from lit_alpha.scoring.layout import MIN_SAVING, length_buckets

    g = torch.Generator().manual_seed(0)
    extent = torch.cat([torch.randint(3, 12, (200,), generator=g), torch.tensor([64, 60])])  # two long outliers
    buckets = length_buckets(extent, overhead=0)
    assert 1 < len(buckets) <= 4
    rows = torch.cat([r for r, _ in buckets])
    assert sorted(rows.tolist()) == list(range(202))  # every row exactly once
    for r, width in buckets:
        assert int(extent[r].max()) == width  # each bucket runs at its longest row's width, no wider
    padded = sum(len(r) * w for r, w in buckets)
    assert padded <= (1 - MIN_SAVING) * 202 * 64 and padded < 0.3 * 202 * 64  # vs all rows at width 64
    # equal lengths, or too little to save: one bucket at the common width
    assert [(len(r), w) for r, w in length_buckets(torch.full((8,), 5), 0)] == [(8, 5)]
    assert len(length_buckets(torch.tensor([9, 10, 10, 10]), overhead=0)) == 1
    # a long prompt that every row reruns (no sharing) makes buckets less worth it
    assert len(length_buckets(torch.tensor([2, 2, 2, 10]), overhead=100)) == 1
    assert len(length_buckets(torch.tensor([2, 2, 2, 10]), overhead=0)) == 2


def _distinct_varied_batch(n=8):
    """Distinct prompts (no sharing) and completions of very different lengths (buckets)."""
    g = torch.Generator().manual_seed(7)
    ids = torch.randint(1, V, (n, T), generator=g)
    mask = torch.ones(n, T, dtype=torch.long)
    for row in range(n):
        pad, end = row % 3, P + (1 if row < n - 1 else L)  # all one-token completions but the last
        mask[row, :pad] = 0
        mask[row, end:] = 0
    return ids.masked_fill(mask == 0, 0), mask


@pytest.mark.parametrize("batch", ["grouped", "distinct"])
def test_bucketed_rows_equal_one_forward_per_row_and_padding_is_zero(model, batch):
    ids, mask = _grouped_batch((1, 5, 2), (0, 1, 3)) if batch == "grouped" else _distinct_varied_batch()
    want_lp, want_ent, want_grads = _run(model, ids, mask, chunk_tokens=0)
    got_lp, got_ent, got_grads = _run(model, ids, mask, chunk_tokens=None)
    torch.testing.assert_close(got_lp, want_lp, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(got_ent, want_ent, rtol=1e-5, atol=1e-5)
    for name, want in want_grads.items():
        torch.testing.assert_close(got_grads[name], want, rtol=1e-5, atol=1e-6, msg=name)
    for lp in (got_lp, want_lp, got_ent, want_ent):  # padding and prompt positions are exactly 0
        assert (lp[mask == 0] == 0).all() and (lp[:, :P] == 0).all()
    assert (got_lp[:, P:][mask[:, P:] == 1] < 0).all()


def test_no_completion_token_at_all_gives_zeros_that_still_backpropagate(model):
    ids, mask = _grouped_batch()
    mask = mask.clone()
    mask[:, P:] = 0  # every completion empty (all padding)
    model.zero_grad(set_to_none=True)
    lp, ent = token_logprobs(model, ids, mask, P, with_entropy=True)
    assert lp.shape == ent.shape == ids.shape and (lp == 0).all() and (ent == 0).all()
    lp.sum().backward()  # a loss over no tokens: zero gradients, no error
    assert all(p.grad is None or (p.grad == 0).all() for p in model.parameters())

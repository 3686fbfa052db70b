"""HFSampler: layout, log-probs equal to the trainer's forward, EOS/truncation, top-p, seeding,
and the rollout always using the current weights."""

from __future__ import annotations

import pytest
import torch

from lit_alpha.data.rollout import Rollout, RolloutModels
from lit_alpha.models import load_policy
from lit_alpha.sampling import HFSampler, SamplingParams
from lit_alpha.scoring import token_logprobs
from lit_alpha.tasks import CountdownTask

PROMPTS = ["3 7 9 12 | 59 = ", "1 2 | 3 = "]


@pytest.fixture(scope="module")
def policy(random_model_dir):
    return load_policy(str(random_model_dir))


def test_layout_and_logprobs_match_forward(policy):
    model, tok = policy
    g = torch.Generator().manual_seed(0)
    out = HFSampler().sample(model, tok, PROMPTS, 3, SamplingParams(max_new_tokens=12), g)
    n, t = out.input_ids.shape
    assert n == 6 and t == out.prompt_len + out.completion_mask.shape[1] - out.prompt_len
    # prompt i's samples are rows 3i..3i+2 and carry its (left-padded) tokens
    for i, p in enumerate(PROMPTS):
        ids = tok(p)["input_ids"]
        for r in range(3 * i, 3 * i + 3):
            assert out.input_ids[r, out.prompt_len - len(ids) : out.prompt_len].tolist() == ids
    assert (out.completion_mask[:, : out.prompt_len] == 0).all()
    lp = token_logprobs(model, out.input_ids, out.attention_mask, out.prompt_len)
    torch.testing.assert_close(lp * out.completion_mask, out.logprobs, atol=1e-5, rtol=0)
    # completion ends at EOS (kept in the mask) or is flagged truncated at the budget
    eos = tok.eos_token_id
    for r in range(n):
        gen = out.input_ids[r][out.completion_mask[r].bool()].tolist()
        assert (gen[-1] == eos) != bool(out.truncated[r])
        assert eos not in gen[:-1]
        if out.truncated[r]:
            assert len(gen) == 12


def test_seeded_and_chunking_invariant(policy):
    model, tok = policy
    params = SamplingParams(max_new_tokens=10)
    a = HFSampler().sample(model, tok, PROMPTS, 4, params, torch.Generator().manual_seed(1))
    b = HFSampler().sample(model, tok, PROMPTS, 4, params, torch.Generator().manual_seed(1))
    c = HFSampler().sample(model, tok, PROMPTS, 4, params, torch.Generator().manual_seed(2))
    assert a.completions == b.completions
    assert a.completions != c.completions
    chunked = HFSampler(max_batch=4).sample(model, tok, PROMPTS, 4, params, torch.Generator().manual_seed(1))
    assert len(chunked.completions) == 8


def test_tiny_top_p_is_greedy(policy):
    model, tok = policy
    out = HFSampler().sample(model, tok, PROMPTS[:1], 5, SamplingParams(top_p=1e-6, max_new_tokens=8),
                             torch.Generator().manual_seed(0))
    assert len(set(out.completions)) == 1
    ids = out.input_ids[:1]
    with torch.no_grad():  # the greedy continuation of the first token
        logits = model(input_ids=ids[:, : out.prompt_len]).logits[0, -1]
    assert out.input_ids[0, out.prompt_len].item() == int(logits.argmax())


def test_rollout_uses_current_weights(policy, random_model_dir):
    """Change the weights in place between two rollouts: the second must reflect the new ones."""
    model, tok = load_policy(str(random_model_dir))
    task = CountdownTask(num_val=4, num_test=4)
    records = task.problems("val")[:2]
    params = SamplingParams(max_new_tokens=8)
    service = Rollout(task, HFSampler(), params).attach(RolloutModels(policy=model, tokenizer=tok, base=model))
    first = service.sample(model, records, 4, torch.Generator().manual_seed(0))
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.5)
    second = service.score_base(service.sample(model, records, 4, torch.Generator().manual_seed(0)))
    now = token_logprobs(model, second.input_ids, second.attention_mask, second.prompt_len)
    torch.testing.assert_close(now * second.completion_mask, second.old_logprobs, atol=2e-5, rtol=0)  # float32; ~1e-5 on AMX kernels
    assert first.completions != second.completions or not torch.allclose(first.old_logprobs, second.old_logprobs)
    torch.testing.assert_close(second.base_logprobs * second.completion_mask, second.old_logprobs, atol=2e-5, rtol=0)
    assert second.rewards.shape == (8,) and second.group_ids.tolist() == [0] * 4 + [1] * 4
    assert len(second.reasons) == 8 and "perf/sample_s" in second.stats


def test_bad_params_are_named():
    with pytest.raises(ValueError, match="temperature"):
        SamplingParams(temperature=0)
    with pytest.raises(ValueError, match="top_p"):
        SamplingParams(top_p=1.5)

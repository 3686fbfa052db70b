"""The sampler's fast CPU kernels (packed bf16 weights, GQA attention, the reserved KV cache) give the
same bits as the plain path, sample for sample, and never leak outside the sampler's call."""

from __future__ import annotations

import contextlib

import pytest
import torch

from lit_alpha.sampling import HFSampler, SamplingParams
from lit_alpha.sampling.cache import ReservedLayer, reserved_cache
from lit_alpha.sampling.kernels import GQA_ATTENTION, fast_decoding, gqa_sdpa, packed_linears

BF16 = torch.ops.mkldnn._is_mkldnn_bf16_supported()
needs_bf16 = pytest.mark.skipif(not BF16, reason="oneDNN bf16 products not supported on this CPU")
V = 101


class _Tok:
    """Token ids are the prompt's characters (mod V); EOS 1, pad 0: enough for the sampler."""

    pad_token_id, eos_token_id = 0, 1

    def __call__(self, texts):
        return {"input_ids": [[2 + ord(c) % (V - 2) for c in t] for t in texts]}

    def batch_decode(self, rows, skip_special_tokens=True):
        return [" ".join(str(t) for t in r if t > 1) for r in rows]


@pytest.fixture(scope="module")
def gqa_model():
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=V, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=2, head_dim=16, max_position_embeddings=128, tie_word_embeddings=True,
                      pad_token_id=0, eos_token_id=1, attn_implementation="sdpa")
    model = LlamaForCausalLM(cfg)
    with torch.no_grad():  # EOS's logit spread wide, so that some rows end early (compaction runs)
        model.lm_head.weight[1] *= 6.0
    return model


def _autocast(dtype):
    return torch.autocast("cpu", dtype=torch.bfloat16, cache_enabled=True) if dtype == "bf16" \
        else contextlib.nullcontext()


PROMPTS = ["12+7", "a much longer prompt", "x", "3*4=?"]


@pytest.mark.parametrize("dtype", ["fp32", pytest.param("bf16", marks=needs_bf16)])
@pytest.mark.parametrize("params,max_batch", [
    (SamplingParams(max_new_tokens=12), 1024),
    (SamplingParams(max_new_tokens=9, temperature=0.7, top_p=0.9), 8),  # chunks of 2 prompts
])
def test_fast_kernels_give_the_same_samples(gqa_model, dtype, params, max_batch):
    out = {}
    for fast in (False, True):
        sampler = HFSampler(max_batch=max_batch, fast_kernels=fast, compact_frac=8)
        with _autocast(dtype):
            out[fast] = sampler.sample(gqa_model, _Tok(), PROMPTS, 4, params, torch.Generator().manual_seed(5))
    a, b = out[False], out[True]
    assert a.completion_mask.sum() > 0 and (a.completion_mask.sum(1) < params.max_new_tokens).any()
    for field in ("input_ids", "attention_mask", "completion_mask", "logprobs", "entropy", "truncated"):
        assert torch.equal(getattr(a, field), getattr(b, field)), field
    assert a.completions == b.completions
    assert "forward" not in vars(gqa_model.lm_head) and gqa_model.config._attn_implementation == "sdpa"


@needs_bf16
def test_packed_linears_only_for_bf16_products_and_restored(gqa_model):
    linears = [m for m in gqa_model.modules() if type(m) is torch.nn.Linear]
    with torch.no_grad():
        with packed_linears(gqa_model) as n:
            assert n == 0  # float32 products: left alone
        x = torch.randn(3, 5, 64)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            plain = gqa_model.model.layers[0].mlp.down_proj(torch.randn(3, 5, 128))
            want = gqa_model.model.layers[0].self_attn.q_proj(x)
            with packed_linears(gqa_model) as n:
                assert n == len(linears) == 2 * 7 + 1
                got = gqa_model.model.layers[0].self_attn.q_proj(x)
                assert "forward" in vars(gqa_model.model.layers[0].self_attn.q_proj)
    assert plain.dtype == got.dtype == torch.bfloat16 and torch.equal(got, want)
    assert all("forward" not in vars(m) for m in linears)


@needs_bf16
def test_packed_linears_never_serve_a_forward_that_needs_gradients(gqa_model):
    layer = gqa_model.model.layers[0].self_attn.o_proj
    x = torch.randn(2, 64, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        with packed_linears(gqa_model):
            y = layer(x)
    y.float().sum().backward()
    assert x.grad is not None and layer.weight.grad is not None
    layer.weight.grad = None
    with torch.autocast("cpu", dtype=torch.bfloat16), packed_linears(gqa_model):
        layer(torch.randn(2, 64)).float().sum().backward()  # an input without grad: the weight still gets one
    assert layer.weight.grad is not None
    layer.weight.grad = None


def test_packed_linears_restore_on_error(gqa_model):
    with pytest.raises(RuntimeError, match="boom"):
        with torch.autocast("cpu", dtype=torch.bfloat16), packed_linears(gqa_model):
            raise RuntimeError("boom")
    assert all("forward" not in vars(m) for m in gqa_model.modules())


def test_gqa_sdpa_switches_only_grouped_sdpa_models(gqa_model, random_model_dir):
    from transformers import AutoModelForCausalLM

    with pytest.raises(RuntimeError, match="boom"):
        with gqa_sdpa(gqa_model) as switched:
            assert switched and gqa_model.config._attn_implementation == GQA_ATTENTION
            raise RuntimeError("boom")
    assert gqa_model.config._attn_implementation == "sdpa"
    mha = AutoModelForCausalLM.from_pretrained(random_model_dir)  # 2 heads, 2 K/V heads: nothing to save
    with gqa_sdpa(mha) as switched:
        assert not switched
    eager = AutoModelForCausalLM.from_pretrained(random_model_dir, attn_implementation="eager")
    with gqa_sdpa(eager) as switched:
        assert not switched and eager.config._attn_implementation == "eager"


def test_gqa_attention_equals_the_plain_forward(gqa_model):
    ids = torch.randint(2, V, (3, 9), generator=torch.Generator().manual_seed(1))
    mask = torch.ones_like(ids)
    mask[1, :4] = 0  # left padding: the masked path that repeats K/V heads in transformers
    with torch.no_grad():
        want = gqa_model(input_ids=ids, attention_mask=mask).logits
        with gqa_sdpa(gqa_model):
            got = gqa_model(input_ids=ids, attention_mask=mask).logits
    assert torch.equal(got, want)


def test_reserved_layer_matches_the_growing_layer():
    from transformers.cache_utils import DynamicLayer

    g = torch.Generator().manual_seed(0)
    plain, reserved = DynamicLayer(), ReservedLayer(capacity=5)
    steps = [3, 1, 1, 2, 1]  # 8 positions: past the reservation of 5 (grows)
    rows = 2
    for i, n in enumerate(steps):
        k, v = torch.randn(rows, 3, n, 4, generator=g), torch.randn(rows, 3, n, 4, generator=g)
        pk, pv = plain.update(k, v)
        rk, rv = reserved.update(k, v)
        assert torch.equal(pk, rk) and torch.equal(pv, rv)
        assert reserved.get_seq_length() == plain.get_seq_length()
        if i == 1:
            for layer in (plain, reserved):
                layer.batch_repeat_interleave(3)
            rows = 6
        if i == 3:
            for layer in (plain, reserved):
                layer.batch_select_indices(torch.tensor([0, 4, 5]))
            rows = 3
    assert reserved._kbuf.shape[2] >= 8 and reserved.keys.shape == plain.keys.shape == (3, 3, 8, 4)


@needs_bf16
def test_packed_linears_cast_a_shared_input_once(gqa_model, monkeypatch):
    """q/k/v read one hidden state: it is cast to bf16 once, not once per projection; an in-place change
    in between (its version moves) gets a fresh cast."""
    attn = gqa_model.model.layers[0].self_attn
    casts = []
    to = torch.Tensor.to

    def counting_to(self, *args, **kwargs):
        out = to(self, *args, **kwargs)
        if out.dtype == torch.bfloat16 and self.dtype == torch.float32 and self.shape == (2, 64):
            casts.append(self)
        return out

    x = torch.randn(2, 64)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16), packed_linears(gqa_model):
        monkeypatch.setattr(torch.Tensor, "to", counting_to)
        outs = [attn.q_proj(x), attn.k_proj(x), attn.v_proj(x)]
        assert len(casts) == 1
        x.mul_(2.0)
        again = attn.q_proj(x)
        monkeypatch.undo()
    assert len(casts) == 2
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        assert torch.equal(outs[1], attn.k_proj(x / 2.0)) and torch.equal(again, attn.q_proj(x))


@needs_bf16
def test_fast_kernels_under_inference_mode(gqa_model):
    """Lightning validates under ``torch.inference_mode``, whose tensors have no version counter: the
    fast path samples there too, the same samples as under ``no_grad``."""
    params = SamplingParams(max_new_tokens=6)
    out = {}
    for mode in (torch.no_grad, torch.inference_mode):
        with mode(), _autocast("bf16"):
            out[mode] = HFSampler().sample(gqa_model, _Tok(), PROMPTS, 3, params, torch.Generator().manual_seed(4))
    assert torch.equal(out[torch.no_grad].input_ids, out[torch.inference_mode].input_ids)
    assert torch.equal(out[torch.no_grad].logprobs, out[torch.inference_mode].logprobs)


@pytest.mark.parametrize("dtype", ["fp32", pytest.param("bf16", marks=needs_bf16)])
def test_kv_cache_stores_bf16_only_where_attention_casts_to_it(gqa_model, random_model_dir, dtype):
    """Under CPU bf16 autocast with the GQA attention, K (float32 after the rotary embedding) is stored
    in bf16, as the attention would cast it; otherwise the cache keeps the model's dtypes."""
    from transformers import AutoModelForCausalLM

    mha = AutoModelForCausalLM.from_pretrained(random_model_dir)
    for model, grouped in ((gqa_model, True), (mha, False)):
        with _autocast(dtype), fast_decoding(model) as kv_dtype:
            assert kv_dtype == (torch.bfloat16 if dtype == "bf16" and grouped else None)
            cache = reserved_cache(model, 16, kv_dtype)
            ids = torch.tensor([[5, 6, 7]])
            with torch.no_grad():
                model(input_ids=ids, past_key_values=cache, use_cache=True)
        keys, values = cache.layers[0].keys, cache.layers[0].values
        want_k = torch.bfloat16 if kv_dtype else torch.float32
        assert keys.dtype == want_k, (grouped, dtype)
        assert values.dtype == (torch.bfloat16 if dtype == "bf16" else torch.float32)


def test_reserved_cache_only_for_plain_dynamic_layers(gqa_model):
    cache = reserved_cache(gqa_model, 16)
    assert cache is not None and all(isinstance(layer, ReservedLayer) for layer in cache.layers)
    assert reserved_cache(torch.nn.Linear(2, 2), 16) is None


@pytest.mark.parametrize("dtype", ["fp32", pytest.param("bf16", marks=needs_bf16)])
def test_fast_kernels_on_a_lora_policy_and_its_base_view(gqa_model, dtype):
    """A peft LoRA policy (its base ``nn.Linear``s packed under the LoRA layers) and the adapters-off
    view that samples π_base give the same samples with and without the fast kernels."""
    import copy

    from peft import LoraConfig, get_peft_model

    from lit_alpha.models.loading import AdapterDisabled

    policy = get_peft_model(copy.deepcopy(gqa_model), LoraConfig(r=4, target_modules=["q_proj", "v_proj"],
                                                                 init_lora_weights=False))
    params = SamplingParams(max_new_tokens=8)
    for model in (policy, AdapterDisabled(policy)):
        out = {}
        for fast in (False, True):
            with _autocast(dtype):
                out[fast] = HFSampler(fast_kernels=fast).sample(model, _Tok(), PROMPTS[:2], 3, params,
                                                                 torch.Generator().manual_seed(2))
        assert torch.equal(out[False].input_ids, out[True].input_ids)
        assert torch.equal(out[False].logprobs, out[True].logprobs)
    assert all("forward" not in vars(m) for m in policy.modules())

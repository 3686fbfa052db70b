"""Faster CPU kernels for the sampler's no-grad forwards, bit-identical to the plain ones.

Two costs of a decode step on CPU that the model's own code pays every token (measured on
SmolLM2-135M, bf16, 32 rows: ``docs/performance.md``):

* **Weight layout.** ``F.linear`` in bf16 goes through oneDNN, which reorders the ``[out, in]`` weight
  into its blocked layout *on every call*. :func:`packed_linears` does that reorder once per rollout
  (``torch.ops.mkldnn._reorder_linear_weight``) and calls the packed kernel
  (``torch.ops.mkldnn._linear_pointwise``): the same oneDNN product, so the same bits, for any number of
  rows; 1.3–2.3× faster per small-batch product. It runs where autocast (or the weights themselves)
  make the product bf16 on CPU; float32 products are left alone (MKL's packed sgemm only helps at
  exactly the packed row count, which changes as finished rows leave the batch).
* **Grouped-query attention.** ``transformers``' SDPA path copies every K/V head ``groups`` times per
  layer and token (``repeat_kv``) whenever an attention mask is given, which the CPU flash kernel does
  not need: :func:`gqa_attention` passes ``enable_gqa=True`` instead (the same kernel and sums).

Both are scoped to a ``with`` block (the sampler's call): weights change every step, and the training
forward, which needs gradients, is never touched. Both skip what they cannot handle exactly (FSDP
shards, quantized or non-``nn.Linear`` layers, CUDA, position biases, paged caches): those keep the
model's own path. Sample-for-sample equality with the plain path is tested in ``tests/test_kernels.py``.
"""

from __future__ import annotations

import contextlib
from typing import Any, Iterator

import torch
from torch import Tensor

GQA_ATTENTION = "lit_alpha_sdpa_gqa"


def _product_dtype(weight: Tensor) -> torch.dtype | None:
    """The dtype ``F.linear`` would compute this weight's product in here, if it is bf16 on CPU, else None."""
    if weight.device.type != "cpu" or type(weight) not in (Tensor, torch.nn.Parameter):
        return None
    if _autocast_bf16_cpu():
        return torch.bfloat16 if weight.dtype in (torch.float32, torch.bfloat16) else None
    return torch.bfloat16 if weight.dtype == torch.bfloat16 and not torch.is_autocast_enabled("cpu") else None


class _CastMemo:
    """The last input cast to the product dtype, reused by the next layer fed the same tensor.

    q/k/v (and gate/up) projections read one normalised hidden state: autocast would cast it once per
    layer, this casts it once per tensor (the same values). Holding the source keeps its identity
    unique; its version counter catches an in-place change in between. Inference tensors (Lightning
    validates under ``torch.inference_mode``) have no version counter, so they are cast every time."""

    def __init__(self) -> None:
        self.source: Tensor | None = None
        self.version = -1
        self.cast: Tensor | None = None

    def __call__(self, x: Tensor, dtype: torch.dtype) -> Tensor:
        if x.dtype == dtype:
            return x
        if x.is_inference():
            return x.to(dtype)
        if x is not self.source or x._version != self.version or self.cast.dtype != dtype:
            self.source, self.version, self.cast = x, x._version, x.to(dtype)
        return self.cast


def _packed_forward(module: torch.nn.Linear, packed: Tensor, bias: Tensor | None, dtype: torch.dtype,
                    memo: _CastMemo):
    plain = module.forward

    def forward(x: Tensor) -> Tensor:
        if torch.is_grad_enabled() and (x.requires_grad or module.weight.requires_grad):
            return plain(x)  # a forward that needs gradients: never packed
        return torch.ops.mkldnn._linear_pointwise(memo(x, dtype), packed, bias, "none", [], "")

    return forward


def _bf16_onednn() -> bool:
    """Does ``F.linear`` in bf16 run through oneDNN here (so the packed product has the same bits)?"""
    try:
        return torch.backends.mkldnn.is_available() and bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def _sharded(model: torch.nn.Module) -> bool:
    """Is any part of ``model`` FSDP-managed (its weights are shards, gathered only inside a forward)?"""
    for module in model.modules():
        if any(c.__module__.startswith("torch.distributed.fsdp") for c in type(module).__mro__):
            return True
    return any(type(p).__name__ == "DTensor" for p in model.parameters())


@contextlib.contextmanager
def packed_linears(model: torch.nn.Module, rows_hint: int = 32) -> Iterator[int]:
    """Within the block, every plain ``nn.Linear`` of ``model`` whose product runs in bf16 on CPU uses a
    weight reordered once for oneDNN; yields how many layers were packed (0: nothing to do here).

    Must be entered inside the autocast context the forwards run under (it decides the product dtype
    as ``F.linear`` would). ``rows_hint`` is oneDNN's batch-size hint (any row count stays exact)."""
    if not _bf16_onednn() or _sharded(model):  # without oneDNN bf16, F.linear runs another kernel
        yield 0
        return
    patched: list[torch.nn.Linear] = []
    memo = _CastMemo()
    try:
        with torch.no_grad():
            for module in model.modules():
                if type(module) is not torch.nn.Linear or "forward" in vars(module):
                    continue
                dtype = _product_dtype(module.weight)
                if dtype is None or module.weight.shape != (module.out_features, module.in_features):
                    continue
                weight = module.weight.detach().to(dtype)
                bias = None if module.bias is None else module.bias.detach().to(dtype)
                packed = torch.ops.mkldnn._reorder_linear_weight(weight, rows_hint)
                module.forward = _packed_forward(module, packed, bias, dtype, memo)
                patched.append(module)
        yield len(patched)
    finally:
        for module in patched:
            del module.forward


def gqa_attention(module: torch.nn.Module, query: Tensor, key: Tensor, value: Tensor,
                  attention_mask: Tensor | None, dropout: float = 0.0, scaling: float | None = None,
                  is_causal: bool | None = None, **kwargs):
    """``transformers``' SDPA attention without ``repeat_kv`` on CPU: ``enable_gqa=True`` instead.

    query ``[B, H, Q, D]``, key/value ``[B, H_kv, K, D]``; returns ``[B, Q, H, D]`` and no weights, as
    ``sdpa_attention_forward``. Anything but plain masked or causal GQA on CPU is handed to it unchanged."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    groups = getattr(module, "num_key_value_groups", 1)
    if (groups <= 1 or query.device.type != "cpu" or kwargs.get("position_bias") is not None
            or kwargs.get("cache") is not None or kwargs.get("output_attentions", False)
            or key.shape[-1] != value.shape[-1]):
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      is_causal=is_causal, **kwargs)
    is_causal = is_causal if is_causal is not None else getattr(module, "is_causal", True)
    q_len, kv_len = query.shape[2], key.shape[2]
    is_causal = q_len > 1 and attention_mask is None and is_causal
    if is_causal and kv_len > q_len:  # as transformers: an empty static cache's prefill
        key, value = key[:, :, :q_len], value[:, :, :q_len]
    out = torch.nn.functional.scaled_dot_product_attention(
        query, key, value, attn_mask=attention_mask, dropout_p=dropout, scale=scaling, is_causal=is_causal,
        enable_gqa=True)
    return out.transpose(1, 2).contiguous(), None


def _register_gqa() -> None:
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, AttentionMaskInterface

    AttentionInterface.register(GQA_ATTENTION, gqa_attention)
    if GQA_ATTENTION not in ALL_MASK_ATTENTION_FUNCTIONS:
        AttentionMaskInterface.register(GQA_ATTENTION, ALL_MASK_ATTENTION_FUNCTIONS["sdpa"])


@contextlib.contextmanager
def gqa_sdpa(model: torch.nn.Module) -> Iterator[bool]:
    """Within the block, a CPU model that attends with ``"sdpa"`` uses :func:`gqa_attention`; yields
    whether it switched (only for a top-level config set to ``"sdpa"`` with grouped K/V heads)."""
    config = getattr(model, "config", None)
    heads, kv_heads = (getattr(config, k, None) for k in ("num_attention_heads", "num_key_value_heads"))
    param = next(model.parameters(), None)
    switch = (config is not None and getattr(config, "_attn_implementation", None) == "sdpa"
              and isinstance(heads, int) and isinstance(kv_heads, int) and kv_heads < heads
              and param is not None and param.device.type == "cpu" and not _sharded(model))
    if switch:
        try:
            _register_gqa()
        except (ImportError, AttributeError, KeyError):  # a transformers without these registries: plain path
            switch = False
    if not switch:
        yield False
        return
    config._attn_implementation = GQA_ATTENTION
    try:
        yield True
    finally:
        config._attn_implementation = "sdpa"


def module_of(model: Any) -> torch.nn.Module | None:
    """The ``nn.Module`` whose layers a sampler's ``model`` runs: itself, or the policy behind a view such
    as :class:`lit_alpha.models.loading.AdapterDisabled` (π_base of a LoRA policy); None if neither."""
    if isinstance(model, torch.nn.Module):
        return model
    policy = getattr(model, "policy", None)
    return policy if isinstance(policy, torch.nn.Module) else None


def _autocast_bf16_cpu() -> bool:
    return torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16


@contextlib.contextmanager
def fast_decoding(model: Any, rows_hint: int = 32) -> Iterator[torch.dtype | None]:
    """:func:`packed_linears` and :func:`gqa_sdpa` together (the sampler's default) on
    :func:`module_of` ``model`` (nothing when there is no module to patch).

    Yields the dtype the sampler's KV cache may store K/V in (None: as the model computes them): bf16
    where attention is :func:`gqa_attention` under CPU bf16 autocast, which casts them to bf16 anyway."""
    module = module_of(model)
    if module is None:
        yield None
        return
    with packed_linears(module, rows_hint), gqa_sdpa(module) as gqa:
        yield torch.bfloat16 if gqa and _autocast_bf16_cpu() else None

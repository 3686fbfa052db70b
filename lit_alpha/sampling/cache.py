"""A KV cache that reserves room for the whole completion, so a decode step does not copy it.

``transformers``' ``DynamicLayer`` grows by ``torch.cat([keys, new], -2)``: every decode step copies
every layer's whole K and V (O(L²) bytes over a completion; 12–15% of SmolLM2-135M's bf16 sampling
time). :class:`ReservedLayer` allocates ``[rows, heads, capacity, head_dim]`` once, writes each new
position in place and hands attention a view of the filled part: the same values, so the same
attention output (tested sample for sample against the plain cache in ``tests/test_kernels.py``).
Beyond ``capacity`` it grows like the plain layer (doubling), so it is never wrong, only slower.

``dtype`` stores K and V in that dtype. The sampler passes bf16 only where every reader casts them to
bf16 anyway (:func:`lit_alpha.sampling.kernels.gqa_attention` under CPU bf16 autocast): the rotary
embedding leaves K in float32 there, and autocast would otherwise cast the whole float32 K cache to bf16
in every layer at every token. Rounding once at the write gives the same bf16 values.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor


def _dynamic_layer():
    from transformers.cache_utils import DynamicLayer

    return DynamicLayer


class ReservedLayer(_dynamic_layer()):
    """A ``DynamicLayer`` backed by buffers of ``capacity`` positions (grown by doubling if exceeded)."""

    def __init__(self, capacity: int, dtype: torch.dtype | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.capacity = max(1, int(capacity))
        self.store_dtype = dtype
        self.length = 0

    def lazy_initialization(self, key_states: Tensor, value_states: Tensor) -> None:
        super().lazy_initialization(key_states, value_states)
        self._kbuf = self._vbuf = None

    def _alloc(self, like: Tensor, capacity: int) -> Tensor:
        b, h, _, d = like.shape
        dtype = self.store_dtype if self.store_dtype is not None and like.is_floating_point() else like.dtype
        return torch.empty((b, h, capacity, d), dtype=dtype, device=like.device)

    def _refresh(self) -> None:
        self.keys, self.values = self._kbuf[:, :, : self.length], self._vbuf[:, :, : self.length]

    def update(self, key_states: Tensor, value_states: Tensor, *args: Any, **kwargs: Any) -> tuple[Tensor, Tensor]:
        """Write the new ``[B, H, n, D]`` positions after the filled ones; return views of all of them."""
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        n = key_states.shape[-2]
        if self._kbuf is None or self._kbuf.shape[0] != key_states.shape[0]:
            if self.length:  # rows changed outside batch_* (should not happen): keep the plain semantics
                return super().update(key_states, value_states)
            self._kbuf = self._alloc(key_states, max(self.capacity, n))
            self._vbuf = self._alloc(value_states, max(self.capacity, n))
        if self.length + n > self._kbuf.shape[2]:  # past the reservation: grow by doubling
            grow = max(self._kbuf.shape[2] * 2, self.length + n)
            for name in ("_kbuf", "_vbuf"):
                old = getattr(self, name)
                new = self._alloc(old, grow)
                new[:, :, : self.length] = old[:, :, : self.length]
                setattr(self, name, new)
        self._kbuf[:, :, self.length : self.length + n] = key_states
        self._vbuf[:, :, self.length : self.length + n] = value_states
        self.length += n
        self._refresh()
        return self.keys, self.values

    def get_seq_length(self) -> int:
        return self.length if self.is_initialized else 0

    def reset(self) -> None:
        super().reset()
        self.length, self._kbuf, self._vbuf = 0, None, None

    def crop(self, tokens_to_remove: int) -> None:
        if tokens_to_remove < 0:
            self.length = max(0, self.length + tokens_to_remove)
        elif 0 < tokens_to_remove < self.length:  # legacy: the size to keep
            self.length = tokens_to_remove
        if self.is_initialized and self._kbuf is not None:
            self._refresh()

    def _gather_rows(self, rows: Tensor) -> None:
        """Keep (and repeat) the buffers' ``rows`` along the batch: only the filled positions are copied,
        with ``index_select`` (row-wise copies: far faster on CPU than advanced indexing's gather)."""
        for name in ("_kbuf", "_vbuf"):
            old = getattr(self, name)
            new = torch.empty((rows.numel(), *old.shape[1:]), dtype=old.dtype, device=old.device)
            torch.index_select(old[:, :, : self.length], 0, rows, out=new[:, :, : self.length])
            setattr(self, name, new)
        self._refresh()

    def batch_repeat_interleave(self, repeats: int) -> None:
        if self.get_seq_length() > 0:
            rows = torch.arange(self._kbuf.shape[0], device=self._kbuf.device)
            self._gather_rows(rows.repeat_interleave(repeats))

    def batch_select_indices(self, indices: Tensor) -> None:
        if self.get_seq_length() > 0:
            self._gather_rows(indices.to(device=self._kbuf.device, dtype=torch.long))


def reserved_cache(model: Any, capacity: int, dtype: torch.dtype | None = None):
    """A ``DynamicCache`` for ``model`` whose layers are :class:`ReservedLayer` of ``capacity`` positions
    (storing K/V in ``dtype``, if given), or None where the model's layers are not all plain ``DynamicLayer`` (sliding windows, linear
    attention...): the model then builds its own cache."""
    from transformers.cache_utils import DynamicCache, DynamicLayer

    from lit_alpha.sampling.kernels import module_of

    config = getattr(module_of(model), "config", None)
    if config is None or not hasattr(config, "get_text_config"):
        return None
    try:
        cache = DynamicCache(config=config)
    except Exception:  # a config the cache cannot read: let the model decide
        return None
    if not cache.layers or any(type(layer) is not DynamicLayer for layer in cache.layers):
        return None
    cache.layers = [ReservedLayer(capacity, dtype) for _ in cache.layers]
    return cache

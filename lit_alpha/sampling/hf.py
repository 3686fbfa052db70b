"""KV-cached batched sampling with a Hugging Face causal LM (the CPU default).

A lean decoding loop instead of ``model.generate``: one prefill, then one forward per new token on
the rows still running, with the per-token log-prob of π_θ recorded as we go (no second pass).

Where the time goes, and what this loop does about it (measurements in ``docs/performance.md``):

* **Shared prompts.** The n samples of a prompt share its prefix, so the prompt is prefilled once per
  *prompt* (``B`` rows, not ``B·n``) and its KV cache is then repeated n times. For Countdown the
  prompt is about as long as a completion, so this removes almost half of the sampling compute.
* **Last-position logits only** in the prefill (``logits_to_keep=1``): the other prompt positions'
  ``[P, V]`` logits are never needed (with a 49k vocabulary they cost more than the prefill itself).
* **Finished rows leave the batch.** Once at least 1/``compact_frac`` of the rows being decoded have
  emitted EOS, the cache and the per-row state keep only the running rows (``batch_select_indices``),
  so the tail of the longest completion is not paid for by every row.
* **One uniform per row and token** (inverse CDF) instead of ``torch.multinomial``, which on CPU
  draws one exponential per vocabulary entry (13% of SmolLM2-135M's sampling time).
* Per-token outputs go into preallocated ``[N, L]`` buffers; one host sync per token (the stop test).

Caches without ``batch_repeat_interleave``/``batch_select_indices`` fall back to the plain loop (every
row prefilled, no compaction); the number of forwards per call is the same either way (one prefill,
one per token until every row has finished), which FSDP's lockstep sampling relies on. Sampling is a pure function of the generator's state,
the prompts and the weights (not of wall time); the random stream is consumed row-wise, so a different
``max_batch`` gives different (equally valid) samples.
"""

from __future__ import annotations

import contextlib
from typing import Any, Sequence

import torch
from torch import Tensor

from lit_alpha.models.loading import eval_mode
from lit_alpha.sampling.base import Samples, SamplingParams
from lit_alpha.sampling.cache import reserved_cache
from lit_alpha.sampling.kernels import fast_decoding
from lit_alpha.scoring.logprobs import position_ids_from_mask

_Chunk = tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]


def _filter_top_p(logits: Tensor, top_p: float) -> Tensor:
    """Mask logits outside the smallest set whose probability mass reaches ``top_p``.  # [N, V]"""
    if top_p >= 1.0:
        return logits
    sorted_logits, order = logits.sort(dim=-1, descending=True)
    probs = sorted_logits.softmax(-1)
    drop = probs.cumsum(-1) - probs >= top_p  # keep the token that crosses the threshold
    sorted_logits = sorted_logits.masked_fill(drop, float("-inf"))
    return torch.empty_like(logits).scatter_(-1, order, sorted_logits)


def _draw(probs: Tensor, generator: torch.Generator | None) -> Tensor:
    """One token per row of ``probs [A, V]`` by inverse-CDF sampling: ``[A]`` indices.

    ``torch.multinomial`` draws V exponentials per row on CPU (38 ms per token for 32 rows of a 49k
    vocabulary); this draws one uniform per row and binary-searches the cumulative sum (float32: its
    rounding moves a token's probability by ~1e-7 at most). Tokens of probability 0 (top-p) are
    never drawn: their cumulative sum equals their predecessor's.
    """
    cdf = probs.cumsum(-1)  # [A, V]
    u = torch.rand(probs.shape[0], 1, generator=generator, device=probs.device, dtype=cdf.dtype)
    idx = torch.searchsorted(cdf, u * cdf[:, -1:], right=True)  # first index with cdf > u·total
    return idx.squeeze(-1).clamp_(max=probs.shape[-1] - 1)


def _supports(cache: Any, *methods: str) -> bool:
    return all(callable(getattr(cache, m, None)) for m in methods)


class HFSampler:
    """Sample with any ``transformers`` causal LM on CPU or GPU.

    Args:
        max_batch: most sequences decoded at once; larger requests are split into chunks of whole
            prompt groups (bounds memory for evaluation with many samples per problem).
        share_prompt: prefill each prompt once and repeat its KV cache for its n samples.
        compact_frac: drop finished rows from the batch once at least ``1/compact_frac`` of the
            decoded rows have finished (0: never).
        fast_kernels: on CPU, bf16 products with weights packed once per call and grouped-query
            attention without copying K/V heads (:mod:`lit_alpha.sampling.kernels`: the same bits, faster).
    """

    def __init__(self, max_batch: int = 1024, share_prompt: bool = True, compact_frac: int = 8,
                 fast_kernels: bool = True) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        if compact_frac < 0:
            raise ValueError(f"compact_frac must be >= 0, got {compact_frac}")
        self.max_batch = max_batch
        self.share_prompt = share_prompt
        self.compact_frac = compact_frac
        self.fast_kernels = fast_kernels

    def _encode(self, tokenizer, prompts: Sequence[str]) -> list[list[int]]:
        """Token ids of each prompt (one batched tokenizer call; special tokens as the tokenizer adds)."""
        if not prompts:
            return []
        return [list(ids) for ids in tokenizer(list(prompts))["input_ids"]]

    @torch.no_grad()
    def sample(
        self,
        model: torch.nn.Module,
        tokenizer,
        prompts: Sequence[str],
        n: int,
        params: SamplingParams,
        generator: torch.Generator | None = None,
    ) -> Samples:
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        encoded = self._encode(tokenizer, prompts)
        prompt_len = max(len(e) for e in encoded)
        per_chunk = max(1, self.max_batch // n)
        kernels = fast_decoding(model, rows_hint=min(per_chunk, len(encoded)) * n) if self.fast_kernels \
            else contextlib.nullcontext()
        with kernels as kv_dtype:
            chunks = [
                self._sample_chunk(model, tokenizer, encoded[i : i + per_chunk], prompt_len, n, params, generator,
                                   kv_dtype)
                for i in range(0, len(encoded), per_chunk)
            ]
        width = max(c[0].shape[1] for c in chunks)
        pad = tokenizer.pad_token_id

        def cat(i: int, value: float) -> Tensor:
            if len(chunks) == 1:
                return chunks[0][i]
            parts = [torch.nn.functional.pad(c[i], (0, width - c[i].shape[1]), value=value) for c in chunks]
            return torch.cat(parts)

        input_ids, attn, cmask, logprobs = cat(0, pad), cat(1, 0), cat(2, 0.0), cat(3, 0.0)
        truncated = torch.cat([c[4] for c in chunks])
        entropy = cat(5, 0.0)
        gen = input_ids[:, prompt_len:]
        keep = cmask[:, prompt_len:].bool()
        texts = tokenizer.batch_decode(gen.masked_fill(~keep, pad).tolist(), skip_special_tokens=True)
        return Samples(input_ids, attn, cmask, logprobs, texts, truncated, prompt_len, entropy=entropy)

    def _sample_chunk(self, model, tokenizer, encoded, prompt_len, n, params, generator, kv_dtype=None) -> _Chunk:
        with eval_mode(model):  # every submodule's own mode restored, also on an exception
            return self._decode(model, tokenizer, encoded, prompt_len, n, params, generator, kv_dtype)

    def _prefill(self, model, prompt: Tensor, pmask: Tensor, n: int, share: bool, capacity: int,
                 kv_dtype: torch.dtype | None = None) -> tuple[Any, Tensor]:
        """KV cache and last-position logits ``[B·n, V]`` of the ``[B, P]`` prompts, each repeated n times
        (``share``: prefilled once per prompt, then the cache is repeated; ``fast_kernels``: a cache with
        room for ``capacity`` positions, storing K/V in ``kv_dtype`` if given)."""
        kwargs = dict(attention_mask=pmask, position_ids=position_ids_from_mask(pmask), use_cache=True)
        cache = reserved_cache(model, capacity, kv_dtype) if self.fast_kernels else None
        if cache is not None:
            kwargs["past_key_values"] = cache
        share = share and n > 1
        rows = prompt if share else prompt.repeat_interleave(n, 0)
        if not share:
            kwargs = {**kwargs, "attention_mask": pmask.repeat_interleave(n, 0),
                      "position_ids": kwargs["position_ids"].repeat_interleave(n, 0)}
        out = model(input_ids=rows, logits_to_keep=1, **kwargs)  # as token_logprobs, needs logits_to_keep
        cache, logits = out.past_key_values, out.logits[:, -1].float()  # [rows, V]
        if share:
            if _supports(cache, "batch_repeat_interleave"):
                cache.batch_repeat_interleave(n)
                logits = logits.repeat_interleave(n, 0)
            else:  # a cache that cannot be repeated in place: prefill every row after all
                return self._prefill(model, prompt, pmask, n, share=False, capacity=capacity, kv_dtype=kv_dtype)
        return cache, logits

    def _decode(self, model, tokenizer, encoded, prompt_len, n, params, generator, kv_dtype=None) -> _Chunk:
        device = next(model.parameters()).device
        pad, eos = tokenizer.pad_token_id, tokenizer.eos_token_id
        b = len(encoded)
        prompt = torch.full((b, prompt_len), pad, dtype=torch.long)  # [B, P] left-padded
        pmask = torch.zeros((b, prompt_len), dtype=torch.long)
        for i, ids in enumerate(encoded):
            prompt[i, prompt_len - len(ids) :] = torch.tensor(ids)
            pmask[i, prompt_len - len(ids) :] = 1
        prompt, pmask = prompt.to(device), pmask.to(device)
        cache, logits = self._prefill(model, prompt, pmask, n, self.share_prompt,
                                      capacity=prompt_len + params.max_new_tokens, kv_dtype=kv_dtype)  # [N, V]
        prompt, pmask = prompt.repeat_interleave(n, 0), pmask.repeat_interleave(n, 0)  # [N, P]
        num = prompt.shape[0]

        L = params.max_new_tokens
        tokens = torch.full((num, L), pad, dtype=torch.long, device=device)  # [N, L]
        lps = torch.zeros((num, L), device=device)  # [N, L] log π_θ of each drawn token
        ents = torch.zeros((num, L), device=device)  # [N, L] entropy of π_θ(·|prefix), for entropy-ratio clipping
        cmask = torch.zeros((num, L), device=device)
        rows = torch.arange(num, device=device)  # [A] which of the N rows each decoded row is
        running = torch.ones(num, dtype=torch.bool, device=device)  # [A]
        attn = pmask  # [A, P + step]
        next_pos = attn.sum(-1, keepdim=True)  # [A, 1]
        plain = params.temperature == 1.0 and params.top_p >= 1.0  # draw from π_θ itself
        compact = self.compact_frac > 0 and _supports(cache, "batch_select_indices")
        steps = 0
        for step in range(L):
            steps = step + 1
            logp = logits.log_softmax(-1)  # [A, V] π_θ at temperature 1
            probs = logp.exp()  # [A, V]
            if plain:
                tok = _draw(probs, generator)  # [A]
            else:
                tok = _draw(_filter_top_p(logits / params.temperature, params.top_p).softmax(-1), generator)
            tok = torch.where(running, tok, pad)
            tokens[rows, step] = tok
            lps[rows, step] = torch.where(running, logp.gather(-1, tok.unsqueeze(-1)).squeeze(-1), 0.0)
            ent = -(probs * logp).sum(-1)  # [A] −Σ_v p log p over the full vocabulary
            ents[rows, step] = torch.where(running, ent, 0.0)
            cmask[rows, step] = running.float()
            running = running & (tok != eos)
            alive = int(running.sum())  # the one host sync per token
            if alive == 0 or step == L - 1:
                break
            if compact and (running.numel() - alive) * self.compact_frac >= running.numel():
                keep = running.nonzero().squeeze(-1)  # [A'] the rows still running
                cache.batch_select_indices(keep)
                rows, running, tok = rows[keep], running[keep], tok[keep]
                attn, next_pos = attn[keep], next_pos[keep]
            attn = torch.cat([attn, running.long().unsqueeze(-1)], dim=1)
            out = model(input_ids=tok.unsqueeze(-1), attention_mask=attn, position_ids=next_pos,
                        past_key_values=cache, use_cache=True)
            cache, logits = out.past_key_values, out.logits[:, -1].float()
            next_pos = next_pos + 1
        truncated = torch.zeros(num, dtype=torch.bool, device=device)
        truncated[rows] = running  # still running after the last step: no EOS within the budget
        tokens, lps, cmask, ents = tokens[:, :steps], lps[:, :steps], cmask[:, :steps], ents[:, :steps]
        zeros = torch.zeros_like(pmask, dtype=torch.float)
        return (
            torch.cat([prompt, tokens], 1).cpu(),
            torch.cat([pmask, cmask.long()], 1).cpu(),
            torch.cat([zeros, cmask], 1).cpu(),
            torch.cat([zeros, lps], 1).cpu(),
            truncated.cpu(),
            torch.cat([zeros, ents], 1).cpu(),
        )

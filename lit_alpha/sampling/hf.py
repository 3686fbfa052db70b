"""KV-cached batched sampling with a Hugging Face causal LM (the CPU default).

A lean decoding loop instead of ``model.generate``: one prefill, then one forward per new token on
the rows still running, with the per-token log-prob of π_θ recorded as we go (no second pass).
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor

from lit_alpha.sampling.base import Samples, SamplingParams
from lit_alpha.sampling.logprobs import position_ids_from_mask


def _filter_top_p(logits: Tensor, top_p: float) -> Tensor:
    """Mask logits outside the smallest set whose probability mass reaches ``top_p``.  # [N, V]"""
    if top_p >= 1.0:
        return logits
    sorted_logits, order = logits.sort(dim=-1, descending=True)
    probs = sorted_logits.softmax(-1)
    drop = probs.cumsum(-1) - probs >= top_p  # keep the token that crosses the threshold
    sorted_logits = sorted_logits.masked_fill(drop, float("-inf"))
    return torch.empty_like(logits).scatter_(-1, order, sorted_logits)


class HFSampler:
    """Sample with any ``transformers`` causal LM on CPU or GPU.

    Args:
        max_batch: most sequences decoded at once; larger requests are split into chunks of whole
            prompt groups (bounds memory for evaluation with many samples per problem).
    """

    def __init__(self, max_batch: int = 1024) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        self.max_batch = max_batch

    def _encode(self, tokenizer, prompts: Sequence[str]) -> list[list[int]]:
        return [tokenizer(p)["input_ids"] for p in prompts]

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
        chunks = [
            self._sample_chunk(model, tokenizer, encoded[i : i + per_chunk], prompt_len, n, params, generator)
            for i in range(0, len(encoded), per_chunk)
        ]
        width = max(c[0].shape[1] for c in chunks)
        pad = tokenizer.pad_token_id

        def cat(i: int, value: float) -> Tensor:
            parts = [torch.nn.functional.pad(c[i], (0, width - c[i].shape[1]), value=value) for c in chunks]
            return torch.cat(parts)

        input_ids, attn, cmask, logprobs = cat(0, pad), cat(1, 0), cat(2, 0.0), cat(3, 0.0)
        truncated = torch.cat([c[4] for c in chunks])
        entropy = cat(5, 0.0)
        gen = input_ids[:, prompt_len:]
        keep = cmask[:, prompt_len:].bool()
        texts = tokenizer.batch_decode(gen.masked_fill(~keep, pad).tolist(), skip_special_tokens=True)
        return Samples(input_ids, attn, cmask, logprobs, texts, truncated, prompt_len, entropy=entropy)

    def _sample_chunk(self, model, tokenizer, encoded, prompt_len, n, params, generator):
        was_training = model.training
        model.eval()
        try:
            return self._decode(model, tokenizer, encoded, prompt_len, n, params, generator)
        finally:
            model.train(was_training)

    def _decode(self, model, tokenizer, encoded, prompt_len, n, params, generator):
        device = next(model.parameters()).device
        pad, eos = tokenizer.pad_token_id, tokenizer.eos_token_id
        rows = [e for e in encoded for _ in range(n)]
        num = len(rows)
        prompt = torch.full((num, prompt_len), pad, dtype=torch.long)
        pmask = torch.zeros((num, prompt_len), dtype=torch.long)
        for i, ids in enumerate(rows):  # left padding
            prompt[i, prompt_len - len(ids) :] = torch.tensor(ids)
            pmask[i, prompt_len - len(ids) :] = 1
        prompt, pmask = prompt.to(device), pmask.to(device)

        L = params.max_new_tokens
        tokens = torch.full((num, L), pad, dtype=torch.long, device=device)  # [N, L]
        lps = torch.zeros((num, L), device=device)
        ents = torch.zeros((num, L), device=device)  # [N, L] entropy of π_θ(·|prefix), for entropy-ratio clipping
        cmask = torch.zeros((num, L), device=device)
        running = torch.ones(num, dtype=torch.bool, device=device)
        attn = pmask
        out = model(input_ids=prompt, attention_mask=attn, position_ids=position_ids_from_mask(attn), use_cache=True)
        cache, logits = out.past_key_values, out.logits[:, -1].float()  # [N, V]
        next_pos = attn.sum(-1, keepdim=True)  # [N, 1]
        steps = 0
        for step in range(L):
            steps = step + 1
            logp = logits.log_softmax(-1)  # π_θ at temperature 1
            scaled = _filter_top_p(logits / params.temperature, params.top_p)
            probs = scaled.softmax(-1)
            tok = torch.multinomial(probs, 1, generator=generator).squeeze(-1)  # [N]
            tok = torch.where(running, tok, torch.full_like(tok, pad))
            tokens[:, step] = tok
            lps[:, step] = torch.where(running, logp.gather(-1, tok.unsqueeze(-1)).squeeze(-1), 0.0)
            ent = -(logp.exp() * logp).sum(-1)  # [N] −Σ_v p log p over the full vocabulary
            ents[:, step] = torch.where(running, ent, 0.0)
            cmask[:, step] = running.float()
            running = running & (tok != eos)
            if not running.any() or step == L - 1:
                break
            attn = torch.cat([attn, running.long().unsqueeze(-1)], dim=1)
            out = model(input_ids=tok.unsqueeze(-1), attention_mask=attn, position_ids=next_pos,
                        past_key_values=cache, use_cache=True)
            cache, logits = out.past_key_values, out.logits[:, -1].float()
            next_pos = next_pos + 1
        tokens, lps, cmask, ents = tokens[:, :steps], lps[:, :steps], cmask[:, :steps], ents[:, :steps]
        gen_attn = cmask.long()
        return (
            torch.cat([prompt, tokens], 1).cpu(),
            torch.cat([pmask, gen_attn], 1).cpu(),
            torch.cat([torch.zeros_like(pmask, dtype=torch.float), cmask], 1).cpu(),
            torch.cat([torch.zeros_like(pmask, dtype=torch.float), lps], 1).cpu(),
            running.cpu(),
            torch.cat([torch.zeros_like(pmask, dtype=torch.float), ents], 1).cpu(),
        )

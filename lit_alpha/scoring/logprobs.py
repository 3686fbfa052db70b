"""Per-token log-probs of given tokens under a causal LM, aligned with ``input_ids``.

Memory: the logits of a batch are ``[N, L, V]`` (rows × completion length × vocabulary), which for a
150k vocabulary dwarfs everything else a training step holds, and autograd would keep them (and a
softmax-sized tensor) alive until the backward. :func:`token_logprobs` therefore runs the decoder
backbone once (``[N, L, H]`` hidden states) and applies the output embedding in chunks of rows, each
under non-reentrant activation checkpointing: a chunk's logits exist only while that chunk is being
computed, in the forward and again in the backward. Models whose logits are not simply
``output_embeddings(hidden)`` (soft-capped or scaled logits) take the plain full-logits path instead.
"""

from __future__ import annotations

import logging
import weakref
from typing import Callable

import torch
from torch import Tensor
from torch.utils.checkpoint import checkpoint

from lit_alpha.models import AdapterDisabled, eval_mode
from lit_alpha.scoring.layout import completion_states, position_ids_from_mask

log = logging.getLogger(__name__)

LOGITS_PER_CHUNK = 2**26
"""Default chunk size in logit elements (256 MiB of float32): ``chunk_tokens = LOGITS_PER_CHUNK // V``
rows. The embedded 23-token model fits any batch in one chunk; a 150k vocabulary gets 441 rows."""

# config fields that make the logits something other than ``output_embeddings(hidden)``
_LOGIT_TRANSFORMS = ("final_logit_softcapping", "logit_scale", "logits_scaling", "output_multiplier",
                     "lm_head_multiplier")
_EXACT: "weakref.WeakKeyDictionary[torch.nn.Module, bool]" = weakref.WeakKeyDictionary()


def entropy_from_logits(logits: Tensor, chunk_tokens: int = 1024) -> Tensor:
    """Full-vocabulary entropy ``H = −Σ_v p_v log p_v`` of each row of ``logits [..., V]``, detached.

    Computed as ``H = logsumexp(z) − Σ_v softmax(z)_v · z_v`` over chunks of ``chunk_tokens`` rows, so
    for contiguous float32 logits at most one ``[chunk_tokens, V]`` float tensor (the chunk's softmax)
    exists at a time beyond the logits themselves; the dot product is a batched matmul, which allocates
    no second ``[chunk, V]``. (Other dtypes add the chunk's float32 upcast; non-contiguous logits are
    copied once by ``reshape``.) Logits must be finite. Returns ``[...]`` in float32, computed in float32
    (autocast off) whatever the caller's precision context.
    """
    if chunk_tokens < 1:
        raise ValueError(f"chunk_tokens must be >= 1, got {chunk_tokens}")
    # float32 throughout, also inside a bf16-mixed region (autocast would lower the bmm to bf16)
    with torch.no_grad(), torch.autocast(logits.device.type, enabled=False):
        flat = logits.detach().reshape(-1, logits.shape[-1])  # [M, V], a view
        out = torch.empty(flat.shape[0], dtype=torch.float32, device=logits.device)  # [M]
        for start in range(0, flat.shape[0], chunk_tokens):
            z = flat[start : start + chunk_tokens].float()  # [c, V] (a view when already float32)
            lse = torch.logsumexp(z, dim=-1)  # [c]
            p = (z - lse[:, None]).exp_()  # [c, V]: the one chunk-sized temporary
            dot = torch.bmm(p.unsqueeze(1), z.unsqueeze(2)).reshape(-1)  # [c] Σ_v p_v z_v
            out[start : start + chunk_tokens] = lse - dot
            del p
    return out.reshape(logits.shape[:-1])


def token_logprobs(
    model: torch.nn.Module,
    input_ids: Tensor,
    attention_mask: Tensor,
    prompt_len: int,
    with_entropy: bool = False,
    entropy_chunk_tokens: int = 1024,
    chunk_tokens: int | None = None,
) -> Tensor | tuple[Tensor, Tensor]:
    """``out[i, t] = log π(input_ids[i, t] | input_ids[i, :t])`` for t ≥ prompt_len where
    ``attention_mask[i, t]`` is 1 (completion tokens), else 0 (prompt, padding).

    Returns ``[N, T]`` in float32, differentiable when grad is enabled. Under bf16-mixed autocast the
    backbone and the output layer run in bf16; the logits are upcast to float32 before the log-softmax
    (and the entropy), so every log-prob is a float32 reduction of bf16-rounded logits. With
    ``with_entropy`` it returns ``(logprobs, entropy)``, ``entropy[i, t]`` the full-vocabulary entropy of ``π(·|input_ids[i, :t])``
    (detached, ``[N, T]``, 0 where the log-prob is 0). Only completion tokens run through the output
    layer, and shared prompts and padding are not run through the backbone (:mod:`lit_alpha.scoring.layout`).

    ``chunk_tokens`` bounds memory: the ``N·L`` completion positions (``L = T − prompt_len``) go through
    the output embedding this many at a time, each chunk under activation checkpointing, so neither the
    forward nor the backward ever holds more than one chunk's ``[chunk_tokens, V]`` logits. None: as
    many as fit in :data:`LOGITS_PER_CHUNK` elements. 0: the plain forward, all ``[N, L, V]`` logits at
    once (``logits_to_keep``), which is also what models with soft-capped or scaled logits, or without
    ``get_decoder``/``get_output_embeddings``, always use. Both paths give the same numbers. ``model``
    may be a peft ``PeftModel`` (LoRA) or a :class:`lit_alpha.models.AdapterDisabled` view of one.
    """
    if chunk_tokens is not None and chunk_tokens < 0:
        raise ValueError(f"chunk_tokens must be >= 0 or None, got {chunk_tokens}")
    if not 1 <= prompt_len <= input_ids.shape[1]:
        raise ValueError(f"prompt_len must be in [1, {input_ids.shape[1]}], got {prompt_len}")
    if isinstance(model, AdapterDisabled):  # π_base of a LoRA policy: the policy with adapters off
        with model.unwrapped() as inner:
            return token_logprobs(inner, input_ids, attention_mask, prompt_len, with_entropy,
                                  entropy_chunk_tokens, chunk_tokens)
    no_completion = prompt_len == input_ids.shape[1]  # nothing to score: the plain path returns zeros
    parts = None if chunk_tokens == 0 or no_completion else _backbone_and_head(model, input_ids, attention_mask)
    if parts is None:
        return _full_logprobs(model, input_ids, attention_mask, prompt_len, with_entropy, entropy_chunk_tokens)
    backbone, head = parts
    n, t = input_ids.shape
    # valid completion positions only: shared prompts run once, padding is bucketed away (layout.py)
    hidden, targets, dest = completion_states(backbone, input_ids, attention_mask, prompt_len)  # [M, H], [M], [M]
    rows = chunk_tokens or max(1, LOGITS_PER_CHUNK // _vocab_size(model, head))
    # one chunk: checkpointing would only add a recompute (the forward holds those logits anyway)
    recompute = torch.is_grad_enabled() and hidden.requires_grad and hidden.shape[0] > rows
    # no completion token at all: empty, but still on the graph (a loss over it backpropagates zeros)
    lps, ents = ([hidden.sum(-1)], [hidden.new_zeros(0)]) if hidden.shape[0] == 0 else ([], [])
    for start in range(0, hidden.shape[0], rows):
        h, y = hidden[start : start + rows], targets[start : start + rows]  # [c, H], [c]
        ent: list[Tensor] = [] if with_entropy else None
        fn = _chunk_fn(head, ent, entropy_chunk_tokens)
        if recompute:  # the chunk's logits are freed now and recomputed in its backward
            lps.append(checkpoint(fn, h, y, use_reentrant=False))
        else:
            lps.append(fn(h, y))
        ents.extend(ent or [])
    lp = _scatter(torch.cat(lps), dest, n, t, prompt_len)  # [N, T]
    if not with_entropy:
        return lp
    return lp, _scatter(torch.cat(ents), dest, n, t, prompt_len)  # [N, T], [N, T]


def _scatter(values: Tensor, dest: Tensor, n: int, t: int, prompt_len: int) -> Tensor:
    """``[M]`` values at flat completion positions ``dest`` → ``[N, T]``, 0 elsewhere (differentiable)."""
    flat = values.new_zeros(n * (t - prompt_len)).index_put((dest,), values)  # [N*L]
    return torch.cat([values.new_zeros(n, prompt_len), flat.reshape(n, t - prompt_len)], dim=1)


def _chunk_fn(head: torch.nn.Module, ent_out: list[Tensor] | None,
              ent_chunk: int) -> Callable[[Tensor, Tensor], Tensor]:
    """Log-probs of one chunk: ``(h [c, H], y [c]) -> [c]``; appends the chunk's entropy ``[c]`` to
    ``ent_out`` on its first call only (the backward's recompute needs no entropy)."""

    def fn(h: Tensor, y: Tensor) -> Tensor:
        logits = head(h).float()  # [c, V]
        lp = logits.gather(-1, y.unsqueeze(-1)).squeeze(-1) - torch.logsumexp(logits, dim=-1)  # [c]
        if ent_out is not None and not ent_out:
            ent_out.append(entropy_from_logits(logits, ent_chunk))  # [c], detached
        return lp

    return fn


def _full_logprobs(model: torch.nn.Module, input_ids: Tensor, attention_mask: Tensor, prompt_len: int,
                   with_entropy: bool, entropy_chunk_tokens: int) -> Tensor | tuple[Tensor, Tensor]:
    """The plain path: one forward that materialises the ``[N, L, V]`` completion logits."""
    n, t = input_ids.shape
    keep = t - prompt_len + 1  # logits at positions P-1 .. T-1 (the last one predicts nothing)
    out = model(
        input_ids=input_ids,
        attention_mask=attention_mask,
        position_ids=position_ids_from_mask(attention_mask),
        logits_to_keep=keep,
        use_cache=False,
    )
    logits = out.logits[:, :-1].float()  # [N, L, V] predicting tokens P .. T-1
    targets = input_ids[:, prompt_len:]  # [N, L]
    picked = logits.gather(-1, targets.unsqueeze(-1)).squeeze(-1)  # [N, L]
    valid = attention_mask[:, prompt_len:].bool()  # [N, L]: 0 where the completion is padding
    lp = (picked - torch.logsumexp(logits, dim=-1)).masked_fill(~valid, 0.0)  # [N, L]
    lp = torch.cat([lp.new_zeros(n, prompt_len), lp], dim=1)  # [N, T]
    if not with_entropy:
        return lp
    ent = entropy_from_logits(out.logits, entropy_chunk_tokens)[:, :-1].masked_fill(~valid, 0.0)  # [N, L]
    return lp, torch.cat([ent.new_zeros(n, prompt_len), ent], dim=1)  # [N, T], [N, T]


def _backbone_and_head(model: torch.nn.Module, input_ids: Tensor,
                       attention_mask: Tensor) -> tuple[torch.nn.Module, torch.nn.Module] | None:
    """``(decoder backbone, output embedding)`` when ``logits == head(backbone(...).last_hidden_state)``
    for ``model``, else None (the caller then takes the full-logits path).

    A peft LoRA model is unwrapped to its (adapter-injected) transformers model. An FSDP-wrapped model
    is excluded: its root's own parameters (embeddings, head) are gathered only inside its forward.
    Known logit transforms in the config exclude a model at once; otherwise the first call per model
    checks the claim numerically on one row of the batch (eval mode, no grad) and remembers the answer.
    """
    if _fsdp_wrapped(model):
        return None
    if hasattr(model, "get_base_model") and hasattr(model, "peft_config"):  # peft.PeftModel
        config = getattr(model, "active_peft_config", None)
        if config is None or getattr(config, "is_prompt_learning", False):
            return None  # prompt tuning prepends virtual tokens: only the model's own forward is exact
        model = model.get_base_model()
    get_decoder = getattr(model, "get_decoder", None)
    get_head = getattr(model, "get_output_embeddings", None)
    if get_decoder is None or get_head is None:
        return None
    backbone, head = get_decoder(), get_head()
    if backbone is None or backbone is model or head is None:
        return None
    config = getattr(model, "config", None)
    configs = [config, config.get_text_config()] if hasattr(config, "get_text_config") else [config]
    for cfg in configs:
        for name in _LOGIT_TRANSFORMS:
            if getattr(cfg, name, None) not in (None, 1, 1.0):
                return None
    exact = _EXACT.get(model)
    if exact is None:
        exact = _EXACT[model] = _matches_forward(model, backbone, head, input_ids[:1], attention_mask[:1])
        if not exact:
            log.warning("token_logprobs: %s's logits are not output_embeddings(hidden states); using the "
                        "full-logits path (memory grows with N x L x vocabulary)", type(model).__name__)
    return (backbone, head) if exact else None


def _fsdp_wrapped(model: torch.nn.Module) -> bool:
    """Is ``model`` an FSDP (1 or 2) root? Calling its submodules directly would see sharded weights."""
    try:
        from torch.distributed.fsdp import FSDPModule, FullyShardedDataParallel
    except ImportError:  # a torch built without distributed
        return False
    return isinstance(model, (FullyShardedDataParallel, FSDPModule))


def _vocab_size(model: torch.nn.Module, head: torch.nn.Module) -> int:
    """Rows of the output embedding (V), from its weight or else the model config."""
    weight = getattr(head, "weight", None)
    if isinstance(weight, Tensor) and weight.dim() == 2:
        return int(weight.shape[0])
    config = getattr(model, "config", None)
    return int(getattr(config.get_text_config() if hasattr(config, "get_text_config") else config, "vocab_size"))


def _matches_forward(model: torch.nn.Module, backbone: torch.nn.Module, head: torch.nn.Module,
                     input_ids: Tensor, attention_mask: Tensor) -> bool:
    """Does ``head(backbone(x))`` reproduce ``model(x).logits`` on this ``[1, T]`` row?"""
    keep = min(input_ids.shape[1], 8)
    kwargs = dict(input_ids=input_ids, attention_mask=attention_mask,
                  position_ids=position_ids_from_mask(attention_mask), use_cache=False)
    with torch.no_grad(), eval_mode(model):
        want = model(**kwargs, logits_to_keep=keep).logits.float()  # [1, keep, V]
        out = backbone(**kwargs)
        hidden = out.last_hidden_state if hasattr(out, "last_hidden_state") else out[0]
        got = head(hidden[:, -keep:]).float()  # [1, keep, V]
    tol = 1e-4 if hidden.dtype == torch.float32 else 1e-2
    return got.shape == want.shape and torch.allclose(got, want, rtol=tol, atol=tol)

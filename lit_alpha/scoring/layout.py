"""How a batch's rows go through the decoder backbone for :func:`~lit_alpha.scoring.logprobs.token_logprobs`:
only the work the log-probs need.

A training batch is ``[N, T] = [N, P + L]``: left-padded prompts, then completions right-padded to the
longest one. Two kinds of waste are removed, without changing any number beyond float rounding:

* **Shared prompts.** The sampler lays out a prompt's n samples as contiguous rows. Each distinct
  prompt runs once with a KV cache; the cache is gathered to its rows (a differentiable index) and only
  the completions run on top: (n−1)/n of the prompt's forward *and* backward are gone.
* **Padding.** Completions end at different lengths, and one long one pads the whole batch to its
  width (with 512 samples of the embedded model: width 32 for a mean of 10 tokens). Rows are sorted by
  completion length and split into up to :data:`MAX_BUCKETS` buckets (chosen by a small dynamic
  programme over the lengths, only when they save at least :data:`MIN_SAVING` of the padded work), each
  run at its own width.

The result is the hidden states at the *valid* completion positions only (``attention_mask`` 1 there),
flattened, with their targets and flat destinations: the output layer then runs on real tokens only.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import Tensor

MAX_BUCKETS = 4
"""Most length buckets per batch (each is one backbone call)."""
MIN_SAVING = 0.1
"""Buckets are used only when they cut the padded positions run through the backbone by this fraction."""
_DP_LEVELS = 64  # lengths are rounded up to at most this many levels for the bucket search


def position_ids_from_mask(attention_mask: Tensor) -> Tensor:
    """Positions that ignore left padding, so a padded row sees the positions it would alone."""
    return (attention_mask.long().cumsum(-1) - 1).clamp_min(0)  # [N, T]


def prompt_groups(input_ids: Tensor, attention_mask: Tensor, prompt_len: int) -> Tensor | None:
    """``[N]``: the index of each row's prompt among the distinct prompts, when rows that share a prompt
    are contiguous (the sampler's layout: a prompt's n samples are rows ``i·n … i·n+n−1``); None when
    no two neighbouring rows share their prompt (nothing to gain)."""
    ids = input_ids[:, :prompt_len] * attention_mask[:, :prompt_len]  # [N, P] (padding ids ignored)
    mask = attention_mask[:, :prompt_len]
    new = torch.ones(ids.shape[0], dtype=torch.bool, device=ids.device)  # [N] row starts a new prompt
    new[1:] = (ids[1:] != ids[:-1]).any(-1) | (mask[1:] != mask[:-1]).any(-1)
    if bool(new.all()):
        return None
    return new.long().cumsum(0) - 1


def length_buckets(extent: Tensor, overhead: int) -> list[tuple[Tensor, int]]:
    """Split rows by completion extent: ``[(row indices, width)]``, every row in exactly one bucket, its
    extent ≤ the bucket's width.

    Minimises ``Σ_b rows_b · (width_b + overhead)`` (``overhead``: positions every row runs besides
    its completion, the prompt when it is not shared) over at most :data:`MAX_BUCKETS` buckets of rows
    sorted by extent; one bucket unless that saves :data:`MIN_SAVING`.
    """
    order = torch.argsort(extent, stable=True)  # [N]
    ext = extent[order].tolist()
    n, top = len(ext), max(ext[-1], 1)
    step = -(-top // _DP_LEVELS)  # round extents up to multiples of this for the search
    levels = [-(-e // step) * step if step > 1 else e for e in ext]
    vals, ends = [], []  # distinct levels and the sorted position just past each
    for i, v in enumerate(levels):
        if vals and vals[-1] == v:
            ends[-1] = i + 1
        else:
            vals.append(v)
            ends.append(i + 1)
    one = n * (top + overhead)
    if len(vals) == 1:
        return [(order, top)]
    starts = [0] + ends[:-1]
    inf = float("inf")
    k_max = min(MAX_BUCKETS, len(vals))
    # best[k][j]: least cost of the first j distinct levels in k buckets; the last bucket ends at level j-1
    best = [[inf] * (len(vals) + 1) for _ in range(k_max + 1)]
    back = [[0] * (len(vals) + 1) for _ in range(k_max + 1)]
    best[0][0] = 0.0
    for k in range(1, k_max + 1):
        for j in range(1, len(vals) + 1):
            width = min(vals[j - 1], top)
            for i in range(j):
                if best[k - 1][i] < inf:
                    cost = best[k - 1][i] + (ends[j - 1] - starts[i]) * (width + overhead)
                    if cost < best[k][j]:
                        best[k][j], back[k][j] = cost, i
    k = min(range(1, k_max + 1), key=lambda kk: best[kk][len(vals)])
    if best[k][len(vals)] > (1.0 - MIN_SAVING) * one:
        return [(order, top)]
    cuts, j = [], len(vals)
    while k > 0:
        i = back[k][j]
        cuts.append((starts[i], ends[j - 1]))
        j, k = i, k - 1
    return [(order[a:b], max(ext[b - 1], 1)) for a, b in reversed(cuts)]


def completion_states(backbone: torch.nn.Module, input_ids: Tensor, attention_mask: Tensor,
                      prompt_len: int) -> tuple[Tensor, Tensor, Tensor]:
    """The backbone's last hidden state before each valid completion token, ``[M, H]``, that token
    ``[M]``, and its flat position in the ``[N, L]`` completion grid ``[M]`` (``M`` = the number of
    completion positions with ``attention_mask`` 1)."""
    n, t = input_ids.shape
    comp = attention_mask[:, prompt_len:].bool()  # [N, L]
    span = torch.arange(1, t - prompt_len + 1, device=comp.device)  # [L]
    extent = (comp * span).amax(-1)  # [N] one past each row's last valid completion position
    position_ids = position_ids_from_mask(attention_mask)  # [N, T]
    # HF turns the cache off under gradient checkpointing in training: nothing could be shared then
    checkpointed = bool(getattr(backbone, "gradient_checkpointing", False)) and backbone.training
    groups = None if checkpointed else prompt_groups(input_ids, attention_mask, prompt_len)
    prefix = None
    if groups is not None:
        firsts = torch.nonzero(torch.diff(groups, prepend=groups.new_full((1,), -1))).squeeze(-1)  # [B]
        pre = backbone(input_ids=input_ids[firsts, :prompt_len], attention_mask=attention_mask[firsts, :prompt_len],
                       position_ids=position_ids[firsts, :prompt_len], use_cache=True)
        cache = getattr(pre, "past_key_values", None)
        if cache is not None and callable(getattr(cache, "batch_select_indices", None)):
            prefix = (pre.last_hidden_state[:, -1], cache)  # [B, H]: predicts token P
    buckets = length_buckets(extent, 0 if prefix is not None else prompt_len)
    if prefix is not None and len(buckets) > 1 and not hasattr(prefix[1], "layers"):
        buckets = [(torch.arange(n, device=input_ids.device), max(int(extent.max()), 1))]  # one in-place select
    states, targets, dest = [], [], []
    for rows, width in buckets:
        ids, mask = input_ids[rows, : prompt_len + width], attention_mask[rows, : prompt_len + width]
        if prefix is not None:
            last, cache = prefix
            cache = _rows_of(cache, groups[rows], shared=len(buckets) == 1)
            tail = backbone(input_ids=ids[:, prompt_len:], attention_mask=mask,
                            position_ids=position_ids[rows, prompt_len : prompt_len + width],
                            past_key_values=cache, use_cache=True)
            hidden = torch.cat([last[groups[rows]].unsqueeze(1), tail.last_hidden_state[:, :-1]], dim=1)  # [n_b, w, H]
        else:
            out = backbone(input_ids=ids, attention_mask=mask, position_ids=position_ids[rows, : prompt_len + width],
                           use_cache=False)
            full = out.last_hidden_state if hasattr(out, "last_hidden_state") else out[0]  # [n_b, P + w, H]
            hidden = full[:, prompt_len - 1 : prompt_len + width - 1]  # [n_b, w, H]
        valid = mask[:, prompt_len:].bool()  # [n_b, w]
        states.append(hidden[valid])  # [m_b, H]
        targets.append(ids[:, prompt_len:][valid])  # [m_b]
        grid = rows[:, None] * (t - prompt_len) + torch.arange(width, device=rows.device)  # [n_b, w]
        dest.append(grid[valid])
    return torch.cat(states), torch.cat(targets), torch.cat(dest)


def _rows_of(cache: Any, index: Tensor, shared: bool) -> Any:
    """The prefix cache gathered to ``index`` rows: in place when it is used once (``shared``), else on
    a shallow copy whose layers rebind their own gathered tensors (the original stays intact)."""
    if not shared:
        cache = copy.copy(cache)
        cache.layers = [copy.copy(layer) for layer in cache.layers]
    cache.batch_select_indices(index)
    return cache

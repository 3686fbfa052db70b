"""How close a policy is to the target ``p_x(y) = π_base(y|x)·v(y,x) / Z_x``, measured directly.

The base model's own verified samples are exact samples of ``p_x``: the evaluation of the base model
already draws n of them per problem and keeps the token ids of the correct ones
(``correct_samples``: ``{"id id id": count}`` in the per-problem table, see :mod:`lit_alpha.analysis.evaluate`).
For any policy π_θ, teacher-forcing those sequences under π_θ and π_base gives, per problem the base
solves (``c > 0``), with ``ẑ = c/n`` and weights ``w_y = count_y / c``:

* forward KL, the quantity α → 0 minimises (nats)::

      KL(p_x‖π_θ) = E_{y~p}[log π_base(y) − log Z_x − log π_θ(y)]
                  ≈ Σ_y w_y (lp_base(y) − lp_θ(y)) − log ẑ

  For π_θ = π_base it is ``−log Z_x``: the base is that far from its own filtered version.
* Amari's α-divergence for α ∈ (0, 1), in the convention where α → 0 is ``KL(p‖π)`` and α → 1 is
  ``KL(π‖p)`` (the paper's)::

      D_α(p_x‖π_θ) = (1 − E_{y~p}[(π_θ(y)/p_x(y))^α]) / (α(1−α)),

  estimable from samples of p alone because ``p^{1−α}π^α`` vanishes off p's support for α < 1.
  At α = 1 it needs π_θ's mass outside the support (reverse KL), which p's samples cannot see: not
  reported there (nor at α = 0, where the forward KL above is the value).

π_base is the evaluated module's frozen base (the run's ``model.model``): the divergence is meaningful
when the target table comes from that same base model (``evaluate`` finds the run named ``base`` of the
experiment, evaluated with the same config).

Both use the plug-in ``ẑ = c/n`` (biased for small c, the same for every method evaluated against
the same base table, so comparisons are fair). Problems the base never solves have no p samples and
get ``None``; means are over the problems the base solves.
"""

from __future__ import annotations

import contextlib
import math
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from lit_alpha.models.loading import eval_mode
from lit_alpha.scoring.logprobs import token_logprobs


def completion_ids(input_ids: torch.Tensor, completion_mask: torch.Tensor, prompt_len: int) -> list[str]:
    """Each row's completion token ids (EOS included), as ``"id id id"`` keys.  # [N, T] → N strings"""
    comp = input_ids[:, prompt_len:].tolist()  # [N, L]
    keep = (completion_mask[:, prompt_len:] > 0).tolist()  # [N, L]
    return [" ".join(str(t) for t, k in zip(row, m) if k) for row, m in zip(comp, keep)]


@torch.no_grad()
def sequence_logprobs(model: torch.nn.Module, prompt_ids: Sequence[int], completions: Sequence[Sequence[int]],
                      pad_id: int) -> np.ndarray:
    """``Σ_t log π(y_t | prompt, y_<t)`` for each completion of one prompt, float64 ``[M]``."""
    if not completions:
        return np.zeros(0)
    p, width = len(prompt_ids), max(len(c) for c in completions)
    device = next(model.parameters()).device
    ids = torch.full((len(completions), p + width), pad_id, dtype=torch.long)  # [M, P+L]
    mask = torch.zeros_like(ids)  # [M, P+L]
    ids[:, :p] = torch.tensor(list(prompt_ids))
    mask[:, :p] = 1
    for i, c in enumerate(completions):
        ids[i, p : p + len(c)] = torch.tensor(list(c), dtype=torch.long)
        mask[i, p : p + len(c)] = 1
    lp = token_logprobs(model, ids.to(device), mask.to(device), p)  # [M, P+L], 0 off the completion
    return lp.double().sum(-1).cpu().numpy()


def problem_divergences(lp_theta: np.ndarray, lp_base: np.ndarray, counts: np.ndarray, c: int, n: int,
                        alpha: float | None) -> dict[str, float]:
    """One problem's forward KL (and D_α when α ∈ (0, 1)) from its distinct p samples ``[M]``."""
    w = counts / counts.sum()  # [M] empirical p over the distinct correct sequences
    log_z = math.log(c / n)
    out = {"fkl_to_target": float(np.sum(w * (lp_base - lp_theta)) - log_z)}
    if alpha is not None and 0.0 < alpha < 1.0:
        log_ratio = lp_theta - (lp_base - log_z)  # [M] log π_θ/p
        m = float(np.max(alpha * log_ratio))  # log E_p[(π/p)^α] via a stable log-sum-exp
        log_e = m + math.log(float(np.sum(w * np.exp(alpha * log_ratio - m))))
        out["alpha_div_to_target"] = float(-math.expm1(log_e) / (alpha * (1.0 - alpha)))
    return out


def target_divergences(policy: torch.nn.Module, base: torch.nn.Module, tokenizer, task,
                       records: Sequence[Mapping[str, Any]], base_rows: Sequence[Mapping[str, Any]],
                       alpha: float | None = None) -> dict[str, dict[str, float]]:
    """``{problem_id: {"fkl_to_target": ..., ["alpha_div_to_target": ...]}}`` for every record whose
    problem the base table solves; ``base_rows`` must carry ``correct_samples`` (raises otherwise)."""
    by_id = {str(r["problem_id"]): r for r in base_rows}
    if base_rows and "correct_samples" not in next(iter(by_id.values())):
        raise ValueError("the target's table has no correct_samples column: re-evaluate the base model "
                         "with this version of lit_alpha")
    out: dict[str, dict[str, float]] = {}
    with contextlib.ExitStack() as modes:  # every submodule's own mode restored, also on an exception
        for model in (policy, base):
            if hasattr(model, "eval"):
                modes.enter_context(eval_mode(model))
        for record in records:
            row = by_id.get(str(record["id"]))
            if row is None or int(row["c"]) == 0 or not row["correct_samples"]:
                continue
            keys = list(row["correct_samples"])
            seqs = [[int(t) for t in k.split()] for k in keys]
            counts = np.asarray([row["correct_samples"][k] for k in keys], dtype=np.float64)
            prompt = tokenizer(task.prompt(record), add_special_tokens=True)["input_ids"]
            pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
            lp_theta = sequence_logprobs(policy, prompt, seqs, pad)
            lp_base = sequence_logprobs(base, prompt, seqs, pad)
            out[str(record["id"])] = problem_divergences(lp_theta, lp_base, counts, int(row["c"]),
                                                         int(row["n"]), alpha)
    return out

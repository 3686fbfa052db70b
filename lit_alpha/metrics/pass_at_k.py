"""Unbiased pass@k (Chen et al. 2021): the one estimator of the package, and torchmetrics over it.

``pass@k = 1 − C(n−c, k) / C(n, k)`` per problem (n samples, c correct), averaged over problems.
Computed in log space with ``gammaln`` (:func:`pass_at_k_per_problem`), stable for large n; the
trainer's validation metric (:class:`PassAtK`), evaluation, the frontier and pretraining all use it.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from scipy.special import gammaln
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat


def default_ks(n: int) -> list[int]:
    """1, 2, 4, …, up to n (and n itself)."""
    ks, k = [], 1
    while k < n:
        ks.append(k)
        k *= 2
    return ks + [int(n)]


def pass_at_k_per_problem(n: Sequence[int] | np.ndarray, c: Sequence[int] | np.ndarray, k: int) -> np.ndarray:
    """Unbiased pass@k of each problem, ``1 − C(n−c,k)/C(n,k)``, in log space.  n, c: [P] → [P] float64"""
    n = np.asarray(n, dtype=np.int64)
    c = np.asarray(c, dtype=np.int64)
    if np.any(c < 0) or np.any(c > n):
        raise ValueError("every problem needs 0 <= c <= n")
    if np.any(n < k):
        raise ValueError(f"pass@{k} needs at least {k} samples per problem, got min {int(n.min())}")
    out = np.where(c == 0, 0.0, 1.0)  # no correct sample: exactly 0
    some_wrong = ((n - c) >= k) & (c > 0)  # else every k-subset holds a correct sample: pass@k = 1
    nn, cc = n[some_wrong].astype(np.float64), c[some_wrong].astype(np.float64)
    if nn.size:
        log_ratio = gammaln(nn - cc + 1) - gammaln(nn - cc - k + 1) - gammaln(nn + 1) + gammaln(nn - k + 1)
        out[some_wrong] = -np.expm1(log_ratio)
    return np.clip(out, 0.0, 1.0)


def pass_at_k(num_samples: Tensor, num_correct: Tensor, k: int) -> Tensor:
    """Per-problem unbiased pass@k (:func:`pass_at_k_per_problem`).  num_samples, num_correct: [P] → [P] float64."""
    n = num_samples.detach().cpu().long().numpy()
    c = num_correct.detach().cpu().long().numpy()
    return torch.from_numpy(pass_at_k_per_problem(n, c, k))


class PassAtK(Metric):
    """Mean unbiased pass@k over problems for several k; keeps per-problem (n, c) counts.

    ``update(num_samples [P], num_correct [P])``; ``compute()`` → ``{k: mean pass@k}``.
    """

    full_state_update = False

    def __init__(self, ks: list[int]) -> None:
        super().__init__()
        self.ks = sorted(set(int(k) for k in ks))
        self.add_state("num_samples", default=[], dist_reduce_fx="cat")
        self.add_state("num_correct", default=[], dist_reduce_fx="cat")

    def update(self, num_samples: Tensor, num_correct: Tensor) -> None:
        self.num_samples.append(num_samples.long().flatten())
        self.num_correct.append(num_correct.long().flatten())

    def counts(self) -> tuple[Tensor, Tensor]:
        return dim_zero_cat(self.num_samples), dim_zero_cat(self.num_correct)

    def compute(self) -> dict[int, Tensor]:
        n, c = self.counts()
        return {k: pass_at_k(n, c, k).mean().float() for k in self.ks if k <= int(n.min())}


class DistinctCorrect(Metric):
    """Mean number of distinct correct answers (canonical forms) per problem."""

    full_state_update = False

    def __init__(self) -> None:
        super().__init__()
        self.add_state("total", default=torch.tensor(0.0), dist_reduce_fx="sum")
        self.add_state("problems", default=torch.tensor(0.0), dist_reduce_fx="sum")

    def update(self, answers_per_problem: list[set[str]]) -> None:
        self.total += float(sum(len(a) for a in answers_per_problem))
        self.problems += float(len(answers_per_problem))

    def compute(self) -> Tensor:
        return self.total / self.problems.clamp_min(1)

"""Unbiased pass@k (Chen et al. 2021) as torchmetrics, with per-problem counts kept.

``pass@k = 1 − C(n−c, k) / C(n, k)`` per problem (n samples, c correct), averaged over problems.
Computed as ``1 − Π_{i=n−c+1}^{n} (1 − k/i)``, stable for large n.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat


def default_ks(n: int) -> list[int]:
    """1, 2, 4, …, up to n (and n itself)."""
    ks, k = [], 1
    while k < n:
        ks.append(k)
        k *= 2
    return ks + [n]


def pass_at_k(num_samples: Tensor, num_correct: Tensor, k: int) -> Tensor:
    """Per-problem unbiased pass@k.  num_samples, num_correct: [P] → [P] float64."""
    n, c = num_samples.double(), num_correct.double()
    if bool((n < k).any()):
        raise ValueError(f"pass@{k} needs at least {k} samples per problem, got min {int(n.min())}")
    out = torch.empty_like(n)
    for i in range(n.numel()):
        ni, ci = int(n[i]), int(c[i])
        if ni - ci < k:
            out[i] = 1.0
        else:
            steps = torch.arange(ni - ci + 1, ni + 1, dtype=torch.float64)
            out[i] = 1.0 - torch.prod(1.0 - k / steps)
    return out


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

"""Exact-target test: a policy over K=8 one-token sequences whose filtered target p is known exactly.

π_θ = softmax(θ), π_base = softmax(θ0) (non-uniform), v marks 4 of the 8 sequences correct, so
``p = π_base·v / Z`` with ``Z = Σ π_base·v = 0.4``. Each step samples 16 prompts × 4 on-policy samples
(all prompts share the same distribution) and takes one SGD step on the objective's loss.

α-DPG (α=0 forward KL, α=0.5 Hellinger) must move π_θ to p; GRPO (β=0) must concentrate on the most
likely correct sequence (reverse-KL / mode seeking), leaving a much lower entropy over the correct set.
Plain SGD on the logits is used on purpose: Adam's per-coordinate normalisation would hide the
rich-get-richer dynamics of REINFORCE on a softmax.
"""

from __future__ import annotations

import pytest
import torch

from lit_alpha.batch import ObjectiveInputs
from lit_alpha.objectives import GRPO, AlphaDPG, Objective

PI_BASE = torch.tensor([0.20, 0.10, 0.06, 0.04, 0.30, 0.15, 0.10, 0.05])  # [K]
V = torch.tensor([1.0, 1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0])  # [K] verifier
P = PI_BASE * V / (PI_BASE * V).sum()  # [K] = (0.5, 0.25, 0.15, 0.1, 0, 0, 0, 0)
PROMPTS, SAMPLES, STEPS, LR = 16, 4, 200, 1.0


def kl(p: torch.Tensor, q: torch.Tensor) -> float:
    """KL(p‖q) over the support of p."""
    s = p > 0
    return float((p[s] * (p[s] / q[s]).log()).sum())


def correct_entropy(pi: torch.Tensor) -> float:
    """Entropy of π restricted to the correct sequences and renormalised."""
    c = pi * V / (pi * V).sum()
    c = c[c > 0]
    return float(-(c * c.log()).sum())


def train(objective: Objective, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    theta0 = PI_BASE.log()  # [K]
    theta = theta0.clone().requires_grad_(True)
    opt = torch.optim.SGD([theta], lr=LR)
    group_ids = torch.arange(PROMPTS).repeat_interleave(SAMPLES)  # [N]
    for _ in range(STEPS):
        with torch.no_grad():
            probs = theta.softmax(0).expand(PROMPTS, -1)  # [B, K]
        y = torch.multinomial(probs, SAMPLES, replacement=True, generator=gen).reshape(-1)  # [N]
        logprobs = theta.log_softmax(0)[y][:, None]  # [N, T=1]
        inputs = ObjectiveInputs(
            logprobs=logprobs,
            old_logprobs=logprobs.detach(),
            base_logprobs=theta0.log_softmax(0)[y][:, None],
            mask=torch.ones_like(logprobs.detach()),
            rewards=V[y],
            group_ids=group_ids,
        )
        out = objective(inputs)
        assert all(torch.isfinite(m) for m in out.metrics.values())
        opt.zero_grad()
        out.loss.backward()
        opt.step()
    return theta.detach().softmax(0)


@pytest.fixture(scope="module")
def alpha0() -> torch.Tensor:
    return train(AlphaDPG(alpha=0.0, normalizer=1.0))


def test_alpha0_reaches_filtered_base(alpha0: torch.Tensor) -> None:
    start = kl(P, PI_BASE)  # = log(1/Z) = log 2.5 = 0.916
    assert kl(P, alpha0) < 0.05 * start
    assert 0.5 * float((alpha0 - P).abs().sum()) < 0.1  # total variation
    assert float((alpha0 * V).sum()) > 0.95  # precision: almost all mass on correct sequences


@pytest.mark.parametrize("scale", ["released", "amari"])
def test_alpha_half_lowers_divergence(scale: str) -> None:
    pi = train(AlphaDPG(alpha=0.5, scale=scale, normalizer=1.0))
    hellinger = lambda q: float(((P.sqrt() - q.sqrt()) ** 2).sum())  # noqa: E731
    assert hellinger(pi) < 0.1 * hellinger(PI_BASE)
    assert kl(P, pi) < 0.1 * kl(P, PI_BASE)


def test_grpo_concentrates(alpha0: torch.Tensor) -> None:
    pi = train(GRPO(beta=0.0, normalizer=1.0))
    assert float((pi * V).sum()) > 0.95  # it does solve the task ...
    h_grpo, h_alpha0, h_p = correct_entropy(pi), correct_entropy(alpha0), correct_entropy(P)
    assert abs(h_alpha0 - h_p) < 0.05  # α=0 keeps the base model's proportions among correct answers
    assert h_grpo < 0.5 * h_alpha0  # ... but GRPO collapses onto few of them
    c = pi * V / (pi * V).sum()
    assert float(c.max()) > 0.8 and int(c.argmax()) == 0  # the base model's most likely correct answer
    assert kl(P, pi) > 5 * kl(P, alpha0)

"""The random-guesser baseline for Countdown: pass@k of a policy that writes random expressions.

The guesser is :func:`lit_alpha.tasks.countdown.random_expression`: while more than one item is
left, pick an ordered pair of distinct items uniformly among ``m*(m-1)``, an operator uniformly
among ``+ - * /`` (``x/0`` falls back to ``x+0``), and replace the pair by the result. Its guesses
are independent, so with per-problem success probability ``p``, pass@k is ``1-(1-p)^k``; the
baseline is that averaged over problems. Any trained policy should beat it; a pass@k curve that
falls to it means the policy has learnt nothing beyond the answer format.

``p`` is computed **exactly** by recursion over the multiset of current values: the process only
sees values (not texts), and it is symmetric in the order of the items, so the probability of
hitting the target from a state depends on its sorted value tuple alone, which is memoised.
For many numbers the state space grows quickly, so beyond ``max_exact_numbers`` numbers (or with
``exact=False``) ``p`` is estimated from ``n_draws`` seeded draws of the process itself.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from lit_alpha.tasks.countdown.task import random_expression


def _apply(a: Fraction, b: Fraction, op: str) -> Fraction:
    """``a op b`` exactly as the guesser does it (division by zero falls back to ``+``)."""
    if op == "+":
        return a + b
    if op == "-":
        return a - b
    if op == "*":
        return a * b
    return a / b if b != 0 else a + b


def exact_hit_probability(numbers: Sequence[int], target: int | Fraction) -> Fraction:
    """Exact probability that one random guess over ``numbers`` evaluates to ``target``."""
    if not numbers:
        raise ValueError("numbers must be non-empty")
    memo: dict[tuple[Fraction, ...], Fraction] = {}

    def hit(state: tuple[Fraction, ...]) -> Fraction:
        if len(state) == 1:
            return Fraction(int(state[0] == target))
        if state in memo:
            return memo[state]
        m = len(state)
        total = Fraction(0)
        for i in range(m):
            for j in range(m):
                if i == j:
                    continue
                rest = [state[k] for k in range(m) if k not in (i, j)]
                for op in "+-*/":
                    total += hit(tuple(sorted(rest + [_apply(state[i], state[j], op)])))
        memo[state] = total / (m * (m - 1) * 4)
        return memo[state]

    return hit(tuple(sorted(Fraction(n) for n in numbers)))


def sampled_hit_probability(
    numbers: Sequence[int], target: int | Fraction, n_draws: int, rng: np.random.Generator
) -> float:
    """Monte-Carlo estimate of the hit probability from ``n_draws`` runs of the guesser."""
    if n_draws < 1:
        raise ValueError(f"n_draws must be >= 1, got {n_draws}")
    nums = tuple(int(n) for n in numbers)
    hits = sum(random_expression(nums, rng)[0] == target for _ in range(n_draws))
    return hits / n_draws


def random_guesser_pass_at_k(
    records: Iterable[Mapping[str, Any]],
    ks: Sequence[int],
    n_draws: int = 4096,
    seed: int = 0,
    exact: bool = True,
    max_exact_numbers: int = 5,
) -> dict[int, float]:
    """Mean over problems of ``1 - (1 - p)^k`` for the random guesser, for each ``k`` in ``ks``.

    Args:
        records: Countdown records ``{"numbers": [...], "target": int, ...}``.
        ks: the k values (each >= 1).
        n_draws: draws per problem when ``p`` is estimated rather than computed.
        seed: seeds the draws (problem i uses the stream ``[seed, i]``), so results are reproducible.
        exact: compute ``p`` exactly when the problem has at most ``max_exact_numbers`` numbers.
        max_exact_numbers: the largest problem solved exactly (the state space grows factorially).

    Returns:
        ``{k: pass@k}``; empty records give 0.0 for every k.
    """
    ks = [int(k) for k in ks]
    if any(k < 1 for k in ks):
        raise ValueError(f"every k must be >= 1, got {ks}")
    totals = {k: 0.0 for k in ks}
    cache: dict[tuple[tuple[int, ...], Any], float] = {}
    count = 0
    for i, record in enumerate(records):
        numbers = tuple(int(n) for n in record["numbers"])
        target = record["target"]
        if exact and len(numbers) <= max_exact_numbers:
            key = (tuple(sorted(numbers)), target)
            if key not in cache:
                cache[key] = float(exact_hit_probability(numbers, target))
            p = cache[key]
        else:
            p = sampled_hit_probability(numbers, target, n_draws, np.random.default_rng([seed, i]))
        for k in ks:
            totals[k] += 1.0 - (1.0 - p) ** k
        count += 1
    return {k: (totals[k] / count if count else 0.0) for k in ks}


def hit_probabilities(records: Iterable[Mapping[str, Any]]) -> np.ndarray:
    """Exact hit probability of the random guesser on each Countdown problem (``numbers``, ``target``)."""
    cache: dict[tuple, float] = {}
    out = []
    for i, r in enumerate(records):
        numbers = tuple(int(x) for x in r["numbers"])
        key = (tuple(sorted(numbers)), int(r["target"]))
        if key not in cache:
            if len(numbers) <= 5:
                cache[key] = float(exact_hit_probability(numbers, int(r["target"])))
            else:
                cache[key] = sampled_hit_probability(numbers, int(r["target"]), 4096, np.random.default_rng([0, i]))
        out.append(cache[key])
    return np.asarray(out, dtype=np.float64)

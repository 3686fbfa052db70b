"""Base statistics of the strategy benchmark from an evaluation table (``eval_<split>.jsonl``).

The table is what ``python -m lit_alpha evaluate`` writes: one row per problem with ``n`` samples, ``c``
correct, the problem's ``digits`` and ``accepted`` set, and the counts of every canonical answer
(``name:digits``). From it: pass@k, the fraction of groups of 8 with ≥ 2 correct (exact for a random
group of 8 of the n samples), the ceiling, the strategy distribution and slip rate of the samples
(each strategy's own too), and the closed-form references over the same problems (the optima of the
problem distribution, scored on these problems) and over the problem distribution.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
from scipy.special import gammaln

from lit_alpha.metrics.pass_at_k import pass_at_k_per_problem
from lit_alpha.tasks.strategy.optima import all_patterns, distribution_table, records_table
from lit_alpha.tasks.strategy.task import StrategyTask
from lit_alpha.verifiers.strategy import slipped_digits


def _log_comb(n: np.ndarray, k: int) -> np.ndarray:
    return gammaln(n + 1) - gammaln(k + 1) - gammaln(n - k + 1)


def groups_ge2(n: Sequence[int], c: Sequence[int], group: int = 8) -> np.ndarray:
    """Per problem, the probability that a random group of ``group`` of its ``n`` samples holds ≥ 2 of
    its ``c`` correct ones: ``1 − [C(n−c, G) + c·C(n−c, G−1)] / C(n, G)``.  [P] -> [P]"""
    n, c = np.asarray(n, dtype=np.float64), np.asarray(c, dtype=np.float64)
    if np.any(n < group):
        raise ValueError(f"groups of {group} need at least {group} samples per problem")
    w = n - c
    p0 = np.where(w >= group, np.exp(_log_comb(w, group) - _log_comb(n, group)), 0.0)
    p1 = np.where((w >= group - 1) & (c > 0),
                  c * np.exp(_log_comb(np.maximum(w, group - 1), group - 1) - _log_comb(n, group)), 0.0)
    return np.clip(1.0 - p0 - p1, 0.0, 1.0)


def base_statistics(rows: Sequence[Mapping[str, Any]], task: StrategyTask, ks: Sequence[int] = (1, 8, 256),
                    execution: float | None = None) -> dict[str, Any]:
    """The measured statistics of the policy that produced ``rows`` and the closed-form references.

    Args:
        rows: the evaluation table (one row per problem: ``n``, ``c``, ``digits``, ``answers``).
        task: the benchmark instance the table was evaluated on.
        ks: the pass@k to report (each at most the smallest ``n``).
        execution: exact-execution probability for the closed-form base row (default: ``(1 − s)^L``
            with ``s`` the measured slip rate).
    """
    n = np.array([r["n"] for r in rows])
    c = np.array([r["c"] for r in rows])
    names = task.names
    counts = {name: 0 for name in names}
    slips = {name: [0, 0] for name in names}  # wrong digits, digits seen
    total = 0
    for r in rows:
        digits = str(r["digits"])
        total += int(r["n"])
        for answer, count in r.get("answers", {}).items():
            name, _, result = answer.partition(":")
            if name not in counts:
                continue
            counts[name] += count
            wrong = slipped_digits(digits, name, result)
            if wrong is not None:
                slips[name][0] += wrong * count
                slips[name][1] += len(digits) * count
    seen = sum(s[1] for s in slips.values())
    slip = sum(s[0] for s in slips.values()) / seen if seen else float("nan")
    ex = (1.0 - slip) ** task.length if execution is None else execution
    prior = [task.prior[m] for m in names]
    accepted_sets = [task.verifier.accepted(str(r["digits"])) for r in rows]
    measured = {
        **{f"pass@{k}": float(pass_at_k_per_problem(n, c, k).mean()) for k in ks},
        "groups_ge2_of_8": float(groups_ge2(n, c).mean()),
        "ceiling": float(np.mean([bool(a) for a in accepted_sets])),
        "strategy": {m: counts[m] / total for m in names} | {"other": 1.0 - sum(counts.values()) / total},
        "slip_rate": slip,
        "slip_rate_by_strategy": {m: (s[0] / s[1] if s[1] else None) for m, s in slips.items()},
        "exact_execution": ex,
        "problems": len(rows),
        "samples_per_problem": int(n.min()),
    }
    kwargs = {"ks": tuple(ks), "execution": ex, "digits": task.length, "reveal": task.reveal}
    return {
        "measured": measured,
        # the problem distribution's optima (what a policy can reach) scored on these problems
        "closed_form_problems": records_table(prior, accepted_sets, names, **kwargs,
                                              fit=all_patterns([task.rates[m] for m in names])),
        "closed_form_distribution": distribution_table(prior, [task.rates[m] for m in names], names=names, **kwargs),
    }

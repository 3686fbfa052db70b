"""Closed-form optima of the strategy benchmark (``docs/science/regime.md`` §4) and their pass@k.

Setting. A problem ``x`` has an acceptance pattern ``a_x ∈ {0,1}^J`` (which of the J transformations
are accepted). The base picks strategy j with probability ``prior_j`` and then executes it; an
execution is exact with probability ``e`` (``(1−s)^L`` for L digits each slipped with probability
s), **the same for every strategy**. The filtered base ``p ∝ π_base · v`` therefore puts mass

    p_x(j) = prior_j · a_x(j) / Σ_k prior_k · a_k(x)

on the exact result of strategy j (``e`` cancels), and nothing on unsolvable problems (``a_x = 0``),
where the target does not exist; optima are taken over the solvable problems.

A policy that executes perfectly and cannot see ``a_x`` (the hidden arm) chooses one distribution
``q`` over strategies for all problems; minimising ``E_x D_α(p_x || q)`` gives

    q*_α(j) ∝ ( E_x[ p_x(j)^{1−α} ] )^{1/(1−α)},     α → 0:  q*_0(j) = E_x[p_x(j)],

computed in log space (stable for α near 1, where it tends to the strategy accepted most often).
RL's limit, the pass@1 optimum, puts all mass on ``argmax_j P(a_x(j) = 1)``. When the prompt reveals
``a_x`` (the control arm) the policy can condition on it: the same formula applied within each cell of
problems that look alike gives ``q_x = p_x`` for every α (the optimum is flat in α).

With per-problem success ``σ_x = Σ_j q_x(j)·a_x(j)`` a policy's pass@k is ``E_x[1 − (1 − σ_x)^k]``,
exact for independent samples. Expectations are either over the problem distribution (the 2^J
acceptance patterns with their probabilities, exact) or over a given problem list (equal weights).
Shapes: ``A`` is [P, J] (0/1 patterns), ``w`` is [P] (weights summing to 1), ``prior`` is [J].
"""

from __future__ import annotations

import itertools
from typing import Mapping, Sequence

import numpy as np
from scipy.special import logsumexp

ALPHAS: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 0.999)
"""The α of the published optima."""


def alpha_tag(alpha: float) -> str:
    """``0.25 -> 'a025'``, ``0.999 -> 'a0999'``, ``0 -> 'a0'`` (as in the config names)."""
    return "a" + f"{alpha:g}".replace(".", "")


def all_patterns(rates: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """Every acceptance pattern and its probability under independent acceptance at ``rates``.

    Returns ``A`` [2^J, J] float (0/1) and ``w`` [2^J] (summing to 1)."""
    r = np.asarray(rates, dtype=np.float64)
    A = np.array(list(itertools.product((0.0, 1.0), repeat=len(r))))
    w = np.prod(np.where(A == 1.0, r, 1.0 - r), axis=1)
    return A, w


def _check(prior: Sequence[float], A: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    prior = np.asarray(prior, dtype=np.float64)
    A = np.asarray(A, dtype=np.float64).reshape(-1, len(prior))
    w = np.asarray(w, dtype=np.float64).reshape(-1)
    if len(w) != len(A):
        raise ValueError(f"{len(A)} patterns for {len(w)} weights")
    if np.any(prior < 0) or prior.sum() <= 0:
        raise ValueError(f"prior must be non-negative with a positive sum, got {prior.tolist()}")
    if np.any(w < 0) or w.sum() <= 0:
        raise ValueError("weights must be non-negative with a positive sum")
    return prior / prior.sum(), A, w / w.sum()


def filtered_mass(prior: Sequence[float], A: np.ndarray) -> np.ndarray:
    """``p_x(j) = prior_j a_x(j) / Σ_k prior_k a_x(k)``: [P, J]; a row of zeros where nothing is accepted."""
    prior = np.asarray(prior, dtype=np.float64)
    m = np.asarray(A, dtype=np.float64) * prior
    z = m.sum(axis=1, keepdims=True)
    return np.divide(m, z, out=np.zeros_like(m), where=z > 0)


def optimum(prior: Sequence[float], A: np.ndarray, w: np.ndarray, alpha: float) -> np.ndarray:
    """``q*_α`` [J] of a policy that cannot see the pattern, over the solvable rows of ``(A, w)``.

    α ≤ 1e-9 is the α → 0 limit ``E_x[p_x]``; otherwise ``log q_j = (1/(1−α)) log E_x[p_x(j)^{1−α}]``
    (log-sum-exp over the rows where ``p_x(j) > 0``; a strategy never accepted gets 0), normalised."""
    if not 0.0 <= alpha < 1.0:
        raise ValueError(f"alpha must lie in [0, 1), got {alpha}")
    prior, A, w = _check(prior, A, w)
    p = filtered_mass(prior, A)
    solvable = p.sum(axis=1) > 0
    if not solvable.any():
        raise ValueError("no solvable problem: the filtered target does not exist")
    p, w = p[solvable], w[solvable] / w[solvable].sum()
    if alpha <= 1e-9:
        q = w @ p
        return q / q.sum()
    e = 1.0 - alpha
    with np.errstate(divide="ignore"):
        logp = np.log(p)  # -inf where p = 0: those rows add nothing to E[p^e]
    log_mean = logsumexp(np.log(w)[:, None] + e * logp, axis=0)  # [J], -inf for a never-accepted j
    log_q = log_mean / e
    return np.exp(log_q - logsumexp(log_q))


def pass1_optimum(A: np.ndarray, w: np.ndarray) -> np.ndarray:
    """All mass on the strategy accepted most often under ``(A, w)`` (the first one on ties): [J]."""
    A = np.asarray(A, dtype=np.float64)
    rate = np.asarray(w, dtype=np.float64) @ A
    q = np.zeros(A.shape[1])
    q[int(np.argmax(rate))] = 1.0
    return q


def conditional_optimum(prior: Sequence[float], A: np.ndarray, w: np.ndarray, alpha: float) -> np.ndarray:
    """The α-optimum of a policy that *sees* the pattern (the control arm): the formula of
    :func:`optimum` within each cell of identical rows. Returns ``Q`` [P, J] (zero rows where nothing is
    accepted); it equals ``p_x`` for every α."""
    prior, A, w = _check(prior, A, w)
    Q = np.zeros_like(A)
    cells: dict[bytes, list[int]] = {}
    for i, row in enumerate(A):
        cells.setdefault(row.tobytes(), []).append(i)
    for rows in cells.values():
        if A[rows[0]].sum() > 0:
            Q[rows] = optimum(prior, A[rows], w[rows], alpha)
    return Q


def success(Q: np.ndarray, A: np.ndarray, execution: float = 1.0) -> np.ndarray:
    """Per-problem probability that one sample is correct: ``execution · Σ_j Q_x(j) a_x(j)``.
    ``Q``: [J] (the same for every problem) or [P, J]; returns [P]."""
    A = np.asarray(A, dtype=np.float64)
    Q = np.broadcast_to(np.asarray(Q, dtype=np.float64), A.shape)
    return execution * (Q * A).sum(axis=1)


def pass_at_k(sigma: np.ndarray, w: np.ndarray, k: int) -> float:
    """``Σ_x w_x (1 − (1 − σ_x)^k)`` for independent samples of per-problem success ``σ`` [P]."""
    sigma = np.clip(np.asarray(sigma, dtype=np.float64), 0.0, 1.0)
    w = np.asarray(w, dtype=np.float64)
    miss = np.power(1.0 - sigma, k)
    return float(w @ (1.0 - miss) / w.sum())


def groups_with_two(sigma: np.ndarray, w: np.ndarray, group: int = 8) -> float:
    """Fraction of groups of ``group`` samples with ≥ 2 correct: ``E_x[1 − (1−σ)^G − Gσ(1−σ)^{G−1}]``."""
    s = np.clip(np.asarray(sigma, dtype=np.float64), 0.0, 1.0)
    w = np.asarray(w, dtype=np.float64)
    p = 1.0 - (1.0 - s) ** group - group * s * (1.0 - s) ** (group - 1)
    return float(w @ p / w.sum())


def optima_table(prior: Sequence[float], A: np.ndarray, w: np.ndarray, ks: Sequence[int] = (1, 8, 256),
                 execution: float = 1.0, reveal: bool = False, digits: int = 5,
                 names: Sequence[str] | None = None,
                 fit: tuple[np.ndarray, np.ndarray] | None = None) -> dict[str, dict]:
    """The optima and reference policies with their strategy distribution and pass@k over ``(A, w)``.

    Rows: ``optimum_<alpha tag>`` for each of :data:`ALPHAS`, ``optimum_pass1``, ``base`` (the prior
    with exact execution ``execution``), ``base_perfect`` (the prior, executed perfectly),
    ``uniform_perfect`` and ``guesser`` (a uniform name and ``digits`` uniform digits). Each row holds
    ``q`` (the mean strategy distribution over the solvable problems), ``pass@k`` for each k, and the
    fraction of groups of 8 with ≥ 2 correct samples. ``reveal``: the policies that can see the
    pattern (:func:`conditional_optimum`); the base and the references are the same. ``fit``: the
    ``(A, w)`` the hidden-arm optima are fitted on (default: the ones they are evaluated on), e.g. the
    problem distribution (:func:`all_patterns`) to score its optima on a problem list."""
    prior, A, w = _check(prior, A, w)
    J = len(prior)
    names = list(names) if names is not None else [str(j) for j in range(J)]
    solvable = A.sum(axis=1) > 0
    ws = w * solvable / (w * solvable).sum()
    policies: dict[str, tuple[np.ndarray, float]] = {}
    FA, Fw = (A, w) if fit is None else (np.asarray(fit[0], dtype=np.float64), np.asarray(fit[1], dtype=np.float64))
    for alpha in ALPHAS:
        Q = conditional_optimum(prior, A, w, alpha) if reveal else optimum(prior, FA, Fw, alpha)
        policies[f"optimum_{alpha_tag(alpha)}"] = (Q, 1.0)
    if reveal:  # all mass on the accepted strategy accepted most often overall (any accepted one will do)
        order = np.argsort(-(w @ A), kind="stable")
        Q = np.zeros_like(A)
        for i, row in enumerate(A):
            hit = [j for j in order if row[j] > 0]
            if hit:
                Q[i, hit[0]] = 1.0
        policies["optimum_pass1"] = (Q, 1.0)
    else:
        policies["optimum_pass1"] = (pass1_optimum(FA, Fw), 1.0)
    policies["base"] = (prior, execution)
    policies["base_perfect"] = (prior, 1.0)
    policies["uniform_perfect"] = (np.full(J, 1.0 / J), 1.0)
    policies["guesser"] = (np.full(J, 1.0 / J), 10.0 ** (-digits))
    table: dict[str, dict] = {}
    for label, (Q, ex) in policies.items():
        sigma = success(Q, A, ex)
        Qm = np.broadcast_to(np.asarray(Q, dtype=np.float64), A.shape)
        table[label] = {
            "q": dict(zip(names, (ws @ Qm).round(6).tolist())),
            **{f"pass@{k}": pass_at_k(sigma, w, k) for k in ks},
            "groups_ge2_of_8": groups_with_two(sigma, w, 8),
        }
    table["ceiling"] = {"pass@inf": float(w @ solvable)}
    return table


def distribution_table(prior: Sequence[float], rates: Sequence[float], **kwargs) -> dict[str, dict]:
    """:func:`optima_table` over the problem distribution (every acceptance pattern, exactly)."""
    A, w = all_patterns(rates)
    return optima_table(prior, A, w, **kwargs)


def records_table(prior: Sequence[float], accepted_sets: Sequence[Sequence[str]], names: Sequence[str],
                  **kwargs) -> dict[str, dict]:
    """:func:`optima_table` over a problem list, given each problem's accepted names (equal weights).
    Pass ``fit=all_patterns(rates)`` to score the problem distribution's optima on the list (what a
    policy that cannot see the list can reach) instead of the list's own optima."""
    A = np.array([[1.0 if n in set(acc) else 0.0 for n in names] for acc in accepted_sets])
    return optima_table(prior, A, np.ones(len(A)), names=names, **kwargs)


def total_variation(q: Mapping[str, float], r: Mapping[str, float]) -> float:
    """``½ Σ |q − r|`` over the union of keys (a missing key has mass 0)."""
    keys = set(q) | set(r)
    return 0.5 * sum(abs(float(q.get(k, 0.0)) - float(r.get(k, 0.0))) for k in keys)

"""Step-Countdown: reach the target by written steps ``a op b = c``, a mixture of short and long problems.

A problem gives ``n`` numbers (``n`` drawn from :attr:`StepsTask.n_numbers` with
:attr:`StepsTask.n_weights`) and a target; the answer is a sequence of steps such as
``3*4=12 12+5=17 17-2=15`` whose last result is the target, checked by
:class:`lit_alpha.verifiers.steps.StepsVerifier` (every step exact in the natural numbers, each given
number and each intermediate result used at most once).

Problems come from the Countdown generator (:class:`lit_alpha.tasks.countdown.task.CountdownTask`,
one per number count): splits are disjoint in number *multisets* (a stable hash of the seed and the
sorted numbers), so a validation or test problem never reuses a multiset seen in training. The
target of a problem is the last result of a random *trace* (:func:`random_trace`) that uses every
number once and stays in the natural numbers, so every problem is solvable by steps.

Which plan reaches the target is not in the prompt (the hidden part); the arithmetic of a step is the
same skill on every problem (the transferable part). :func:`slipped_trace` writes a trace with
arithmetic slips at a given rate per step, continuing consistently from the slipped value: the
pretraining corpus of the embedded bases (:mod:`lit_alpha.tasks.countdown.steps_pretrain`).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from lit_alpha.tasks.base import Record, Task
from lit_alpha.tasks.countdown.task import OPS, CountdownTask
from lit_alpha.verifiers.steps import Step, StepsVerifier, exact_value, slip_counts

SLIP_DELTAS = (-10, -2, -1, 1, 2, 10)
"""A slipped result is the exact result plus one of these (redrawn while it would be negative)."""


def format_steps(steps: Sequence[Step]) -> str:
    """``a op b = c`` steps joined by single spaces: ``3*4=12 12+5=17``."""
    return " ".join(f"{s.a}{s.op}{s.b}={s.c}" for s in steps)


def random_trace(numbers: Sequence[int], rng: np.random.Generator, max_value: int = 999_999) -> list[Step]:
    """A uniformly random exact trace that combines every number once: at each step two available
    values (ordered), then an operation drawn uniformly among those whose result is a natural number
    no larger than ``max_value`` (``+`` always qualifies unless the sum is too large; if none does, the
    pair is redrawn). ``len(numbers) - 1`` steps; the last result is the trace's value."""
    pool = [int(n) for n in numbers]
    steps: list[Step] = []
    while len(pool) > 1:
        i, j = (int(x) for x in rng.choice(len(pool), size=2, replace=False))
        a, b = pool[i], pool[j]
        ops = [op for op in OPS if (v := exact_value(a, op, b)) is not None and v <= max_value]
        if not ops:
            continue
        op = ops[int(rng.integers(len(ops)))]
        c = exact_value(a, op, b)
        assert c is not None
        steps.append(Step(a, op, b, c))
        pool = [pool[k] for k in range(len(pool)) if k not in (i, j)] + [c]
    return steps


def slipped_trace(steps: Sequence[Step], slip_rate: float, rng: np.random.Generator) -> list[Step]:
    """``steps`` rewritten with arithmetic slips: each step, with probability ``slip_rate``, writes a
    wrong result (exact result + a :data:`SLIP_DELTAS` offset, never negative), and every later step
    uses the value actually written: an operand equal to a replaced value becomes the written one and
    its result is recomputed exactly (unless it slips too; a recomputation that leaves the naturals,
    e.g. a division that is no longer exact, is itself written as the nearest natural, a slip).

    Returns the written steps (same length and plan as ``steps``)."""
    pool: list[tuple[int, int]] = []  # (true value, written value) of each unconsumed earlier result
    written: list[Step] = []
    for s in steps:
        operands = []
        for true in (s.a, s.b):
            at = next((k for k in range(len(pool) - 1, -1, -1) if pool[k][0] == true), None)
            operands.append(true if at is None else pool.pop(at)[1])  # None: a given number
        a, b = operands
        exact = exact_value(a, s.op, b)
        if exact is None:  # a slipped operand broke exactness: the nearest natural, itself a slip
            c = max(a - b, 0) if s.op == "-" else (a // b if b else 0)
        else:
            c = exact
            if rng.random() < slip_rate:
                deltas = [d for d in SLIP_DELTAS if c + d >= 0]
                c += deltas[int(rng.integers(len(deltas)))]
        written.append(Step(a, s.op, b, c))
        pool.append((s.c, c))
    return written


class StepsTask(Task):
    """Seeded step-Countdown problems (a mixture of number counts), splits disjoint in number multisets.

    Args:
        n_numbers: the number counts of the mixture, e.g. ``[3, 4]``.
        n_weights: the probability of each count in the training stream and the share of each in the
            val/test sets (None: equal shares).
        max_number: numbers are drawn from 1..max_number (repeats allowed).
        min_target: smallest target.
        max_target: largest target.
        num_val: size of the fixed validation set.
        num_test: size of the fixed test set.
        holdout_frac: fraction of number multisets reserved for validation and for test (each).
        seed: seeds splits and problems; change it for a different task instance.
        prompt_template: format string with ``{numbers}`` (space separated) and ``{target}``.
    """

    def __init__(
        self,
        n_numbers: list[int] = [3, 4],  # noqa: B006 - read only
        n_weights: list[float] | None = None,
        max_number: int = 10,
        min_target: int = 1,
        max_target: int = 99,
        num_val: int = 200,
        num_test: int = 200,
        holdout_frac: float = 0.1,
        seed: int = 0,
        prompt_template: str = "{numbers} | {target} | ",
    ) -> None:
        if not n_numbers or any(int(n) < 2 for n in n_numbers):
            raise ValueError(f"n_numbers must list counts >= 2, got {n_numbers}")
        weights = [1.0] * len(n_numbers) if n_weights is None else [float(w) for w in n_weights]
        if len(weights) != len(n_numbers) or any(w < 0 for w in weights) or sum(weights) <= 0:
            raise ValueError(f"n_weights must give one non-negative weight per count, got {n_weights}")
        if not 1 <= min_target <= max_target:
            raise ValueError(f"need 1 <= min_target <= max_target, got {min_target}, {max_target}")
        self.n_numbers = [int(n) for n in n_numbers]
        self.n_weights = np.asarray(weights) / sum(weights)
        self.max_number, self.min_target, self.max_target = max_number, min_target, max_target
        self.num_val, self.num_test, self.seed = num_val, num_test, seed
        self.prompt_template = prompt_template
        self.verifier = StepsVerifier()
        self._by_count = {n: CountdownTask(n_numbers=n, max_number=max_number, min_target=min_target,
                                           max_target=max_target, num_val=0, num_test=0,
                                           holdout_frac=holdout_frac, seed=seed) for n in self.n_numbers}
        self._cache: dict[str, list[Record]] = {}

    def split_of(self, numbers: Sequence[int]) -> str:
        """Which split a number multiset belongs to (the Countdown generator's stable hash)."""
        return self._by_count[len(numbers)].split_of(list(numbers)) if len(numbers) in self._by_count \
            else CountdownTask(n_numbers=max(2, len(numbers)), max_number=1, seed=self.seed).split_of(list(numbers))

    def sample_solved(self, split: str, index: int, rng: np.random.Generator,
                      n: int | None = None) -> tuple[Record, list[Step]]:
        """A problem of ``split`` (``n`` numbers, else a count drawn from the mixture) and the exact
        trace that defined its target: a random multiset of the split in random order, then random
        traces until one ends in the target range."""
        if n is None:
            n = self.n_numbers[int(rng.choice(len(self.n_numbers), p=self.n_weights))]
        pool = self._by_count[n].multisets(split)
        while True:
            ms = pool[int(rng.integers(len(pool)))]
            numbers = [int(x) for x in rng.permutation(ms)]
            for _ in range(50):
                trace = random_trace(numbers, rng)
                if self.min_target <= trace[-1].c <= self.max_target:
                    return {"id": f"st-{split}-{index}", "numbers": numbers, "target": trace[-1].c}, trace

    def problems(self, split: str) -> list[Record]:
        if split not in ("train", "val", "test"):
            raise ValueError(f"split must be one of train/val/test, got {split!r}")
        if split not in self._cache:
            size = {"train": self.num_val, "val": self.num_val, "test": self.num_test}[split]
            rng = np.random.default_rng([self.seed, {"train": 0, "val": 1, "test": 2}[split], 7])
            shares = np.floor(self.n_weights * size).astype(int)
            shares[: size - shares.sum()] += 1  # the remainder to the first counts
            counts = [n for n, k in zip(self.n_numbers, shares) for _ in range(k)]
            self._cache[split] = [self.sample_solved(split, i, rng, n)[0] for i, n in enumerate(counts)]
        return self._cache[split]

    def sample_train(self, rng: np.random.Generator) -> Record:
        return self.sample_solved("train", int(rng.integers(2**31)), rng)[0]

    def prompt(self, record: Record) -> str:
        numbers = " ".join(str(n) for n in record["numbers"])
        return self.prompt_template.format(numbers=numbers, target=record["target"])

    def eval_metrics(self, records: Sequence[Record], completions: Sequence[Sequence[str]],
                     rewards: Sequence[Sequence[float]]) -> dict[str, float]:
        """Step-Countdown diagnostics of one evaluation.

        Args:
            records: the problems, P of them.
            completions: per problem, its sampled completions (texts).
            rewards: per problem, the 0/1 reward of each completion (same shape as ``completions``).

        Returns:
            ``slip_rate``: slipped steps / written steps over every sample (a step is a token that
            parses as ``a op b = c`` before the first token that does not; slipped: ``c`` is not the
            exact natural value; 0 when no step was written); ``steps_per_sample``: written steps per
            sample; ``distinct_plans``: the mean over problems of the number of distinct canonical plans
            (:mod:`lit_alpha.verifiers.steps`: the expression tree of the last result, ``+``/``*``
            operands sorted, unused steps dropped) among the correct samples.
        """
        if not (len(records) == len(completions) == len(rewards)):
            raise ValueError(f"{len(records)} records, {len(completions)} completion lists, {len(rewards)} reward lists")
        slipped = written = samples = 0
        plans_per_problem = []
        for record, texts, rs in zip(records, completions, rewards):
            if len(texts) != len(rs):
                raise ValueError(f"problem {record.get('id')}: {len(texts)} completions for {len(rs)} rewards")
            plans = set()
            for text, r in zip(texts, rs):
                s, w = slip_counts(text)
                slipped, written, samples = slipped + s, written + w, samples + 1
                if r > 0:
                    verdict = self.verifier.verify(record, text)
                    if verdict.correct and verdict.answer is not None:
                        plans.add(verdict.answer)
            plans_per_problem.append(len(plans))
        return {
            "slip_rate": slipped / written if written else 0.0,
            "steps_per_sample": written / samples if samples else 0.0,
            "distinct_plans": float(np.mean(plans_per_problem)) if plans_per_problem else 0.0,
        }

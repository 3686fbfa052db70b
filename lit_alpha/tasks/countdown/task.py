"""Countdown: combine the given numbers with + - * / and parentheses to reach the target.

Problems are seeded and split by *number multiset*: a validation or test problem never uses a set of
numbers seen in training, so held-out scores measure generalisation, not memory. Targets are the
value of a uniformly random expression that uses every number exactly once (integer, in range), so
every problem is solvable. The verifier accepts any expression that uses each given number at most
once (see :mod:`lit_alpha.verifiers.countdown`).
"""

from __future__ import annotations

import hashlib
import itertools
from fractions import Fraction
from typing import Iterator

import numpy as np

from lit_alpha.tasks.base import Record, Task

OPS = "+-*/"
_PREC = {"+": 1, "-": 1, "*": 2, "/": 2}
_ATOM = 3


def _combine(a: tuple[Fraction, str, int], b: tuple[Fraction, str, int], op: str):
    """``a op b`` as (value, minimal-parentheses text, precedence); None if dividing by zero."""
    (va, sa, pa), (vb, sb, pb) = a, b
    if op == "/" and vb == 0:
        return None
    value = {"+": va + vb, "-": va - vb, "*": va * vb, "/": va / vb if vb else None}[op]
    p = _PREC[op]
    left = f"({sa})" if pa < p else sa
    right = f"({sb})" if pb < p or (pb == p and op in "-/") else sb
    return value, f"{left}{op}{right}", p


def all_expressions(numbers: tuple[int, ...]) -> Iterator[tuple[Fraction, str]]:
    """Every expression (as text) that uses each number exactly once, with its exact value.

    Built by repeatedly combining two items, so each full binary tree appears; duplicates of the
    same text are possible and left to the caller.
    """
    items = [(Fraction(n), str(n), _ATOM) for n in numbers]

    def rec(items):
        if len(items) == 1:
            yield items[0][0], items[0][1]
            return
        for i, j in itertools.permutations(range(len(items)), 2):
            rest = [items[k] for k in range(len(items)) if k not in (i, j)]
            for op in OPS:
                c = _combine(items[i], items[j], op)
                if c is not None:
                    yield from rec(rest + [c])

    yield from rec(items)


def solutions(numbers: tuple[int, ...], target: int) -> list[str]:
    """All distinct expression texts that use every number once and equal ``target``, sorted."""
    return sorted({s for v, s in all_expressions(numbers) if v == target})


def random_expression(numbers: tuple[int, ...], rng: np.random.Generator) -> tuple[Fraction, str]:
    """A random well-formed expression using every number once: random order, pairing and ops.

    This is also the *random guesser* baseline: uniform choices at every combination step.
    """
    items = [(Fraction(n), str(n), _ATOM) for n in numbers]
    while len(items) > 1:
        i, j = rng.choice(len(items), size=2, replace=False)
        op = OPS[rng.integers(len(OPS))]
        c = _combine(items[i], items[j], op)
        if c is None:  # x/0: fall back to + so the guess stays well formed
            c = _combine(items[i], items[j], "+")
        items = [items[k] for k in range(len(items)) if k not in (i, j)] + [c]
    return items[0][0], items[0][1]


COUNTDOWN4 = {"n_numbers": 4, "max_number": 12, "min_target": 1, "max_target": 99}
"""The settings of the first Countdown benchmark, the task of the embedded ``countdown-tiny`` model
(``CountdownTask(**COUNTDOWN4)``); the defaults are Countdown-5's, the task of ``countdown5-tiny``."""


class CountdownTask(Task):
    """Seeded Countdown problems with splits disjoint in number multisets.

    Args:
        n_numbers: how many numbers each problem gives.
        max_number: numbers are drawn from 1..max_number (repeats allowed).
        min_target: smallest target.
        max_target: largest target.
        num_val: size of the fixed validation set.
        num_test: size of the fixed test set.
        holdout_frac: fraction of number multisets reserved for validation and for test (each).
        seed: seeds splits and problems; change it for a different task instance.
        prompt_template: format string with ``{numbers}`` (space separated) and ``{target}``.
        problems_file: a JSONL file of your own problems (format in
            :mod:`lit_alpha.tasks.countdown.problems_file`); its ``train`` rows replace the generated training
            stream, its ``val``/``test`` rows the generated sets (a split it lacks stays generated,
            and keeping its splits disjoint is then up to you). Every row is checked at start-up.
    """

    def __init__(
        self,
        n_numbers: int = 5,
        max_number: int = 20,
        min_target: int = 100,
        max_target: int = 999,
        num_val: int = 200,
        num_test: int = 200,
        holdout_frac: float = 0.1,
        seed: int = 0,
        prompt_template: str = "{numbers} | {target} = ",
        problems_file: str | None = None,
    ) -> None:
        from lit_alpha.tasks.countdown.problems_file import load_problems
        from lit_alpha.verifiers.countdown import CountdownVerifier

        if n_numbers < 2:
            raise ValueError(f"n_numbers must be >= 2, got {n_numbers}")
        if not 0 < holdout_frac < 0.5:
            raise ValueError(f"holdout_frac must be in (0, 0.5), got {holdout_frac}")
        self.n_numbers, self.max_number = n_numbers, max_number
        self.min_target, self.max_target = min_target, max_target
        self.num_val, self.num_test = num_val, num_test
        self.holdout_frac, self.seed = holdout_frac, seed
        self.prompt_template = prompt_template
        self.verifier = CountdownVerifier()
        multisets = list(itertools.combinations_with_replacement(range(1, max_number + 1), n_numbers))
        self._splits: dict[str, list[tuple[int, ...]]] = {"train": [], "val": [], "test": []}
        for ms in multisets:
            self._splits[self.split_of(ms)].append(ms)
        self._cache: dict[str, list[Record]] = {}
        self.problems_file = problems_file
        self._file: dict[str, list[Record]] = load_problems(problems_file) if problems_file else {}

    def split_of(self, numbers: tuple[int, ...] | list[int]) -> str:
        """Which split a number multiset belongs to (a stable hash, independent of order)."""
        key = f"{self.seed}:{sorted(numbers)}".encode()
        u = int.from_bytes(hashlib.sha256(key).digest()[:8], "big") / 2**64
        return "val" if u < self.holdout_frac else "test" if u < 2 * self.holdout_frac else "train"

    def multisets(self, split: str) -> list[tuple[int, ...]]:
        return self._splits[split]

    def _make(self, split: str, index: int, rng: np.random.Generator) -> Record:
        return self.sample_solved(split, index, rng)[0]

    def sample_solved(self, split: str, index: int, rng: np.random.Generator) -> tuple[Record, str]:
        """A problem of ``split`` and the random expression that defined its target (a solution).

        The problem generator itself: a random multiset of the split in random order, then random
        expressions over it until one has an integer value in the target range. The expression is
        a correct attempt drawn from the random guesser's distribution given the target, which is
        what ``lit_alpha.tasks.countdown.pretrain --attempts sampled`` trains on when the solution table is too
        large to enumerate (5 numbers).
        """
        pool = self._splits[split]
        while True:
            ms = pool[rng.integers(len(pool))]
            numbers = tuple(int(x) for x in rng.permutation(ms))
            for _ in range(50):
                value, text = random_expression(numbers, rng)
                if value.denominator == 1 and self.min_target <= value <= self.max_target:
                    record = {"id": f"cd-{split}-{index}", "numbers": list(numbers), "target": int(value)}
                    return record, text

    def problems(self, split: str) -> list[Record]:
        if split not in self._splits:
            raise ValueError(f"split must be one of train/val/test, got {split!r}")
        if self._file.get(split):
            return self._file[split]
        if split not in self._cache:
            size = {"train": self.num_val, "val": self.num_val, "test": self.num_test}[split]
            rng = np.random.default_rng([self.seed, {"train": 0, "val": 1, "test": 2}[split]])
            self._cache[split] = [self._make(split, i, rng) for i in range(size)]
        return self._cache[split]

    def sample_train(self, rng: np.random.Generator) -> Record:
        if self._file.get("train"):
            rows = self._file["train"]
            return rows[int(rng.integers(len(rows)))]
        return self._make("train", int(rng.integers(2**31)), rng)

    def prompt(self, record: Record) -> str:
        numbers = " ".join(str(n) for n in record["numbers"])
        return self.prompt_template.format(numbers=numbers, target=record["target"])

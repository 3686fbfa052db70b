"""The strategy benchmark: a digit string, a handful of transformations, a hidden accepted set.

A problem is a random string of ``length`` digits. An answer names a transformation (``cpy`` copy,
``rev`` reverse, ``inc`` add one to each digit mod 10, ``sft`` rotate left by one, ``neg`` nines'
complement ``9 − d``) and writes its result: ``rev:31284``. Which transformations are accepted for a
problem is fixed by a keyed hash with a different acceptance rate per transformation
(:mod:`lit_alpha.verifiers.strategy`); the model cannot compute it, so which strategy a problem needs
is hidden from the prompt. The base model (:mod:`lit_alpha.tasks.strategy.pretrain`) picks strategies
with a skewed ``prior`` and slips digits at a fixed rate, so it has a transferable skill to perfect
(executing without slips) and a hidden choice to make. The best policy at each α is known in closed
form (:mod:`lit_alpha.tasks.strategy.optima`).

Prompts: ``48213>`` (the hidden arm) or, with ``reveal``, ``48213|cpy,neg>`` (the control arm, where
the accepted set is shown and α must not matter; ``48213|>`` when nothing is accepted).

Splits: a digit string belongs to ``val``/``test`` by a seeded hash (``holdout_frac`` each), so the
held-out problems are strings never trained on. ``val``/``test`` are fixed lists of distinct strings.
"""

from __future__ import annotations

import hashlib
from typing import Sequence

import numpy as np

from lit_alpha.tasks.base import Record, Task
from lit_alpha.verifiers.strategy import TRANSFORMS, StrategyVerifier, parse_answer, slipped_digits

DEFAULT_PRIOR = {"cpy": 0.6, "rev": 0.3, "inc": 0.087, "sft": 0.01, "neg": 0.003}
"""The base model's habits (the pretraining mixture over strategies)."""
DEFAULT_RATES = {"cpy": 0.25, "rev": 0.1, "inc": 0.05, "sft": 0.2, "neg": 0.5}
"""The acceptance rate of each transformation."""
DEFAULT_KEY = "lit_alpha/strategy/v1"


class StrategyTask(Task):
    """Seeded digit-string problems whose accepted transformations are fixed by a keyed hash.

    Args:
        length: digits per problem.
        prior: the base's probability of each strategy (its pretraining habits; normalised). Also
            defines the filtered target ``p_x(j) ∝ prior_j · accepted_x(j)`` of the optima. Keys
            are the strategies of the benchmark, in order; each must appear in ``rates``.
        rates: acceptance rate of each strategy (a problem accepts strategy j with probability
            ``rates[j]``, independently).
        key: the secret of the acceptance hash (another key is another benchmark instance).
        reveal: the control arm: the prompt also lists the accepted strategies.
        num_val: size of the fixed validation set.
        num_test: size of the fixed test set.
        holdout_frac: fraction of digit strings reserved for validation and for test (each).
        seed: seeds the splits and the problem lists.
    """

    def __init__(
        self,
        length: int = 5,
        prior: dict[str, float] | None = None,
        rates: dict[str, float] | None = None,
        key: str = DEFAULT_KEY,
        reveal: bool = False,
        num_val: int = 200,
        num_test: int = 200,
        holdout_frac: float = 0.1,
        seed: int = 0,
    ) -> None:
        prior = dict(DEFAULT_PRIOR if prior is None else prior)
        rates = dict(DEFAULT_RATES if rates is None else rates)
        if not 1 <= length <= 12:
            raise ValueError(f"length must be in 1..12, got {length}")
        if set(prior) != set(rates) or not prior:
            raise ValueError(f"prior and rates must name the same strategies, got {sorted(prior)} and {sorted(rates)}")
        unknown = [n for n in prior if n not in TRANSFORMS]
        if unknown:
            raise ValueError(f"prior: unknown strategies {unknown}; known: {list(TRANSFORMS)}")
        if any(p < 0 for p in prior.values()) or sum(prior.values()) <= 0:
            raise ValueError(f"prior: weights must be >= 0 with a positive sum, got {prior}")
        if not 0 < holdout_frac < 0.5:
            raise ValueError(f"holdout_frac must be in (0, 0.5), got {holdout_frac}")
        if 10**length * holdout_frac < 2 * max(num_val, num_test):
            raise ValueError(f"length {length}: too few digit strings for {num_val}/{num_test} held-out problems")
        self.names: list[str] = list(prior)
        total = sum(prior.values())
        self.prior = {n: float(prior[n]) / total for n in self.names}
        self.rates = {n: float(rates[n]) for n in self.names}
        self.length, self.key, self.reveal = length, key, reveal
        self.num_val, self.num_test, self.holdout_frac, self.seed = num_val, num_test, holdout_frac, seed
        self.verifier = StrategyVerifier(key, self.rates)
        self._cache: dict[str, list[Record]] = {}

    # -- problems --------------------------------------------------------------------------
    def split_of(self, digits: str) -> str:
        """Which split a digit string belongs to (a stable seeded hash)."""
        u = int.from_bytes(hashlib.sha256(f"{self.seed}:{digits}".encode()).digest()[:8], "big") / 2**64
        return "val" if u < self.holdout_frac else "test" if u < 2 * self.holdout_frac else "train"

    def record(self, digits: str, split: str, index: int) -> Record:
        """The problem record of ``digits``: id, digits and (for tables) its accepted strategies."""
        return {"id": f"st-{split}-{index}", "digits": digits, "accepted": self.verifier.accepted(digits)}

    def _draw(self, split: str, rng: np.random.Generator) -> str:
        while True:
            digits = "".join(str(d) for d in rng.integers(0, 10, size=self.length))
            if self.split_of(digits) == split:
                return digits

    def problems(self, split: str) -> list[Record]:
        if split not in ("train", "val", "test"):
            raise ValueError(f"split must be one of train/val/test, got {split!r}")
        if split not in self._cache:
            size = {"train": self.num_val, "val": self.num_val, "test": self.num_test}[split]
            rng = np.random.default_rng([self.seed, {"train": 0, "val": 1, "test": 2}[split]])
            seen: set[str] = set()
            out: list[Record] = []
            while len(out) < size:
                digits = self._draw(split, rng)
                if digits not in seen:
                    seen.add(digits)
                    out.append(self.record(digits, split, len(out)))
            self._cache[split] = out
        return self._cache[split]

    def sample_train(self, rng: np.random.Generator) -> Record:
        return self.record(self._draw("train", rng), "train", int(rng.integers(2**31)))

    def prompt(self, record: Record) -> str:
        if self.reveal:
            return f"{record['digits']}|{','.join(self.verifier.accepted(record['digits']))}>"
        return f"{record['digits']}>"

    # -- diagnostics -----------------------------------------------------------------------
    def optima(self, records: Sequence[Record] | None = None) -> dict[str, dict[str, float]]:
        """The strategy distribution of each optimum (:mod:`~lit_alpha.tasks.strategy.optima`):
        ``{"a0": {name: q}, ..., "pass1": {...}}``. Hidden arm: over the problem distribution (exact).
        Control arm (``reveal``): the mean over the solvable ``records`` of ``p_x`` (the same for every α)."""
        from lit_alpha.tasks.strategy.optima import distribution_table, records_table

        prior = [self.prior[n] for n in self.names]
        if self.reveal:
            if not records:
                raise ValueError("the control arm's optima need the problem list")
            table = records_table(prior, [self.verifier.accepted(r["digits"]) for r in records], self.names,
                                  reveal=True, ks=(1,))
        else:
            table = distribution_table(prior, [self.rates[n] for n in self.names], names=self.names, ks=(1,))
        return {label.removeprefix("optimum_"): row["q"] for label, row in table.items()
                if label.startswith("optimum_")}

    def eval_metrics(self, records: Sequence[Record], completions: Sequence[Sequence[str]],
                     rewards: Sequence[Sequence[float]]) -> dict[str, float]:
        """The policy's distribution over strategies and its distance to each optimum.

        ``strategy/<name>``: fraction of all samples that are a well-formed answer naming ``<name>``
        (``strategy/other``: the rest). ``strategy/tv_to_opt_<tag>``: total-variation distance between
        the policy's distribution over {strategies, other} on the solvable problems and the optimum
        ``<tag>`` (``a0``, ``a025``, ``a05``, ``a075``, ``a0999``, ``pass1``). ``strategy/slip_rate``:
        wrong digits per digit among well-formed answers of the right length; ``strategy/exact``:
        fraction of all samples that execute their named strategy exactly."""
        from lit_alpha.tasks.strategy.optima import total_variation

        counts = {n: 0 for n in self.names}
        solvable_counts = {n: 0 for n in self.names}
        total = solvable_total = slips = digits_seen = exact = 0
        for record, texts in zip(records, completions):
            digits = str(record.get("digits", ""))
            solvable = bool(self.verifier.accepted(digits))
            for text in texts:
                total += 1
                solvable_total += solvable
                parsed = parse_answer(text)
                if isinstance(parsed, str) or parsed[0] not in counts:
                    continue
                name, result = parsed
                counts[name] += 1
                solvable_counts[name] += solvable
                wrong = slipped_digits(digits, name, result)
                if wrong is not None:
                    slips += wrong
                    digits_seen += len(digits)
                    exact += wrong == 0
        if total == 0:
            return {}
        out = {f"strategy/{n}": counts[n] / total for n in self.names}
        out["strategy/other"] = 1.0 - sum(counts.values()) / total
        out["strategy/exact"] = exact / total
        if digits_seen:
            out["strategy/slip_rate"] = slips / digits_seen
        if solvable_total:
            policy = {n: solvable_counts[n] / solvable_total for n in self.names}
            policy["<other>"] = 1.0 - sum(policy.values())
            for tag, q in self.optima(records).items():
                out[f"strategy/tv_to_opt_{tag}"] = total_variation(policy, q)
        return out

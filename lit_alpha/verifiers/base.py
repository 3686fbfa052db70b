"""The Verifier contract: ``verify(record, completion) -> Verdict``; never raises.

Model outputs are hostile text. A verifier must be pure and bounded; whatever goes wrong inside it
(an exception, a timeout, garbage) becomes a 0 verdict with a reason, which the trainer counts and
logs. :meth:`Verifier.verify_batch` enforces that contract for every subclass.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any, Mapping, Sequence, TypeVar

_Score = TypeVar("_Score")


def is_correct(reward: _Score) -> _Score:
    """THE definition of a correct sample, used by every objective, metric and evaluation: its
    reward (the verifier's score in [0, 1]) is > 0, i.e. the sample lies in the support of the
    verifier-filtered target. For 0/1 verifiers that is score 1. Works elementwise on a float
    (-> bool) or a tensor/array of rewards (-> bool tensor/array of the same shape)."""
    return reward > 0  # type: ignore[operator, return-value]


@dataclass(frozen=True)
class Verdict:
    """A score in [0, 1] (1 = verified correct; :func:`is_correct` says which count) and a short reason."""

    score: float
    reason: str = "ok"
    answer: str | None = None  # canonical form of the answer (for distinct-correct counts)

    @property
    def correct(self) -> bool:
        """:func:`is_correct` of the score."""
        return bool(is_correct(self.score))


class Verifier:
    """Base class: subclasses implement :meth:`check`; callers use :meth:`verify`/:meth:`verify_batch`."""

    def check(self, record: Mapping[str, Any], completion: str) -> Verdict:
        raise NotImplementedError

    def verify(self, record: Mapping[str, Any], completion: str) -> Verdict:
        """Like :meth:`check` but total: an exception is a 0 verdict with reason ``crash``."""
        try:
            verdict = self.check(record, completion)
        except Exception as exc:  # noqa: BLE001 - the contract is "never raises"
            return Verdict(0.0, f"crash:{type(exc).__name__}")
        if not isinstance(verdict, Verdict) or not 0.0 <= float(verdict.score) <= 1.0:
            return Verdict(0.0, "garbage")
        return verdict

    def verify_batch(
        self, records: Sequence[Mapping[str, Any]], completions: Sequence[str]
    ) -> list[Verdict]:
        if len(records) != len(completions):
            raise ValueError(f"{len(records)} records for {len(completions)} completions")
        return [self.verify(r, c) for r, c in zip(records, completions)]


def count_reasons(verdicts: Sequence[Verdict]) -> Counter[str]:
    """How many verdicts of each reason (``ok`` for correct ones)."""
    return Counter(v.reason.split(":")[0] for v in verdicts)

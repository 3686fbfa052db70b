"""Verifiers: ``verify(record, completion) -> Verdict``, pure, bounded, never raising."""

from lit_alpha.verifiers.base import Verdict, Verifier, count_reasons
from lit_alpha.verifiers.countdown import CountdownVerifier
from lit_alpha.verifiers.math_answer import MathAnswerVerifier

__all__ = ["Verdict", "Verifier", "CountdownVerifier", "MathAnswerVerifier", "count_reasons"]

"""Verifiers: ``verify(record, completion) -> Verdict``, pure, bounded, never raising."""

from lit_alpha.verifiers.base import Verdict, Verifier, count_reasons
from lit_alpha.verifiers.countdown import CountdownVerifier

__all__ = ["Verdict", "Verifier", "CountdownVerifier", "count_reasons"]

"""Operator precedence and associativity of the Countdown verifier's parser: ``*`` and ``/`` bind alike
and from the left, as do ``+`` and ``-`` (a surviving mutant of ``scripts/mutate.py`` gave ``*`` its own
level, so ``8/2*2`` read as ``8/(2*2)``)."""

from __future__ import annotations

import pytest

from lit_alpha.verifiers import CountdownVerifier

V = CountdownVerifier()


@pytest.mark.parametrize("expr,numbers,value", [
    ("8/2*2", [8, 2, 2], 8),  # (8/2)*2, not 8/(2*2) = 2
    ("8*2/4", [8, 2, 4], 4),
    ("12/3/2", [12, 3, 2], 2),  # (12/3)/2, not 12/(3/2) = 8
    ("8-2+2", [8, 2, 2], 8),  # (8−2)+2, not 8−(2+2) = 4
    ("9-3-2", [9, 3, 2], 4),
    ("2+3*4", [2, 3, 4], 14),
    ("2*3+4", [2, 3, 4], 10),
    ("(2+3)*4", [2, 3, 4], 20),
    ("12-6/3", [12, 6, 3], 10),
])
def test_precedence_and_left_associativity(expr, numbers, value) -> None:
    assert V.verify({"numbers": numbers, "target": value}, expr).correct
    assert not V.verify({"numbers": numbers, "target": value + 1}, expr).correct

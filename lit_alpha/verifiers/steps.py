"""Step-Countdown verifier: is every written step exact, is every value used at most once, and does
the last step reach the target?

The rule
--------
An answer is a sequence of steps separated by single spaces (U+0020; runs of spaces are tolerated),
each step ``A op B = C`` written without spaces, e.g. ``3*4=12 12+5=17 17-2=15``:

    step   := NUMBER OP NUMBER '=' NUMBER
    OP     := '+' | '-' | '*' | '/'
    NUMBER := '0' | [1-9][0-9]{0,5}          (ASCII digits, at most 6, no leading zeros)

Every value is a natural number (no sign, no fraction), so a step is exact only when ``C`` is the
value of ``A op B`` in the naturals: ``A-B`` needs ``A >= B`` and ``A/B`` needs ``B > 0`` dividing
``A`` exactly (``7/2=3`` is a slip, as is any ``C`` for ``5-7``).

Availability: the given numbers form a multiset of available values. A step consumes one copy of
``A`` and one of ``B`` from it (``A`` and ``B`` may be equal only if two copies are available) and adds
its written result ``C``. So each given number and each intermediate result is used at most once;
numbers need not all be used. The last step's ``C`` must equal the target. At least one step.

Steps are checked left to right; the first failure decides the reason:

* ``parse``: a token that is not a step (or a literal longer than 6 digits);
* ``reuse``: an operand that is not available (not given, or already used);
* ``slip``: ``C`` is not the exact value of ``A op B``;
* ``wrong_final``: every step is fine but the last result is not the target;
* ``empty``: no step; ``too_long``: more than :data:`MAX_CHARS` characters or :data:`MAX_STEPS` steps;
* ``record``: the record itself is malformed (numbers/target missing or not natural numbers).

Nothing is evaluated by Python (no ``eval``); integers are bounded by the 6-digit literal limit, so
every product stays below 10^12. The verifier is pure and bounded.

The canonical plan (``Verdict.answer`` of a parsed answer) is the expression tree that produces the
last result, with the operands of ``+`` and ``*`` sorted and the steps that do not feed the last
result dropped: ``3*4=12 12+5=17`` and ``5+12=17``-after-``4*3=12`` are the same plan. Two plans
count as distinct only if their trees (over the given numbers) differ. When an operand value is
available as several copies with different histories, the most recently produced copy is the one
consumed (given numbers are produced first, in order).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Mapping

from lit_alpha.verifiers.base import Verdict, Verifier

MAX_CHARS = 512
"""Longest completion checked (the tiny models write under 100 characters)."""
MAX_STEPS = 16
"""Most steps accepted."""
MAX_DIGITS = 6
"""Longest number literal accepted."""

_STEP = re.compile(r"(0|[1-9][0-9]{0,5})([-+*/])(0|[1-9][0-9]{0,5})=(0|[1-9][0-9]{0,5})")


@dataclass(frozen=True)
class Step:
    """One written step ``a op b = c`` (``c`` as written, not as computed)."""

    a: int
    op: str
    b: int
    c: int

    @property
    def exact(self) -> bool:
        """Whether ``c`` is the value of ``a op b`` in the natural numbers."""
        return exact_value(self.a, self.op, self.b) == self.c


def exact_value(a: int, op: str, b: int) -> int | None:
    """``a op b`` in the naturals, or None if it is not a natural number (negative, inexact, /0)."""
    if op == "+":
        return a + b
    if op == "*":
        return a * b
    if op == "-":
        return a - b if a >= b else None
    if op == "/":
        return a // b if b and a % b == 0 else None
    return None


def parse_steps(completion: str) -> tuple[list[Step], str | None]:
    """The steps of ``completion`` (split on spaces) and the first error (``parse``/``too_long``/
    ``empty``), or None if every token is a step. Never raises on a ``str``; bounded by MAX_CHARS."""
    if not isinstance(completion, str):
        return [], "parse"
    if len(completion) > MAX_CHARS:
        return [], "too_long"
    tokens = completion.strip(" \n").split()
    if not tokens:
        return [], "empty"
    if len(tokens) > MAX_STEPS:
        return [], "too_long"
    steps = []
    for token in tokens:
        m = _STEP.fullmatch(token)
        if m is None:
            return steps, "parse"
        steps.append(Step(int(m.group(1)), m.group(2), int(m.group(3)), int(m.group(4))))
    return steps, None


def _natural(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool) and 0 <= x < 10**MAX_DIGITS


def check_steps(numbers: list[int], target: int, steps: list[Step]) -> tuple[str, str | None]:
    """``(reason, canonical plan)`` of parsed ``steps`` for the problem: reason ``ok`` when correct.

    The plan is returned whenever every step is available and exact (also for ``wrong_final``)."""
    pool: list[tuple[int, str]] = [(n, str(n)) for n in numbers]  # (value, plan tree), in production order
    for step in steps:
        trees = []
        for v in (step.a, step.b):
            at = next((i for i in range(len(pool) - 1, -1, -1) if pool[i][0] == v), None)
            if at is None:
                return "reuse", None
            trees.append(pool.pop(at)[1])
        if not step.exact:
            return "slip", None
        left, right = trees
        if step.op in "+*" and right < left:
            left, right = right, left
        pool.append((step.c, f"({left}{step.op}{right})"))
    plan = pool[-1][1]
    return ("ok" if steps[-1].c == target else "wrong_final"), plan


class StepsVerifier(Verifier):
    """0/1 verdicts for step-Countdown answers (rules in the module docstring)."""

    def check(self, record: Mapping[str, Any], completion: str) -> Verdict:
        numbers, target = record.get("numbers"), record.get("target")
        if (not isinstance(numbers, (list, tuple)) or not 0 < len(numbers) <= MAX_STEPS + 1
                or not all(_natural(n) for n in numbers) or not _natural(target)):
            return Verdict(0.0, "record")
        steps, error = parse_steps(completion)
        if error is not None:
            return Verdict(0.0, error)
        reason, plan = check_steps(list(numbers), int(target), steps)
        return Verdict(1.0 if reason == "ok" else 0.0, reason, plan)


def slip_counts(completion: str) -> tuple[int, int]:
    """``(slipped steps, written steps)`` of one completion: every token that parses as a step is
    counted, whether or not its operands were available, up to the first token that does not parse."""
    if not isinstance(completion, str) or len(completion) > MAX_CHARS:
        return 0, 0
    written = slipped = 0
    for token in completion.split()[:MAX_STEPS]:
        m = _STEP.fullmatch(token)
        if m is None:
            break
        step = Step(int(m.group(1)), m.group(2), int(m.group(3)), int(m.group(4)))
        written += 1
        slipped += not step.exact
    return slipped, written

"""Strategy-benchmark verifier: did the answer name an *accepted* transformation and write its result?

The rule
--------
A problem is a digit string ``x`` (e.g. ``48213``). An answer is ``name:result`` where ``name`` is one
of the transformations of :data:`TRANSFORMS` and ``result`` is a digit string. It is correct (score 1)
iff ``name`` is accepted for ``x`` (:func:`accepted`) **and** ``result == TRANSFORMS[name](x)``.

Which transformations are accepted is fixed by a keyed hash: ``name`` is accepted for ``x`` iff
``u(key|x|name) < rate[name]``, with ``u`` the first 8 bytes of SHA-256 read as a number in [0, 1).
The model sees neither the key nor the hash, so it cannot tell from the prompt which names work
(unless the task's control arm writes the accepted set into the prompt).

Extraction: the completion's first line, stripped of spaces. Reasons: ``ok``, ``rejected`` (a
transformation that is not accepted for this problem, whatever the result), ``wrong`` (an accepted
transformation with a wrong result: an execution slip), ``name`` (unknown transformation), ``parse``
(not ``name:digits``), ``empty``, ``too_long``, ``record`` (a record without a usable digit string).
Everything is bounded: at most :data:`MAX_CHARS` characters are looked at.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any, Callable, Mapping

from lit_alpha.verifiers.base import Verdict, Verifier

MAX_CHARS = 64  # a completion longer than this (first line) is ``too_long``
MAX_DIGITS = 32  # longest digit string a record may hold


def _copy(x: str) -> str:
    return x


def _reverse(x: str) -> str:
    return x[::-1]


def _increment(x: str) -> str:
    return "".join(str((int(d) + 1) % 10) for d in x)


def _shift(x: str) -> str:
    return x[1:] + x[:1]


def _negate(x: str) -> str:
    return "".join(str(9 - int(d)) for d in x)


TRANSFORMS: dict[str, Callable[[str], str]] = {
    "cpy": _copy,  # the digits unchanged
    "rev": _reverse,  # the digits in reverse order
    "inc": _increment,  # each digit plus one, mod 10
    "sft": _shift,  # rotated left by one place (the first digit moves to the end)
    "neg": _negate,  # each digit's nines' complement, 9 - d
}
"""The transformations by name, in the benchmark's order (each name starts with a different letter,
so the first answer token decides the strategy)."""

_ANSWER = re.compile(r"([a-z]{1,8}):([0-9]{1,%d})" % MAX_DIGITS)


def unit_hash(key: str, digits: str, name: str) -> float:
    """``u(key|digits|name)`` in [0, 1): the first 8 bytes of SHA-256, big-endian, over 2**64."""
    h = hashlib.sha256(f"{key}|{digits}|{name}".encode()).digest()
    return int.from_bytes(h[:8], "big") / 2**64


def accepted(key: str, digits: str, rates: Mapping[str, float]) -> list[str]:
    """The transformation names accepted for ``digits`` (in ``rates``' order)."""
    return [name for name, rate in rates.items() if unit_hash(key, digits, name) < rate]


def parse_answer(completion: str) -> tuple[str, str] | str:
    """``(name, result)`` of a well-formed answer, else the failure reason (a str).

    Looks at the first line only, stripped of spaces; no more than :data:`MAX_CHARS` characters."""
    if not isinstance(completion, str):
        return "parse"
    head = completion[: MAX_CHARS + 2]
    line = head.split("\n", 1)[0].strip(" ")
    if not line:
        return "empty"
    if len(line) > MAX_CHARS:
        return "too_long"
    m = _ANSWER.fullmatch(line)
    if m is None:
        return "parse"
    return m.group(1), m.group(2)


def slipped_digits(x: str, name: str, result: str) -> int | None:
    """How many digits of ``result`` differ from ``TRANSFORMS[name](x)`` (None: unknown name or
    another length)."""
    fn = TRANSFORMS.get(name)
    if fn is None:
        return None
    want = fn(x)
    if len(want) != len(result):
        return None
    return sum(a != b for a, b in zip(want, result))


class StrategyVerifier(Verifier):
    """Checks ``name:result`` against the keyed acceptance rule and the named transformation.

    Args:
        key: the secret of the acceptance hash.
        rates: acceptance rate of each transformation name (names outside :data:`TRANSFORMS` are
            refused).
    """

    def __init__(self, key: str, rates: Mapping[str, float]) -> None:
        unknown = [n for n in rates if n not in TRANSFORMS]
        if unknown:
            raise ValueError(f"rates: unknown transformation(s) {unknown}; known: {list(TRANSFORMS)}")
        bad = {n: r for n, r in rates.items() if not 0.0 <= float(r) <= 1.0}
        if bad:
            raise ValueError(f"rates: each rate must lie in [0, 1], got {bad}")
        self.key = str(key)
        self.rates = {n: float(r) for n, r in rates.items()}

    def accepted(self, digits: str) -> list[str]:
        """The names accepted for ``digits``."""
        return accepted(self.key, digits, self.rates)

    def check(self, record: Mapping[str, Any], completion: str) -> Verdict:
        digits = record.get("digits") if isinstance(record, Mapping) else None
        if not isinstance(digits, str) or not 0 < len(digits) <= MAX_DIGITS or not digits.isascii() \
                or not digits.isdigit():
            return Verdict(0.0, "record")
        parsed = parse_answer(completion)
        if isinstance(parsed, str):
            return Verdict(0.0, parsed)
        name, result = parsed
        answer = f"{name}:{result}"
        if name not in self.rates:
            return Verdict(0.0, "name", answer)
        if unit_hash(self.key, digits, name) >= self.rates[name]:
            return Verdict(0.0, "rejected", answer)
        if TRANSFORMS[name](digits) != result:
            return Verdict(0.0, "wrong", answer)
        return Verdict(1.0, "ok", answer)


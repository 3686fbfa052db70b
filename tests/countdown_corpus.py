"""Random and hostile Countdown (record, completion) pairs, reproducible from a seed.

Used by ``tests/test_countdown.py`` (the shipped verifier against ``tests/countdown_reference.py``)
and ``benchmarks/bench_verifier.py``. About a third of the expressions are built over the record's
numbers with the record's target set to their value, so correct answers are common.
"""

from __future__ import annotations

import random
from fractions import Fraction
from typing import Any

ALPHABET = "0123456789+-*/() " * 4 + "\t\nx٣.^=<>/a"
HOSTILE = [
    "", " ", "()", "(1)", "((((((((((((((((((((((((((((((((1))))))))))))))))))))))))))))))))",  # depth 32
    "(" * 33 + "1" + ")" * 33, "1234567", "123456", "007", "0", "0/0", "1/(2-2)", "1/0+x", "7/2*2",
    "1+2+3+4+5+6+7 x", "x 1+2+3+4+5+6+7", "1++2", "+1", "-1", "1-", "(1", "1)", ")(", "1 2", "1(2)",
    "٣+1", "1\t+2", "1\n+2", "<answer>1+2</answer>", "<answer>\n3*4 </answer> tail", "<answer>1+",
    "think <answer>2*3</answer> then <answer>3*2</answer>", "9" * 300, "1+" * 200 + "1", "1" + " " * 300,
    "12/3*5", "2*(3+4)-(5-6)", "100-(25-(5-1))", "6/(1-3/4)", "1/3+1/3+1/3",
]


def _expression(rng: random.Random, nums: list[int], depth: int = 0) -> tuple[str, Any]:
    """A random expression over (a sample of) ``nums`` and its exact value (None on division by 0)."""
    if len(nums) == 1 or depth > 4 or rng.random() < 0.2:
        n = nums[0]
        return str(n), Fraction(n)
    k = rng.randint(1, len(nums) - 1)
    (a, x), (b, y) = _expression(rng, nums[:k], depth + 1), _expression(rng, nums[k:], depth + 1)
    op = rng.choice("+-*/")
    if x is None or y is None or (op == "/" and y == 0):
        value = None
    else:
        value = {"+": x + y, "-": x - y, "*": x * y, "/": x / y if y else None}[op]
    pad = rng.choice(["", "", "", " "])
    text = f"{a}{pad}{op}{pad}{b}"
    if rng.random() < 0.5:
        text = f"({text})"
    return text, value


def _mutate(rng: random.Random, text: str) -> str:
    for _ in range(rng.randint(1, 3)):
        i = rng.randint(0, len(text))
        what = rng.random()
        if what < 0.4:
            text = text[:i] + rng.choice(ALPHABET) + text[i:]
        elif what < 0.7:
            text = text[:i] + text[i + 1:]
        else:
            text = text[:i] + rng.choice(ALPHABET) + text[i + 1:]
    return text


def corpus(n: int, seed: int = 0) -> list[tuple[dict[str, Any], str]]:
    """``n`` (record, completion) pairs: records of 3-6 numbers (duplicates and 0 included)."""
    rng = random.Random(seed)
    out: list[tuple[dict[str, Any], str]] = []
    records: list[dict[str, Any]] = []
    for _ in range(max(1, n // 8)):
        nums = [rng.choice([0, 1, 2, 3, 5, 7, 10, 25, 50, 75, 100, rng.randint(1, 99)]) for _ in range(rng.randint(3, 6))]
        records.append({"numbers": nums, "target": rng.randint(0, 999)})
    for i in range(n):
        rec = records[i // 8 % len(records)]  # groups of 8 samples share a record, as in training
        nums = list(rec["numbers"])
        rng.shuffle(nums)
        kind = rng.random()
        if kind < 0.35:
            text, value = _expression(rng, nums[: rng.randint(1, len(nums))])
            if value is not None and value.denominator == 1 and rng.random() < 0.7:
                rec = dict(rec, target=int(value))  # a correct answer for this record
        elif kind < 0.55:
            text, _ = _expression(rng, [rng.randint(0, 120) for _ in range(rng.randint(1, 7))])  # other numbers
        elif kind < 0.8:
            text = _mutate(rng, _expression(rng, nums)[0])
        elif kind < 0.9:
            text = rng.choice(HOSTILE)
        else:
            text = "".join(rng.choice(ALPHABET) for _ in range(rng.randint(0, 40)))
        wrap = rng.random()
        if wrap < 0.1:
            text = f"Let me think.\n<answer>{text}</answer>"
        elif wrap < 0.15:
            text = text + "\nmore text"
        out.append((rec, text))
    return out

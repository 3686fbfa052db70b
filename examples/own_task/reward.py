"""A checker for problems.jsonl: the completion must be `a op b` over the prompt's two numbers
(in either order, op one of + - *) and equal the row's answer. Text only, never eval."""

import re

EXPRESSION = re.compile(r"\s*(\d{1,6})\s*([-+*])\s*(\d{1,6})\s*")


def reward(prompts, completions, answer, numbers, **row):
    """One score per completion: 1.0 if correct, else 0.0 (rows' fields arrive as lists)."""
    scores = []
    for completion, target, given in zip(completions, answer, numbers):
        match = EXPRESSION.fullmatch(completion[:100])
        if match is None:
            scores.append(0.0)
            continue
        a, op, b = int(match[1]), match[2], int(match[3])
        value = a + b if op == "+" else a - b if op == "-" else a * b
        scores.append(1.0 if sorted([a, b]) == sorted(given) and value == target else 0.0)
    return scores

"""Countdown verifier: is the model's expression, over the given numbers, equal to the target?

The rule
--------
An answer is an arithmetic expression over ASCII decimal literals, the binary operators
``+ - * /``, parentheses and spaces. Each given number may be used **at most once**, with multiset
semantics: a number listed twice may be used twice; a number that is not given, or one used more
often than given, fails with reason ``numbers``. Not every number has to be used. The value is
computed exactly with :class:`fractions.Fraction` (so ``12/3*5`` is 20 and ``7/2*2`` is 7); it must
equal the target exactly.

Grammar (checked by hand-written code, below; no ``eval``/``exec``/``compile``/``ast``)::

    expr   := term (('+' | '-') term)*
    term   := factor (('*' | '/') factor)*
    factor := NUMBER | '(' expr ')'
    NUMBER := '0' | [1-9][0-9]{0,5}          (ASCII digits only, at most 6, no leading zeros)

There is no unary minus or plus, no ``**``/``^``, no decimals, no ``=``; spaces (U+0020) are the
only whitespace allowed inside an expression. Parentheses nest at most :data:`MAX_DEPTH` deep.

Extraction: if the completion holds a complete ``<answer>…</answer>`` block, the *last* one is the
answer (chat models reason first); otherwise the completion's first line, stripped (the tiny model
writes just the expression, then EOS).

Reasons: ``ok``, ``wrong`` (parsed, legal, other value), ``numbers``, ``divzero``, ``parse``,
``empty``, ``too_long``. Everything is bounded before any work: the completion's length, the
expression's length, the nesting depth, literal length and the literal count (at most
``len(numbers)``, checked while scanning, so arithmetic never sees more literals than numbers).
When several failures are present the first one met left to right decides (a parse error after a
literal too many is ``numbers``; one before it is ``parse``), then ``numbers``, then ``divzero``.

How (one pass, no AST): a linear regular expression (``[0-9]{1,7}|[^0-9 ]``, no backtracking) splits the
expression into literals and one-character tokens; one loop checks the grammar (a state machine:
operand expected or operator expected, depth, literal bounds and count) while a shunting-yard
evaluates it, in integers while every division is exact (a ``Fraction`` only from the first inexact
one; a division by zero is noted, not raised) and builds the canonical form bottom-up. The given
numbers of a record are counted once per distinct ``numbers`` (a small cache), not once per sample.
``tests/countdown_reference.py`` is the previous AST implementation; the tests check that both give
the same verdicts (answers included) on random and hostile completions.

:func:`canonical_answer` gives one text per trivially-equal answer (commutative/associative
reorderings), used to count *distinct* correct answers; every parsed answer carries it (evaluation's
answer entropy reads the wrong ones too).
"""

from __future__ import annotations

import re
from fractions import Fraction
from typing import Any, Mapping

from lit_alpha.verifiers.base import Verdict, Verifier

MAX_DEPTH = 32  # deepest parenthesis nesting accepted
MAX_DIGITS = 6  # longest number literal accepted
# a literal (7 digits at most: one more than allowed is already an error), or any one character that
# is not a space; linear, no backtracking
_TOKEN = re.compile(r"[0-9]{1,7}|[^0-9 ]")
_EAGER_CHARS = 4096  # up to this length all tokens are split at once (fast); beyond, lazily (fail fast)
_PREC = {"+": 1, "-": 1, "*": 2, "/": 2, "(": 0}  # "(" on the operator stack: never reduced by an operator
_SUM, _PRODUCT = 1, 2  # canonical-form node kinds (a literal is its text, a str)
_GIVEN_CACHE: dict[tuple, tuple[dict[int, int], int, frozenset[int]]] = {}
_GIVEN_CACHE_MAX = 4096


def _text(node: Any) -> str:
    """Canonical text of a node: a literal's text, or a chain ``(kind, plus, minus)`` of item texts."""
    if type(node) is str:
        return node
    kind, plus, minus = node
    if kind == _SUM:
        return "+".join(sorted(plus)) + "".join(["-" + t for t in sorted(minus)])
    return "*".join(sorted(plus)) + "".join(["/" + t for t in sorted(minus)])


def _reduce(op: str, vals: list, nodes: list) -> bool:
    """Replace the top two operands by ``left op right``: its exact value (int while exact, else a
    Fraction) and its canonical node; True if it divided by zero (the value is then 0, unused).

    Canonical nodes: chains of ``+-`` (``*/``) are flattened into signed (inverted) items, so
    ``a-(b-c)`` is ``a+c-b`` and ``a/(b/c)`` is ``a*c/b``; a sum inside a product is an item in
    parentheses. Nodes are used once, so a left chain is extended in place."""
    y = vals.pop()
    x = vals[-1]
    divzero = False
    if op == "+":
        v, kind, inverse = x + y, _SUM, False
    elif op == "-":
        v, kind, inverse = x - y, _SUM, True
    elif op == "*":
        v, kind, inverse = x * y, _PRODUCT, False
    else:
        kind, inverse = _PRODUCT, True
        if y == 0:
            v, divzero = 0, True
        elif type(x) is int and type(y) is int:
            q, r = divmod(x, y)
            v = q if r == 0 else Fraction(x, y)
        else:
            v = x / y
    vals[-1] = v
    right = nodes.pop()
    left = nodes[-1]
    if type(left) is str:
        plus, minus = [left], []
    elif left[0] == kind:
        plus, minus = left[1], left[2]
    else:
        plus, minus = [_text(left) if kind == _SUM else "(" + _text(left) + ")"], []
    if type(right) is str:
        (minus if inverse else plus).append(right)
    elif right[0] == kind:
        if inverse:
            plus += right[2]
            minus += right[1]
        else:
            plus += right[1]
            minus += right[2]
    else:
        (minus if inverse else plus).append(_text(right) if kind == _SUM else "(" + _text(right) + ")")
    nodes[-1] = (kind, plus, minus)
    return divzero


_DIGIT, _OP, _OPEN, _CLOSE = 0, 1, 2, 3
_KIND = {**{d: _DIGIT for d in "0123456789"}, **{o: _OP for o in "+-*/"}, "(": _OPEN, ")": _CLOSE}


def scan(expr: str, max_literals: int | None = None) -> tuple[str, Any, str | None, list[int]]:
    """Check, evaluate and canonicalize ``expr`` in one pass.

    Returns ``(status, value, canonical, literals)``: status ``"ok"`` (value exact), ``"divzero"``
    (value None), ``"parse"`` or ``"numbers"`` (more literals than ``max_literals``; canonical None).
    """
    vals: list[Any] = []
    nodes: list[Any] = []
    ops: list[str] = []
    lits: list[int] = []
    expect_operand, depth, divzero = True, 0, False
    limit = max_literals if max_literals is not None else len(expr) + 1
    kinds, prec = _KIND, _PREC
    tokens = _TOKEN.findall(expr) if len(expr) <= _EAGER_CHARS else (m.group() for m in _TOKEN.finditer(expr))
    for tok in tokens:
        kind = kinds.get(tok[0])
        if kind == _DIGIT:
            if not expect_operand or len(tok) > MAX_DIGITS or (tok[0] == "0" and len(tok) > 1):
                return "parse", None, None, lits
            if len(lits) >= limit:
                return "numbers", None, None, lits
            n = int(tok)
            lits.append(n)
            vals.append(n)
            nodes.append(tok)
            expect_operand = False
        elif kind == _OP:
            if expect_operand:
                return "parse", None, None, lits
            p = prec[tok]
            while ops and prec[ops[-1]] >= p:
                divzero = _reduce(ops.pop(), vals, nodes) or divzero
            ops.append(tok)
            expect_operand = True
        elif kind == _OPEN:
            if not expect_operand:
                return "parse", None, None, lits
            depth += 1
            if depth > MAX_DEPTH:
                return "parse", None, None, lits
            ops.append(tok)
        elif kind == _CLOSE:
            if expect_operand or depth == 0:
                return "parse", None, None, lits
            depth -= 1
            top = ops.pop()
            while top != "(":
                divzero = _reduce(top, vals, nodes) or divzero
                top = ops.pop()
        else:
            return "parse", None, None, lits
    if expect_operand or depth != 0:
        return "parse", None, None, lits
    while ops:
        divzero = _reduce(ops.pop(), vals, nodes) or divzero
    return ("divzero" if divzero else "ok"), (None if divzero else vals[0]), _text(nodes[0]), lits


def _given(numbers: Any) -> tuple[dict[int, int], int, frozenset[int]]:
    """``{number: how many times given}``, their total and the set of them, once per distinct
    ``numbers`` (a training batch has n samples per record)."""
    key = tuple(numbers)
    hit = _GIVEN_CACHE.get(key)
    if hit is None:
        given: dict[int, int] = {}
        for n in key:
            n = int(n)
            given[n] = given.get(n, 0) + 1
        hit = (given, sum(given.values()), frozenset(given))
        if len(_GIVEN_CACHE) >= _GIVEN_CACHE_MAX:
            _GIVEN_CACHE.clear()
        _GIVEN_CACHE[key] = hit
    return hit


def extract(completion: str, answer_tag: str = "answer") -> str:
    """The answer text: the last complete ``<tag>…</tag>`` block, else the first line; stripped.

    Uses only ``str.rfind``/``str.find`` (linear, no regex backtracking).
    """
    open_tag, close_tag = f"<{answer_tag}>", f"</{answer_tag}>"
    end = completion.rfind(close_tag)
    if end != -1:
        start = completion.rfind(open_tag, 0, end)
        if start != -1:
            return completion[start + len(open_tag) : end].strip()
    newline = completion.find("\n")
    first = completion if newline == -1 else completion[:newline]
    return first.strip()


def canonical_answer(text: str, answer_tag: str = "answer") -> str | None:
    """Canonical form of the answer in ``text`` (a completion or a bare expression), or None.

    None when the text is too long (over 16 KiB, or an expression over 256 chars) or does not parse.
    """
    if len(text) > 64 * 256:
        return None
    expr = extract(text, answer_tag)
    if len(expr) > 256:
        return None
    status, _, answer, _ = scan(expr)
    return answer if status in ("ok", "divzero") else None


class CountdownVerifier(Verifier):
    """Exact, bounded checker for Countdown answers (rule and grammar in the module docstring).

    Args:
        max_chars: longest extracted expression accepted (longer: reason ``too_long``).
        answer_tag: name of the tag that marks a chat model's final answer (``<answer>…</answer>``).
        max_completion_chars: longest completion looked at; None means ``64 * max_chars`` (16 KiB
            by default: room for a chat model's reasoning, small enough that the scan is cheap).
    """

    def __init__(
        self, max_chars: int = 256, answer_tag: str = "answer", max_completion_chars: int | None = None
    ) -> None:
        if max_chars < 1:
            raise ValueError(f"max_chars must be >= 1, got {max_chars}")
        if not answer_tag or any(c in answer_tag for c in "<>/"):
            raise ValueError(f"answer_tag must be a plain non-empty name, got {answer_tag!r}")
        self.max_chars = max_chars
        self.answer_tag = answer_tag
        self.max_completion_chars = 64 * max_chars if max_completion_chars is None else max_completion_chars

    def check(self, record: Mapping[str, Any], completion: str) -> Verdict:
        if not isinstance(completion, str):
            return Verdict(0.0, "parse")
        if len(completion) > self.max_completion_chars:
            return Verdict(0.0, "too_long")
        expr = extract(completion, self.answer_tag)
        if not expr:
            return Verdict(0.0, "empty")
        if len(expr) > self.max_chars:
            return Verdict(0.0, "too_long")
        given, total, keys = _given(record["numbers"])
        target = record["target"]
        status, value, answer, lits = scan(expr, total)
        if status == "parse" or status == "numbers":
            return Verdict(0.0, status)
        distinct = set(lits)
        if len(distinct) == len(lits):  # the usual case: each literal once, so each must be given
            if not distinct <= keys:
                return Verdict(0.0, "numbers", answer=answer)
        else:
            used: dict[int, int] = {}
            for n in lits:
                k = used.get(n, 0) + 1
                if k > given.get(n, 0):
                    return Verdict(0.0, "numbers", answer=answer)
                used[n] = k
        if status == "divzero":
            return Verdict(0.0, "divzero", answer=answer)
        if value != target:
            return Verdict(0.0, "wrong", answer=answer)
        return Verdict(1.0, "ok", answer=answer)

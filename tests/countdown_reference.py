"""FROZEN reference: lit_alpha/verifiers/countdown.py as it was before the one-pass rewrite (issue 15).

Do not edit: ``tests/test_countdown.py`` checks that the shipped verifier gives exactly this module's
verdicts (answers included) on random and hostile completions, and ``benchmarks/bench_verifier.py``
measures both. The original docstring follows.

Countdown verifier: is the model's expression, over the given numbers, equal to the target?

The rule
--------
An answer is an arithmetic expression over ASCII decimal literals, the binary operators
``+ - * /``, parentheses and spaces. Each given number may be used **at most once**, with multiset
semantics: a number listed twice may be used twice; a number that is not given, or one used more
often than given, fails with reason ``numbers``. Not every number has to be used. The value is
computed exactly with :class:`fractions.Fraction` (so ``12/3*5`` is 20 and ``7/2*2`` is 7); it must
equal the target exactly.

Grammar (hand-written tokenizer + recursive descent; no ``eval``/``exec``/``compile``/``ast``)::

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
``len(numbers)``, checked while tokenizing, so arithmetic never sees more literals than numbers).
A verdict takes microseconds even on hostile text.

:func:`canonical` gives one text per trivially-equal answer (commutative/associative reorderings),
used to count *distinct* correct answers.
"""

from __future__ import annotations

from collections import Counter
from fractions import Fraction
from typing import Any, Mapping, Union

from lit_alpha.verifiers.base import Verdict, Verifier

MAX_DEPTH = 32  # deepest parenthesis nesting accepted
MAX_DIGITS = 6  # longest number literal accepted
_DIGITS = "0123456789"
_OPS = "+-*/"

# AST: an int literal, or (op, left, right) with op in "+-*/".
Node = Union[int, tuple]


class ParseError(ValueError):
    """The text is not an expression of the grammar above (or exceeds a bound)."""


class TooManyNumbers(ValueError):
    """More number literals than numbers given: a ``numbers`` failure found while tokenizing."""


def tokenize(text: str, max_literals: int | None = None) -> list[str | int]:
    """Split ``text`` into int literals and one-char operator/paren tokens, failing fast.

    A small state machine (expecting an operand, or an operator) checks adjacency while scanning,
    so the token list is already a well-formed infix expression; depth, literal length and literal
    count are checked at the character that would exceed them, so hostile input stops early.
    """
    tokens: list[str | int] = []
    expect_operand = True
    depth = 0
    literals = 0
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c == " ":
            i += 1
        elif c in _DIGITS:
            if not expect_operand:
                raise ParseError("number after operand")
            j = i
            while j < n and text[j] in _DIGITS:
                j += 1
                if j - i > MAX_DIGITS:
                    raise ParseError("literal too long")
            if c == "0" and j - i > 1:
                raise ParseError("leading zero")
            literals += 1
            if max_literals is not None and literals > max_literals:
                raise TooManyNumbers("more literals than numbers")
            tokens.append(int(text[i:j]))
            expect_operand, i = False, j
        elif c == "(":
            if not expect_operand:
                raise ParseError("'(' after operand")
            depth += 1
            if depth > MAX_DEPTH:
                raise ParseError("nesting too deep")
            tokens.append(c)
            i += 1
        elif c == ")":
            if expect_operand or depth == 0:
                raise ParseError("unbalanced ')'")
            depth -= 1
            tokens.append(c)
            i += 1
        elif c in _OPS:
            if expect_operand:
                raise ParseError("operator where operand expected")
            tokens.append(c)
            expect_operand, i = True, i + 1
        else:
            raise ParseError("illegal character")
    if expect_operand or depth != 0:
        raise ParseError("incomplete expression")
    return tokens


class _Parser:
    """Recursive descent over a token list (depth already bounded by :func:`tokenize`)."""

    def __init__(self, tokens: list[str | int]) -> None:
        self.tokens, self.pos = tokens, 0

    def peek(self) -> str | int | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def expr(self) -> Node:
        node = self.term()
        while self.peek() in ("+", "-"):
            op = self.tokens[self.pos]
            self.pos += 1
            node = (op, node, self.term())
        return node

    def term(self) -> Node:
        node = self.factor()
        while self.peek() in ("*", "/"):
            op = self.tokens[self.pos]
            self.pos += 1
            node = (op, node, self.factor())
        return node

    def factor(self) -> Node:
        tok = self.peek()
        self.pos += 1
        if isinstance(tok, int):
            return tok
        if tok == "(":
            node = self.expr()
            if self.peek() != ")":
                raise ParseError("expected ')'")
            self.pos += 1
            return node
        raise ParseError("expected operand")


def parse(text: str, max_literals: int | None = None) -> Node:
    """Parse an expression into a tiny AST; raises :class:`ParseError` / :class:`TooManyNumbers`."""
    tokens = tokenize(text, max_literals)
    parser = _Parser(tokens)
    node = parser.expr()
    if parser.pos != len(tokens):
        raise ParseError("trailing tokens")
    return node


def literals(node: Node) -> list[int]:
    """The number literals of an AST, left to right."""
    if isinstance(node, int):
        return [node]
    return literals(node[1]) + literals(node[2])


def evaluate(node: Node) -> Fraction:
    """Exact value of an AST; raises :class:`ZeroDivisionError` on division by zero."""
    if isinstance(node, int):
        return Fraction(node)
    op, a, b = node
    x, y = evaluate(a), evaluate(b)
    if op == "+":
        return x + y
    if op == "-":
        return x - y
    if op == "*":
        return x * y
    return x / y  # Fraction raises ZeroDivisionError for y == 0


def _flatten(node: Node, chain: str, inverse: bool, out: list[tuple[bool, Node]]) -> None:
    """Collect the operands of an associative chain (``+-`` or ``*/``) with their inverse flag."""
    if not isinstance(node, int) and node[0] in chain:
        op, a, b = node
        _flatten(a, chain, inverse, out)
        _flatten(b, chain, inverse != (op == chain[1]), out)
    else:
        out.append((inverse, node))


def canonical(node: Node) -> str:
    """A canonical text for an AST, equal for answers that differ only trivially.

    Chains of ``+``/``-`` become signed terms and chains of ``*``/``/`` become factors with an
    inverse flag (so ``a-(b-c)`` is ``a+c-b`` and ``a/(b/c)`` is ``a*c/b``); operands of each chain
    are sorted by their own canonical text and rendered as ``pos+pos-neg-neg`` / ``num*num/den/den``
    with parentheses only around sums inside products. The text is itself a valid expression with
    the same value (a chain always keeps its leftmost operand un-inverted, so it is never empty).
    Non-trivial identities (``x*1``, ``a-b+b``, distributivity) are deliberately not merged.
    """
    if isinstance(node, int):
        return str(node)
    if node[0] in "+-":
        items: list[tuple[bool, Node]] = []
        _flatten(node, "+-", False, items)
        pos = sorted(canonical(t) for inv, t in items if not inv)
        neg = sorted(canonical(t) for inv, t in items if inv)
        return "+".join(pos) + "".join("-" + t for t in neg)
    items = []
    _flatten(node, "*/", False, items)

    def render(t: Node) -> str:
        text = canonical(t)
        return f"({text})" if not isinstance(t, int) and t[0] in "+-" else text

    num = sorted(render(t) for inv, t in items if not inv)
    den = sorted(render(t) for inv, t in items if inv)
    return "*".join(num) + "".join("/" + t for t in den)


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
    try:
        return canonical(parse(expr))
    except (ParseError, TooManyNumbers):
        return None


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
        given = Counter(int(n) for n in record["numbers"])
        target = record["target"]
        try:
            node = parse(expr, max_literals=sum(given.values()))
        except TooManyNumbers:
            return Verdict(0.0, "numbers")
        except ParseError:
            return Verdict(0.0, "parse")
        answer = canonical(node)
        used = Counter(literals(node))
        if any(count > given[n] for n, count in used.items()):
            return Verdict(0.0, "numbers", answer=answer)
        try:
            value = evaluate(node)
        except ZeroDivisionError:
            return Verdict(0.0, "divzero", answer=answer)
        if value != target:
            return Verdict(0.0, "wrong", answer=answer)
        return Verdict(1.0, "ok", answer=answer)

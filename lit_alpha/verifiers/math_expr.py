"""Exact values of simple math answers, read by a bounded hand-written parser (never ``eval``).

Grammar (after :func:`lit_alpha.verifiers.math_answer.normalise`)::

    expr    := term (('+' | '-') term)*
    term    := unary (('*' | '/') unary | implicit)*      implicit: 2\\sqrt{3}, 3(4+1), 2\\frac{..}{..}
    unary   := ('+' | '-') unary | power
    power   := primary ('^' unary)?                       right-associative; integer exponent, |e| <= 64
    primary := NUMBER | '(' expr ')' | '{' expr '}' | '\\frac' group group | '\\sqrt' group
    NUMBER  := [0-9.]{1,40} with at most one '.'

Values are sums ``Σ q·√n`` (``q`` rational, ``n`` square-free), a unique form, so equal numbers have
equal values. Bounds (each raises :class:`Unsupported`): nesting depth, literal length, exponent,
bit size of every coefficient, number of distinct roots, the radicand factored by a square root,
division only by a single term.
"""

from __future__ import annotations

import math
from fractions import Fraction

MAX_DEPTH = 32  # deepest nesting of (), {} and commands
MAX_LITERAL = 40  # longest number literal (characters)
MAX_EXPONENT = 64  # largest |integer exponent|
MAX_BITS = 512  # largest numerator/denominator of any intermediate value
MAX_RADICAND = 10**6  # largest integer whose square part is factored out of a square root
MAX_TERMS = 8  # most distinct square roots in one value


class Unsupported(ValueError):
    """The text has no exact value under the grammar above (or exceeds a bound)."""


# -- exact values in Q(√2, √3, ...) ---------------------------------------------------------------
Value = dict  # {square-free radicand: nonzero Fraction coefficient}; {} is zero


def _check(v: Value) -> Value:
    if len(v) > MAX_TERMS:
        raise Unsupported("too many roots")
    for q in v.values():
        if q.numerator.bit_length() > MAX_BITS or q.denominator.bit_length() > MAX_BITS:
            raise Unsupported("value too large")
    return v


def _add(a: Value, b: Value, sign: int = 1) -> Value:
    out = dict(a)
    for n, q in b.items():
        out[n] = out.get(n, Fraction(0)) + sign * q
        if out[n] == 0:
            del out[n]
    return _check(out)


def _square_free(n: int) -> tuple[int, int]:
    """``n = k²·m`` with ``m`` square-free: returns ``(k, m)`` (``n`` at most :data:`MAX_RADICAND`)."""
    if n > MAX_RADICAND:
        raise Unsupported("radicand too large")
    k, p = 1, 2
    while p * p <= n:
        while n % (p * p) == 0:
            n //= p * p
            k *= p
        p += 1
    return k, n


def _mul(a: Value, b: Value) -> Value:
    out: Value = {}
    for n1, q1 in a.items():
        for n2, q2 in b.items():
            g = 1 if n1 == 1 or n2 == 1 else math.gcd(n1, n2)  # √n1·√n2 = g·√(n1·n2/g²)
            n, q = n1 * n2 // (g * g), q1 * q2 * g
            out[n] = out.get(n, Fraction(0)) + q
            if out[n] == 0:
                del out[n]
    return _check(out)


def _inverse(v: Value) -> Value:
    if not v:
        raise Unsupported("division by zero")
    if len(v) != 1:
        raise Unsupported("division by a sum of roots")
    (n, q), = v.items()
    return {n: 1 / (q * n)}  # 1/(q√n) = √n/(q·n)


def _pow(base: Value, e: Value) -> Value:
    if set(e) - {1} or e.get(1, Fraction(0)).denominator != 1:
        raise Unsupported("non-integer exponent")
    k = int(e.get(1, 0))
    if abs(k) > MAX_EXPONENT:
        raise Unsupported("exponent too large")
    if k < 0:
        base, k = _inverse(base), -k
    out: Value = {1: Fraction(1)}
    for _ in range(k):
        out = _mul(out, base)
    return out


def _sqrt(v: Value) -> Value:
    if not v:
        return {}
    if set(v) != {1} or v[1] < 0:
        raise Unsupported("square root of a non-rational or negative value")
    q = v[1]
    k, m = _square_free(q.numerator * q.denominator)  # √(a/b) = √(ab)/b
    return {m: Fraction(k, q.denominator)}


def render(v: Value) -> str:
    """Canonical text of a value: terms by radicand, ``q`` or ``q*sqrt(n)``, joined by ``+``."""
    if not v:
        return "0"
    return "+".join(str(v[n]) if n == 1 else f"{v[n]}*sqrt({n})" for n in sorted(v))


# -- tokenizer and parser -------------------------------------------------------------------------
_COMMANDS = ("\\frac", "\\sqrt")


def tokenize(s: str) -> list[str]:
    tokens: list[str] = []
    i, n = 0, len(s)
    while i < n:
        c = s[i]
        if c == " ":
            i += 1
        elif c in "0123456789.":
            j = i
            while j < n and s[j] in "0123456789.":
                j += 1
                if j - i > MAX_LITERAL:
                    raise Unsupported("literal too long")
            lit = s[i:j]
            if lit.count(".") > 1 or lit == ".":
                raise Unsupported("bad literal")
            tokens.append(lit)
            i = j
        elif c in "+-*/^(){}":
            tokens.append(c)
            i += 1
        elif c == "\\" and s.startswith(_COMMANDS, i):
            tokens.append(s[i : i + 5])
            i += 5
        else:
            raise Unsupported("unsupported character")
    return tokens


class _Parser:
    """Recursive descent; every recursion goes through :meth:`_enter`, which bounds the depth."""

    def __init__(self, tokens: list[str]) -> None:
        self.t, self.pos, self.depth = tokens, 0, 0

    def peek(self) -> str | None:
        return self.t[self.pos] if self.pos < len(self.t) else None

    def take(self, tok: str) -> None:
        if self.peek() != tok:
            raise Unsupported(f"expected {tok!r}")
        self.pos += 1

    def _enter(self) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise Unsupported("nesting too deep")

    def expr(self) -> Value:
        self._enter()
        v = self.term()
        while self.peek() in ("+", "-"):
            sign = 1 if self.t[self.pos] == "+" else -1
            self.pos += 1
            v = _add(v, self.term(), sign)
        self.depth -= 1
        return v

    def term(self) -> Value:
        v = self.unary()
        while True:
            tok = self.peek()
            if tok in ("*", "/"):
                self.pos += 1
                rhs = self.unary()
                v = _mul(v, rhs if tok == "*" else _inverse(rhs))
            elif tok in ("(", "\\frac", "\\sqrt"):  # implicit product: 2\sqrt{3}, 3(4+1)
                v = _mul(v, self.power())
            else:
                return v

    def unary(self) -> Value:
        if self.peek() in ("+", "-"):
            sign = 1 if self.t[self.pos] == "+" else -1
            self.pos += 1
            self._enter()
            v = self.unary()
            self.depth -= 1
            return v if sign == 1 else {n: -q for n, q in v.items()}
        return self.power()

    def power(self) -> Value:
        base = self.primary()
        if self.peek() == "^":
            self.pos += 1
            self._enter()
            exponent = self.unary()  # right-associative: 2^3^2 = 2^9
            self.depth -= 1
            return _pow(base, exponent)
        return base

    def group(self) -> Value:
        self.take("{")
        v = self.expr()
        self.take("}")
        return v

    def primary(self) -> Value:
        tok = self.peek()
        if tok is None:
            raise Unsupported("unexpected end")
        self.pos += 1
        if tok[0] in "0123456789.":
            q = Fraction(tok)
            return {1: q} if q else {}
        if tok in ("(", "{"):
            v = self.expr()
            self.take(")" if tok == "(" else "}")
            return v
        if tok == "\\frac":
            num = self.group()
            return _mul(num, _inverse(self.group()))
        if tok == "\\sqrt":
            return _sqrt(self.group())
        raise Unsupported(f"unexpected {tok!r}")


def value(s: str) -> Value:
    """Exact value of a normalised answer; raises :class:`Unsupported`."""
    parser = _Parser(tokenize(s))
    v = parser.expr()
    if parser.pos != len(parser.t):
        raise Unsupported("trailing tokens")
    return v
